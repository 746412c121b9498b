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
        var output = ""
        write(to: &output)
        return output
    }

    /// Compact JSON text with keys sorted, as UTF-8 bytes.
    public var canonicalBytes: [UInt8] { Array(canonicalText.utf8) }

    /// Appends compact JSON text with sorted keys to `output`.
    public func write(to output: inout String) {
        switch self {
        case .null: output += "null"
        case .bool(let value): output += value ? "true" : "false"
        case .int(let value): output += String(value)
        case .double(let value):
            if value.isFinite {
                // A whole number in Int64's range is written as an integer (which is how it reads back), so that
                // canonical text is a fixed point of parsing.
                if value == value.rounded(), abs(value) < 9.2e18 {
                    output += String(Int64(value))
                } else {
                    output += "\(value)"
                }
            } else {
                output += "null"
            }
        case .string(let value): JSONValue.writeString(value, to: &output)
        case .array(let values):
            output += "["
            for (index, value) in values.enumerated() {
                if index > 0 { output += "," }
                value.write(to: &output)
            }
            output += "]"
        case .object(let dictionary):
            output += "{"
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { output += "," }
                JSONValue.writeString(key, to: &output)
                output += ":"
                dictionary[key]!.write(to: &output)  // the key comes from the dictionary itself
            }
            output += "}"
        }
    }

    private static func writeString(_ value: String, to output: inout String) {
        output += "\""
        // Most strings need no escaping: append them whole.
        if value.utf8.allSatisfy({ $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) {
            output += value
            output += "\""
            return
        }
        // Runs of characters that need no escaping are appended whole, between the (ASCII) bytes that do.
        let utf8 = value.utf8
        var start = utf8.startIndex
        var index = start
        while index != utf8.endIndex {
            let byte = utf8[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else {
                index = utf8.index(after: index)
                continue
            }
            output += value[start..<index]
            switch byte {
            case UInt8(ascii: "\""): output += "\\\""
            case UInt8(ascii: "\\"): output += "\\\\"
            case UInt8(ascii: "\n"): output += "\\n"
            case UInt8(ascii: "\r"): output += "\\r"
            case UInt8(ascii: "\t"): output += "\\t"
            default:
                let hex = String(byte, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
            index = utf8.index(after: index)
            start = index
        }
        output += value[start..<index]
        output += "\""
    }
}
