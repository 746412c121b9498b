import Foundation

extension JSONValue {
    /// Parses JSON text (RFC 8259, strictly; see `JSONParser`).
    /// - Parameters:
    ///   - bytes: UTF-8 JSON text.
    ///   - maxDepth: the deepest nesting accepted; deeper input is refused when the parser reaches it.
    /// - Throws: `CaravanError` with code `invalid_json`, saying what broke at which byte offset.
    public init(parsing bytes: some Collection<UInt8>, maxDepth: Int = 128) throws(CaravanError) {
        func parse(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<JSONValue, CaravanError> {
            var parser = JSONParser(bytes: buffer, maxDepth: maxDepth)
            do throws(CaravanError) {
                return .success(try parser.parseDocument())
            } catch {
                return .failure(error)
            }
        }
        let result = bytes.withContiguousStorageIfAvailable(parse) ?? Array(bytes).withUnsafeBufferPointer(parse)
        self = try result.get()
    }

    /// Compact JSON text with keys sorted, so that equal values give equal text.
    public var canonicalText: String {
        String(decoding: canonicalBytes, as: UTF8.self)
    }

    /// Compact JSON text with keys sorted, as UTF-8 bytes.
    public var canonicalBytes: [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(64)
        write(to: &output)
        return output
    }

    /// Appends compact JSON text with sorted keys to `output`.
    public func write(to output: inout String) {
        output += canonicalText
    }

    /// Appends compact JSON text with sorted keys to `output`, as UTF-8 bytes.
    public func write(to output: inout [UInt8]) {
        switch self {
        case .null: output.append(contentsOf: "null".utf8)
        case .bool(let value): output.append(contentsOf: (value ? "true" : "false").utf8)
        case .int(let value): output.append(contentsOf: String(value).utf8)
        case .double(let value):
            if value.isFinite {
                // A whole number in Int64's range is written as an integer (which is how it reads back), so that
                // canonical text is a fixed point of parsing.
                if value == value.rounded(), abs(value) < 9.2e18 {
                    output.append(contentsOf: String(Int64(value)).utf8)
                } else {
                    output.append(contentsOf: "\(value)".utf8)
                }
            } else {
                output.append(contentsOf: "null".utf8)
            }
        case .string(let value): JSONValue.writeString(value, to: &output)
        case .array(let values):
            output.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                value.write(to: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let dictionary):
            output.append(UInt8(ascii: "{"))
            if dictionary.count == 1, let (key, value) = dictionary.first {
                JSONValue.writeString(key, to: &output)
                output.append(UInt8(ascii: ":"))
                value.write(to: &output)
            } else {
                for (index, entry) in dictionary.sorted(by: { $0.key < $1.key }).enumerated() {
                    if index > 0 { output.append(UInt8(ascii: ",")) }
                    JSONValue.writeString(entry.key, to: &output)
                    output.append(UInt8(ascii: ":"))
                    entry.value.write(to: &output)
                }
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    /// Appends `value` as a JSON string (quoted and escaped) to `output`.
    public static func writeString(_ value: String, to output: inout [UInt8]) {
        var value = value
        value.withUTF8 { bytes in
            output.append(UInt8(ascii: "\""))
            // Runs of bytes that need no escaping are appended whole, between the (ASCII) bytes that do.
            var start = 0
            for index in 0..<bytes.count {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
                switch byte {
                case UInt8(ascii: "\""): output.append(contentsOf: "\\\"".utf8)
                case UInt8(ascii: "\\"): output.append(contentsOf: "\\\\".utf8)
                case UInt8(ascii: "\n"): output.append(contentsOf: "\\n".utf8)
                case UInt8(ascii: "\r"): output.append(contentsOf: "\\r".utf8)
                case UInt8(ascii: "\t"): output.append(contentsOf: "\\t".utf8)
                default:
                    let hex = String(byte, radix: 16)
                    output.append(contentsOf: ("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).utf8)
                }
                start = index + 1
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<bytes.count]))
            output.append(UInt8(ascii: "\""))
        }
    }
}
