import CaravanCore
import CaravanKnowledge
import CaravanTestSupport
import Testing

@Suite("PDF extraction")
struct PDFExtractorTests {
    @Test(
        "A PDF that keeps pdftotext busy past the time limit is refused, and the process is stopped",
        .enabled(if: PDFExtractor.executable != nil)
    )
    func timeLimit() async throws {
        let manual = Array(SyntheticPDF.document(pages: 2_000) { page, _ in "Page \(page) of the long manual" }.utf8)
        await #expect {
            _ = try await PDFExtractor.text(of: manual, timeout: .milliseconds(5))
        } throws: { error in
            (error as? CaravanError)?.code.rawValue == "document_unreadable"
                && (error as? CaravanError)?.detail.contains("not read within") == true
        }
        // Within its time, the same file reads whole.
        let text = try await PDFExtractor.text(of: manual)
        #expect(text.contains("Page 0 of the long manual") && text.contains("Page 1999 of the long manual"))
    }
}
