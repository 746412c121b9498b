import Dispatch
import Synchronization
import WasmKit

/// WASI preview 1 as Caravan offers it to one call: its own functions, every guest pointer checked against the
/// module's memory (a pointer outside it answers `EFAULT`, never reaches the host), nothing that waits.
///
/// - Standard input holds the call's input (for a command; empty for a module of the caravan ABI), standard output
///   is a command's answer (kept up to `maxOutputBytes`; a caravan-ABI module's goes to the log), standard error goes
///   to the log (up to `maxErrorBytes`).
/// - The arguments are the module's name; no environment; no directory is opened, so no path can be reached; the
///   clocks stay at the epoch. Random bytes are real.
/// - Every other function of WASI preview 1 answers `ENOSYS` (`poll_oneoff` included: nothing sleeps on the host).
final class WASIFunctions: Sendable {
    /// The most a call may write on standard output and on standard error.
    static let maxOutputBytes = 4 << 20
    static let maxErrorBytes = 64 << 10
    /// The most iovecs one read or write may name, and the most random bytes one call may ask for.
    static let maxVectors = 1_024
    static let maxRandomBytes = 1 << 20

    /// `errno` values of WASI preview 1.
    enum Errno: UInt32 {
        case success = 0
        case badf = 8
        case fault = 21
        case inval = 28
        case nosys = 52
        case spipe = 70
    }

    /// Every function of WASI preview 1, with its type: an import of another name, or of another type, is refused
    /// at upload.
    static let signatures: [String: FunctionType] = {
        func type(_ parameters: [ValueType], _ results: [ValueType] = [.i32]) -> FunctionType {
            FunctionType(parameters: parameters, results: results)
        }
        let i = ValueType.i32
        let l = ValueType.i64
        return [
            "args_get": type([i, i]), "args_sizes_get": type([i, i]),
            "environ_get": type([i, i]), "environ_sizes_get": type([i, i]),
            "clock_res_get": type([i, i]), "clock_time_get": type([i, l, i]),
            "fd_advise": type([i, l, l, i]), "fd_allocate": type([i, l, l]), "fd_close": type([i]),
            "fd_datasync": type([i]), "fd_fdstat_get": type([i, i]), "fd_fdstat_set_flags": type([i, i]),
            "fd_fdstat_set_rights": type([i, l, l]), "fd_filestat_get": type([i, i]),
            "fd_filestat_set_size": type([i, l]), "fd_filestat_set_times": type([i, l, l, i]),
            "fd_pread": type([i, i, i, l, i]), "fd_prestat_get": type([i, i]), "fd_prestat_dir_name": type([i, i, i]),
            "fd_pwrite": type([i, i, i, l, i]), "fd_read": type([i, i, i, i]), "fd_readdir": type([i, i, i, l, i]),
            "fd_renumber": type([i, i]), "fd_seek": type([i, l, i, i]), "fd_sync": type([i]), "fd_tell": type([i, i]),
            "fd_write": type([i, i, i, i]),
            "path_create_directory": type([i, i, i]), "path_filestat_get": type([i, i, i, i, i]),
            "path_filestat_set_times": type([i, i, i, i, l, l, i]), "path_link": type([i, i, i, i, i, i, i]),
            "path_open": type([i, i, i, i, i, l, l, i, i]), "path_readlink": type([i, i, i, i, i, i]),
            "path_remove_directory": type([i, i, i]), "path_rename": type([i, i, i, i, i, i]),
            "path_symlink": type([i, i, i, i, i]), "path_unlink_file": type([i, i, i]),
            "poll_oneoff": type([i, i, i, i]), "proc_exit": type([i], []), "proc_raise": type([i]),
            "sched_yield": type([]), "random_get": type([i, i]),
            "sock_accept": type([i, i, i]), "sock_recv": type([i, i, i, i, i, i]), "sock_send": type([i, i, i, i, i]),
            "sock_shutdown": type([i, i]),
        ]
    }()

    /// Thrown by `proc_exit` to end the call; the code is kept.
    struct Exit: Error {}

    private struct State {
        var input: [UInt8]
        var position = 0
        var output: [UInt8] = []
        var outputOverflowed = false
        var errors: [UInt8] = []
        var exitCode: UInt32?
    }
    private let state: Mutex<State>
    private let arguments: [UInt8]
    private let host: HostFunctions

    init(name: String, input: [UInt8], host: HostFunctions) {
        self.state = Mutex(State(input: input))
        self.arguments = Array(name.utf8) + [0]
        self.host = host
    }

    /// The code given to `proc_exit`, if it was called.
    var exitCode: UInt32? { state.withLock { $0.exitCode } }

    /// What was written on standard output, and whether more was written than kept.
    var output: (bytes: [UInt8], overflowed: Bool) { state.withLock { ($0.output, $0.outputOverflowed) } }

    /// Standard error's lines (and standard output's, when it is not the answer), at most `limit`.
    func logLines(includingOutput: Bool, limit: Int) -> [String] {
        let (output, errors) = state.withLock { ($0.output, $0.errors) }
        let text = String(decoding: (includingOutput ? output : []) + errors, as: UTF8.self)
        return text.split(separator: "\n").prefix(limit).map(String.init)
    }

    /// The function for import `name`: Caravan's own where WASI's meaning allows one, else `ENOSYS`.
    func function(_ name: String, store: Store) -> Function? {
        guard let type = Self.signatures[name] else { return nil }
        return Function(store: store, type: type) { caller, arguments in
            try self.host.checkDeadline()
            if name == "proc_exit" {
                let code = arguments.first.map { UInt32(truncatingIfNeeded: $0.bits) } ?? 1
                self.state.withLock { $0.exitCode = code }
                throw Exit()
            }
            guard let memory = caller.instance?.exports[memory: "memory"] else { return [.i32(Errno.fault.rawValue)] }
            let view = GuestView(memory: memory)
            let errno = self.call(name, arguments.map(\.bits), view)
            return type.results.isEmpty ? [] : [.i32(errno.rawValue)]
        }
    }

    private func call(_ name: String, _ a: [UInt64], _ view: GuestView) -> Errno {
        func u32(_ index: Int) -> UInt32 { UInt32(truncatingIfNeeded: a[index]) }
        let isStdio = a.first.map { $0 <= 2 } ?? false
        switch name {
        case "args_sizes_get":
            return view.storeWords([1], at: u32(0)) && view.storeWords([UInt32(arguments.count)], at: u32(1))
                ? .success : .fault
        case "args_get":
            return view.storeWords([u32(1)], at: u32(0)) && view.store(arguments, at: u32(1)) ? .success : .fault
        case "environ_sizes_get":
            return view.storeWords([0], at: u32(0)) && view.storeWords([0], at: u32(1)) ? .success : .fault
        case "environ_get":
            return .success
        case "clock_res_get", "clock_time_get":
            guard u32(0) <= 3 else { return .inval }
            let value: UInt64 = name == "clock_res_get" ? 1 : 0
            return view.store(value.littleEndianBytes, at: u32(name == "clock_res_get" ? 1 : 2)) ? .success : .fault
        case "random_get":
            guard Int(u32(1)) <= Self.maxRandomBytes else { return .inval }
            var generator = SystemRandomNumberGenerator()
            let bytes = (0..<Int(u32(1))).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            return view.store(bytes, at: u32(0)) ? .success : .fault
        case "fd_write":
            guard u32(0) == 1 || u32(0) == 2 else { return .badf }
            guard let buffers = view.vectors(at: u32(1), count: u32(2)) else { return .fault }
            var total: UInt32 = 0
            for (pointer, length) in buffers {
                guard let bytes = view.load(at: pointer, count: Int(length)) else { return .fault }
                append(bytes, toErrors: u32(0) == 2)
                total &+= length
            }
            return view.storeWords([total], at: u32(3)) ? .success : .fault
        case "fd_read":
            guard u32(0) == 0 else { return .badf }
            guard let buffers = view.vectors(at: u32(1), count: u32(2)),
                buffers.allSatisfy({ view.contains($0.0, count: Int($0.1)) })
            else { return .fault }
            var total: UInt32 = 0
            for (pointer, length) in buffers {
                let bytes = state.withLock { state -> [UInt8] in
                    let end = min(state.input.count, state.position + Int(length))
                    defer { state.position = end }
                    return Array(state.input[state.position..<end])
                }
                guard view.store(bytes, at: pointer) else { return .fault }
                total += UInt32(bytes.count)
                if bytes.count < Int(length) { break }
            }
            return view.storeWords([total], at: u32(3)) ? .success : .fault
        case "fd_fdstat_get":
            guard isStdio else { return .badf }
            // A character device that can be read (standard input) or written (the others), not sought.
            let rights: UInt64 = a[0] == 0 ? 1 << 1 : 1 << 6
            let stat: [UInt8] = [2, 0, 0, 0, 0, 0, 0, 0] + rights.littleEndianBytes + UInt64(0).littleEndianBytes
            return view.store(stat, at: u32(1)) ? .success : .fault
        case "fd_filestat_get":
            guard isStdio else { return .badf }
            var stat = [UInt8](repeating: 0, count: 64)
            stat[16] = 2
            return view.store(stat, at: u32(1)) ? .success : .fault
        case "fd_close", "fd_sync", "fd_datasync", "fd_fdstat_set_flags":
            return isStdio ? .success : .badf
        case "fd_seek", "fd_tell":
            return isStdio ? .spipe : .badf
        case "fd_prestat_get", "fd_prestat_dir_name":
            return .badf  // no directory is opened
        case "sched_yield":
            return .success
        default:
            return .nosys
        }
    }

    private func append(_ bytes: [UInt8], toErrors: Bool) {
        state.withLock { state in
            if toErrors {
                state.errors += bytes.prefix(max(0, Self.maxErrorBytes - state.errors.count))
            } else {
                let room = max(0, Self.maxOutputBytes - state.output.count)
                state.output += bytes.prefix(room)
                if bytes.count > room { state.outputOverflowed = true }
            }
        }
    }
}

/// A module's memory seen by a WASI function: every access checked, `nil` or `false` outside it.
private struct GuestView {
    let memory: Memory

    func contains(_ pointer: UInt32, count: Int) -> Bool {
        count >= 0 && Int(pointer) + count <= memory.byteCount
    }

    func load(at pointer: UInt32, count: Int) -> [UInt8]? {
        guard count <= GuestMemory.maxBytes, contains(pointer, count: count) else { return nil }
        return memory.withUnsafeBufferPointer(offset: UInt(pointer), count: count) { Array($0) }
    }

    func store(_ bytes: [UInt8], at pointer: UInt32) -> Bool {
        guard contains(pointer, count: bytes.count) else { return false }
        memory.withUnsafeMutableBufferPointer(offset: UInt(pointer), count: bytes.count) { $0.copyBytes(from: bytes) }
        return true
    }

    func storeWords(_ words: [UInt32], at pointer: UInt32) -> Bool {
        store(words.flatMap { UInt64($0).littleEndianBytes.prefix(4) }, at: pointer)
    }

    /// The `(pointer, length)` pairs of an iovec array.
    func vectors(at pointer: UInt32, count: UInt32) -> [(UInt32, UInt32)]? {
        guard count <= WASIFunctions.maxVectors, let bytes = load(at: pointer, count: Int(count) * 8) else {
            return nil
        }
        return (0..<Int(count)).map { index in (bytes.word(at: index * 8), bytes.word(at: index * 8 + 4)) }
    }
}

extension UInt64 {
    fileprivate var littleEndianBytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: self >> ($0 * 8)) } }
}

extension [UInt8] {
    fileprivate func word(at offset: Int) -> UInt32 {
        (0..<4).reduce(0) { word, index in word | UInt32(self[offset + index]) << (index * 8) }
    }
}

extension Value {
    /// The value's bits, for the integers WASI passes.
    fileprivate var bits: UInt64 {
        switch self {
        case .i32(let value): UInt64(value)
        case .i64(let value): value
        default: 0
        }
    }
}
