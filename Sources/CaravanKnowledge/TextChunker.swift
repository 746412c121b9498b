public import CaravanCore
import Foundation

/// The formats a document's text may arrive in.
public enum DocumentFormat: String, Sendable, CaseIterable {
    case text, markdown, html, csv, json, pdf, docx

    /// The formats' names, for messages: "text, markdown, html, csv or json".
    public static var names: String {
        allCases.dropLast().map(\.rawValue).joined(separator: ", ") + " or " + (allCases.last?.rawValue ?? "")
    }
}

/// Plain text from a document: HTML loses its scripts, styles, comments and tags, keeps its headings (as Markdown
/// `#` lines) and its paragraph breaks; text and Markdown are kept as they are. A CSV row and an element of a JSON
/// array each become a paragraph of `name: value` lines, so that a passage holds whole records and says what each
/// value is.
public enum TextExtractor {
    /// - Throws: `validation_failed` (`/text`) for JSON that does not parse.
    public static func text(of source: String, format: DocumentFormat) throws(CaravanError) -> String {
        switch format {
        case .text, .markdown, .pdf, .docx: return source  // as `PDFExtractor` or `DOCXExtractor` read it
        case .html: return html(source)
        case .csv: return csv(source)
        case .json:
            let value: JSONValue
            do { value = try JSONValue(parsing: Array(source.utf8)) } catch {
                throw CaravanError.validation("/text", "is not JSON: \(error.detail)")
            }
            return json(value)
        }
    }

    /// CSV as RFC 4180 writes it (quoted fields, doubled quotes inside them, CRLF or LF): the first row names the
    /// columns; every other row is a paragraph of `column: value` lines, its empty values left out.
    static func csv(_ source: String) -> String {
        let rows = csvRows(source)
        guard let header = rows.first else { return "" }
        var paragraphs: [String] = []
        for row in rows.dropFirst() {
            let lines = row.enumerated().compactMap { index, raw -> String? in
                let value = raw.trimmingCharacters(in: .whitespaces)
                guard !value.isEmpty else { return nil }
                let name = index < header.count ? header[index].trimmingCharacters(in: .whitespaces) : ""
                return (name.isEmpty ? "column \(index + 1)" : name) + ": " + value
            }
            if !lines.isEmpty { paragraphs.append(lines.joined(separator: "\n")) }
        }
        return paragraphs.joined(separator: "\n\n")
    }

    static func csvRows(_ source: String) -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = String.UnicodeScalarView()
        var quoted = false
        func endRow() {
            row.append(String(field))
            field = String.UnicodeScalarView()
            if row != [""] { rows.append(row) }  // a blank line is no record
            row = []
        }
        let scalars = Array(source.unicodeScalars)
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            index += 1
            if quoted {
                if scalar != "\"" {
                    field.append(scalar)
                } else if index < scalars.count, scalars[index] == "\"" {
                    field.append(scalar)
                    index += 1
                } else {
                    quoted = false
                }
                continue
            }
            switch scalar {
            case "\"" where field.isEmpty: quoted = true
            case ",":
                row.append(String(field))
                field = String.UnicodeScalarView()
            case "\r":
                if index < scalars.count, scalars[index] == "\n" { index += 1 }
                endRow()
            case "\n": endRow()
            default: field.append(scalar)
            }
        }
        if !field.isEmpty || !row.isEmpty { endRow() }
        return rows
    }

    /// JSON as `path: value` lines (`order.items[2].sku: A-7`), object keys in order; each element of a top-level
    /// array a paragraph of its own.
    static func json(_ value: JSONValue) -> String {
        if case .array(let items) = value {
            return items.map { jsonLines($0) }.filter { !$0.isEmpty }.joined(separator: "\n\n")
        }
        return jsonLines(value)
    }

    private static func jsonLines(_ value: JSONValue) -> String {
        var lines: [String] = []
        func walk(_ value: JSONValue, _ path: String) {
            switch value {
            case .object(let fields):
                for key in fields.keys.sorted() { walk(fields[key] ?? .null, path.isEmpty ? key : path + "." + key) }
            case .array(let items):
                for (index, item) in items.enumerated() { walk(item, path + "[\(index)]") }
            case .null: break
            case .string(let text): lines.append(path.isEmpty ? text : path + ": " + text)
            default: lines.append(path.isEmpty ? value.canonicalText : path + ": " + value.canonicalText)
            }
        }
        walk(value, "")
        return lines.joined(separator: "\n")
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
        var currentCount = 0  // `current.count`, kept rather than counted again (String.count walks the string)
        func flush() {
            let trimmed = Self.trimmed(current[...])
            if !trimmed.isEmpty { chunks.append(String(trimmed)) }
            current = ""
            currentCount = 0
        }
        for block in Self.blocks(text) {
            if block.hasPrefix("#") { flush() }  // a heading starts a chunk
            let blockCount = block.count
            if blockCount > size {
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
            } else if currentCount + blockCount + 2 > size {
                flush()
                current = block
                currentCount = blockCount
            } else {
                currentCount += current.isEmpty ? blockCount : blockCount + 2
                current += current.isEmpty ? block : "\n\n" + block
            }
        }
        flush()
        return chunks
    }

    /// `text` without the white space (new lines included) at either end; in Swift, not through Foundation's
    /// `NSString`, which copied every line it trimmed.
    static func trimmed(_ text: Substring) -> Substring {
        guard let first = text.firstIndex(where: { !$0.isWhitespace }) else { return "" }
        let last = text.lastIndex(where: { !$0.isWhitespace }) ?? first
        return text[first...last]
    }

    /// Paragraphs (separated by blank lines) and headings (a line starting with `#` is a block of its own). Lines
    /// are found and trimmed (of ASCII white space) on the UTF-8 bytes, which costs a fraction of walking
    /// characters.
    static func blocks(_ text: String) -> [String] {
        var blocks: [String] = []
        var paragraph: [Substring] = []
        func end() {
            let joined = Self.trimmed(paragraph.joined(separator: "\n")[...])
            if !joined.isEmpty { blocks.append(String(joined)) }
            paragraph = []
        }
        let utf8 = text.utf8
        func isBlank(_ byte: UInt8) -> Bool {
            byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0B || byte == 0x0C
        }
        var lineStart = utf8.startIndex
        while lineStart <= utf8.endIndex {
            let lineEnd = utf8[lineStart...].firstIndex(of: 0x0A) ?? utf8.endIndex
            var first = lineStart
            while first < lineEnd, isBlank(utf8[first]) { first = utf8.index(after: first) }
            if first == lineEnd {
                end()
            } else if utf8[first] == UInt8(ascii: "#") {
                end()
                var last = lineEnd
                while last > first, isBlank(utf8[utf8.index(before: last)]) { last = utf8.index(before: last) }
                blocks.append(String(text[first..<last]))
            } else {
                paragraph.append(text[lineStart..<lineEnd])
            }
            guard lineEnd < utf8.endIndex else { break }
            lineStart = utf8.index(after: lineEnd)
        }
        end()
        return blocks
    }
}
