import Dispatch
import Foundation
import Synchronization

/// A program run to completion as a child process (pdftotext, Chromium), bounded in time and in output: its
/// standard output read up to a cap, itself terminated at a deadline or past the cap. It runs on a thread of its own
/// (reading blocks), so the caller's task only awaits.
struct ChildProcess {
    enum Outcome: Sendable {
        /// It exited with status 0: what it wrote on standard output.
        case output(Data)
        case timedOut, tooLarge
        case failed(String)
    }

    var executable: String
    var arguments: [String]
    var timeout: Duration
    var maxOutputBytes: Int

    /// The first of `candidates` that is an executable file.
    static func find(_ candidates: [String]) -> String? {
        candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    var seconds: Double { Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18 }

    func run() async -> Outcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            DispatchQueue.global().async { continuation.resume(returning: runBlocking()) }
        }
    }

    private func runBlocking() -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return .failed("\(executable) could not start") }
        let timedOut = Atomic<Bool>(false)
        let timer = DispatchWorkItem {
            timedOut.store(true, ordering: .relaxed)
            process.terminate()
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: timer)
        var text = Data()
        var tooLarge = false
        let reader = output.fileHandleForReading
        while true {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            guard text.count + chunk.count <= maxOutputBytes else {
                tooLarge = true
                process.terminate()
                break
            }
            text.append(chunk)
        }
        process.waitUntilExit()
        timer.cancel()
        if timedOut.load(ordering: .relaxed) { return .timedOut }
        if tooLarge { return .tooLarge }
        guard process.terminationStatus == 0 else { return .failed("exit status \(process.terminationStatus)") }
        return .output(text)
    }
}
