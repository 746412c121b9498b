import Foundation

/// The formats a document's text may arrive in.
public enum DocumentFormat: String, Sendable, CaseIterable {
    case text, markdown, html
}

/// Plain text from a document: HTML loses its scripts, styles, comments and tags, keeps its headings (as Markdown
/// `#` lines) and its paragraph breaks; text and Markdown are kept as they are.
public enum TextExtractor {
    public static func text(of source: String, format: DocumentFormat) -> String {
        switch format {
        case .text, .markdown: return source
        case .html: return html(source)
        }
    }

    static func html(_ source: String) -> String {
        var output = ""
        var rest = Substring(source)
        while let open = rest.firstIndex(of: "<") {
            output += decode(rest[..<open])
            rest = rest[open...]
            if rest.hasPrefix("<!--") {
                guard let end = rest.range(of: "-->") else { return output }
                rest = rest[end.upperBound...]
                continue
            }
            guard let close = rest.firstIndex(of: ">") else { return output }
            let tag = rest[rest.index(after: rest.startIndex)..<close].lowercased()
            rest = rest[rest.index(after: close)...]
            let name = String(tag.prefix { $0.isLetter || $0.isNumber || $0 == "/" })
            if name == "script" || name == "style" {
                // Everything up to the matching end tag is dropped.
                guard let end = rest.range(of: "</\(name)", options: .caseInsensitive) else { return output }
                rest = rest[end.upperBound...]
                if let after = rest.firstIndex(of: ">") { rest = rest[rest.index(after: after)...] }
                continue
            }
            switch name {
            case "h1", "h2", "h3", "h4", "h5", "h6":
                output += "\n\n" + String(repeating: "#", count: Int(String(name.last!)) ?? 1) + " "
            case "/h1", "/h2", "/h3", "/h4", "/h5", "/h6", "p", "/p", "div", "/div", "section", "/section", "article",
                "/article", "table", "/table", "ul", "/ul", "ol", "/ol":
                output += "\n\n"
            case "br", "li", "tr": output += "\n"
            case "td", "th": output += " "
            default: break
            }
        }
        output += decode(rest)
        return output
    }

    private static func decode(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var result = String(text)
        for (entity, character) in [
            ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&apos;", "'"), ("&nbsp;", " "),
            ("&amp;", "&"),
        ] {
            result = result.replacingOccurrences(of: entity, with: character)
        }
        return result
    }
}

/// Splits text into chunks of at most `size` characters: first at headings and blank lines (so a chunk holds whole
/// paragraphs where they fit), then, for a paragraph longer than `size`, into windows of at most `size` cut after a
/// word where one ends in the window's second half, each starting up to `overlap` characters (at a word) before the
/// previous one ended.
public struct TextChunker: Sendable, Hashable {
    public var size: Int
    public var overlap: Int

    public init(size: Int, overlap: Int) {
        self.size = max(1, size)
        self.overlap = min(max(0, overlap), max(0, size - 1))
    }

    public func chunks(_ text: String) -> [String] {
        var chunks: [String] = []
        var current = ""
        func flush() {
            let trimmed = current.trimmingCharacters(in: .whitespacesAndNewlines)
            if !trimmed.isEmpty { chunks.append(trimmed) }
            current = ""
        }
        for block in Self.blocks(text) {
            if block.hasPrefix("#") { flush() }  // a heading starts a chunk
            if block.count > size {
                flush()
                let characters = Array(block)
                var start = 0
                while start < characters.count {
                    var end = min(characters.count, start + size)
                    // Cut after a word where there is one in the window's second half.
                    if end < characters.count,
                        let space = characters[(start + size / 2)..<end].lastIndex(where: \.isWhitespace)
                    {
                        end = space + 1
                    }
                    current = String(characters[start..<end])
                    flush()
                    if end == characters.count { break }
                    var next = max(start + 1, end - overlap)
                    // Start the overlap at a word, when one starts inside it.
                    if overlap > 0, let space = characters[next..<end].firstIndex(where: \.isWhitespace),
                        space + 1 < end
                    {
                        next = space + 1
                    }
                    start = next
                }
            } else if current.count + block.count + 2 > size {
                flush()
                current = block
            } else {
                current += current.isEmpty ? block : "\n\n" + block
            }
        }
        flush()
        return chunks
    }

    /// Paragraphs (separated by blank lines) and headings (a line starting with `#` is a block of its own).
    static func blocks(_ text: String) -> [String] {
        var blocks: [String] = []
        var paragraph: [Substring] = []
        func end() {
            let joined = paragraph.joined(separator: "\n").trimmingCharacters(in: .whitespaces)
            if !joined.isEmpty { blocks.append(joined) }
            paragraph = []
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty {
                end()
            } else if trimmed.hasPrefix("#") {
                end()
                blocks.append(trimmed)
            } else {
                paragraph.append(line)
            }
        }
        end()
        return blocks
    }
}
