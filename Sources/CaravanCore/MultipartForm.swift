import Foundation

/// A `multipart/form-data` body (RFC 7578): its parts in order, each with its field name, file name and media type.
/// Read from a body already collected under its size limit; anything malformed is `invalid_request`.
public struct MultipartForm: Sendable {
    public struct Part: Sendable {
        public var name: String
        public var filename: String?
        public var contentType: String?
        public var body: [UInt8]

        public init(name: String, filename: String?, contentType: String?, body: [UInt8]) {
            self.name = name
            self.filename = filename
            self.contentType = contentType
            self.body = body
        }

        /// The part as UTF-8 text, or `nil` when it is not.
        public var text: String? { String(validating: body, as: UTF8.self) }
    }

    public var parts: [Part]

    /// The first part named `name`.
    public func part(_ name: String) -> Part? { parts.first { $0.name == name } }

    /// The most parts a form may have.
    public static let maxParts = 64

    /// Whether `contentType` announces a form of this kind.
    public static func isMultipart(_ contentType: String?) -> Bool {
        contentType?.lowercased().hasPrefix("multipart/form-data") == true
    }

    /// - Throws: `invalid_request` for a missing boundary, a part without a name, or a body that is not the form
    ///   its boundary promises.
    public static func parse(_ body: [UInt8], contentType: String) throws(CaravanError) -> MultipartForm {
        guard let boundary = parameter("boundary", in: contentType), (1...70).contains(boundary.utf8.count) else {
            throw malformed("its Content-Type names no boundary (1 to 70 characters)")
        }
        let delimiter = Array(("--" + boundary).utf8)
        guard var cursor = find(delimiter, in: body, from: 0) else { throw malformed("the boundary never appears") }
        var parts: [Part] = []
        while true {
            cursor += delimiter.count
            if body.count >= cursor + 2, body[cursor] == 0x2D, body[cursor + 1] == 0x2D { break }  // "--": the end
            guard body.count >= cursor + 2, body[cursor] == 0x0D, body[cursor + 1] == 0x0A else {
                throw malformed("a boundary is not followed by a line break")
            }
            cursor += 2
            guard let headersEnd = find([0x0D, 0x0A, 0x0D, 0x0A], in: body, from: cursor) else {
                throw malformed("a part's headers do not end")
            }
            let headers = String(decoding: body[cursor..<headersEnd], as: UTF8.self)
            let contentStart = headersEnd + 4
            guard let next = find([0x0D, 0x0A] + delimiter, in: body, from: contentStart) else {
                throw malformed("a part does not end with the boundary")
            }
            var part = Part(name: "", filename: nil, contentType: nil, body: Array(body[contentStart..<next]))
            for line in headers.split(separator: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                switch line[..<colon].lowercased() {
                case "content-disposition":
                    part.name = parameter("name", in: value) ?? ""
                    part.filename = parameter("filename", in: value)
                case "content-type": part.contentType = value
                default: break
                }
            }
            guard !part.name.isEmpty else { throw malformed("a part has no name in its Content-Disposition") }
            parts.append(part)
            guard parts.count <= maxParts else { throw malformed("it has more than \(maxParts) parts") }
            cursor = next + 2
        }
        return MultipartForm(parts: parts)
    }

    /// The value of `name` among a header's `; name=value` parameters, quoted or not.
    public static func parameter(_ name: String, in header: String) -> String? {
        for piece in header.split(separator: ";").dropFirst() {
            let pair = piece.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == name else { continue }
            var value = pair[1].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"")
            }
            return value
        }
        return nil
    }

    /// A form of `parts` as a body, with the boundary to name in its Content-Type.
    public static func encode(_ parts: [Part]) -> (body: [UInt8], contentType: String) {
        let boundary = "caravan-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        var body: [UInt8] = []
        for part in parts {
            var head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(part.name)\""
            if let filename = part.filename {
                head += "; filename=\"\(filename.replacingOccurrences(of: "\"", with: "\\\""))\""
            }
            if let type = part.contentType { head += "\r\nContent-Type: \(type)" }
            body += Array((head + "\r\n\r\n").utf8) + part.body + Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return (body, "multipart/form-data; boundary=\(boundary)")
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        var index = start
        let last = haystack.count - needle.count
        while index <= last {
            guard let candidate = haystack[index...last].firstIndex(of: first) else { return nil }
            if haystack[candidate..<(candidate + needle.count)].elementsEqual(needle) { return candidate }
            index = candidate + 1
        }
        return nil
    }

    private static func malformed(_ why: String) -> CaravanError {
        CaravanError(.invalidRequest, "The multipart/form-data body is malformed: \(why).")
    }
}
