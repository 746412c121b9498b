import AsyncHTTPClient
public import CaravanCore
public import CaravanOutbound
import CaravanWorkflow
import Dispatch
public import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Calls the organizations' modules: finds the version, checks the input against its schema, gives the module the
/// host functions it was granted (HTTP through the egress policy, a key-value store of its scope, its named secrets,
/// a log), runs it in the node's `WasmSandbox` and checks the output.
public final class WasmModuleRunner: Sendable {
    public let store: WasmModuleStore
    public let sandbox: WasmSandbox
    let http: EgressHTTPClient
    /// What a module gets when it asks for nothing, and the most it may ask for.
    public let defaults: WasmLimits
    public let maxima: WasmLimits
    /// Told of every call that carries a meter key.
    let meter: (any WasmCallMeter)?
    let logger: Logger

    public init(
        store: WasmModuleStore,
        sandbox: WasmSandbox,
        http: EgressHTTPClient,
        defaults: WasmLimits = .standard,
        maxima: WasmLimits = .operatorMaximum,
        meter: (any WasmCallMeter)? = nil,
        logger: Logger
    ) {
        self.store = store
        self.sandbox = sandbox
        self.http = http
        self.defaults = defaults
        self.maxima = maxima
        self.meter = meter
        self.logger = logger
    }

    /// One call of a module.
    public struct Call: Sendable {
        public var orgID: String
        public var module: String
        /// The latest version when `nil`.
        public var version: Int?
        public var input: JSONValue
        /// Where `kv_get`/`kv_put` keep their values: the run's id, so a retried step sees what it stored (each
        /// module has its own keys there).
        public var scope: String
        /// The values of secrets, by name: asked only for those the module's version was granted.
        public var secrets: @Sendable ([String]) async throws -> [String: String]
        /// What names this call for the meter, the same for every attempt of it (a step's idempotency key, a
        /// tool call's id, a request's id); `nil` for a call that is not metered.
        public var meterKey: String?
        /// The workflow whose run makes the call (`agent:NAME` for an agent's); `nil` outside a run. A module named
        /// `OWNER.MODULE` (a copy an install of the catalog brings) answers only runs of `OWNER`.
        public var workflow: String?

        public init(
            orgID: String,
            module: String,
            version: Int? = nil,
            input: JSONValue,
            scope: String,
            meterKey: String?,
            workflow: String? = nil,
            secrets: @escaping @Sendable ([String]) async throws -> [String: String]
        ) {
            self.orgID = orgID
            self.module = module
            self.version = version
            self.input = input
            self.scope = scope
            self.meterKey = meterKey
            self.workflow = workflow
            self.secrets = secrets
        }
    }

    /// Runs `call`, and tells the meter how it ended when it carries a meter key and found its module.
    /// - Returns: the module's output.
    /// - Throws: `Failure`: `module_not_found`, `invalid_input`, `invalid_output`, or the sandbox's code
    ///   (`fuel_exhausted`, `memory_limit`, `stack_overflow`, `deadline_exceeded`, `trap`, …).
    public func call(_ call: Call) async throws(Failure) -> JSONValue {
        guard let meter, let key = call.meterKey else { return try await perform(call) }
        let started = ContinuousClock.now
        func milliseconds() -> Int64 {
            let elapsed = ContinuousClock.now - started
            return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        }
        do {
            let output = try await perform(call)
            await meter.called(
                orgID: call.orgID,
                module: call.module,
                key: key,
                succeeded: true,
                milliseconds: milliseconds()
            )
            return output
        } catch {
            if error.code != "module_not_found" {
                await meter.called(
                    orgID: call.orgID,
                    module: call.module,
                    key: key,
                    succeeded: false,
                    milliseconds: milliseconds()
                )
            }
            throw error
        }
    }

    private func perform(_ call: Call) async throws(Failure) -> JSONValue {
        if let dot = call.module.lastIndex(of: "."), call.workflow != String(call.module[..<dot]) {
            throw Failure(
                code: "module_not_callable",
                message: "'\(call.module)' belongs to what an install brought; only its own runs call it.",
                retryable: false
            )
        }
        let module: WasmModuleDefinition
        let binary: [UInt8]
        let secrets: [String: String]
        do {
            guard let found = try await store.get(orgID: call.orgID, name: call.module, version: call.version),
                let bytes = try await store.binary(sha256: found.sha256)
            else {
                let version = call.version.map { " version \($0)" } ?? ""
                throw Failure(
                    code: "module_not_found",
                    message: "No module '\(call.module)'\(version).",
                    retryable: false
                )
            }
            module = found
            binary = bytes
            secrets = found.permissions.secrets.isEmpty ? [:] : try await call.secrets(found.permissions.secrets)
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(
                code: "module_unavailable",
                message: "The module could not be read: \(error)",
                retryable: true
            )
        }
        if let schema = module.inputSchema {
            let problems = JSONSchemaCheck.problems(of: call.input, against: schema, at: "/input")
            if let first = problems.first {
                throw Failure(
                    code: "invalid_input",
                    message: "The input does not match the module's input schema: \(first.pointer) \(first.detail)",
                    retryable: false
                )
            }
        }
        let host = RunHost(
            module: module,
            orgID: call.orgID,
            scope: call.scope + "/" + module.name,
            secrets: secrets,
            store: store,
            http: http,
            deadline: .now() + .milliseconds(Int(module.limits.timeoutMilliseconds)),
            logger: logger
        )
        let output: [UInt8]
        do {
            output = try await sandbox.call(
                key: module.sha256,
                binary: { binary },
                input: Array(call.input.canonicalText.utf8),
                limits: module.limits,
                host: host
            )
        } catch {
            throw Failure(
                code: Failure.Code(rawValue: error.code),
                message: "\(module.name) v\(module.version): \(error.message)",
                retryable: false
            )
        }
        guard let value = try? JSONValue(parsing: output, maxDepth: 128) else {
            throw Failure(code: "invalid_output", message: "\(module.name) did not answer JSON.", retryable: false)
        }
        if let schema = module.outputSchema {
            let problems = JSONSchemaCheck.problems(of: value, against: schema, at: "/output")
            if let first = problems.first {
                throw Failure(
                    code: "invalid_output",
                    message: "The output does not match the module's output schema: \(first.pointer) \(first.detail)",
                    retryable: false
                )
            }
        }
        return value
    }
}

extension WasmLimits {
    /// What a module gets unless it asks otherwise: 100 million instructions, 16 MiB of memory, 512 KiB of stack,
    /// 5 s.
    public static let standard = WasmLimits(
        fuel: 100_000_000,
        memoryBytes: 16 << 20,
        stackBytes: 512 << 10,
        timeoutMilliseconds: 5_000
    )
    /// The most a module may ask for: 10 billion instructions, 256 MiB, 8 MiB of stack, 60 s.
    public static let operatorMaximum = WasmLimits(
        fuel: 10_000_000_000,
        memoryBytes: 256 << 20,
        stackBytes: 8 << 20,
        timeoutMilliseconds: 60_000
    )
}

/// The host functions of one call, checked against the module's permissions. The sandbox calls them on its own
/// thread, which they block while the asynchronous work (a query, a request) runs on the concurrency pool.
struct RunHost: WasmHost {
    let module: WasmModuleDefinition
    let orgID: String
    let scope: String
    let secrets: [String: String]
    let store: WasmModuleStore
    let http: EgressHTTPClient
    let deadline: DispatchTime
    let logger: Logger
    /// The most bytes a value, a request or a response may have.
    static let maxBytes = 1 << 20

    func log(_ message: String) {
        logger.info(
            "Module log",
            metadata: [
                "caravan.org_id": "\(orgID)", "caravan.run_id": "\(scope)", "caravan.module": "\(module.name)",
                "message": "\(message.prefix(1_000))",
            ]
        )
    }

    func kvGet(_ key: String) throws(WasmError) -> [UInt8]? {
        try check(module.permissions.kv, "kv")
        return try wait { try await store.value(orgID: orgID, scope: scope, key: String(key.prefix(256))) }
    }

    func kvPut(_ key: String, _ value: [UInt8]) throws(WasmError) {
        try check(module.permissions.kv, "kv")
        guard value.count <= Self.maxBytes else {
            throw WasmError(code: "value_too_large", message: "A kv value is at most 1 MiB.")
        }
        try wait { try await store.setValue(orgID: orgID, scope: scope, key: String(key.prefix(256)), value) }
    }

    func secret(_ name: String) throws(WasmError) -> String? {
        guard module.permissions.secrets.contains(name) else { return nil }
        return secrets[name]
    }

    /// `{method?, url, headers?, body?}` → `{status, headers, body}` (the body as text).
    func httpFetch(_ requestJSON: [UInt8]) throws(WasmError) -> [UInt8] {
        try check(module.permissions.http, "http")
        guard requestJSON.count <= Self.maxBytes, let request = try? JSONValue(parsing: requestJSON, maxDepth: 32),
            let url = request["url"]?.stringValue
        else {
            throw WasmError(
                code: "invalid_request",
                message: "http_fetch takes {method?, url, headers?, body?} as JSON."
            )
        }
        var outgoing = HTTPClientRequest(url: url)
        outgoing.method = HTTPMethod(rawValue: (request["method"]?.stringValue ?? "GET").uppercased())
        let headers = (request["headers"]?.objectValue ?? [:]).compactMap { name, value in
            value.stringValue.map { (name: name, value: $0) }
        }
        if let problem = headerProblem(headers) { throw WasmError(code: "invalid_request", message: problem) }
        for (name, value) in headers { outgoing.headers.replaceOrAdd(name: name, value: value) }
        if let body = request["body"]?.stringValue { outgoing.body = .bytes(ByteBuffer(string: body)) }
        let remaining = max(1, Int64(deadline.uptimeNanoseconds) - Int64(DispatchTime.now().uptimeNanoseconds))
        let http = self.http
        let prepared = outgoing
        let response = try wait { () async throws -> (HTTPResponseStatus, HTTPHeaders, ByteBuffer) in
            do {
                let answer = try await http.execute(
                    prepared,
                    timeout: .nanoseconds(remaining),
                    maxBodyBytes: Self.maxBytes
                )
                return (answer.status, answer.headers, answer.body)
            } catch let failure as Failure {
                throw WasmError(code: failure.code.rawValue, message: failure.message)
            }
        }
        var fields: [String: JSONValue] = [:]
        for header in response.1 { fields[header.name.lowercased()] = .string(header.value) }
        let answer: JSONValue = [
            "status": .int(Int64(response.0.code)), "headers": .object(fields),
            "body": .string(String(buffer: response.2)),
        ]
        return Array(answer.canonicalText.utf8)
    }

    private func check(_ granted: Bool, _ permission: String) throws(WasmError) {
        guard granted else {
            throw WasmError(code: "permission_denied", message: "The module was not granted \(permission).")
        }
        guard DispatchTime.now() < deadline else {
            throw WasmError(code: "deadline_exceeded", message: "The call ran past its deadline.")
        }
    }

    /// Runs `work` on the concurrency pool and blocks this (the sandbox's) thread until it ends or the deadline
    /// passes.
    private func wait<Value: Sendable>(_ work: @escaping @Sendable () async throws -> Value) throws(WasmError) -> Value
    {
        let done = DispatchSemaphore(value: 0)
        let result = ResultBox<Value>()
        let task = Task {
            do { result.set(.success(try await work())) } catch { result.set(.failure(error)) }
            done.signal()
        }
        guard done.wait(timeout: deadline) == .success else {
            task.cancel()
            throw WasmError(code: "deadline_exceeded", message: "The call ran past its deadline.")
        }
        switch result.get() {
        case .success(let value)?: return value
        case .failure(let error as WasmError)?: throw error
        case .failure(let error)?: throw WasmError(code: "host_error", message: "\(error)")
        case nil: throw WasmError(code: "host_error", message: "The host function did not finish.")
        }
    }
}

/// A result handed from a task to the thread that waits for it.
private final class ResultBox<Value: Sendable>: Sendable {
    private let value = Mutex<Result<Value, any Error>?>(nil)
    func set(_ result: Result<Value, any Error>) { value.withLock { $0 = result } }
    func get() -> Result<Value, any Error>? { value.withLock { $0 } }
}

/// Told of each finished call that carries a meter key: how the catalog charges for installed modules by the call.
public protocol WasmCallMeter: Sendable {
    /// Records one call of `module` in `orgID`; `key` is the same for every attempt of one call.
    func called(orgID: String, module: String, key: String, succeeded: Bool, milliseconds: Int64) async
}
