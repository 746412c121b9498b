public import CaravanCore
import Foundation

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
        ChildProcess.find(["/usr/bin/pdftotext", "/usr/local/bin/pdftotext"])
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
        let reader = ChildProcess(
            executable: executable,
            arguments: ["-enc", "UTF-8", "-q", file.path, "-"],
            timeout: timeout,
            maxOutputBytes: maxOutputBytes
        )
        let outcome = await reader.run()
        switch outcome {
        case .output(let text): return String(decoding: text, as: UTF8.self)
        case .timedOut:
            throw CaravanError(unreadable, "The PDF was not read within \(Int(reader.seconds)) s.")
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
}
