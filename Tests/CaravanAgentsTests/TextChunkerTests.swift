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

    @Test func htmlKeepsTextAndHeadingsOnly() {
        let text = TextExtractor.text(
            of:
                "<h1>Title</h1><!-- note --><SCRIPT>evil()</SCRIPT><p>a &lt; b</p><style>p{}</style><ul><li>one<li>two</ul>",
            format: .html
        )
        #expect(text.contains("# Title") && text.contains("a < b") && text.contains("one") && text.contains("two"))
        #expect(!text.contains("evil") && !text.contains("note") && !text.contains("p{}") && !text.contains("<p"))
        #expect(TextExtractor.text(of: "<p>unclosed <b", format: .html) == "\n\nunclosed ")
    }
}
