import CaravanCore
import Testing

@testable import CaravanKnowledge

@Suite("Chunking and extraction")
struct TextChunkerTests {
    @Test(arguments: [(50, 0), (50, 10), (120, 30), (400, 100)])
    func chunksStayWithinTheirSizeAndLoseNoWord(size: Int, overlap: Int) {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            var text = ""
            for _ in 0..<Int.random(in: 1...40, using: &generator) {
                let kind = Int.random(in: 0..<10, using: &generator)
                if kind == 0 {
                    text += "# Heading \(Int.random(in: 0...99, using: &generator))\n"
                } else if kind == 1 {
                    text += "\n"
                } else {
                    text +=
                        (0..<Int.random(in: 1...30, using: &generator)).map { "w\($0)" }.joined(separator: " ") + "\n"
                }
            }
            let chunks = TextChunker(size: size, overlap: overlap).chunks(text)
            #expect(chunks.allSatisfy { $0.count <= size && !$0.isEmpty })
            let joined = chunks.joined(separator: " ")
            for word in text.split(whereSeparator: \.isWhitespace) where word.count < size / 2 {
                #expect(joined.contains(word), "lost \(word)")
            }
        }
    }

    @Test func htmlKeepsTextAndHeadingsOnly() throws {
        let text = try TextExtractor.text(
            of:
                "<h1>Title</h1><!-- note --><SCRIPT>evil()</SCRIPT><p>a &lt; b</p><style>p{}</style><ul><li>one<li>two</ul>",
            format: .html
        )
        #expect(text.contains("# Title") && text.contains("a < b") && text.contains("one") && text.contains("two"))
        #expect(!text.contains("evil") && !text.contains("note") && !text.contains("p{}") && !text.contains("<p"))
        #expect(try TextExtractor.text(of: "<p>unclosed <b", format: .html) == "\n\nunclosed ")
    }

    @Test func csvRowsBecomeRecordsThatNameTheirColumns() throws {
        let source =
            "sku,name,note\r\nA-7,\"Bolt, 8 mm\",\"says \"\"hi\"\"\nacross lines\"\r\n\r\nB-2,,\nC-9,Nut,x,extra\n"
        let text = try TextExtractor.text(of: source, format: .csv)
        #expect(
            text == """
                sku: A-7
                name: Bolt, 8 mm
                note: says "hi"
                across lines

                sku: B-2

                sku: C-9
                name: Nut
                note: x
                column 4: extra
                """,
            "\(text)"
        )
        #expect(try TextExtractor.text(of: "", format: .csv) == "")
        #expect(try TextExtractor.text(of: "\"never closed,a\nb", format: .csv) == "")
    }

    @Test func jsonBecomesPathsAndValues() throws {
        let source =
            #"[{"sku": "A-7", "tags": ["x", "y"], "size": {"mm": 8}, "gone": null}, {"sku": "B-2", "ok": true}]"#
        let text = try TextExtractor.text(of: source, format: .json)
        #expect(text == "size.mm: 8\nsku: A-7\ntags[0]: x\ntags[1]: y\n\nok: true\nsku: B-2", "\(text)")
        #expect(try TextExtractor.text(of: #""just text""#, format: .json) == "just text")
        #expect(throws: CaravanError.self) { try TextExtractor.text(of: "{not json", format: .json) }
    }
}
