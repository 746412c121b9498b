import Dispatch
import Synchronization
import WasmKit

/// Reading and writing a module's linear memory, every access checked against its size (WasmKit stops the process
/// on an access out of bounds).
enum GuestMemory {
    /// The most bytes a value crosses the boundary with.
    static let maxBytes = 16 << 20

    static func read(_ memory: Memory, at pointer: UInt32, count: Int) throws(WasmError) -> [UInt8] {
        guard count >= 0, count <= maxBytes, Int(pointer) + count <= memory.byteCount else {
            throw WasmError(code: "invalid_output", message: "The module pointed outside its memory.")
        }
        return memory.withUnsafeBufferPointer(offset: UInt(pointer), count: count) { Array($0) }
    }

    static func write(_ bytes: [UInt8], to memory: Memory, at pointer: UInt32) throws(WasmError) {
        guard Int(pointer) + bytes.count <= memory.byteCount else {
            throw WasmError(code: "invalid_output", message: "caravan_alloc answered a pointer outside the memory.")
        }
        memory.withUnsafeMutableBufferPointer(offset: UInt(pointer), count: bytes.count) { buffer in
            buffer.copyBytes(from: bytes)
        }
    }

    /// `count` bytes from the module's `caravan_alloc`.
    static func allocate(_ count: Int, _ alloc: Function) throws -> UInt32 {
        guard case .i32(let pointer)? = try alloc.invoke([.i32(UInt32(count))]).first else {
            throw WasmError(code: "invalid_output", message: "caravan_alloc must return an i32.")
        }
        return pointer
    }

    /// Copies `bytes` into the calling module's memory: the packed `(pointer << 32) | length` a host function returns.
    static func give(_ bytes: [UInt8], to caller: borrowing Caller) throws -> UInt64 {
        guard let instance = caller.instance, let memory = instance.exports[memory: "memory"],
            let alloc = instance.exports[function: "caravan_alloc"]
        else { throw WasmError(code: "module_invalid", message: "The module lacks the caravan ABI's exports.") }
        let pointer = try allocate(bytes.count, alloc)
        try write(bytes, to: memory, at: pointer)
        return UInt64(pointer) << 32 | UInt64(bytes.count)
    }

    /// The bytes a module passed as `(pointer, length)`.
    static func take(_ arguments: [Value], at index: Int, from caller: borrowing Caller) throws -> [UInt8] {
        guard arguments.count > index + 1, case .i32(let pointer) = arguments[index],
            case .i32(let count) = arguments[index + 1],
            let memory = caller.instance?.exports[memory: "memory"]
        else { throw WasmError(code: "invalid_output", message: "A host function was called with bad arguments.") }
        return try read(memory, at: pointer, count: Int(count))
    }
}

/// The `caravan` imports of one call, calling its `WasmHost`. The first error a host function raises is kept: the
/// trap it causes is reported as that error.
final class HostFunctions: Sendable {
    let host: any WasmHost
    let deadline: DispatchTime
    private let firstFailure = Mutex<WasmError?>(nil)
    /// Log lines a call may write.
    static let maxLogLines = 100
    private let logLines = Atomic<Int>(0)

    init(host: any WasmHost, deadline: DispatchTime) {
        self.host = host
        self.deadline = deadline
    }

    var failure: WasmError? { firstFailure.withLock { $0 } }

    /// The function for import `name`, or `nil` for one Caravan does not provide.
    func function(_ name: String, store: Store) -> Function? {
        let absent = UInt64.max  // -1: no value
        switch name {
        case "log":
            return Function(store: store, parameters: [.i32, .i32]) { caller, arguments in
                let text = try GuestMemory.take(arguments, at: 0, from: caller)
                if self.logLines.add(1, ordering: .relaxed).newValue <= Self.maxLogLines {
                    self.host.log(String(decoding: text, as: UTF8.self))
                }
                return []
            }
        case "kv_get":
            return Function(store: store, parameters: [.i32, .i32], results: [.i64]) { caller, arguments in
                let key = String(decoding: try GuestMemory.take(arguments, at: 0, from: caller), as: UTF8.self)
                guard let value = try self.guarded({ () throws(WasmError) in try self.host.kvGet(key) }) else {
                    return [.i64(absent)]
                }
                return [.i64(try GuestMemory.give(value, to: caller))]
            }
        case "kv_put":
            return Function(store: store, parameters: [.i32, .i32, .i32, .i32]) { caller, arguments in
                let key = String(decoding: try GuestMemory.take(arguments, at: 0, from: caller), as: UTF8.self)
                let value = try GuestMemory.take(arguments, at: 2, from: caller)
                try self.guarded { () throws(WasmError) in try self.host.kvPut(key, value) }
                return []
            }
        case "http_fetch":
            return Function(store: store, parameters: [.i32, .i32], results: [.i64]) { caller, arguments in
                let request = try GuestMemory.take(arguments, at: 0, from: caller)
                let response = try self.guarded { () throws(WasmError) in try self.host.httpFetch(request) }
                return [.i64(try GuestMemory.give(response, to: caller))]
            }
        case "secret":
            return Function(store: store, parameters: [.i32, .i32], results: [.i64]) { caller, arguments in
                let name = String(decoding: try GuestMemory.take(arguments, at: 0, from: caller), as: UTF8.self)
                guard let value = try self.guarded({ () throws(WasmError) in try self.host.secret(name) }) else {
                    return [.i64(absent)]
                }
                return [.i64(try GuestMemory.give(Array(value.utf8), to: caller))]
            }
        default:
            return nil
        }
    }

    /// Refuses every host function once the deadline has passed (the error is kept).
    func checkDeadline() throws(WasmError) {
        try guarded {}
    }

    /// Runs a host function once the deadline is checked; keeps its error.
    private func guarded<Value>(_ body: () throws(WasmError) -> Value) throws(WasmError) -> Value {
        do throws(WasmError) {
            guard DispatchTime.now() < deadline else {
                throw WasmError(code: "deadline_exceeded", message: "The call ran past its deadline.")
            }
            return try body()
        } catch {
            firstFailure.withLock { kept in kept = kept ?? error }
            throw error
        }
    }
}
