/// A model's list price, in US dollars per million tokens.
public struct ModelPrice: Sendable, Hashable, Codable {
    public var inputPerMillion: Double
    public var outputPerMillion: Double

    public init(inputPerMillion: Double, outputPerMillion: Double) {
        self.inputPerMillion = inputPerMillion
        self.outputPerMillion = outputPerMillion
    }

    /// The cost in US dollars of `usage` at this price.
    public func cost(of usage: TokenUsage) -> Double {
        (Double(usage.inputTokens) * inputPerMillion + Double(usage.outputTokens) * outputPerMillion) / 1_000_000
    }
}

/// What model calls cost: a built-in table of list prices for well-known models, and the operator's
/// overrides. A model's price is found by, in order: an override keyed `provider/model`, an override keyed
/// `model`, a built-in entry for `model`; then the longest override key, then the longest built-in key, that
/// the name starts with (so dated snapshots such as `gpt-4o-2024-08-06` cost what `gpt-4o` costs). Names
/// compare case-insensitively. Models not found cost nothing (e.g. local models).
public struct PriceTable: Sendable {
    /// List prices (USD per million input / output tokens) of a few well-known models.
    public static let builtIn: [String: ModelPrice] = [
        "gpt-4o": ModelPrice(inputPerMillion: 2.50, outputPerMillion: 10.00),
        "gpt-4o-mini": ModelPrice(inputPerMillion: 0.15, outputPerMillion: 0.60),
        "gpt-4.1": ModelPrice(inputPerMillion: 2.00, outputPerMillion: 8.00),
        "gpt-4.1-mini": ModelPrice(inputPerMillion: 0.40, outputPerMillion: 1.60),
        "gpt-4.1-nano": ModelPrice(inputPerMillion: 0.10, outputPerMillion: 0.40),
        "o1": ModelPrice(inputPerMillion: 15.00, outputPerMillion: 60.00),
        "o3": ModelPrice(inputPerMillion: 2.00, outputPerMillion: 8.00),
        "o3-mini": ModelPrice(inputPerMillion: 1.10, outputPerMillion: 4.40),
        "o4-mini": ModelPrice(inputPerMillion: 1.10, outputPerMillion: 4.40),
        "gpt-5": ModelPrice(inputPerMillion: 1.25, outputPerMillion: 10.00),
        "gpt-5-mini": ModelPrice(inputPerMillion: 0.25, outputPerMillion: 2.00),
        "gpt-5-nano": ModelPrice(inputPerMillion: 0.05, outputPerMillion: 0.40),
        "claude-3-haiku": ModelPrice(inputPerMillion: 0.25, outputPerMillion: 1.25),
        "claude-3-5-haiku": ModelPrice(inputPerMillion: 0.80, outputPerMillion: 4.00),
        "claude-haiku-4-5": ModelPrice(inputPerMillion: 1.00, outputPerMillion: 5.00),
        "claude-3-5-sonnet": ModelPrice(inputPerMillion: 3.00, outputPerMillion: 15.00),
        "claude-3-7-sonnet": ModelPrice(inputPerMillion: 3.00, outputPerMillion: 15.00),
        "claude-sonnet-4": ModelPrice(inputPerMillion: 3.00, outputPerMillion: 15.00),
        "claude-3-opus": ModelPrice(inputPerMillion: 15.00, outputPerMillion: 75.00),
        "claude-opus-4": ModelPrice(inputPerMillion: 15.00, outputPerMillion: 75.00),
        "claude-opus-4-5": ModelPrice(inputPerMillion: 5.00, outputPerMillion: 25.00),
    ]

    private let overrides: [String: ModelPrice]

    /// - Parameter overrides: prices keyed by `provider/model` or by `model`; they win over the built-in table.
    public init(overrides: [String: ModelPrice] = [:]) {
        self.overrides = Dictionary(
            overrides.map { ($0.key.lowercased(), $0.value) },
            uniquingKeysWith: { _, last in last }
        )
    }

    /// The price of `model` at `provider`, or `nil` when neither table knows it.
    public func price(provider: String, model: String) -> ModelPrice? {
        let model = model.lowercased()
        let qualified = provider.lowercased() + "/" + model
        if let price = overrides[qualified] ?? overrides[model] ?? Self.builtIn[model] { return price }
        if let price = Self.longestPrefix(of: [qualified, model], in: overrides) { return price }
        return Self.longestPrefix(of: [model], in: Self.builtIn)
    }

    /// The cost in US dollars of `usage` on `model` at `provider` (0 for unknown models).
    public func cost(provider: String, model: String, usage: TokenUsage) -> Double {
        price(provider: provider, model: model)?.cost(of: usage) ?? 0
    }

    private static func longestPrefix(of names: [String], in table: [String: ModelPrice]) -> ModelPrice? {
        var best: (length: Int, price: ModelPrice)?
        for (key, price) in table where names.contains(where: { $0.hasPrefix(key) }) && key.count > (best?.length ?? 0)
        {
            best = (key.count, price)
        }
        return best?.price
    }
}
