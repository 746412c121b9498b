public import CaravanCore
import Foundation
import ZIPFoundation

/// The text of a Word document (DOCX: a ZIP archive whose `word/document.xml` holds the body). Its paragraphs
/// become paragraphs, its headings Markdown `#` lines, list items `- ` lines, a table's rows lines of cells joined
/// by ` | `. The body is inflated under a cap (a ZIP bomb stops there) and read by a scanner that expands no entity
/// beyond XML's five and character references, so no DTD can make it grow or reach outside the file.
public enum DOCXExtractor {
    /// The most `word/document.xml` may inflate to.
    public static let maxXMLBytes = 32 << 20

    /// - Throws: `document_unreadable` (not a ZIP archive, no `word/document.xml`, broken XML or a DTD),
    ///   `payload_too_large` (the body inflates beyond `maxXMLBytes`).
    public static func text(of docx: [UInt8]) throws(CaravanError) -> String {
        let archive: Archive
        do { archive = try Archive(data: Data(docx), accessMode: .read) } catch {
            throw unreadable("it is not a ZIP archive")
        }
        guard let body = archive["word/document.xml"], body.type == .file else {
            throw unreadable("it has no word/document.xml")
        }
        var xml: [UInt8] = []
        xml.reserveCapacity(min(Int(clamping: body.uncompressedSize), 1 << 20))
        do {
            _ = try archive.extract(body) { chunk in
                guard xml.count + chunk.count <= maxXMLBytes else { throw Inflated() }
                xml += chunk
            }
        } catch is Inflated {
            throw CaravanError(
                .payloadTooLarge,
                "The DOCX's body inflates beyond \(maxXMLBytes >> 20) MiB; it is refused as a ZIP bomb would be.",
                fieldErrors: [.init(pointer: "/file", detail: "inflates beyond \(maxXMLBytes >> 20) MiB")]
            )
        } catch {
            throw unreadable("its body could not be inflated")
        }
        var reader = WordBody(xml)
        return try reader.text()
    }

    private struct Inflated: Error {}

    static func unreadable(_ why: String) -> CaravanError {
        CaravanError(
            PDFExtractor.unreadable,
            "The file is not a DOCX document Caravan reads: \(why).",
            fieldErrors: [.init(pointer: "/file", detail: "is not a readable DOCX document")]
        )
    }
}

/// A scanner over WordprocessingML: `w:p` paragraphs (their `w:pStyle` and `w:numPr`), `w:t` text, `w:tab`,
/// `w:br`, and `w:tr`/`w:tc` table rows and cells. Everything else is skipped.
struct WordBody {
    let xml: [UInt8]
    var index = 0
    var paragraphs: [String] = []
    var paragraph = ""
    var prefix = ""
    var inText = false
    var row: [String]?
    var cell: [String] = []

    init(_ xml: [UInt8]) { self.xml = xml }

    mutating func text() throws(CaravanError) -> String {
        while index < xml.count {
            if xml[index] == UInt8(ascii: "<") {
                try tag()
            } else {
                let start = index
                while index < xml.count, xml[index] != UInt8(ascii: "<") { index += 1 }
                if inText { paragraph += try Self.decode(xml[start..<index]) }
            }
        }
        return paragraphs.joined(separator: "\n\n")
    }

    private mutating func tag() throws(CaravanError) {
        let start = index + 1
        if xml[start...].starts(with: Array("!--".utf8)) {
            try skip(past: "-->")
            return
        }
        if xml[start...].starts(with: Array("![CDATA[".utf8)) {
            let from = start + 8
            try skip(past: "]]>")
            if inText { paragraph += String(decoding: xml[from..<(index - 3)], as: UTF8.self) }
            return
        }
        if xml[start...].starts(with: Array("!".utf8)) {
            throw DOCXExtractor.unreadable("its body declares a DTD, which a DOCX never does")
        }
        try skip(past: ">")
        let inside = xml[start..<(index - 1)]
        if inside.first == UInt8(ascii: "?") { return }
        let closing = inside.first == UInt8(ascii: "/")
        let selfClosing = inside.last == UInt8(ascii: "/")
        let nameBytes = inside.drop { $0 == UInt8(ascii: "/") }.prefix {
            ![32, 9, 10, 13, UInt8(ascii: "/")].contains($0)
        }
        let name = String(decoding: nameBytes, as: UTF8.self)
        switch (name, closing) {
        case ("w:p", false):
            paragraph = ""
            prefix = ""
            if selfClosing { endParagraph() }
        case ("w:p", true): endParagraph()
        case ("w:pStyle", false):
            let style = Self.attribute("w:val", in: inside)?.lowercased() ?? ""
            if style == "title" {
                prefix = "# "
            } else if style.hasPrefix("heading"), let level = Int(style.dropFirst(7)), (1...6).contains(level) {
                prefix = String(repeating: "#", count: level) + " "
            }
        case ("w:numPr", false): if prefix.isEmpty { prefix = "- " }
        case ("w:t", false): inText = !selfClosing
        case ("w:t", true): inText = false
        case ("w:tab", false): paragraph += "\t"
        case ("w:br", false), ("w:cr", false): paragraph += "\n"
        case ("w:tr", false): row = []
        case ("w:tr", true):
            if let cells = row, cells.contains(where: { !$0.isEmpty }) {
                paragraphs.append(cells.joined(separator: " | "))
            }
            row = nil
        case ("w:tc", false): cell = []
        case ("w:tc", true): row?.append(cell.joined(separator: " "))
        default: break
        }
    }

    private mutating func endParagraph() {
        let text = paragraph.trimmingCharacters(in: .whitespacesAndNewlines)
        paragraph = ""
        guard !text.isEmpty else { return }
        if row != nil {
            cell.append(text)
        } else {
            paragraphs.append(prefix + text)
        }
    }

    private mutating func skip(past end: String) throws(CaravanError) {
        let marker = Array(end.utf8)
        var at = index + 1
        while at + marker.count <= xml.count {
            if xml[at] == marker[0], xml[at..<(at + marker.count)].elementsEqual(marker) {
                index = at + marker.count
                return
            }
            at += 1
        }
        throw DOCXExtractor.unreadable("its body is not well-formed XML")
    }

    /// The value of `name="…"` (or `'…'`) inside a tag.
    static func attribute(_ name: String, in tag: ArraySlice<UInt8>) -> String? {
        let key = Array((name + "=").utf8)
        var at = tag.startIndex
        while at + key.count < tag.endIndex {
            if tag[at..<(at + key.count)].elementsEqual(key) {
                let quote = tag[at + key.count]
                guard quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else { return nil }
                let from = at + key.count + 1
                guard let to = tag[from...].firstIndex(of: quote) else { return nil }
                return try? decode(tag[from..<to])
            }
            at += 1
        }
        return nil
    }

    /// Text with XML's five entities and character references decoded; any other entity is refused.
    static func decode(_ bytes: ArraySlice<UInt8>) throws(CaravanError) -> String {
        guard bytes.contains(UInt8(ascii: "&")) else { return String(decoding: bytes, as: UTF8.self) }
        let text = String(decoding: bytes, as: UTF8.self)
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semicolon = rest[amp...].prefix(12).firstIndex(of: ";") else {
                throw DOCXExtractor.unreadable("its body has a broken entity")
            }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "lt": out += "<"
            case "gt": out += ">"
            case "amp": out += "&"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                let hex = entity.hasPrefix("#x") || entity.hasPrefix("#X")
                guard entity.hasPrefix("#"),
                    let code = UInt32(entity.dropFirst(hex ? 2 : 1), radix: hex ? 16 : 10),
                    let scalar = Unicode.Scalar(code)
                else { throw DOCXExtractor.unreadable("its body names the entity '\(entity)'") }
                out.unicodeScalars.append(scalar)
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return out + rest
    }
}
