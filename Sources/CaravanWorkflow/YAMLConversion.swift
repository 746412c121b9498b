import CaravanCore
import Yams

/// Turns YAML into `JSONValue`, refusing documents that would expand beyond a node budget (alias bombs).
enum YAMLConversion {
    static let maxNodes = 100_000

    static func parse(_ text: String) throws(CaravanError) -> JSONValue {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw CaravanError(.invalidJSON, "The body is not valid YAML: \(error)")
        }
        guard let node else { throw CaravanError(.invalidJSON, "The YAML document is empty.") }
        var budget = maxNodes
        return try convert(node, budget: &budget, depth: 0)
    }

    private static func convert(_ node: Node, budget: inout Int, depth: Int) throws(CaravanError) -> JSONValue {
        budget -= 1
        guard budget >= 0 else {
            throw CaravanError(.payloadTooLarge, "The YAML document expands to more than \(maxNodes) values.")
        }
        guard depth < 128 else { throw CaravanError(.invalidJSON, "The YAML document nests deeper than 128 levels.") }
        switch node {
        case .scalar(let scalar):
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case Tag.Name.int.rawValue: return node.int.map { .int(Int64($0)) } ?? .string(scalar.string)
            case Tag.Name.float.rawValue: return node.float.map(JSONValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for item in sequence { items.append(try convert(item, budget: &budget, depth: depth + 1)) }
            return .array(items)
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard case .scalar(let keyScalar) = key else {
                    throw CaravanError(.invalidJSON, "YAML mapping keys must be plain strings.")
                }
                object[keyScalar.string] = try convert(value, budget: &budget, depth: depth + 1)
            }
            return .object(object)
        case .alias:
            throw CaravanError(.invalidJSON, "YAML aliases are not supported in definitions.")
        }
    }
}
