public import CaravanCore
import Foundation
import Synchronization

/// Interpolation of `{{ path }}` inside strings. A string that is exactly one `{{ path }}` keeps the JSON type of
/// the value; otherwise values are written into the text (strings as they are, `null` as nothing, anything else
/// as compact JSON).
public enum Template {
    /// One piece of a parsed string.
    enum Part: Hashable, Sendable {
        case text(String)
        /// `raw`: written `{{{ path }}}`; in a URL, inserted without percent-encoding.
        case path([Expression.PathComponent], source: String, raw: Bool = false)
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
        while var open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            let raw = rest[open.upperBound...].hasPrefix("{")
            if raw { open = open.lowerBound..<rest.index(after: open.upperBound) }
            guard let close = rest[open.upperBound...].range(of: raw ? "}}}" : "}}") else {
                throw CaravanError(
                    .validationFailed,
                    raw ? "A '{{{' is not closed by '}}}'." : "A '{{' is not closed by '}}'."
                )
            }
            let inside = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            let expression = try Expression(parsing: inside)
            guard case .path(let components) = expression else {
                throw CaravanError(
                    .validationFailed,
                    "'{{ \(inside) }}' is not a path; only paths can be interpolated."
                )
            }
            parts.append(.path(components, source: inside, raw: raw))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        return parts
    }

    /// Renders every string inside `value` (objects and arrays are walked) over `scope`.
    /// - Parameter limit: the most bytes the result may hold (counted as it is written, so that a template that
    ///   repeats a large value stops at the limit instead of filling memory); unbounded by default.
    /// - Throws: `validation_failed` for a malformed placeholder (validation catches these before a run starts);
    ///   `output_too_large` when the result would pass `limit`.
    /// - Parameter urlFields: keys of a top-level object whose strings are URLs: values interpolated into them are
    ///   percent-encoded for where they land (see `renderURL`).
    public static func render(
        _ value: JSONValue,
        scope: JSONValue,
        limit: Int = .max,
        urlFields: Set<String> = []
    ) throws(CaravanError) -> JSONValue {
        var budget = limit
        guard !urlFields.isEmpty, case .object(let object) = value else {
            return try render(value, scope: scope, budget: &budget, limit: limit)
        }
        var rendered: [String: JSONValue] = [:]
        for (key, item) in object {
            if urlFields.contains(key), case .string(let url) = item {
                let text = try renderURL(url, scope: scope)
                try charge(text.utf8.count, to: &budget, limit: limit)
                rendered[key] = .string(text)
            } else {
                rendered[key] = try render(item, scope: scope, budget: &budget, limit: limit)
            }
        }
        return .object(rendered)
    }

    /// Where in a URL an interpolated value lands.
    enum URLPosition {
        /// Before `scheme://` is complete: the value sets the base of the URL and is inserted as it is.
        case base
        /// In the host (or user, port): the value may not change the URL's structure.
        case authority
        case path
        case query
        case fragment
    }

    /// Bytes left as they are in a path segment: unreserved characters and the sub-delimiters, `:` and `@`.
    static let pathSegmentAllowed = Set("-._~!$&'()*+,;=:@".utf8)
    /// Bytes left as they are in a query value: unreserved characters and those that split no pair.
    static let queryValueAllowed = Set("-._~!$'()*,;:@/?".utf8)

    /// `text` with every byte but ASCII letters, digits and `allowed` written as `%XX`.
    static func percentEncode(_ text: String, allowed: Set<UInt8>) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            let alphanumeric =
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            if alphanumeric || allowed.contains(byte) {
                bytes.append(byte)
            } else {
                bytes += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Renders a URL template: each value is percent-encoded for where it lands, so that no value changes the URL's
    /// structure: in a path, one segment (`/`, `?`, `#`, `%` encoded, and `.` or `..` as a whole encoded too); in
    /// the query or fragment, one value (`&`, `=`, `+`, `#` encoded). A value in the host may not hold `/ ? # @ \`,
    /// spaces or control characters. A value before `scheme://` is complete (`{{ input.base_url }}/users`) and a
    /// placeholder written with three braces (`{{{ path }}}`) are inserted as they are.
    /// - Throws: `validation_failed` for a malformed placeholder or a value that cannot stand in the host.
    public static func renderURL(_ template: String, scope: JSONValue) throws(CaravanError) -> String {
        var text = ""
        for part in try parse(template) {
            switch part {
            case .text(let literal): text += literal
            case .path(let components, let source, let raw):
                var value: String
                switch Expression.resolve(components, in: scope) {
                case .null: value = ""
                case .string(let string): value = string
                case let other: value = other.canonicalText
                }
                if !raw {
                    switch position(after: text) {
                    case .base: break
                    case .authority:
                        if value.unicodeScalars.contains(where: {
                            "/?#@\\".unicodeScalars.contains($0) || $0.value <= 0x20 || $0.value == 0x7F
                        }) {
                            throw CaravanError(
                                .validationFailed,
                                "The value of '\(source)' cannot stand in a URL's host."
                            )
                        }
                    case .path:
                        value =
                            value == "." || value == ".."
                            ? String(repeating: "%2E", count: value.count)
                            : percentEncode(value, allowed: pathSegmentAllowed)
                    case .query, .fragment:
                        value = percentEncode(value, allowed: queryValueAllowed)
                    }
                }
                text += value
            }
        }
        return text
    }

    /// Where a value written after `prefix` lands.
    static func position(after prefix: String) -> URLPosition {
        guard let schemeEnd = prefix.range(of: "://") else { return .base }
        let rest = prefix[schemeEnd.upperBound...]
        if rest.contains("#") { return .fragment }
        if rest.contains("?") { return .query }
        return rest.contains("/") ? .path : .authority
    }

    private static func render(
        _ value: JSONValue,
        scope: JSONValue,
        budget: inout Int,
        limit: Int
    ) throws(CaravanError) -> JSONValue {
        switch value {
        case .string(let string): return try renderString(string, scope: scope, budget: &budget, limit: limit)
        case .array(let items):
            var rendered: [JSONValue] = []
            rendered.reserveCapacity(items.count)
            for item in items { rendered.append(try render(item, scope: scope, budget: &budget, limit: limit)) }
            return .array(rendered)
        case .object(let object):
            var rendered: [String: JSONValue] = [:]
            for (key, item) in object {
                try charge(key.utf8.count + 3, to: &budget, limit: limit)
                rendered[key] = try render(item, scope: scope, budget: &budget, limit: limit)
            }
            return .object(rendered)
        default:
            try charge(8, to: &budget, limit: limit)
            return value
        }
    }

    static func renderString(
        _ string: String,
        scope: JSONValue,
        budget: inout Int,
        limit: Int
    ) throws(CaravanError) -> JSONValue {
        let parts = try parse(string)
        if parts.count == 1, case .path(let components, _, _) = parts[0] {
            let value = Expression.resolve(components, in: scope)
            if limit != .max { try charge(approximateSize(of: value, atMost: budget), to: &budget, limit: limit) }
            return value
        }
        var text = ""
        for part in parts {
            let before = text.utf8.count
            switch part {
            case .text(let literal): text += literal
            case .path(let components, _, _):
                let value = Expression.resolve(components, in: scope)
                // Refuse before writing: a value larger than what is left never lands in memory twice.
                if limit != .max {
                    switch value {
                    case .string(let piece): try charge(piece.utf8.count, to: &budget, limit: limit, dry: true)
                    case .array, .object:
                        try charge(approximateSize(of: value, atMost: budget) - 2, to: &budget, limit: limit, dry: true)
                    default: break
                    }
                }
                switch value {
                case .null: break
                case .string(let value): text += value
                case let other: other.write(to: &text)
                }
            }
            try charge(text.utf8.count - before, to: &budget, limit: limit)
        }
        return .string(text)
    }

    private static func charge(_ bytes: Int, to budget: inout Int, limit: Int, dry: Bool = false) throws(CaravanError) {
        guard limit != .max else { return }
        guard bytes <= budget else {
            throw CaravanError(.outputTooLarge, "The rendered template would pass the payload limit of \(limit) bytes.")
        }
        if !dry { budget -= bytes }
    }

    /// About how many bytes `value` takes as JSON, counting no further than `atMost` (plus one value).
    public static func approximateSize(of value: JSONValue, atMost: Int) -> Int {
        switch value {
        case .null, .bool, .int, .double: return 8
        case .string(let text): return text.utf8.count + 2
        case .array(let items):
            var total = 2
            for item in items {
                total += approximateSize(of: item, atMost: atMost - total) + 1
                if total > atMost { break }
            }
            return total
        case .object(let fields):
            var total = 2
            for (key, item) in fields {
                total += key.utf8.count + 4 + approximateSize(of: item, atMost: atMost - total)
                if total > atMost { break }
            }
            return total
        }
    }

    /// Every path referenced by placeholders in `value`, as key lists from the root.
    /// - Throws: `validation_failed` with the offending string.
    public static func referencedPaths(in value: JSONValue) throws(CaravanError) -> [[String]] {
        switch value {
        case .string(let string):
            return try parse(string).compactMap { part -> [String]? in
                guard case .path(let components, _, _) = part else { return nil }
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
