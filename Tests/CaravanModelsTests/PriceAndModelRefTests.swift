import CaravanModels
import Testing

@Suite("Prices and model references")
struct PriceAndModelRefTests {
    @Test func builtInPricesMatchExactlyThenByLongestPrefix() {
        let table = PriceTable()
        #expect(
            table.price(provider: "openai", model: "gpt-4o") == ModelPrice(inputPerMillion: 2.5, outputPerMillion: 10)
        )
        #expect(table.price(provider: "openai", model: "gpt-4o-2024-08-06")?.inputPerMillion == 2.5)
        #expect(table.price(provider: "openai", model: "gpt-4o-mini-2024-07-18")?.inputPerMillion == 0.15)
        #expect(table.price(provider: "openai", model: "gpt-4.1-mini")?.outputPerMillion == 1.6)
        #expect(table.price(provider: "anthropic", model: "claude-3-5-haiku-20241022")?.inputPerMillion == 0.8)
        #expect(table.price(provider: "anthropic", model: "claude-sonnet-4-20250514")?.outputPerMillion == 15)
        #expect(table.price(provider: "anthropic", model: "Claude-Opus-4-1")?.outputPerMillion == 75)
        #expect(table.price(provider: "local", model: "llama3:8b") == nil)
    }

    @Test func costs() {
        let table = PriceTable()
        let usage = TokenUsage(inputTokens: 1_000_000, outputTokens: 500_000)
        #expect(abs(table.cost(provider: "openai", model: "gpt-4o-mini", usage: usage) - 0.45) < 1e-9)
        #expect(table.cost(provider: "local", model: "meta/llama-3", usage: usage) == 0)
        #expect(table.cost(provider: "openai", model: "gpt-4o", usage: .zero) == 0)
    }

    @Test func overridesWin() {
        let table = PriceTable(overrides: [
            "gpt-4o": ModelPrice(inputPerMillion: 1, outputPerMillion: 2),
            "azure/gpt-4o": ModelPrice(inputPerMillion: 3, outputPerMillion: 4),
            "local/llama": ModelPrice(inputPerMillion: 0.01, outputPerMillion: 0.02),
        ])
        #expect(table.price(provider: "openai", model: "gpt-4o")?.inputPerMillion == 1)
        #expect(table.price(provider: "azure", model: "gpt-4o")?.inputPerMillion == 3)
        #expect(table.price(provider: "azure", model: "gpt-4o-2024-08-06")?.inputPerMillion == 3)
        #expect(table.price(provider: "local", model: "llama-3.1-8b")?.outputPerMillion == 0.02)
        // the exact built-in entry
        #expect(table.price(provider: "openai", model: "gpt-4o-mini")?.inputPerMillion == 0.15)
    }

    @Test func modelRefs() throws {
        #expect(ModelRef("openai/gpt-4o") == ModelRef(provider: "openai", model: "gpt-4o"))
        let nested = try #require(ModelRef("local/meta/llama-3"))
        #expect(nested.provider == "local")
        #expect(nested.model == "meta/llama-3")
        #expect(nested.description == "local/meta/llama-3")
        for bad in [
            "gpt-4o", "/gpt-4o", "openai/", "OpenAI/gpt-4o", "open_ai/x", String(repeating: "a", count: 65) + "/m", "",
        ] {
            #expect(ModelRef(bad) == nil, "\(bad)")
        }
        #expect(ModelRef(String(repeating: "a", count: 64) + "/m") != nil)
        #expect(ModelRef(parsing: "openai/o3") == ModelRef(provider: "openai", model: "o3"))
    }
}
