public import CaravanCore

/// A value bound to, or read from, a SQL statement. The storage layer keeps to these five types so that one
/// statement text serves SQLite and PostgreSQL alike: ids and JSON are `text`, times are Unix milliseconds in `int`.
public enum SQLValue: Sendable, Hashable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
}

extension SQLValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(nilLiteral: ()) { self = .null }

    /// `value` as text, or `null` when it is `nil`.
    public static func text(_ value: String?) -> SQLValue { value.map { .text($0) } ?? .null }
    /// `value` as an integer, or `null` when it is `nil`.
    public static func int(_ value: Int64?) -> SQLValue { value.map { .int($0) } ?? .null }
    /// `value` as an integer, or `null` when it is `nil`.
    public static func int(_ value: Int?) -> SQLValue { value.map { .int(Int64($0)) } ?? .null }
    /// `value` as compact JSON text, or `null` when it is `nil`.
    public static func json(_ value: JSONValue?) -> SQLValue { value.map { .text($0.canonicalText) } ?? .null }
    /// `value` as 0 or 1.
    public static func bool(_ value: Bool) -> SQLValue { .int(value ? 1 : 0) }
}

/// One row of a result: values by column name.
public struct SQLRow: Sendable {
    /// The column names, in order. Shared by every row of one result.
    public let columns: [String]
    /// The values, in column order.
    public let values: [SQLValue]

    public init(columns: [String], values: [SQLValue]) {
        self.columns = columns
        self.values = values
    }

    /// The value of `column`; `null` when the result has no such column.
    public subscript(column: String) -> SQLValue {
        guard let index = columns.firstIndex(of: column) else { return .null }
        return values[index]
    }

    /// The text in `column`.
    /// - Throws: `StorageError` `.decoding` when the value is not text.
    public func string(_ column: String) throws(StorageError) -> String {
        guard case .text(let value) = self[column] else { throw .decoding(column: column, expected: "text") }
        return value
    }

    /// The text in `column`, or `nil` when it is null.
    public func optionalString(_ column: String) throws(StorageError) -> String? {
        if case .null = self[column] { return nil }
        return try string(column)
    }

    /// The integer in `column`.
    /// - Throws: `StorageError` `.decoding` when the value is not an integer.
    public func int(_ column: String) throws(StorageError) -> Int64 {
        switch self[column] {
        case .int(let value): return value
        case .double(let value) where value == value.rounded(): return Int64(value)
        default: throw .decoding(column: column, expected: "integer")
        }
    }

    /// The integer in `column`, or `nil` when it is null.
    public func optionalInt(_ column: String) throws(StorageError) -> Int64? {
        if case .null = self[column] { return nil }
        return try int(column)
    }

    /// The JSON value stored as text in `column`; `nil` when it is null.
    public func json(_ column: String) throws(StorageError) -> JSONValue? {
        guard let text = try optionalString(column) else { return nil }
        do {
            return try JSONValue(parsing: Array(text.utf8), maxDepth: 512)
        } catch {
            throw .decoding(column: column, expected: "JSON text")
        }
    }

    /// The number in `column` (integers widen; PostgreSQL NUMERIC sums arrive as text); 0 when it is null.
    public func double(_ column: String) throws(StorageError) -> Double {
        switch self[column] {
        case .double(let value): return value
        case .int(let value): return Double(value)
        case .null: return 0
        case .text(let text): if let value = Double(text) { return value }
        default: break
        }
        throw .decoding(column: column, expected: "number")
    }

    /// Whether the integer in `column` is not zero.
    public func bool(_ column: String) throws(StorageError) -> Bool {
        try int(column) != 0
    }

    public func blob(_ column: String) throws(StorageError) -> [UInt8] {
        guard case .blob(let bytes) = self[column] else { throw .decoding(column: column, expected: "blob") }
        return bytes
    }
}
