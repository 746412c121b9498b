public import CaravanCore

/// The small, safe expression language of `when` and `for_each`: paths, literals, comparisons, `&& || !`,
/// `len()` and `contains()`. Nothing else runs.
public indirect enum Expression: Sendable, Hashable {
    case literal(JSONValue)
    case path([PathComponent])
    case not(Expression)
    case binary(BinaryOperator, Expression, Expression)
    case call(String, [Expression])

    /// One step of a path: a key (`.name`, `["name"]`) or an index (`[0]`).
    public enum PathComponent: Sendable, Hashable {
        case key(String)
        case index(Int)
    }

    public enum BinaryOperator: String, Sendable, Hashable {
        case equal = "=="
        case notEqual = "!="
        case less = "<"
        case lessOrEqual = "<="
        case greater = ">"
        case greaterOrEqual = ">="
        case and = "&&"
        case or = "||"
    }

    /// The longest expression accepted, in characters.
    public static let maxLength = 1_000
    /// The deepest nesting accepted.
    public static let maxDepth = 64

    /// Parses `text`.
    /// - Throws: `CaravanError` `.validationFailed` saying where the text broke.
    public init(parsing text: String) throws(CaravanError) {
        guard text.count <= Self.maxLength else {
            throw CaravanError(.validationFailed, "The expression is longer than \(Self.maxLength) characters.")
        }
        var parser = ExpressionParser(text)
        self = try parser.parseAll()
    }

    /// Evaluates the expression over `scope` (an object with `input`, `steps`, `item`, `run`).
    /// A path that leads nowhere is `null`, not an error.
    public func evaluate(in scope: JSONValue) -> JSONValue {
        switch self {
        case .literal(let value): return value
        case .path(let components): return Self.resolve(components, in: scope)
        case .not(let operand): return .bool(!operand.evaluate(in: scope).isTruthy)
        case .binary(let op, let left, let right):
            switch op {
            case .and: return .bool(left.evaluate(in: scope).isTruthy && right.evaluate(in: scope).isTruthy)
            case .or: return .bool(left.evaluate(in: scope).isTruthy || right.evaluate(in: scope).isTruthy)
            default: return .bool(Self.compare(op, left.evaluate(in: scope), right.evaluate(in: scope)))
            }
        case .call(let name, let arguments):
            let values = arguments.map { $0.evaluate(in: scope) }
            switch (name, values.count) {
            case ("len", 1):
                switch values[0] {
                case .string(let text): return .int(Int64(text.count))
                case .array(let items): return .int(Int64(items.count))
                case .object(let object): return .int(Int64(object.count))
                default: return .int(0)
                }
            case ("contains", 2):
                switch values[0] {
                case .string(let text): return .bool(values[1].stringValue.map { text.contains($0) } ?? false)
                case .array(let items): return .bool(items.contains { Self.equal($0, values[1]) })
                case .object(let object): return .bool(values[1].stringValue.map { object[$0] != nil } ?? false)
                default: return .bool(false)
                }
            default: return .null  // the parser admits no other call
            }
        }
    }

    /// The paths the expression reads, as key lists from the root (e.g. `["steps", "lookup", "output"]`).
    public var referencedPaths: [[String]] {
        switch self {
        case .literal: return []
        case .path(let components):
            return [components.compactMap { if case .key(let key) = $0 { key } else { nil } }]
        case .not(let operand): return operand.referencedPaths
        case .binary(_, let left, let right): return left.referencedPaths + right.referencedPaths
        case .call(_, let arguments): return arguments.flatMap(\.referencedPaths)
        }
    }

    static func resolve(_ components: [PathComponent], in scope: JSONValue) -> JSONValue {
        var current = scope
        for component in components {
            switch (component, current) {
            case (.key(let key), .object(let object)): current = object[key] ?? .null
            case (.index(let index), .array(let items)):
                let position = index < 0 ? items.count + index : index
                guard items.indices.contains(position) else { return .null }
                current = items[position]
            default: return .null
            }
        }
        return current
    }

    static func equal(_ left: JSONValue, _ right: JSONValue) -> Bool {
        if let a = left.numberValue, let b = right.numberValue { return a == b }
        return left == right
    }

    static func compare(_ op: BinaryOperator, _ left: JSONValue, _ right: JSONValue) -> Bool {
        switch op {
        case .equal: return equal(left, right)
        case .notEqual: return !equal(left, right)
        default: break
        }
        let order: Int
        if let a = left.numberValue, let b = right.numberValue {
            order = a < b ? -1 : (a > b ? 1 : 0)
        } else if let a = left.stringValue, let b = right.stringValue {
            order = a < b ? -1 : (a > b ? 1 : 0)
        } else {
            return false
        }
        switch op {
        case .less: return order < 0
        case .lessOrEqual: return order <= 0
        case .greater: return order > 0
        case .greaterOrEqual: return order >= 0
        default: return false
        }
    }
}

extension JSONValue {
    /// Truthiness for `when`: `null`, `false`, `0`, `""`, `[]` and `{}` are false; everything else is true.
    public var isTruthy: Bool {
        switch self {
        case .null: false
        case .bool(let value): value
        case .int(let value): value != 0
        case .double(let value): value != 0
        case .string(let value): !value.isEmpty
        case .array(let value): !value.isEmpty
        case .object(let value): !value.isEmpty
        }
    }
}
