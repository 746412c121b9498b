import CaravanCatalog
import CaravanCore
import CaravanEngine
import CaravanIdentity
import CaravanWasm
import CaravanWorkflow
import Hummingbird

/// `/v1/modules…`: the organization's WebAssembly modules. Uploaded as a binary (base64) or WAT text with their
/// schemas, permissions and limits; checked before they are stored (a module that does not parse, or imports what
/// Caravan does not provide or what it was not granted, is refused naming the import); versioned, content-addressed.
/// Workflows call them with `wasm` steps, agents with `wasm` tools; `POST …/call` tries one.
struct ModuleRoutes {
    let runner: WasmModuleRunner
    let secrets: (any SecretResolver)?
    let bodies: RequestBodyReader
    /// Refuses changes to a module that an install keeps.
    let catalog: Catalog

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .put,
                "/v1/modules/{name}",
                operationID: "putModule",
                summary:
                    "Upload a module, or a new version of it: `{wasm (base64) | wat, description?, input_schema?, output_schema?, permissions?: {http?, kv?, secrets?}, limits?: {fuel?, memory_bytes?, stack_bytes?, timeout_ms?}}`.",
                tag: "modules",
                access: .organization(.write),
                requestSchema: object,
                responses: [
                    201: ("A new version", object, "application/json"), 200: ("Unchanged", object, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            guard DefinitionParser.isValidWorkflowName(name) else {
                throw CaravanError.validation("/name", "must match [a-z0-9-]{1,64}")
            }
            try await catalog.refuseChange(orgID: orgID, kind: .module, name: name)
            let upload = try WasmModuleUpload.parse(
                try await Self.uploads.json(of: request),
                defaults: runner.defaults,
                maxima: runner.maxima
            )
            let checked: (binary: [UInt8], info: WasmModuleInfo)
            do throws(WasmError) {
                checked = try WasmModuleInspector.inspect(upload.bytes)
            } catch {
                throw CaravanError(
                    .validationFailed,
                    "The module was refused (\(error.code)): \(error.message)",
                    fieldErrors: [.init(pointer: upload.pointer, detail: error.message)]
                )
            }
            for name in checked.info.imports {
                if let permission = WasmPermissions.permission(for: name), !upload.permissions.grants(permission) {
                    let detail = "imports \(name), which needs the permission '\(permission)'"
                    throw CaravanError(
                        .validationFailed,
                        "The module \(detail).",
                        fieldErrors: [.init(pointer: "/permissions/\(permission)", detail: detail)]
                    )
                }
            }
            if !upload.permissions.secrets.isEmpty, let secrets {
                let existing = try await secrets.existing(names: Set(upload.permissions.secrets), orgID: orgID)
                if let missing = upload.permissions.secrets.first(where: { !existing.contains($0) }) {
                    throw CaravanError.validation("/permissions/secrets", "no secret named '\(missing)'")
                }
            }
            let (module, created) = try await runner.store.put(
                orgID: orgID,
                name: name,
                binary: checked.binary,
                info: checked.info,
                upload: upload
            )
            context.audit.target("module:\(name)")
            return .json(module.json, status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/modules",
                operationID: "listModules",
                summary: "The organization's modules, each at its latest version.",
                tag: "modules",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("A page of modules", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await runner.store.list(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.name, json: \.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/modules/{name}",
                operationID: "getModule",
                summary: "A module: its latest version (or `?version=N`) and the list of its versions.",
                tag: "modules",
                access: .organization(.read),
                query: [APISchemas.version],
                responses: [200: ("The module", object, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            let version = try Self.version(request)
            guard let module = try await runner.store.get(orgID: orgID, name: name, version: version),
                case .object(var fields) = module.json
            else { throw CaravanError.notFound("The module '\(name)'") }
            fields["versions"] = .array(
                try await runner.store.versions(orgID: orgID, name: name).map { .int(Int64($0.version)) }
            )
            return .json(.object(fields))
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/modules/{name}",
                operationID: "deleteModule",
                summary: "Delete a module and all its versions.",
                tag: "modules",
                access: .organization(.write),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            try await catalog.refuseChange(orgID: try context.organizationID(), kind: .module, name: name)
            guard try await runner.store.delete(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The module '\(name)'")
            }
            context.audit.target("module:\(name)")
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/modules/{name}/call",
                operationID: "callModule",
                summary:
                    "Call a module once (`{input, version?}`), outside any run: `{output}`, or 422 with the call's code (`fuel_exhausted`, `memory_limit`, `deadline_exceeded`, …). Its kv store is this endpoint's own; it gets no secrets.",
                tag: "modules",
                access: .organization(.write),
                requestSchema: object,
                responses: [200: ("The output", object, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["input", "version"])
            let version = try fields.integer("version")
            do throws(Failure) {
                let output = try await runner.call(
                    WasmModuleRunner.Call(
                        orgID: orgID,
                        module: name,
                        version: version,
                        input: fields.object["input"] ?? [:],
                        scope: "call",
                        meterKey: Identifier.make("call"),  // every call through the API is one of its own
                        secrets: { _ in [:] }  // outside a run, a module gets no secrets
                    )
                )
                return .json(["output": output])
            } catch {
                throw Self.problem(error)
            }
        }
    }

    /// Upload bodies: a module's binary in base64, with room for its declarations.
    static let uploads = RequestBodyReader(maxBytes: WasmModuleUpload.maxBytes * 4 / 3 + 262_144)

    private static func version(_ request: Request) throws -> Int? {
        guard let text = request.uri.queryParameters.get("version") else { return nil }
        guard let version = Int(text), version >= 1 else {
            throw CaravanError.validation("/version", "version must be an integer ≥ 1")
        }
        return version
    }

    /// A failed call as an API error: not found, a bad input, or the module's own failure (422, with its code).
    static func problem(_ failure: Failure) -> CaravanError {
        switch failure.code.rawValue {
        case "module_not_found": CaravanError.notFound(failure.message)
        case "invalid_input":
            CaravanError(
                .validationFailed,
                failure.message,
                fieldErrors: [.init(pointer: "/input", detail: failure.message)]
            )
        default: CaravanError(.init(failure.code.rawValue, status: 422), failure.message)
        }
    }
}
