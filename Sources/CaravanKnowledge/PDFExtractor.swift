public import CaravanCore
import Dispatch
import Foundation
import Synchronization

/// The text of a PDF, read by `pdftotext` (Debian's poppler-utils) as a child process: the PDF in a temporary file of
/// its own, the text on its standard output (capped), killed at a deadline, so a PDF built to hang or to explode
/// costs at most that.
public enum PDFExtractor {
    /// The most text one PDF may give.
    public static let maxOutputBytes = 16 << 20
    /// A PDF that is not read by then is refused.
    public static let timeout: Duration = .seconds(30)

    /// Where `pdftotext` is, when installed.
    public static var executable: String? {
        ["/usr/bin/pdftotext", "/usr/local/bin/pdftotext"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A PDF that could not be read.
    public static let unreadable = CaravanError.Code("document_unreadable", status: 422)

    /// - Throws: `unsupported_media_type` (pdftotext is not installed: naming the package), `document_unreadable`
    ///   (not a PDF it reads, or not read within `timeout`), `payload_too_large` (more text than `maxOutputBytes`).
    public static func text(of pdf: [UInt8], timeout: Duration = timeout) async throws(CaravanError) -> String {
        guard let executable else {
            throw CaravanError(
                .unsupportedMediaType,
                "Reading PDF documents needs pdftotext, which this server does not have: install Debian's poppler-utils (apt install poppler-utils).",
                fieldErrors: [.init(pointer: "/file", detail: "is a PDF, and pdftotext is not installed")]
            )
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-\(UUID().uuidString).pdf")
        do { try Data(pdf).write(to: file) } catch {
            throw CaravanError(.unavailable, "The PDF could not be written to a temporary file.")
        }
        defer { try? FileManager.default.removeItem(at: file) }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            DispatchQueue.global().async {
                continuation.resume(returning: run(executable, path: file.path, seconds: seconds))
            }
        }
        switch outcome {
        case .text(let text): return text
        case .timedOut:
            throw CaravanError(unreadable, "The PDF was not read within \(Int(seconds)) s.")
        case .tooLarge:
            throw CaravanError(.payloadTooLarge, "The PDF's text is larger than \(maxOutputBytes) bytes.")
        case .failed(let why):
            throw CaravanError(
                unreadable,
                "The file is not a PDF that pdftotext reads (\(why)).",
                fieldErrors: [.init(pointer: "/file", detail: "is not a readable PDF")]
            )
        }
    }

    private enum Outcome: Sendable {
        case text(String)
        case timedOut, tooLarge
        case failed(String)
    }

    /// Runs pdftotext on a thread of its own (it blocks while reading).
    private static func run(_ executable: String, path: String, seconds: Double) -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-enc", "UTF-8", "-q", path, "-"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return .failed("pdftotext could not start") }
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
        return .text(String(decoding: text, as: UTF8.self))
    }
}
