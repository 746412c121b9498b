import CaravanCore
import Foundation
import Logging
import MCP
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// MCP over stdio with a child process: newline-delimited JSON-RPC on the child's stdin and stdout.
///
/// Written here rather than using the SDK's `StdioTransport` because that one polls its descriptor every 10 ms
/// while idle, and, when the child's output ends, finishes its stream quietly: the SDK client then neither fails
/// its pending requests nor stops its receive loop. This one reads on a dedicated thread that sleeps in `poll`,
/// fails its stream with `mcp_unavailable` when the child's output ends or the child exits, and reports that
/// through `ended`, so the connection can fail what is pending at once.
actor StdioProcessTransport: Transport {
    nonisolated let logger: Logger
    /// Fires when the child's output ended or the child exited (or `terminate()` was called).
    nonisolated let ended = EndSignal()
    nonisolated let pid: Int32
    private let name: String
    private let process: Process
    private let stdinPipe: Pipe
    private let reader: ProcessOutputReader
    private let messages: AsyncThrowingStream<Data, any Error>
    private var stdinOpen = true
    private var writeLock = AsyncFIFOLock()

    /// The longest message accepted from the child.
    static let maxMessageBytes = 16 * 1024 * 1024

    /// Starts `command` (no shell) with a minimal environment (`PATH`, `HOME`) plus `environment`.
    /// - Throws: `mcp_unavailable` when the program is not found or cannot be started.
    static func launch(
        name: String,
        command: [String],
        environment: [String: String],
        logger: Logger
    ) async throws(Failure)
        -> StdioProcessTransport
    {
        ignoreSIGPIPE
        guard let program = command.first, !program.isEmpty else {
            throw Failure(
                code: "invalid_config",
                message: "The MCP server '\(name)' has an empty command.",
                retryable: false
            )
        }
        let parent = ProcessInfo.processInfo.environment
        var env = [
            "PATH": parent["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": parent["HOME"] ?? "/",
        ]
        env.merge(environment) { _, configured in configured }
        guard let executable = resolveExecutable(program, path: env["PATH"] ?? "") else {
            throw .unavailable(
                program.contains("/")
                    ? "The MCP server '\(name)' cannot start: \(program) does not exist or is not executable."
                    : "The MCP server '\(name)' cannot start: '\(program)' was not found on PATH.",
                retryable: false
            )
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(command.dropFirst())
        process.environment = env
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        if let error = await spawn(process) {
            throw .unavailable("The MCP server '\(name)' cannot start: \(error.localizedDescription)", retryable: false)
        }
        return StdioProcessTransport(
            name: name,
            process: process,
            stdin: stdin,
            stdout: stdout,
            stderr: stderr,
            logger: logger
        )
    }

    private init(name: String, process: Process, stdin: Pipe, stdout: Pipe, stderr: Pipe, logger: Logger) {
        var logger = logger
        logger[metadataKey: "mcp.server"] = .string(name)
        logger[metadataKey: "mcp.pid"] = .stringConvertible(process.processIdentifier)
        self.logger = logger
        self.name = name
        self.process = process
        self.pid = process.processIdentifier
        self.stdinPipe = stdin
        let stdinFD = stdin.fileHandleForWriting.fileDescriptor
        _ = fcntl(stdinFD, F_SETFL, fcntl(stdinFD, F_GETFL) | O_NONBLOCK)
        let (messages, continuation) = AsyncThrowingStream<Data, any Error>.makeStream()
        self.messages = messages
        let ended = self.ended
        let reader = ProcessOutputReader(
            name: name,
            stdout: stdout,
            stderr: stderr,
            messages: continuation,
            logger: logger,
            maxMessageBytes: Self.maxMessageBytes
        ) { reason in ended.fire(reason) }
        self.reader = reader
        process.terminationHandler = { process in reader.processExited(Self.describeExit(process)) }
        reader.start()
        // A child that died before the handler was set would never call it.
        if !process.isRunning { reader.processExited(Self.describeExit(process)) }
    }

    func connect() async throws {}

    func disconnect() async {
        // The SDK client calls this from `disconnect()`; the process itself ends in `terminate()`.
        reader.finish(.unavailable("The connection to the MCP server '\(name)' was closed.", retryable: true))
    }

    func receive() -> AsyncThrowingStream<Data, any Error> { messages }

    func send(_ data: Data) async throws {
        if let reason = ended.reason { throw reason }
        if !writeLock.tryAcquire() {
            await withCheckedContinuation { writeLock.enqueue($0) }
        }
        defer { writeLock.release() }
        guard stdinOpen else { throw ended.reason ?? .unavailable("The MCP server '\(name)' is closed.") }
        var message = data
        message.append(UInt8(ascii: "\n"))
        let descriptor = stdinPipe.fileHandleForWriting.fileDescriptor
        var offset = 0
        while offset < message.count {
            let written = message.withUnsafeBytes { bytes in
                write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            }
            if written >= 0 {
                offset += written
                continue
            }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK {
                // The child is not reading: wait, unless it ended or `terminate()` closed the pipe meanwhile.
                try await Task.sleep(for: .milliseconds(5))
                if let reason = ended.reason { throw reason }
                guard stdinOpen else { throw Failure.unavailable("The MCP server '\(name)' is closed.") }
                continue
            }
            throw ended.reason
                ?? .unavailable("Could not write to the MCP server '\(name)': \(String(cString: strerror(error))).")
        }
    }

    /// Ends the child: closes its stdin, then `SIGTERM` to its process group, then `SIGKILL` after `grace`.
    func terminate(grace: Duration = .seconds(2)) async {
        if stdinOpen {
            // No write runs right now (writes are synchronous on this actor); one waiting for room checks
            // `stdinOpen` before it writes again.
            stdinOpen = false
            try? stdinPipe.fileHandleForWriting.close()
        }
        if await waitForExit(upTo: .milliseconds(200)) == false {
            signalGroup(SIGTERM)
            if await waitForExit(upTo: grace) == false {
                logger.warning("The MCP server did not stop after SIGTERM; killing it")
                signalGroup(SIGKILL)
                _ = await waitForExit(upTo: .seconds(2))
            }
        }
        reader.finish(.unavailable("The MCP server '\(name)' was stopped.", retryable: true))
        reader.stop()
    }

    static func describeExit(_ process: Process) -> String {
        let status = process.terminationStatus
        return process.terminationReason == .uncaughtSignal
            ? "was killed by signal \(status)" : "exited with status \(status)"
    }

    /// Whether the child is still running.
    nonisolated var isRunning: Bool { process.isRunning }

    private func waitForExit(upTo limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Signals the child's process group (Foundation starts the child in a group of its own), or the child alone.
    private func signalGroup(_ signal: Int32) {
        guard process.isRunning else { return }
        if getpgid(pid) == pid {
            kill(-pid, signal)
        } else {
            kill(pid, signal)
        }
    }

    /// Starts `process` from a thread of its own whose signal mask is empty.
    ///
    /// A child inherits the signal mask of the thread that spawns it, and Foundation does not reset it. Dispatch
    /// and Swift concurrency threads block nearly every signal, so a child spawned from one would ignore
    /// `SIGTERM` (and pass that on to its own children).
    static func spawn(_ process: Process) async -> (any Error)? {
        let box = UncheckedBox(process)
        return await withCheckedContinuation { continuation in
            let thread = Thread {
                var empty = sigset_t()
                sigemptyset(&empty)
                pthread_sigmask(SIG_SETMASK, &empty, nil)
                do {
                    try box.value.run()
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: error)
                }
            }
            thread.name = "mcp-spawn"
            thread.start()
        }
    }

    private struct UncheckedBox<Value>: @unchecked Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    static func resolveExecutable(_ program: String, path: String) -> String? {
        let manager = FileManager.default
        func runnable(_ candidate: String) -> Bool {
            var isDirectory: ObjCBool = false
            return manager.fileExists(atPath: candidate, isDirectory: &isDirectory) && !isDirectory.boolValue
                && manager.isExecutableFile(atPath: candidate)
        }
        if program.contains("/") {
            let absolute = program.hasPrefix("/") ? program : manager.currentDirectoryPath + "/" + program
            return runnable(absolute) ? absolute : nil
        }
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = directory + "/" + program
            if runnable(candidate) { return candidate }
        }
        return nil
    }

    /// A write to a pipe whose reader died must fail with `EPIPE`, not kill Caravan.
    private static let ignoreSIGPIPE: Void = {
        signal(SIGPIPE, SIG_IGN)
    }()
}

/// Reads a child's stdout (newline-delimited messages, yielded to the stream) and stderr (logged at debug, bounded)
/// on a thread of its own that sleeps in `poll`.
final class ProcessOutputReader: Sendable {
    private struct State {
        var finished = false
        var stopped = false
        var stderrTail = ""
        /// How the child ended ("exited with status 3"), and when that was noticed.
        var exit: (description: String, at: ContinuousClock.Instant)?
    }

    private let name: String
    private let stdout: Pipe
    private let stderr: Pipe
    private let messages: AsyncThrowingStream<Data, any Error>.Continuation
    private let logger: Logger
    private let maxMessageBytes: Int
    private let onEnd: @Sendable (Failure) -> Void
    private let state = Mutex(State())

    /// How many stderr lines are logged; the rest is read and dropped.
    static let maxLoggedLines = 1000
    /// How much of a logged line is kept.
    static let maxLineLength = 2000

    init(
        name: String,
        stdout: Pipe,
        stderr: Pipe,
        messages: AsyncThrowingStream<Data, any Error>.Continuation,
        logger: Logger,
        maxMessageBytes: Int,
        onEnd: @escaping @Sendable (Failure) -> Void
    ) {
        self.name = name
        self.stdout = stdout
        self.stderr = stderr
        self.messages = messages
        self.logger = logger
        self.maxMessageBytes = maxMessageBytes
        self.onEnd = onEnd
    }

    /// The last lines the child wrote to stderr, for the operator's log.
    var stderrTail: String {
        state.withLock { $0.stderrTail }.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func start() {
        let thread = Thread { [self] in self.run() }
        thread.name = "mcp-stdio-\(name)"
        thread.start()
    }

    /// Ends the message stream with `reason` (once) and reports it.
    func finish(_ reason: Failure) {
        let first = state.withLock { state -> Bool in
            defer { state.finished = true }
            return !state.finished
        }
        guard first else { return }
        messages.finish(throwing: reason)
        onEnd(reason)
    }

    /// Records how the child ended. The reader reports it when the output ends, or a second later if the output
    /// stays open (a grandchild holding it).
    func processExited(_ description: String) {
        state.withLock { state in
            if state.exit == nil { state.exit = (description, .now) }
        }
    }

    /// Why the server is gone, for errors: how it ended if known. Its stderr goes to the operator's log only, never
    /// into an error a user reads: what a child prints may hold anything its host can see.
    private func endReason() -> Failure {
        let exit = state.withLock { $0.exit?.description }
        let tail = stderrTail
        if !tail.isEmpty {
            logger.warning(
                "MCP server ended",
                metadata: ["mcp.exit": .string(exit ?? "closed its output"), "mcp.stderr": .string(tail)]
            )
        }
        return .unavailable("The MCP server '\(name)' \(exit ?? "closed its output"); its log has the details.")
    }

    /// Makes the thread exit at its next wake-up (at most 250 ms later).
    func stop() {
        state.withLock { $0.stopped = true }
    }

    private func run() {
        let outFD = stdout.fileHandleForReading.fileDescriptor
        let errFD = stderr.fileHandleForReading.fileDescriptor
        var fds = [
            pollfd(fd: outFD, events: Int16(POLLIN), revents: 0), pollfd(fd: errFD, events: Int16(POLLIN), revents: 0),
        ]
        var pending: [UInt8] = []
        var errPending: [UInt8] = []
        var loggedLines = 0
        var chunk = [UInt8](repeating: 0, count: 65536)

        func logLine(_ bytes: ArraySlice<UInt8>) {
            let line = String(decoding: bytes.prefix(Self.maxLineLength), as: UTF8.self)
            state.withLock { state in
                state.stderrTail = String((state.stderrTail + "\n" + line).suffix(500))
            }
            guard loggedLines < Self.maxLoggedLines else { return }
            loggedLines += 1
            if loggedLines == Self.maxLoggedLines {
                logger.debug("MCP server stderr: further output is not logged")
            } else {
                logger.debug("MCP server stderr", metadata: ["line": .string(line)])
            }
        }

        while fds[0].fd >= 0 || fds[1].fd >= 0 {
            let (stopped, exitedAt) = state.withLock { ($0.stopped, $0.exit?.at) }
            if stopped { break }
            if let exitedAt, ContinuousClock.now - exitedAt > .seconds(1) {
                finish(endReason())
                break
            }
            for index in fds.indices { fds[index].revents = 0 }
            let ready = poll(&fds, nfds_t(fds.count), 250)
            if ready < 0 {
                if errno == EINTR { continue }
                finish(
                    .unavailable("Reading from the MCP server '\(name)' failed: \(String(cString: strerror(errno))).")
                )
                break
            }
            if ready == 0 { continue }
            for index in fds.indices where fds[index].fd >= 0 && fds[index].revents != 0 {
                let count = chunk.withUnsafeMutableBytes { read(fds[index].fd, $0.baseAddress, $0.count) }
                if count < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                }
                if count <= 0 {
                    fds[index].fd = -1
                    if index == 0 {
                        // Give stderr a moment so the error message can quote it.
                        if fds[1].fd >= 0 {
                            var errOnly = [fds[1]]
                            while poll(&errOnly, 1, 100) > 0 {
                                let more = chunk.withUnsafeMutableBytes {
                                    read(errOnly[0].fd, $0.baseAddress, $0.count)
                                }
                                if more <= 0 { break }
                                errPending.append(contentsOf: chunk[0..<more])
                                while let newline = errPending.firstIndex(of: UInt8(ascii: "\n")) {
                                    logLine(errPending[..<newline])
                                    errPending.removeSubrange(...newline)
                                }
                            }
                        }
                        // And the exit status a moment to arrive.
                        for _ in 0..<20 where state.withLock({ $0.exit == nil }) { usleep(10_000) }
                        finish(endReason())
                    }
                    continue
                }
                if index == 0 {
                    pending.append(contentsOf: chunk[0..<count])
                    var start = pending.startIndex
                    while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                        var line = pending[start..<newline]
                        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
                        if !line.isEmpty { messages.yield(Data(line)) }
                        start = pending.index(after: newline)
                    }
                    pending.removeSubrange(..<start)
                    if pending.count > maxMessageBytes {
                        finish(
                            .protocolError(
                                "The MCP server '\(name)' sent a message longer than \(maxMessageBytes) bytes."
                            )
                        )
                        pending = []
                    }
                } else {
                    errPending.append(contentsOf: chunk[0..<count])
                    while let newline = errPending.firstIndex(of: UInt8(ascii: "\n")) {
                        logLine(errPending[..<newline])
                        errPending.removeSubrange(...newline)
                    }
                    if errPending.count > Self.maxLineLength * 4 {
                        logLine(errPending[...])
                        errPending = []
                    }
                }
            }
        }
        if !errPending.isEmpty { logLine(errPending[...]) }
        finish(endReason())
        // The pipes stay referenced (and their descriptors open) until here, so no descriptor is reused under us.
        withExtendedLifetime((stdout, stderr)) {}
    }
}
