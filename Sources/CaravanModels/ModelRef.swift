/// A model named as `provider/model`: the configured provider's name (`[a-z0-9-]{1,64}`) and the provider's own
/// model name, which is everything after the first `/` and may contain more (`local/meta/llama-3`).
public struct ModelRef: Sendable, Hashable, Codable, CustomStringConvertible, LosslessStringConvertible {
    public var provider: String
    public var model: String

    public init(provider: String, model: String) {
        self.provider = provider
        self.model = model
    }

    /// Parses `provider/model`, or returns `nil`.
    public init?(parsing text: String) {
        guard let slash = text.firstIndex(of: "/") else { return nil }
        let provider = String(text[..<slash])
        let model = String(text[text.index(after: slash)...])
        guard Self.isProviderName(provider), !model.isEmpty else { return nil }
        self.init(provider: provider, model: model)
    }

    /// Parses `provider/model`, or returns `nil` (as `init?(parsing:)`).
    public init?(_ description: String) {
        self.init(parsing: description)
    }

    /// Whether `name` is a valid provider name: 1 to 64 of `a-z`, `0-9`, `-`.
    public static func isProviderName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy {
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-")
            }
    }

    /// `provider/model`.
    public var description: String { "\(provider)/\(model)" }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let ref = ModelRef(text) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not provider/model")
            )
        }
        self = ref
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
