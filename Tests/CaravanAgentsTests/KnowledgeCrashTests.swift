import CaravanCore
import CaravanSQLite
import CaravanStorage
import CaravanTestSupport
import Foundation
import Testing

@Suite("Knowledge crash recovery", .serialized)
struct KnowledgeCrashTests {
    /// The chunks of document `id` committed before the crash, read while no server runs.
    static func chunks(of id: String, inDirectory directory: String) async throws -> [String] {
        let database = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
        return try await database.read { executor in
            try await executor.query(
                "SELECT text FROM knowledge_chunks WHERE document_id = $1 ORDER BY position",
                [.text(id)]
            ).map { try $0.string("text") }
        }
    }

    @Test("After kill -9 during an ingestion, it resumes without embedding again the chunks already stored")
    func killDuringIngestion() async throws {
        try await FakeOpenAIServer.with { model in
            try await withTemporaryDirectory { directory in
                let arguments = ["serve", "--port", "0", "--data", directory, "--egress-allow", "127.0.0.1"]
                let first = try await CaravanProcess(arguments: arguments)
                let auth = try await bootstrapCredentials(port: first.port)
                let base = "http://127.0.0.1:\(first.port)"
                let json = [("Content-Type", "application/json")] + auth
                // Each embedding call takes 150 ms; 64 chunks a call.
                let provider = #"{"kind": "openai", "base_url": "\#(model.baseURL)", "models": ["e-delay-150"]}"#
                #expect(
                    try await fetch(base + "/v1/providers/local", method: "PUT", headers: json, body: provider).status
                        == 201
                )
                let settings = #"{"embedding_model": "local/e-delay-150", "chunking": {"size": 50, "overlap": 0}}"#
                #expect(
                    try await fetch(base + "/v1/collections/manual", method: "PUT", headers: json, body: settings)
                        .status == 201
                )
                // 1,280 paragraphs, each a chunk of its own: 20 embedding calls.
                let text = (0..<1_280).map { "Paragraph \($0) tells of part number P\($0 * 7)." }
                    .joined(separator: "\n\n")
                let document: JSONValue = ["name": "manual", "text": .string(text)]
                let added = try await fetch(
                    base + "/v1/collections/manual/documents?wait=0s",
                    method: "POST",
                    headers: json,
                    body: document.canonicalText
                )
                #expect(added.status == 202, "\(added.body)")
                let accepted = try JSONValue(parsing: Array(added.body.utf8))
                let id = try #require(accepted["id"]?.stringValue)
                let runID = try #require(accepted["run_id"]?.stringValue)
                #expect(accepted["status"] == "ingesting")
                func embeddingCalls() -> [[String]] {
                    model.requests.filter { $0.path.hasSuffix("/embeddings") }.map { request in
                        (request.body["input"]?.arrayValue ?? []).compactMap(\.stringValue)
                    }
                }
                for _ in 0..<400 where embeddingCalls().count < 10 { try await Task.sleep(for: .milliseconds(25)) }
                first.send(signal: SIGKILL)
                _ = try await first.waitForExit()
                let stored = try await Self.chunks(of: id, inDirectory: directory)
                #expect(stored.count >= 64 && stored.count < 1_280, "the crash came inside the ingestion")
                let callsBefore = embeddingCalls().count

                let second = try await CaravanProcess(arguments: arguments)
                let secondBase = "http://127.0.0.1:\(second.port)"
                var current: JSONValue = .null
                let deadline = ContinuousClock.now + .seconds(60)
                while current["status"] != "indexed" && current["status"] != "failed", ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    current = try JSONValue(
                        parsing: Array(
                            try await fetch(secondBase + "/v1/collections/manual/documents/\(id)", headers: auth)
                                .body.utf8
                        )
                    )
                }
                #expect(current["status"] == "indexed", "\(current["status"] ?? .null)\n\(second.log.suffix(2000))")
                #expect(current["chunk_count"] == 1_280)
                // A chunk stored before the crash reached the model once; those in flight (two groups of 4 calls) at most twice.
                var embedded: [String: Int] = [:]
                for input in embeddingCalls().flatMap({ $0 }) { embedded[input, default: 0] += 1 }
                #expect(stored.allSatisfy { embedded[$0] == 1 }, "a chunk stored before the crash was embedded again")
                #expect(embedded.count == 1_280 && embedded.values.allSatisfy { $0 <= 2 })
                #expect(embeddingCalls().count <= 20 + 8 && embeddingCalls().count > callsBefore)
                // The run tells its progress, and the last chunk is found.
                let events = try JSONValue(
                    parsing: Array(
                        try await fetch(secondBase + "/v1/runs/\(runID)/events?limit=500", headers: auth).body.utf8
                    )
                )
                let progress = (events["items"]?.arrayValue ?? []).filter { $0["type"] == "document.progress" }
                #expect(progress.last?["data"]?["chunks_stored"] == 1_280, "\(progress.last ?? .null)")
                let found = try await fetch(
                    secondBase + "/v1/collections/manual/search",
                    method: "POST",
                    headers: json,
                    body: #"{"query": "P8953", "mode": "text", "k": 1}"#
                )
                #expect(found.body.contains("Paragraph 1279 tells"), "\(found.body)")
                second.send(signal: SIGTERM)
                #expect(try await second.waitForExit() == 0)
            }
        }
    }
}
