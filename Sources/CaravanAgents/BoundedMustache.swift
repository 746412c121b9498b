public import CaravanCore
import CaravanWorkflow
import Mustache

/// A Mustache template whose cost is bounded: parsing by its shape (the nesting of its sections and the count of its
/// tags, checked before swift-mustache sees it: that parser recurses per section and measures the rest of the
/// template at every tag), rendering by a budget of bytes charged as values and section passes render, so that a
/// template repeating a large value, or looping over a long array, cannot grow past the limit in memory.
public struct BoundedMustache: Sendable {
    public let source: String
    let template: MustacheTemplate

    /// Parses `source`; `escapesHTML` false renders `{{x}}` as it is (text, Markdown), true escapes it (HTML).
    /// - Throws: `validation_failed` at `pointer`: sections nested deeper than `maxDepth`, more than `maxTags` tags,
    ///   or not Mustache.
    public init(
        _ source: String,
        escapesHTML: Bool,
        maxDepth: Int,
        maxTags: Int,
        at pointer: String
    )
        throws(CaravanError)
    {
        let shape = Shape.of(source)
        if shape.depth > maxDepth {
            throw CaravanError.validation(pointer, "nests Mustache sections deeper than \(maxDepth) levels")
        }
        if shape.tags > maxTags {
            throw CaravanError.validation(pointer, "holds \(shape.tags) Mustache tags; at most \(maxTags)")
        }
        do {
            template = try MustacheTemplate(string: (escapesHTML ? "" : "{{% CONTENT_TYPE: TEXT}}") + source)
        } catch {
            throw CaravanError.validation(pointer, "is not a valid Mustache template: \(error)")
        }
        self.source = source
    }

    /// Renders the template over `scope`; `nil` when the rendering would pass `limit` bytes.
    public func render(_ scope: [String: JSONValue], limit: Int) -> String? {
        let budget = MustacheBudget(limit: limit, passCost: source.utf8.count)
        let rendered = template.render(scope.mapValues(budget.wrap) as [String: Any])
        return budget.exhausted || rendered.utf8.count > limit ? nil : rendered
    }

    /// What bounds the cost of parsing a Mustache template: its deepest nesting of sections and its count of tags.
    public struct Shape: Equatable, Sendable {
        var depth: Int
        var tags: Int

        /// A change of delimiters that `of(_:)` cannot follow: refused rather than counted wrong.
        static let unfollowed = Shape(depth: .max, tags: .max)

        /// The shape of `template`, following delimiter changes: the deepest nesting of sections (`#`, `^`, `$`,
        /// `<`), never less than the parser's own, and the count of tags.
        static func of(_ template: String) -> Shape {
            var open: Substring = "{{"
            var close: Substring = "}}"
            var rest = Substring(template)
            var shape = Shape(depth: 0, tags: 0)
            var depth = 0
            while let start = rest.firstRange(of: open) {
                rest = rest[start.upperBound...]
                guard let end = rest.firstRange(of: close) else { break }
                var tag = rest[..<end.lowerBound].drop(while: \.isWhitespace)
                while tag.last?.isWhitespace == true { tag = tag.dropLast() }
                rest = rest[end.upperBound...]
                shape.tags += 1
                if tag.first == "=" {
                    // `{{=<% %>=}}`
                    let parts = tag.dropFirst().dropLast().split(whereSeparator: \.isWhitespace)
                    guard tag.count >= 2, tag.last == "=", parts.count == 2 else { return .unfollowed }
                    open = parts[0]
                    close = parts[1]
                } else if let first = tag.first, "#^$<".contains(first) {
                    depth += 1
                    shape.depth = max(shape.depth, depth)
                } else if tag.first == "/" {
                    depth = max(0, depth - 1)
                }
            }
            return shape
        }
    }
}

/// What one rendering of a Mustache template may still produce. Not shared across tasks: one per rendering.
final class MustacheBudget {
    private(set) var remaining: Int
    private(set) var exhausted = false
    let passCost: Int

    init(limit: Int, passCost: Int) {
        self.remaining = limit
        self.passCost = max(1, passCost)
    }

    /// Takes `bytes` from the budget; false (and exhausted from then on) when they are not there.
    func take(_ bytes: Int) -> Bool {
        guard !exhausted, bytes <= remaining else {
            exhausted = true
            return false
        }
        remaining -= bytes
        return true
    }

    /// `value` as Mustache sees it, with strings and numbers that charge their length as they render and arrays
    /// that charge a pass per item.
    func wrap(_ value: JSONValue) -> Any {
        switch value {
        case .null: return Optional<String>.none as Any
        case .bool(let flag): return flag
        case .int(let number): return BudgetedText(text: String(number), budget: self)
        case .double(let number): return BudgetedText(text: String(number), budget: self)
        case .string(let text): return BudgetedText(text: text, budget: self)
        case .array(let items): return BudgetedSequence(items: items.map(wrap), json: value, budget: self)
        case .object(let fields): return BudgetedObject(fields: fields.mapValues(wrap), json: value, budget: self)
        }
    }

    /// `json` as compact JSON when the budget has room for it, else nothing.
    func render(_ json: JSONValue) -> String {
        guard !exhausted, Template.approximateSize(of: json, atMost: remaining) <= remaining + 2 else {
            exhausted = true
            return ""
        }
        let text = json.canonicalText
        return take(text.utf8.count) ? text : ""
    }
}

/// An object whose fields Mustache reads by name, and that renders as compact JSON while the budget lasts.
struct BudgetedObject: MustacheParent, MustacheCustomRenderable, CustomStringConvertible {
    let fields: [String: Any]
    let json: JSONValue
    let budget: MustacheBudget
    func child(named name: String) -> Any? { fields[name] }
    var renderText: String { budget.render(json) }
    var isNull: Bool { false }
    var description: String { renderText }
}

/// A value that renders only while its rendering's budget lasts.
struct BudgetedText: MustacheCustomRenderable, CustomStringConvertible {
    let text: String
    let budget: MustacheBudget
    var renderText: String { budget.take(text.utf8.count) ? text : "" }
    var isNull: Bool { false }
    var description: String { renderText }
}

/// An array whose every pass through a section is charged to the rendering's budget; it ends early once the budget
/// is spent.
struct BudgetedSequence: MustacheSequence, MustacheCustomRenderable, CustomStringConvertible {
    let items: [Any]
    let json: JSONValue
    let budget: MustacheBudget
    var renderText: String { budget.render(json) }
    var isNull: Bool { false }
    var description: String { renderText }

    func makeIterator() -> Iterator { Iterator(items: items, budget: budget) }

    struct Iterator: IteratorProtocol {
        let items: [Any]
        let budget: MustacheBudget
        var index = 0

        mutating func next() -> Any? {
            guard index < items.count, budget.take(budget.passCost) else { return nil }
            defer { index += 1 }
            return items[index]
        }
    }
}
