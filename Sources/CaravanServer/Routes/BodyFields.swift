import CaravanCore

/// The fields of a JSON object body, read with their types checked: a wrong type or an unknown field is a
/// `validation_failed` naming the field.
struct BodyFields {
    let object: [String: JSONValue]

    /// - Parameter allowed: the fields the endpoint knows; any other is refused.
    init(_ body: JSONValue, allowed: Set<String>) throws(CaravanError) {
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        for field in object.keys.sorted() where !allowed.contains(field) {
            throw CaravanError.validation("/" + field, "\(field) is not a field of this request")
        }
        self.object = object
    }

    /// Whether the field is present (even as `null`).
    func has(_ name: String) -> Bool { object[name] != nil }

    /// A string of at most `maxLength` characters, counted as JSON Schema's `maxLength` counts them (Unicode code
    /// points), so that what the OpenAPI document allows is what is accepted.
    func string(_ name: String, maxLength: Int = 4096) throws(CaravanError) -> String? {
        guard let text = try anyString(name) else { return nil }
        guard text.unicodeScalars.count <= maxLength else {
            throw CaravanError.validation("/" + name, "\(name) is longer than \(maxLength) characters")
        }
        return text
    }

    /// A string of at most `maxBytes` bytes of UTF-8, for values whose storage is bounded in bytes.
    func string(_ name: String, maxBytes: Int) throws(CaravanError) -> String? {
        guard let text = try anyString(name) else { return nil }
        guard text.utf8.count <= maxBytes else {
            throw CaravanError.validation("/" + name, "\(name) is longer than \(maxBytes) bytes")
        }
        return text
    }

    private func anyString(_ name: String) throws(CaravanError) -> String? {
        switch object[name] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw CaravanError.validation("/" + name, "\(name) must be a string")
        }
    }

    func integer(_ name: String) throws(CaravanError) -> Int? {
        switch object[name] {
        case nil, .null?: return nil
        case .int(let value)?: return Int(value)
        case .double(let value)? where value == value.rounded() && abs(value) < 1e15: return Int(value)
        default: throw CaravanError.validation("/" + name, "\(name) must be an integer")
        }
    }

    /// An RFC 3339 time, as milliseconds since 1970.
    func time(_ name: String) throws(CaravanError) -> Int64? {
        guard let text = try string(name, maxLength: 64) else { return nil }
        guard let milliseconds = Clock.parseRFC3339(text) else {
            throw CaravanError.validation("/" + name, "\(name) must be an RFC 3339 time such as 2030-01-01T00:00:00Z")
        }
        return milliseconds
    }
}
