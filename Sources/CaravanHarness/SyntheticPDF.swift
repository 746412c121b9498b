/// A PDF of `pages` pages, each showing the lines `line(page, index)` gives (in Helvetica, top to bottom), for
/// tests and benchmarks of PDF reading. It has no cross-reference table: pdftotext rebuilds one by scanning the
/// file, so reading it costs in proportion to its pages. Lines must not hold `(`, `)` or `\`.
public enum SyntheticPDF {
    public static func document(pages: Int, linesPerPage: Int = 1, line: (Int, Int) -> String) -> String {
        var objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
        let kids = (0..<pages).map { "\(3 + 2 * $0) 0 R" }.joined(separator: " ")
        objects.append("<< /Type /Pages /Kids [\(kids)] /Count \(pages) >>")
        for page in 0..<pages {
            let lines = (0..<linesPerPage).map { "(\(line(page, $0))) Tj 0 -14 Td" }.joined(separator: " ")
            let content = "BT /F1 11 Tf 72 740 Td \(lines) ET"
            objects.append(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents \(4 + 2 * page) 0 R "
                    + "/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
            )
            objects.append("<< /Length \(content.utf8.count) >>\nstream\n\(content)\nendstream")
        }
        var text = "%PDF-1.4\n"
        for (index, object) in objects.enumerated() { text += "\(index + 1) 0 obj\n\(object)\nendobj\n" }
        return text + "trailer << /Root 1 0 R /Size \(objects.count + 1) >>\n%%EOF\n"
    }
}
