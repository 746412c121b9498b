import CaravanCore
import CaravanModels
import Testing

@testable import CaravanAgents

@Suite("Model routes")
struct ModelRouteDefinitionTests {
    /// A draw in `0..<total weight` picks each deployment in proportion to its weight; the others follow by weight,
    /// then the fallbacks, each once.
    @Test func drawsByWeight() throws {
        let route = try ModelRouteDefinition.parse(
            [
                "deployments": [["model": "a/x", "weight": 1], ["model": "b/y", "weight": 3]],
                "fallbacks": ["c/z", "a/x"],
            ],
            name: "smart"
        )
        #expect(route.totalWeight == 4)
        let first = ModelRef(provider: "a", model: "x")
        let second = ModelRef(provider: "b", model: "y")
        let fallback = ModelRef(provider: "c", model: "z")
        #expect(route.route(draw: 0) == [first, second, fallback])
        for draw in 1...3 { #expect(route.route(draw: draw) == [second, first, fallback]) }
        #expect(throws: CaravanError.self) { try ModelRouteDefinition.parse(["deployments": []], name: "x") }
        #expect(throws: CaravanError.self) {
            try ModelRouteDefinition.parse(["deployments": [["model": "a/x"]]], name: "has/slash")
        }
    }
}
