import ArgumentParser
import CaravanCore
import CaravanHarness
import Foundation
import NIOHTTP1

extension Bench {
    /// Knowledge collections through the API, with a local fake embedder (deterministic vectors): ingestion of plain
    /// text (MB/s, until indexed) and of a long PDF (pages/s), the server's peak RSS while ingesting the corpus, and
    /// hybrid search (k = 10) over `knowledgeChunks` chunks of 384 dimensions (p50, p99).
    func knowledge() async throws -> [String: Double] {
        try await FakeOpenAIServer.with { fake in
            try await withServer(extraArguments: ["--egress-allow", "127.0.0.1"]) { server in
                let base = "http://127.0.0.1:\(server.port)/v1"
                let provider =
                    #"{"kind": "openai", "base_url": "\#(fake.baseURL)", "models": ["e-dims-8", "e-dims-384"]}"#
                guard try await Self.call(.PUT, base + "/providers/local", body: provider).status == 201 else {
                    throw ValidationError("the provider was refused")
                }
                var figures: [String: Double] = [:]

                // Ingestion: `knowledgeMegabytes` of text in 4 MB documents, 4 at a time, 8 dimensions (the
                // embedder's cost kept small: this measures extraction, chunking and storage).
                let corpus = #"{"embedding_model": "local/e-dims-8", "chunking": {"size": 1000, "overlap": 100}}"#
                _ = try await Self.call(.PUT, base + "/collections/corpus", body: corpus)
                let documentBytes = 4_000_000
                let documents = max(1, knowledgeMegabytes * 1_000_000 / documentBytes)
                let start = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<documents {
                        if index >= 4 { try await group.next() }
                        group.addTask {
                            let text = Self.prose(seed: index, bytes: documentBytes)
                            let body = JSONValue.object(["name": .string("doc-\(index)"), "text": .string(text)])
                            let added = try await Self.call(
                                .POST,
                                base + "/collections/corpus/documents?wait=60s",
                                body: body.canonicalText
                            )
                            guard added.status == 201 else { throw ValidationError("ingestion failed: \(added)") }
                        }
                    }
                    try await group.waitForAll()
                }
                let seconds = Self.milliseconds(ContinuousClock.now - start) / 1000
                figures["ingest_text_mb_per_s"] = Double(documents * documentBytes) / 1_000_000 / seconds
                figures["ingest_server_cpu_s_per_mb"] =
                    Self.cpuSeconds(pid: server.pid) / (Double(documents * documentBytes) / 1_000_000)
                figures["ingest_peak_rss_mb"] = Self.peakRSS(pid: server.pid)

                // A PDF of 1,000 pages, uploaded and indexed.
                let pages = 1_000
                let pdf = SyntheticPDF.document(pages: pages, linesPerPage: 20) { page, line in
                    Self.prose(seed: page * 20 + line, bytes: 70, paragraphs: false)
                }
                let boundary = "bench-boundary"
                let head =
                    "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"manual.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
                let form = head + pdf + "\r\n--\(boundary)--\r\n"
                let pdfStart = ContinuousClock.now
                let uploaded = try await Self.call(
                    .POST,
                    base + "/collections/corpus/documents?wait=60s",
                    body: form,
                    contentType: "multipart/form-data; boundary=\(boundary)"
                )
                guard uploaded.status == 201 else { throw ValidationError("the PDF was refused: \(uploaded)") }
                figures["ingest_pdf_pages_per_s"] =
                    Double(pages) / (Self.milliseconds(ContinuousClock.now - pdfStart) / 1000)

                // Search over chunks of 384 dimensions: documents of 1,000 chunks of about 200 characters.
                let vectors = #"{"embedding_model": "local/e-dims-384", "chunking": {"size": 220, "overlap": 0}}"#
                _ = try await Self.call(.PUT, base + "/collections/search", body: vectors)
                let perDocument = 1_000
                let loadStart = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<(knowledgeChunks / perDocument) {
                        if index >= 2 { try await group.next() }
                        group.addTask {
                            let paragraphs = (0..<perDocument).map {
                                Self.prose(seed: index * perDocument + $0, bytes: 200, paragraphs: false)
                            }
                            let body = JSONValue.object([
                                "name": .string("part-\(index)"), "text": .string(paragraphs.joined(separator: "\n\n")),
                            ])
                            let added = try await Self.call(
                                .POST,
                                base + "/collections/search/documents?wait=60s",
                                body: body.canonicalText
                            )
                            guard added.status == 201, added.json["chunk_count"] == .int(Int64(perDocument)) else {
                                throw ValidationError("loading failed: \(added)")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                figures["search_load_s"] = Self.milliseconds(ContinuousClock.now - loadStart) / 1000
                for mode in ["hybrid", "vector", "text"] {
                    var times: [Double] = []
                    for index in 0..<(mode == "hybrid" ? 1_100 : 550) {
                        let words = Self.prose(seed: 7_919 * index, bytes: 40, paragraphs: false)
                        let query = JSONValue.object(["query": .string(words), "k": 10, "mode": .string(mode)])
                        let begin = ContinuousClock.now
                        let found = try await Self.call(
                            .POST,
                            base + "/collections/search/search",
                            body: query.canonicalText
                        )
                        guard found.status == 200, found.json["items"]?.arrayValue?.count == 10 else {
                            throw ValidationError("search failed: \(found)")
                        }
                        if index >= 50 { times.append(Self.milliseconds(ContinuousClock.now - begin)) }
                    }
                    times.sort()
                    figures["search_\(mode)_p50_ms"] = Self.percentile(times, 0.5)
                    figures["search_\(mode)_p99_ms"] = Self.percentile(times, 0.99)
                }
                figures["search_chunks"] = Double(knowledgeChunks)
                figures["search_peak_rss_mb"] = Self.peakRSS(pid: server.pid)
                return figures
            }
        }
    }

    /// Words, deterministic for `seed`, about `bytes` long: two in three from a small vocabulary, one in three a
    /// rarer token of 20,000 (as names, part numbers and terms are); with `paragraphs`, a blank line every 12.
    static func prose(seed: Int, bytes: Int, paragraphs: Bool = true) -> String {
        let vocabulary = [
            "invoice", "contract", "kettle", "warranty", "refund", "shipping", "battery", "manual", "customer",
            "supplier", "payment", "delivery", "install", "repair", "ticket", "account", "order", "price", "stock",
            "return", "policy", "service", "support", "engine", "filter", "valve", "sensor", "cable", "display",
            "report", "quarter", "budget", "forecast", "margin", "region", "audit", "license", "renewal", "term",
        ]
        var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 | 1
        var text = ""
        text.reserveCapacity(bytes + 16)
        var words = 0
        while text.utf8.count < bytes {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            text +=
                state % 3 == 0 ? "k\((state >> 8) % 20_000)" : vocabulary[Int((state >> 8) % UInt64(vocabulary.count))]
            words += 1
            text += paragraphs && words % 12 == 0 ? ".\n\n" : " "
        }
        return text
    }
}
