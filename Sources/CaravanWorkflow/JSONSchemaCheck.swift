public import CaravanCore

/// Checks a value against the commonly used core of JSON Schema: `type`, `required`, `properties`,
/// `additionalProperties: false`, `items`, `enum`, `const`, `minLength`/`maxLength`, `minimum`/`maximum`,
/// `minItems`/`maxItems`. Keywords outside this core are ignored.
public enum JSONSchemaCheck {
    /// Every problem found, with JSON pointers under `pointer`.
    public static func problems(
        of value: JSONValue,
        against schema: JSONValue,
        at pointer: String
    ) -> [CaravanError.FieldError] {
        var problems: [CaravanError.FieldError] = []
        check(value, schema, pointer, depth: 0, into: &problems)
        return problems
    }

    private static func check(
        _ value: JSONValue,
        _ schema: JSONValue,
        _ pointer: String,
        depth: Int,
        into problems: inout [CaravanError.FieldError]
    ) {
        guard depth < 64, let schema = schema.objectValue else { return }
        func fail(_ detail: String) { problems.append(.init(pointer: pointer, detail: detail)) }
        if let type = schema["type"] {
            let allowed = type.arrayValue?.compactMap(\.stringValue) ?? type.stringValue.map { [$0] } ?? []
            if !allowed.isEmpty && !allowed.contains(where: { matches(value, type: $0) }) {
                fail("must be of type \(allowed.joined(separator: " or "))")
                return
            }
        }
        if let options = schema["enum"]?.arrayValue, !options.contains(value) {
            fail("must be one of the allowed values")
        }
        if let constant = schema["const"], constant != value { fail("must equal \(constant.canonicalText)") }
        switch value {
        case .string(let text):
            if case .int(let min)? = schema["minLength"], text.count < min {
                fail("must be at least \(min) characters long")
            }
            if case .int(let max)? = schema["maxLength"], text.count > max {
                fail("must be at most \(max) characters long")
            }
        case .int, .double:
            let number = value.numberValue ?? 0
            if let min = schema["minimum"]?.numberValue, number < min { fail("must be at least \(min)") }
            if let max = schema["maximum"]?.numberValue, number > max { fail("must be at most \(max)") }
        case .array(let items):
            if case .int(let min)? = schema["minItems"], items.count < min { fail("must hold at least \(min) items") }
            if case .int(let max)? = schema["maxItems"], items.count > max { fail("must hold at most \(max) items") }
            if let itemSchema = schema["items"] {
                for (index, item) in items.enumerated() {
                    check(item, itemSchema, pointer + "/\(index)", depth: depth + 1, into: &problems)
                }
            }
        case .object(let object):
            for name in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where object[name] == nil {
                problems.append(.init(pointer: pointer + "/" + name, detail: "is required"))
            }
            let properties = schema["properties"]?.objectValue ?? [:]
            for (key, item) in object {
                if let propertySchema = properties[key] {
                    check(item, propertySchema, pointer + "/" + key, depth: depth + 1, into: &problems)
                } else if schema["additionalProperties"] == .bool(false) {
                    problems.append(.init(pointer: pointer + "/" + key, detail: "is not an allowed property"))
                }
            }
        default:
            break
        }
    }

    private static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object): true
        case ("integer", .int): true
        case ("integer", .double(let number)): number == number.rounded()
        case ("number", .int), ("number", .double): true
        default: false
        }
    }
}
