import CaravanCore
import Foundation
import Yams

/// Definitions (of workflows and agents) as YAML for people: the API's stored JSON written out as YAML in the
/// order a person writes it, and the API's validation errors placed on the lines of the YAML the person typed.
enum DefinitionYAML {
    /// The keys written first, in this order, in every mapping; the others follow alphabetically. One list serves
    /// workflows, steps, agents, tools and JSON Schemas, whose keys do not clash in a way that matters for order.
    static let keyOrder: [String] = [
        "name", "id", "type", "description", "enum", "required", "properties", "items", "default", "model",
        "instructions", "input", "defaults", "concurrency", "schedule", "cron", "timezone", "needs", "when",
        "for_each", "timeout", "retry", "method", "url", "headers", "body", "parameters", "tools", "max_turns",
        "max_tokens", "temperature", "budget", "steps", "output", "output_schema",
    ]

    /// `definition` as YAML. A JSON value always has a YAML form; should the emitter still fail, the JSON text is
    /// answered instead (JSON is YAML too).
    static func text(_ definition: JSONValue) -> String {
        do {
            return try Yams.serialize(
                node: node(definition),
                indent: 2,
                width: -1,
                allowUnicode: true,
                newLineScalarStyle: .literal
            )
        } catch {
            return ConsoleJSON.pretty(definition, limit: Int.max).text + "\n"
        }
    }

    /// A JSON value as a YAML node: mappings in `keyOrder`, short lists of scalars on one line, strings quoted
    /// whenever they would otherwise read back as another type (`"true"`, `"10"`, `"null"`).
    static func node(_ value: JSONValue) -> Node {
        switch value {
        case .null:
            return .scalar(.init("null"))
        case .bool(let flag):
            return .scalar(.init(flag ? "true" : "false"))
        case .int(let number):
            return .scalar(.init(String(number)))
        case .double:
            var text = ""
            value.write(to: &text)
            return .scalar(.init(text))
        case .string(let text):
            let plain = Node.scalar(.init(text))
            if Resolver.default.resolveTag(of: plain) == .str { return plain }
            return .scalar(.init(text, Tag(.str), .doubleQuoted))
        case .array(let items):
            let scalars = items.allSatisfy { item in
                switch item {
                case .array, .object: false
                case .string(let text): !text.contains("\n") && text.count <= 40
                default: true
                }
            }
            let style: Node.Sequence.Style = scalars && !items.isEmpty && items.count <= 8 ? .flow : .any
            return .sequence(.init(items.map(node), .implicit, style))
        case .object(let fields):
            let rank = Dictionary(keyOrder.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
            let keys = fields.keys.sorted { left, right in
                switch (rank[left], rank[right]) {
                case (let l?, let r?): l < r
                case (.some, nil): true
                case (nil, .some): false
                case (nil, nil): left < right
                }
            }
            return .mapping(.init(keys.map { (node(.string($0)), node(fields[$0] ?? .null)) }))
        }
    }

    /// The text as the API and the line numbers should see it: a browser sends a textarea's lines with CRLF.
    static func normalized(_ text: String) -> String {
        text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
    }

    /// The `name:` at the top of a YAML definition, if it has one (to name a new definition whose name field was
    /// left empty).
    static func name(in yaml: String) -> String? {
        guard case .mapping(let mapping)? = try? Yams.compose(yaml: yaml) else { return nil }
        return mapping.first { $0.key.scalar?.string == "name" }?.value.scalar?.string
    }

    /// Where the YAML text `yaml` is at fault: each of `errors` (JSON pointers into the definition, and what is
    /// wrong there) placed on a line (1-based), and the YAML's own syntax error, if it has one, on its line.
    static func lines(of errors: [(pointer: String, detail: String)], in yaml: String) -> [Int: [String]] {
        var found: [Int: [String]] = [:]
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            found[syntaxLine(error) ?? 1, default: []].append(syntaxProblem(error))
            root = nil
        } catch {
            root = nil
        }
        for error in errors {
            let number = root.map { Self.line(of: error.pointer, in: $0) } ?? 1
            found[number, default: []].append(
                error.pointer.isEmpty ? error.detail : "\(error.pointer): \(error.detail)"
            )
        }
        return found
    }

    /// The line of the node a JSON pointer (`/steps/1/needs/0`) names in a composed YAML document: its mapping
    /// key's line, or a list item's own; when the pointer goes past what the document holds (a field that is
    /// missing), the line of the deepest node it reached; line 1 for the whole document.
    static func line(of pointer: String, in root: Node) -> Int {
        var node = root
        var line = 1
        for token in tokens(of: pointer) {
            switch node {
            case .mapping(let mapping):
                guard let pair = mapping.first(where: { $0.key.scalar?.string == token }) else { return line }
                line = pair.key.mark?.line ?? line
                node = pair.value
            case .sequence(let sequence):
                guard let index = Int(token), index >= 0, index < sequence.count else { return line }
                node = sequence[sequence.index(sequence.startIndex, offsetBy: index)]
                line = node.mark?.line ?? line
            default:
                return line
            }
        }
        return line
    }

    /// The reference tokens of a JSON pointer (RFC 6901), unescaped.
    static func tokens(of pointer: String) -> [String] {
        guard pointer.hasPrefix("/") else { return [] }
        return pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    /// The line of a YAML syntax error.
    static func syntaxLine(_ error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): mark.line
        default: nil
        }
    }

    /// A YAML syntax error in words, without the copy of the document Yams' description carries.
    static func syntaxProblem(_ error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _),
            .composer(let context, let problem, _, _):
            let before = context.map { "\($0.text) (from line \($0.mark.line)), " } ?? ""
            return "The YAML does not parse: \(before)\(problem)"
        default:
            return "The YAML does not parse."
        }
    }
}
