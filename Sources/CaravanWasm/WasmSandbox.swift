import Dispatch
import Synchronization
import WAT
@_spi(Fuzzing) import WasmKit  // `Store.resourceLimiter`: the memory cap

/// A call's budgets: instructions (fuel), linear memory, interpreter stack, wall-clock time.
public struct WasmLimits: Sendable, Hashable {
    public var fuel: UInt64
    public var memoryBytes: Int
    public var stackBytes: Int
    public var timeoutMilliseconds: Int64

    public init(fuel: UInt64, memoryBytes: Int, stackBytes: Int, timeoutMilliseconds: Int64) {
        self.fuel = fuel
        self.memoryBytes = memoryBytes
        self.stackBytes = stackBytes
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

/// How a module takes its input and gives its output, JSON in, JSON out either way. `caravan`: it exports `memory`,
/// `caravan_alloc(size) -> ptr` and `caravan_run(ptr, len) -> (out_ptr << 32 | out_len)`. `wasi`: a WASI preview 1
/// command (it exports `_start`) that reads its input on standard input and writes its output on standard output;
/// exiting with another code than 0 fails the call.
public enum WasmABI: String, Sendable {
    case caravan, wasi
}

/// What inspection found in a module.
public struct WasmModuleInfo: Sendable, Hashable {
    public var abi: WasmABI
    /// `module.name` of every import.
    public var imports: [String]
}

/// Why a call or an upload failed, with a stable code.
public struct WasmError: Error, Sendable, Hashable {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}

/// The host functions a module may import from `caravan`. Called on the sandbox's thread, which they may block.
public protocol WasmHost: Sendable {
    func log(_ message: String)
    func kvGet(_ key: String) throws(WasmError) -> [UInt8]?
    func kvPut(_ key: String, _ value: [UInt8]) throws(WasmError)
    func httpFetch(_ requestJSON: [UInt8]) throws(WasmError) -> [UInt8]
    func secret(_ name: String) throws(WasmError) -> String?
}

/// Checks a module before it is stored.
public enum WasmModuleInspector {
    /// The host functions Caravan provides, as `module.name`.
    public static let hostFunctions: Set<String> = [
        "caravan.log", "caravan.kv_get", "caravan.kv_put", "caravan.http_fetch", "caravan.secret",
    ]
    /// The module of WASI preview 1's functions (see `WASIFunctions` for what they reach).
    public static let wasiModule = "wasi_snapshot_preview1"

    /// Parses the module (a binary, or WAT text) and checks what it imports and exports.
    /// - Returns: the binary (a WAT text assembled) and what it imports.
    /// - Throws: `module_invalid` (it does not parse, or lacks the ABI's exports), `import_not_allowed` (naming
    ///   the first import Caravan does not provide). A module whose initial memory is above its limit is refused
    ///   when called (`memory_limit`).
    public static func inspect(_ bytes: [UInt8]) throws(WasmError) -> (binary: [UInt8], info: WasmModuleInfo) {
        var binary = bytes
        if !bytes.starts(with: [0, 0x61, 0x73, 0x6D]) {
            do {
                binary = try wat2wasm(String(decoding: bytes, as: UTF8.self))
            } catch {
                throw WasmError(code: "module_invalid", message: "The WAT text does not assemble: \(error)")
            }
        }
        let module: Module
        do { module = try parseWasm(bytes: binary) } catch {
            throw WasmError(code: "module_invalid", message: "The module does not parse: \(error)")
        }
        let imports = module.imports.map { $0.module + "." + $0.name }
        for (entry, name) in zip(module.imports, imports) {
            guard case .function(let typeIndex) = entry.descriptor else {
                throw WasmError(
                    code: "import_not_allowed",
                    message: "The module imports \(name), which is not a function; Caravan provides only functions."
                )
            }
            if entry.module == wasiModule, let expected = WASIFunctions.signatures[entry.name] {
                guard module.functionType(at: typeIndex) == expected else {
                    throw WasmError(
                        code: "import_not_allowed",
                        message: "The module imports \(name) with another type than WASI preview 1 gives it."
                    )
                }
                continue
            }
            guard hostFunctions.contains(name) else {
                throw WasmError(
                    code: "import_not_allowed",
                    message: "The module imports \(name), which Caravan does not provide."
                )
            }
        }
        let exported = Set(module.exports.map(\.name))
        let abi: WasmABI = exported.contains("caravan_run") || !exported.contains("_start") ? .caravan : .wasi
        let required = abi == .caravan ? ["memory", "caravan_alloc", "caravan_run"] : ["memory", "_start"]
        for name in required where !exported.contains(name) {
            throw WasmError(
                code: "module_invalid",
                message:
                    "The module does not export \(name): a module exports caravan_alloc and caravan_run (the caravan ABI), or _start (a WASI command)."
            )
        }
        return (binary, WasmModuleInfo(abi: abi, imports: imports))
    }
}

/// Runs modules, each call in a store of its own with its limits, on threads of its own (not Swift's cooperative
/// pool: a call holds its thread while it computes), at most `maxConcurrentCalls` at once; the others wait their
/// turn. Parsed modules are kept by key.
///
/// Fuel, memory and stack end a call from inside the interpreter. WasmKit cannot interrupt running code, so the wall
/// clock ends it from outside: at the deadline the caller is answered `deadline_exceeded` and every host function
/// refuses; the computation itself goes on until its fuel runs out, and holds its slot until then.
public final class WasmSandbox: Sendable {
    private let slots: CallSlots
    private let modules = Mutex<[String: Module]>([:])
    private let engines = Mutex<[Int: Engine]>([:])
    private let cacheCapacity: Int

    public init(maxConcurrentCalls: Int, cacheCapacity: Int = 64) {
        self.slots = CallSlots(count: max(1, maxConcurrentCalls))
        self.cacheCapacity = cacheCapacity
    }

    /// Whether the module of `key` is parsed and kept.
    public func isCached(_ key: String) -> Bool { modules.withLock { $0[key] != nil } }

    /// One call: `input` in, the module's output out.
    /// - Throws: `fuel_exhausted`, `memory_limit`, `stack_overflow`, `deadline_exceeded`, `cancelled`, `trap`,
    ///   `invalid_output`, `module_invalid`, or a host function's error.
    public func call(
        key: String,
        binary: @Sendable () -> [UInt8],
        input: [UInt8],
        limits: WasmLimits,
        host: any WasmHost
    ) async throws(WasmError) -> [UInt8] {
        let module = try module(key, binary)
        let engine = engine(stackBytes: limits.stackBytes)
        try await slots.acquire()
        let answer = Answer()
        let deadline = DispatchTime.now() + .milliseconds(Int(limits.timeoutMilliseconds))
        DispatchQueue.global().async { [slots] in
            defer { slots.release() }
            let result = Result { () throws(WasmError) -> [UInt8] in
                try Self.run(module, engine: engine, input: input, limits: limits, host: host, deadline: deadline)
            }
            answer.give(result)
        }
        DispatchQueue.global().asyncAfter(deadline: deadline) {
            answer.give(
                .failure(
                    WasmError(code: "deadline_exceeded", message: "The call ran past \(limits.timeoutMilliseconds) ms.")
                )
            )
        }
        return try await withTaskCancellationHandler {
            await answer.value()
        } onCancel: {
            answer.give(.failure(WasmError(code: "cancelled", message: "The call was cancelled.")))
        }.get()
    }

    private func module(_ key: String, _ binary: () -> [UInt8]) throws(WasmError) -> Module {
        if let kept = modules.withLock({ $0[key] }) { return kept }
        let parsed: Module
        do { parsed = try parseWasm(bytes: binary()) } catch {
            throw WasmError(code: "module_invalid", message: "The module does not parse: \(error)")
        }
        modules.withLock { kept in
            if kept.count >= cacheCapacity { kept.removeAll() }
            kept[key] = parsed
        }
        return parsed
    }

    private func engine(stackBytes: Int) -> Engine {
        engines.withLock { engines in
            if let engine = engines[stackBytes] { return engine }
            let engine = Engine(configuration: EngineConfiguration(stackSize: stackBytes, fuelMetering: true))
            engines[stackBytes] = engine
            return engine
        }
    }

    /// The call itself, on a sandbox thread.
    private static func run(
        _ module: Module,
        engine: Engine,
        input: [UInt8],
        limits: WasmLimits,
        host: any WasmHost,
        deadline: DispatchTime
    ) throws(WasmError) -> [UInt8] {
        let store = Store(engine: engine)
        let limiter = MemoryCap(bytes: limits.memoryBytes)
        store.resourceLimiter = limiter
        store.fuel = Fuel(remaining: limits.fuel)
        let functions = HostFunctions(host: host, deadline: deadline)
        let isCommand =
            module.exports.contains { $0.name == "_start" } && !module.exports.contains { $0.name == "caravan_run" }
        let wasi =
            isCommand || module.imports.contains(where: { $0.module == WasmModuleInspector.wasiModule })
            ? WASIFunctions(name: "module", input: isCommand ? input : [], host: functions) : nil
        var imports = Imports()
        for entry in module.imports {
            let function =
                entry.module == "caravan"
                ? functions.function(entry.name, store: store)
                : entry.module == WasmModuleInspector.wasiModule ? wasi?.function(entry.name, store: store) : nil
            if let function { imports.define(module: entry.module, name: entry.name, function) }
        }
        defer {
            for line in wasi?.logLines(includingOutput: !isCommand, limit: HostFunctions.maxLogLines) ?? [] {
                host.log(line)
            }
        }
        do {
            let instance = try module.instantiate(store: store, imports: imports)
            if isCommand, let wasi, let start = instance.exports[function: "_start"] {
                do { _ = try start.invoke([]) } catch {
                    // `proc_exit` ends the command by throwing; anything else is the call's failure.
                    guard wasi.exitCode != nil, functions.failure == nil else { throw error }
                }
                if let code = wasi.exitCode, code != 0 {
                    throw WasmError(code: "exit_failure", message: "The module exited with code \(code).")
                }
                let (output, overflowed) = wasi.output
                guard !overflowed else {
                    throw WasmError(
                        code: "output_too_large",
                        message: "The module wrote more than \(WASIFunctions.maxOutputBytes) bytes."
                    )
                }
                return output
            }
            guard let memory = instance.exports[memory: "memory"],
                let alloc = instance.exports[function: "caravan_alloc"],
                let run = instance.exports[function: "caravan_run"]
            else { throw WasmError(code: "module_invalid", message: "The module lacks the caravan ABI's exports.") }
            let pointer = try GuestMemory.allocate(input.count, alloc)
            try GuestMemory.write(input, to: memory, at: pointer)
            let results = try run.invoke([.i32(pointer), .i32(UInt32(input.count))])
            guard case .i64(let packed)? = results.first else {
                throw WasmError(code: "invalid_output", message: "caravan_run must return an i64.")
            }
            return try GuestMemory.read(
                memory,
                at: UInt32(packed >> 32),
                count: Int(UInt32(truncatingIfNeeded: packed))
            )
        } catch let error as WasmError {
            throw error
        } catch {
            if let failure = functions.failure { throw failure }
            if let code = wasi?.exitCode {
                throw WasmError(code: "exit_failure", message: "The module exited (code \(code)) instead of answering.")
            }
            throw classify(error, limiter: limiter)
        }
    }

    /// A trap or a failure of WasmKit's as a call's error.
    static func classify(_ error: any Error, limiter: MemoryCap) -> WasmError {
        let text = "\(error)"
        if text.contains("out of fuel") {
            return WasmError(code: "fuel_exhausted", message: "The call used up its fuel (instructions).")
        }
        if text.contains("call stack exhausted") {
            return WasmError(code: "stack_overflow", message: "The call's stack overflowed (recursion too deep).")
        }
        if limiter.refused || text.contains("exceeds the resource limit") {
            return WasmError(code: "memory_limit", message: "The module asked for more memory than its limit.")
        }
        return WasmError(code: "trap", message: String(text.prefix(1_000)))
    }
}

/// Refuses linear memory past a call's cap, and remembers having refused.
final class MemoryCap: ResourceLimiter {
    let bytes: Int
    private let refusedGrowth = Atomic<Bool>(false)

    init(bytes: Int) { self.bytes = bytes }

    var refused: Bool { refusedGrowth.load(ordering: .relaxed) }

    func limitMemoryGrowth(to desired: Int) throws -> Bool {
        guard desired <= bytes else {
            refusedGrowth.store(true, ordering: .relaxed)
            return false
        }
        return true
    }

    func limitTableGrowth(to desired: Int) throws -> Bool { desired <= 100_000 }
}

/// The answer of a call: the first result given (the computation's, the deadline's or a cancellation's) wins.
private final class Answer: Sendable {
    private struct State {
        var result: Result<[UInt8], WasmError>?
        var waiter: CheckedContinuation<Result<[UInt8], WasmError>, Never>?
    }
    private let state = Mutex(State())

    func give(_ result: Result<[UInt8], WasmError>) {
        let waiter = state.withLock { state -> CheckedContinuation<Result<[UInt8], WasmError>, Never>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: result)
    }

    func value() async -> Result<[UInt8], WasmError> {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<[UInt8], WasmError>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// At most `count` calls computing at once; the others wait, first come first served.
private final class CallSlots: Sendable {
    private struct State {
        var free: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state: Mutex<State>

    init(count: Int) { state = Mutex(State(free: count)) }

    func acquire() async throws(WasmError) {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.free > 0 {
                    state.free -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.free += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
