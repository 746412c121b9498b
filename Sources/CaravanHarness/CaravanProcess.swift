import Foundation
import Synchronization

/// The real `caravan` binary, started as a child process: for tests of start-up, signals and exit codes.
public final class CaravanProcess: Sendable {
    private let process: Process
    private let output: OutputBuffer
    /// The port the server listens on, once it has said so.
    public let port: Int

    /// The path of the `caravan` binary built beside the test bundle (or `CARAVAN_BINARY`).
    public static var binaryPath: String {
        if let path = ProcessInfo.processInfo.environment["CARAVAN_BINARY"] { return path }
        let executable =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
        // On Linux the test runner is `<bin>/caravanPackageTests.xctest`; on macOS it sits inside a bundle.
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("caravan").path),
            directory.path != "/"
        {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("caravan").path
    }

    /// Starts `caravan` with `arguments` and waits until it logs that it listens.
    /// - Throws: when the process exits or stays silent for `timeout`.
    public init(
        arguments: [String],
        environment: [String: String] = [:],
        binary: String? = nil,
        timeout: Duration = .seconds(30)
    ) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary ?? Self.binaryPath)
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged["CARAVAN_LOG_FORMAT"] = "json"
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let output = OutputBuffer()
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if !data.isEmpty { output.text.withLock { $0 += String(decoding: data, as: UTF8.self) } }
        }
        try process.run()
        self.process = process
        self.output = output

        let deadline = ContinuousClock.now + timeout
        var port: Int?
        while ContinuousClock.now < deadline {
            let text = output.text.withLock { $0 }
            if let line = text.split(separator: "\n").first(where: { $0.contains("Caravan is listening") }),
                let range = line.range(of: #""server.port":"(\d+)""#, options: .regularExpression)
            {
                port = Int(line[range].filter(\.isNumber))
                break
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        guard let port else {
            if process.isRunning { process.terminate() }
            throw CaravanProcessError.didNotStart(output.text.withLock { $0 })
        }
        self.port = port
    }

    /// Everything the process has written so far.
    public var log: String { output.text.withLock { $0 } }

    /// The process id.
    public var pid: Int32 { process.processIdentifier }

    /// Whether the process is still running.
    public var isRunning: Bool { process.isRunning }

    /// Sends `signal` (e.g. `SIGTERM`).
    public func send(signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit and returns its exit status, or `nil` after `timeout`.
    public func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Why a `CaravanProcess` did not come up.
public enum CaravanProcessError: Error, CustomStringConvertible {
    case didNotStart(String)

    public var description: String {
        switch self {
        case .didNotStart(let log): "caravan did not start; it wrote:\n\(log)"
        }
    }
}

/// The child's output, appended from the pipe's reader and read by the test.
final class OutputBuffer: Sendable {
    let text = Mutex("")
}
