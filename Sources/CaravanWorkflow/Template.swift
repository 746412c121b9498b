import CaravanCore
import Synchronization

/// Interpolation of `{{ path }}` inside strings. A string that is exactly one `{{ path }}` keeps the JSON type of
/// the value; otherwise values are written into the text (strings as they are, `null` as nothing, anything else
/// as compact JSON).
public enum Template {
    /// One piece of a parsed string.
    enum Part: Hashable, Sendable {
        case text(String)
        case path([Expression.PathComponent], source: String)
    }

    /// Splits a string into text and placeholders.
    /// - Throws: `validation_failed` for an unclosed `{{` or a placeholder that is not a path.
    private static let parsed = Mutex<[String: [Part]]>([:])

    /// Splits a string into text and placeholders (cached: the same templates render for every run).
    static func parse(_ string: String) throws(CaravanError) -> [Part] {
        guard string.utf8.contains(UInt8(ascii: "{")) else { return [.text(string)] }
        if let cached = parsed.withLock({ $0[string] }) { return cached }
        let parts = try parseUncached(string)
        parsed.withLock { cache in
            if cache.count > 4_096 { cache.removeAll() }
            cache[string] = parts
        }
        return parts
    }

    static func parseUncached(_ string: String) throws(CaravanError) -> [Part] {
        guard string.contains("{{") else { return [.text(string)] }
        var parts: [Part] = []
        var rest = Substring(string)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw CaravanError(.validationFailed, "A '{{' is not closed by '}}'.")
            }
            let inside = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            let expression = try Expression(parsing: inside)
            guard case .path(let components) = expression else {
                throw CaravanError(.validationFailed, "'{{ \(inside) }}' is not a path; only paths can be interpolated.")
            }
            parts.append(.path(components, source: inside))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        return parts
    }

    /// Renders every string inside `value` (objects and arrays are walked) over `scope`.
    /// - Throws: `validation_failed` for a malformed placeholder (validation catches these before a run starts).
    public static func render(_ value: JSONValue, scope: JSONValue) throws(CaravanError) -> JSONValue {
        switch value {
        case .string(let string): return try renderString(string, scope: scope)
        case .array(let items):
            var rendered: [JSONValue] = []
            rendered.reserveCapacity(items.count)
            for item in items { rendered.append(try render(item, scope: scope)) }
            return .array(rendered)
        case .object(let object):
            var rendered: [String: JSONValue] = [:]
            for (key, item) in object { rendered[key] = try render(item, scope: scope) }
            return .object(rendered)
        default: return value
        }
    }

    static func renderString(_ string: String, scope: JSONValue) throws(CaravanError) -> JSONValue {
        let parts = try parse(string)
        if parts.count == 1, case .path(let components, _) = parts[0] {
            return Expression.resolve(components, in: scope)
        }
        var text = ""
        for part in parts {
            switch part {
            case .text(let literal): text += literal
            case .path(let components, _):
                switch Expression.resolve(components, in: scope) {
                case .null: break
                case .string(let value): text += value
                case let other: other.write(to: &text)
                }
            }
        }
        return .string(text)
    }

    /// Every path referenced by placeholders in `value`, as key lists from the root.
    /// - Throws: `validation_failed` with the offending string.
    public static func referencedPaths(in value: JSONValue) throws(CaravanError) -> [[String]] {
        switch value {
        case .string(let string):
            return try parse(string).compactMap { part -> [String]? in
                guard case .path(let components, _) = part else { return nil }
                return components.compactMap { if case .key(let key) = $0 { key } else { nil } }
            }
        case .array(let items):
            var paths: [[String]] = []
            for item in items { paths += try referencedPaths(in: item) }
            return paths
        case .object(let object):
            var paths: [[String]] = []
            for item in object.values { paths += try referencedPaths(in: item) }
            return paths
        default: return []
        }
    }

    /// The secret names used as `{{ secrets.<name> }}` in `value`.
    public static func referencedSecrets(in value: JSONValue) throws(CaravanError) -> Set<String> {
        Set(try referencedPaths(in: value).compactMap { $0.count >= 2 && $0[0] == "secrets" ? $0[1] : nil })
    }
}
