import CaravanCore
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import Testing

@Suite(
    "Knowledge across nodes",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)"),
    .timeLimit(.minutes(2))
)
struct KnowledgeAcrossNodesTests {
    /// Each node holds the vectors it searches in memory: a document added, replaced or deleted through one node is
    /// found, changed or gone in the next search on the other.
    @Test func vectorSearchFollowsWritesOnAnotherNode() async throws {
        try await FakeOpenAIServer.with { model in
            try await withTwoPostgresNodes(configure: { $0.egressAllow = "127.0.0.1" }) { owner, second, _ in
                let key: HTTPFields = [.authorization: "Bearer \(owner.apiKey)"]
                let provider = #"{"kind": "openai", "base_url": "\#(model.baseURL)", "models": ["e"]}"#
                expectStatus(.created, try await owner.send(.put, "/v1/providers/local", json: provider))
                expectStatus(
                    .created,
                    try await owner.send(.put, "/v1/collections/notes", json: #"{"embedding_model": "local/e"}"#)
                )
                func add(_ name: String, _ text: String) async throws -> String {
                    let body = JSONValue.object(["name": .string(name), "text": .string(text)]).canonicalText
                    let added = try await owner.send(.post, "/v1/collections/notes/documents", json: body)
                    #expect(added.status == .created, "\(added.json)")
                    return try #require(added.json["id"]?.stringValue)
                }
                func nearest(_ text: String) async throws -> [String] {
                    let query = JSONValue.object(["query": .string(text), "mode": "vector", "k": 5]).canonicalText
                    let found = try await second.send(.post, "/v1/collections/notes/search", json: query, headers: key)
                    #expect(found.status == .ok, "\(found.json)")
                    return (found.json["items"]?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }
                }
                // The organization's first documents, four at once on two nodes: each stores the ingestion workflow.
                expectStatus(
                    .created,
                    try await owner.send(.put, "/v1/collections/race", json: #"{"embedding_model": "local/e"}"#)
                )
                let racing = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                    for index in 0..<4 {
                        group.addTask {
                            let body = JSONValue.object(["name": .string("first-\(index)"), "text": "First."])
                            let path = "/v1/collections/race/documents"
                            return index % 2 == 0
                                ? try await owner.send(.post, path, json: body.canonicalText).status
                                : try await second.send(.post, path, json: body.canonicalText, headers: key).status
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(racing == [.created, .created, .created, .created], "\(racing)")
                _ = try await add("alpha", "Alpha passage.")
                #expect(try await nearest("Alpha passage.").first == "Alpha passage.")  // loaded on the second node
                let beta = try await add("beta", "Beta passage.")
                #expect(try await nearest("Beta passage.").first == "Beta passage.")  // a chunk added since
                _ = try await add("alpha", "Alpha, rewritten.")  // replaces the document named alpha
                let afterReplace = try await nearest("Alpha passage.")
                #expect(!afterReplace.contains("Alpha passage.") && afterReplace.contains("Alpha, rewritten."))
                expectStatus(
                    .noContent,
                    try await owner.send(.delete, "/v1/collections/notes/documents/\(beta)")
                )
                #expect(try await nearest("Beta passage.") == ["Alpha, rewritten."])
                // A collection deleted and made again under the same name starts empty on every node.
                expectStatus(.noContent, try await owner.send(.delete, "/v1/collections/notes"))
                expectStatus(
                    .created,
                    try await owner.send(.put, "/v1/collections/notes", json: #"{"embedding_model": "local/e"}"#)
                )
                #expect(try await nearest("Alpha, rewritten.").isEmpty)
                _ = try await add("gamma", "Gamma passage.")
                #expect(try await nearest("Gamma passage.") == ["Gamma passage."])
            }
        }
    }
}
