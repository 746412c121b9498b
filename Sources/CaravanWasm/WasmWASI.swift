import Synchronization
@_spi(WASIPlatform) import WASI
import WasmKit
import WasmKitWASI

/// WASI preview 1 for one call, as much of it as a sandboxed module may have: standard input holds the call's input,
/// standard output is its answer (up to a cap), standard error goes to the log; the arguments are the module's name;
/// no environment; an empty in-memory filesystem with no directory opened; a clock frozen at the epoch. Random bytes
/// are real. Everything else WASI names answers `ENOSYS` or `EBADF`.
final class WASIContext {
    /// The most a call may write to standard output (its answer) and to standard error.
    static let maxOutputBytes = 4 << 20
    static let maxErrorBytes = 64 << 10

    let stdout = StdioStream(input: nil, cap: maxOutputBytes)
    let stderr = StdioStream(input: nil, cap: maxErrorBytes)
    private let bridge: WASIBridgeToHost

    init(name: String, input: [UInt8]) throws(WasmError) {
        do {
            bridge = try WASIBridgeToHost(
                args: [name],
                environment: [:],
                fileSystem: .memory(try MemoryFileSystem()).withStdio(
                    stdin: StdioStream(input: input, cap: 0),
                    stdout: stdout,
                    stderr: stderr
                ),
                wallClock: FrozenWallClock(),
                monotonicClock: FrozenMonotonicClock()
            )
        } catch {
            throw WasmError(code: "module_invalid", message: "WASI could not be set up: \(error)")
        }
    }

    func link(into imports: inout Imports, store: Store) {
        bridge.link(to: &imports, store: store)
    }

    /// Runs the command's `_start`. - Returns: its exit code (0 when it returned without `proc_exit`).
    func start(_ instance: Instance) throws -> UInt32 {
        try bridge.start(instance)
    }

    func close() {
        try? bridge.close()
    }
}

/// A standard stream of a WASI call: input read from the start, or output kept up to a cap (what passes it is
/// counted, not kept).
final class StdioStream: WASIFile {
    private struct State {
        var bytes: [UInt8]
        var position = 0
        var overflowed = false
    }
    private let state: Mutex<State>
    private let isInput: Bool
    private let cap: Int

    init(input: [UInt8]?, cap: Int) {
        self.state = Mutex(State(bytes: input ?? []))
        self.isInput = input != nil
        self.cap = cap
    }

    /// What was written, and whether more was written than the cap kept.
    var written: (bytes: [UInt8], overflowed: Bool) { state.withLock { ($0.bytes, $0.overflowed) } }

    var isBorrowed: Bool { true }

    func attributes() throws -> WASIAbi.Filestat {
        WASIAbi.Filestat(dev: 0, ino: 0, filetype: .CHARACTER_DEVICE, nlink: 1, size: 0, atim: 0, mtim: 0, ctim: 0)
    }

    func fileType() throws -> WASIAbi.FileType { .CHARACTER_DEVICE }
    func status() throws -> WASIAbi.Fdflags { [] }
    func setTimes(atim: WASIAbi.Timestamp, mtim: WASIAbi.Timestamp, fstFlags: WASIAbi.FstFlags) throws {}
    func advise(offset: WASIAbi.FileSize, length: WASIAbi.FileSize, advice: WASIAbi.Advice) throws {}
    func close() throws {}

    func fdStat() throws -> WASIAbi.FdStat {
        WASIAbi.FdStat(
            fsFileType: .CHARACTER_DEVICE,
            fsFlags: [],
            fsRightsBase: isInput ? [.FD_READ] : [.FD_WRITE],
            fsRightsInheriting: []
        )
    }

    func setFdStatFlags(_ flags: WASIAbi.Fdflags) throws {}
    func setFilestatSize(_ size: WASIAbi.FileSize) throws { throw WASIAbi.Errno.EINVAL }
    func sync() throws {}
    func datasync() throws {}
    func tell() throws -> WASIAbi.FileSize { throw WASIAbi.Errno.ESPIPE }
    func seek(offset: WASIAbi.FileDelta, whence: WASIAbi.Whence) throws -> WASIAbi.FileSize {
        throw WASIAbi.Errno.ESPIPE
    }

    func write(vectored buffers: GuestBuffers) throws -> WASIAbi.Size {
        guard !isInput else { throw WASIAbi.Errno.EBADF }
        var total = 0
        for index in 0..<buffers.count {
            total += try buffers.withHostBuffer(at: index) { buffer in
                state.withLock { state in
                    let room = max(0, cap - state.bytes.count)
                    if buffer.count > room { state.overflowed = true }
                    state.bytes.append(contentsOf: buffer.prefix(room))
                }
                return buffer.count
            }
        }
        return WASIAbi.Size(truncatingIfNeeded: total)
    }

    func pwrite(vectored buffers: GuestBuffers, offset: WASIAbi.FileSize) throws -> WASIAbi.Size {
        throw WASIAbi.Errno.ESPIPE
    }

    func read(into buffers: GuestBuffers) throws -> WASIAbi.Size {
        guard isInput else { throw WASIAbi.Errno.EBADF }
        var total = 0
        for index in 0..<buffers.count {
            let count = try buffers.withHostBuffer(at: index) { buffer in
                state.withLock { state in
                    let count = min(buffer.count, state.bytes.count - state.position)
                    guard count > 0, let base = buffer.baseAddress else { return 0 }
                    state.bytes.withUnsafeBytes { source in
                        base.copyMemory(from: source.baseAddress! + state.position, byteCount: count)
                    }
                    state.position += count
                    return count
                }
            }
            total += count
            if count < (try buffers.withHostBuffer(at: index) { $0.count }) { break }
        }
        return WASIAbi.Size(truncatingIfNeeded: total)
    }

    func pread(into buffers: GuestBuffers, offset: WASIAbi.FileSize) throws -> WASIAbi.Size {
        throw WASIAbi.Errno.ESPIPE
    }
}

/// Clocks that stay at the epoch: a module learns nothing of the time.
struct FrozenWallClock: WallClock {
    func now() throws -> WallClock.Duration { (seconds: 0, nanoseconds: 0) }
    func resolution() throws -> WallClock.Duration { (seconds: 0, nanoseconds: 1) }
}

struct FrozenMonotonicClock: MonotonicClock {
    func now() throws -> MonotonicClock.Instant { 0 }
    func resolution() throws -> MonotonicClock.Duration { 1 }
}
