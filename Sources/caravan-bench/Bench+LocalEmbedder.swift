import ArgumentParser
import CaravanCore
import Foundation
import NIOHTTP1

extension Bench {
    /// Ingestion and search with a real embedding model served on this machine (`scripts/local-model start PORT
    /// embeddings`, at `--embedder-url`): a document of about 300 chunks of 1,000 characters, uploaded and followed
    /// until indexed; then hybrid searches, each embedding its query with the model.
    func knowledgeLocal() async throws -> [String: Double] {
        guard let embedder = embedderURL else { throw ValidationError("knowledge-local needs --embedder-url") }
        return try await withServer(extraArguments: ["--egress-allow", "127.0.0.1"]) { server in
            let base = "http://127.0.0.1:\(server.port)/v1"
            let provider = JSONValue.object([
                "kind": "openai", "base_url": .string(embedder), "models": [.string(embedderModel)], "timeout": "120s",
            ])
            guard try await Self.call(.PUT, base + "/providers/local", body: provider.canonicalText).status == 201
            else {
                throw ValidationError("the provider was refused")
            }
            let collection = JSONValue.object([
                "embedding_model": .string("local/\(embedderModel)"), "chunking": ["size": 1000, "overlap": 100],
            ])
            _ = try await Self.call(.PUT, base + "/collections/local", body: collection.canonicalText)
            let text = Self.prose(seed: 1, bytes: 300_000)
            let start = ContinuousClock.now
            let added = try await Self.call(
                .POST,
                base + "/collections/local/documents?wait=0s",
                body: JSONValue.object(["name": "manual", "text": .string(text)]).canonicalText
            )
            guard let id = added.json["id"]?.stringValue else { throw ValidationError("the upload failed: \(added)") }
            var document: JSONValue = .null
            while document["status"] != "indexed" {
                try await Task.sleep(for: .milliseconds(200))
                document = try await Self.call(.GET, base + "/collections/local/documents/\(id)").json
                if document["status"] == "failed" { throw ValidationError("ingestion failed: \(document)") }
            }
            let seconds = Self.milliseconds(ContinuousClock.now - start) / 1000
            let chunks = Double(document["chunk_count"]?.numberValue ?? 0)
            var times: [Double] = []
            for index in 0..<60 {
                let query = JSONValue.object([
                    "query": .string(Self.prose(seed: 31 * index, bytes: 40, paragraphs: false)), "k": 10,
                ])
                let begin = ContinuousClock.now
                let found = try await Self.call(.POST, base + "/collections/local/search", body: query.canonicalText)
                guard found.status == 200 else { throw ValidationError("search failed: \(found)") }
                if index >= 10 { times.append(Self.milliseconds(ContinuousClock.now - begin)) }
            }
            times.sort()
            return [
                "local_chunks": chunks, "local_chunks_per_s": chunks / seconds,
                "local_search_p50_ms": Self.percentile(times, 0.5), "local_search_p99_ms": Self.percentile(times, 0.99),
            ]
        }
    }
}
