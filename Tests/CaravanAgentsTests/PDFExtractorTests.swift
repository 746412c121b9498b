import CaravanCore
import CaravanKnowledge
import Testing

@Suite("PDF extraction")
struct PDFExtractorTests {
    /// A PDF of `pages` pages, each with one line of text: objects without a cross-reference table, which pdftotext
    /// rebuilds by scanning the file (so it has work to do in proportion to the pages).
    static func pdf(pages: Int) -> [UInt8] {
        var objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
        let kids = (0..<pages).map { "\(3 + 2 * $0) 0 R" }.joined(separator: " ")
        objects.append("<< /Type /Pages /Kids [\(kids)] /Count \(pages) >>")
        for page in 0..<pages {
            let content = "BT /F1 12 Tf 72 700 Td (Page \(page) of the long manual) Tj ET"
            objects.append(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents \(4 + 2 * page) 0 R "
                    + "/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
            )
            objects.append("<< /Length \(content.utf8.count) >>\nstream\n\(content)\nendstream")
        }
        var text = "%PDF-1.4\n"
        for (index, object) in objects.enumerated() { text += "\(index + 1) 0 obj\n\(object)\nendobj\n" }
        text += "trailer << /Root 1 0 R /Size \(objects.count + 1) >>\n%%EOF\n"
        return Array(text.utf8)
    }

    @Test(
        "A PDF that keeps pdftotext busy past the time limit is refused, and the process is stopped",
        .enabled(if: PDFExtractor.executable != nil)
    )
    func timeLimit() async throws {
        let manual = Self.pdf(pages: 2_000)
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
