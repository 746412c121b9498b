public import CaravanCore
public import CaravanEngine
public import CaravanWorkflow

/// `wasm: {module, version?, input?}`: one call of the organization's module (the latest version unless one is
/// pinned), with `input` (rendered) as its input; its output is the step's. Its key-value store is the run's.
public struct WasmStep: StepExecutor {
    public static let name = "wasm"

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys.sorted() where !["module", "version", "input"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of a wasm step"))
        }
        if object["module"]?.stringValue.map({ !$0.isEmpty && $0.count <= 140 }) != true {
            errors.append(.init(pointer: pointer + "/module", detail: "is required: the name of a module"))
        }
        if let version = object["version"] {
            guard case .int(let number) = version, number >= 1 else {
                return errors + [.init(pointer: pointer + "/version", detail: "must be an integer ≥ 1")]
            }
        }
        return errors
    }

    let runner: WasmModuleRunner
    let secrets: (any SecretResolver)?

    public init(runner: WasmModuleRunner, secrets: (any SecretResolver)?) {
        self.runner = runner
        self.secrets = secrets
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        var version: Int?
        if case .int(let number)? = config["version"] { version = Int(number) }
        let secrets = self.secrets
        return try await runner.call(
            WasmModuleRunner.Call(
                orgID: context.orgID,
                module: config["module"]?.stringValue ?? "",
                version: version,
                input: config["input"] ?? [:],
                scope: context.runID,
                meterKey: context.idempotencyKey,
                workflow: context.workflow,
                secrets: { names in try await secrets?.resolve(names: Set(names), for: context) ?? [:] }
            )
        )
    }
}
