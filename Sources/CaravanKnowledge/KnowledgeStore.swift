public import CaravanAgents
public import CaravanCore
import CaravanModels
public import CaravanStorage
import Crypto
import Foundation

/// A collection: where its documents' chunks are kept, the model that embeds them, how they are cut.
/// A document accepted for a collection, its text extracted, waiting for its ingestion run to write it.
public struct AcceptedDocument: Sendable {
    public var id: String
    public var orgID: String
    public var collection: String
    public var name: String
    public var format: DocumentFormat
    public var sha256: String
    public var metadata: JSONValue
    public var text: String
    public var acceptedAt: Int64
}

public struct KnowledgeCollection: Sendable {
    public var name: String
    /// `provider/model`, called through the gateway (metered, budgets apply).
    public var embeddingModel: String
    public var chunker: TextChunker
    public var createdAt: Int64
    public var updatedAt: Int64

    public var json: JSONValue {
        [
            "name": .string(name), "embedding_model": .string(embeddingModel),
            "chunking": ["size": .int(Int64(chunker.size)), "overlap": .int(Int64(chunker.overlap))],
            "created_at": .string(Clock.rfc3339(createdAt)), "updated_at": .string(Clock.rfc3339(updatedAt)),
        ]
    }
}

/// How a search ranks: by meaning (vectors), by words (full text), or both fused by reciprocal rank.
public enum SearchMode: String, Sendable, CaseIterable {
    case hybrid, vector, text
}

/// The organizations' knowledge: collections, documents (accepted, then cut, embedded and indexed by a run of the
/// engine: see `DocumentIngestion`), and search over them. Vectors (exact cosine) and words (BM25) are ranked in
/// this node's `ChunkIndex`.
public final class KnowledgeStore: Sendable {
    let database: any Database
    let gateway: ModelGateway
    let clock: WallClock
    /// This node's in-memory index (vectors and words) of the collections it searches.
    let chunkIndex = ChunkIndex()

    /// The most a document's text may hold, in bytes.
    public static let maxDocumentBytes = 4 << 20
    /// Chunks embedded per call of the model.
    static let embeddingBatch = 64
    /// Calls of the model an ingestion makes at once.
    static let embeddingCalls = 4

    public init(database: any Database, gateway: ModelGateway, clock: WallClock = .system) {
        self.database = database
        self.gateway = gateway
        self.clock = clock
    }

    // MARK: Collections

    /// Creates or changes a collection from `{embedding_model, chunking?: {size, overlap}}`. A changed model or
    /// chunking applies to documents added from then on.
    public func putCollection(orgID: String, name: String, body: JSONValue) async throws -> (KnowledgeCollection, Bool)
    {
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        for key in object.keys.sorted() where !["embedding_model", "chunking", "name"].contains(key) {
            throw CaravanError.validation("/" + key, "is not a field of a collection")
        }
        guard let model = object["embedding_model"]?.stringValue, ModelRef(parsing: model) != nil else {
            throw CaravanError.validation("/embedding_model", "is required: an embedding model as provider/model")
        }
        var size: Int64 = 1_000
        var overlap: Int64 = 100
        if let chunking = object["chunking"] {
            guard let fields = chunking.objectValue, Set(fields.keys).isSubset(of: ["size", "overlap"]) else {
                throw CaravanError.validation("/chunking", "must be {size, overlap} in characters")
            }
            if let value = fields["size"] {
                guard case .int(let number) = value, (50...20_000).contains(number) else {
                    throw CaravanError.validation("/chunking/size", "must be an integer from 50 to 20,000 characters")
                }
                size = number
            }
            if let value = fields["overlap"] {
                guard case .int(let number) = value, number >= 0, number < size else {
                    throw CaravanError.validation("/chunking/overlap", "must be an integer from 0 to less than size")
                }
                overlap = number
            }
        }
        let now = clock.nowMilliseconds()
        let (chunkSize, chunkOverlap) = (size, overlap)
        let created = try await database.withTransaction { executor in
            let inserted = try await executor.query(
                """
                INSERT INTO knowledge_collections (org_id, name, embedding_model, chunk_size, chunk_overlap, created_at,
                    updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $6)
                ON CONFLICT (org_id, name) DO UPDATE SET embedding_model = $3, chunk_size = $4, chunk_overlap = $5,
                    updated_at = $6
                RETURNING created_at
                """,
                [.text(orgID), .text(name), .text(model), .int(chunkSize), .int(chunkOverlap), .int(now)]
            )
            return try inserted.first?.int("created_at") == now
        }
        guard let collection = try await collection(orgID: orgID, name: name) else {
            throw CaravanError(.internal, "The collection was not stored.")
        }
        return (collection, created)
    }

    public func collection(orgID: String, name: String) async throws -> KnowledgeCollection? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM knowledge_collections WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(name)]
            ).map(Self.collection)
        }
    }

    public func collections(orgID: String, after cursor: String?, limit: Int) async throws -> [KnowledgeCollection] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM knowledge_collections WHERE org_id = $1 AND name > $2 ORDER BY name LIMIT $3",
                [.text(orgID), .text(cursor ?? ""), .int(Int64(limit))]
            ).map(Self.collection)
        }
    }

    /// Deletes a collection with its documents, chunks and vectors. - Returns: whether there was one.
    public func deleteCollection(orgID: String, name: String) async throws -> Bool {
        try await database.withTransaction { executor in

            !(try await executor.query(
                "DELETE FROM knowledge_collections WHERE org_id = $1 AND name = $2 RETURNING name",
                [.text(orgID), .text(name)]
            )).isEmpty
        }
    }

    // MARK: Documents

    /// Accepts a document for its collection: its text extracted (a malformed one refused here, before anything
    /// changes) and hashed. Its rows are written by `write(_:in:)`, in the transaction of its ingestion run.
    /// - Throws: `not_found` (the collection), `validation_failed`, `payload_too_large`.
    public func accept(
        orgID: String,
        collection name: String,
        document: String,
        text source: String,
        format: DocumentFormat,
        metadata: JSONValue
    ) async throws -> AcceptedDocument {
        guard let collection = try await collection(orgID: orgID, name: name) else {
            throw CaravanError.notFound("The collection '\(name)'")
        }
        let text = try TextExtractor.text(of: source, format: format)
        guard text.utf8.count <= Self.maxDocumentBytes else {
            throw CaravanError(.payloadTooLarge, "The document's text is larger than \(Self.maxDocumentBytes) bytes.")
        }
        let now = clock.nowMilliseconds()
        return AcceptedDocument(
            id: Identifier.make("doc", milliseconds: now),
            orgID: orgID,
            collection: name,
            name: document,
            format: format,
            sha256: Self.digest(text, collection: collection),
            metadata: metadata,
            text: text,
            acceptedAt: now
        )
    }

    /// What identifies a document's chunks and vectors: its text, cut and embedded as the collection says.
    static func digest(_ text: String, collection: KnowledgeCollection) -> String {
        SHA256.hash(
            data: Data(
                "\(collection.embeddingModel)\n\(collection.chunker.size)/\(collection.chunker.overlap)\n\(text)".utf8
            )
        ).map { String(format: "%02x", $0) }.joined()
    }

    /// Writes accepted documents, each with the id of the run that ingests it, replacing the document of the same
    /// name: a `RunCompanion` writer. A document whose collection is gone by then is not written (its run finds
    /// nothing to do).
    public static func write(
        _ accepted: [(runID: String, row: AcceptedDocument)],
        in executor: any SQLExecutor
    )
        async throws
    {
        for (runID, document) in accepted {
            if let old = try await executor.queryFirst(
                "SELECT id FROM knowledge_documents WHERE org_id = $1 AND collection = $2 AND name = $3",
                [.text(document.orgID), .text(document.collection), .text(document.name)]
            ) {
                try await deleteDocument(id: try old.string("id"), in: executor)
            }
            try await executor.execute(
                """
                INSERT INTO knowledge_documents (id, org_id, collection, name, format, sha256, metadata, characters,
                    chunks, created_at, status, run_id)
                SELECT $1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 'ingesting', $10
                WHERE EXISTS (SELECT 1 FROM knowledge_collections WHERE org_id = $2 AND name = $3)
                ON CONFLICT DO NOTHING
                """,
                [
                    .text(document.id), .text(document.orgID), .text(document.collection), .text(document.name),
                    .text(document.format.rawValue), .text(document.sha256), .json(document.metadata),
                    .int(Int64(document.text.count)), .int(document.acceptedAt), .text(runID),
                ]
            )
            try await executor.execute(
                """
                INSERT INTO knowledge_sources (document_id, text)
                SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM knowledge_documents WHERE id = $1)
                ON CONFLICT DO NOTHING
                """,
                [.text(document.id), .text(document.text)]
            )
        }
    }

    /// Cuts, embeds and indexes the accepted document `id` a batch at a time, each batch committed before the next
    /// is embedded, so that a crash or a retry resumes after the chunks already stored and embeds none of them
    /// again; a document whose text is already indexed in the collection takes that document's vectors. Ends by
    /// marking it `indexed` and dropping its source text.
    /// - Parameter progress: told as batches are stored, every 1,024 chunks and at the end (chunks stored, in all).
    /// - Returns: `{document, status, chunks, embedded}`; status `deleted` for a document deleted meanwhile.
    public func ingest(
        orgID: String,
        documentID id: String,
        runID: String,
        progress: @Sendable (Int, Int) async throws -> Void
    ) async throws -> JSONValue {
        let row = try await database.read { executor in
            try await executor.queryFirst(
                """
                SELECT d.collection, d.sha256, d.status, d.chunks, s.text AS source FROM knowledge_documents d
                LEFT JOIN knowledge_sources s ON s.document_id = d.id WHERE d.org_id = $1 AND d.id = $2
                """,
                [.text(orgID), .text(id)]
            )
        }
        guard let row else { return ["document": .string(id), "status": "deleted"] }
        let name = try row.string("collection")
        guard try row.string("status") != "indexed" else {
            return ["document": .string(id), "status": "indexed", "chunks": .int(try row.int("chunks"))]
        }
        guard let text = try row.optionalString("source"),
            let collection = try await collection(orgID: orgID, name: name)
        else { return ["document": .string(id), "status": "deleted"] }
        let chunks = collection.chunker.chunks(text)
        let next = try await database.read { executor in
            try await executor.queryFirst(
                "SELECT COALESCE(MAX(position) + 1, 0) AS next FROM knowledge_chunks WHERE document_id = $1",
                [.text(id)]
            )?.int("next") ?? 0
        }
        var embedded = false
        var start = Int(next)
        if start == 0, let copied = try await vectors(sha256: try row.string("sha256"), orgID: orgID, collection: name),
            copied.count == chunks.count, !chunks.isEmpty
        {
            guard try await store(chunks, vectors: copied, from: 0, documentID: id, orgID: orgID, collection: name)
            else { return ["document": .string(id), "status": "deleted"] }
            start = chunks.count
        }
        // A few calls of the model at once make a group, stored in one transaction; the next group is embedded
        // while one is stored.
        let model = collection.embeddingModel
        let groupSize = Self.embeddingBatch * Self.embeddingCalls
        @Sendable func embedGroup(from first: Int) async throws -> [[UInt8]] {
            guard first < chunks.count else { return [] }
            let group = Array(chunks[first..<min(chunks.count, first + groupSize)])
            return try await withThrowingTaskGroup(of: (Int, [[UInt8]]).self) { calls in
                for offset in stride(from: 0, to: group.count, by: Self.embeddingBatch) {
                    let batch = Array(group[offset..<min(group.count, offset + Self.embeddingBatch)])
                    calls.addTask {
                        (offset, try await self.embed(batch, model: model, orgID: orgID, runID: runID).map(Self.bytes))
                    }
                }
                var parts: [(Int, [[UInt8]])] = []
                for try await part in calls { parts.append(part) }
                return parts.sorted { $0.0 < $1.0 }.flatMap(\.1)
            }
        }
        var vectors = try await embedGroup(from: start)
        var reported = start
        while start < chunks.count {
            embedded = true
            let next = start + vectors.count
            async let upcoming = embedGroup(from: next)
            let group = Array(chunks[start..<next])
            guard try await store(group, vectors: vectors, from: start, documentID: id, orgID: orgID, collection: name)
            else { return ["document": .string(id), "status": "deleted"] }
            // Progress is told every 1,024 chunks or so, and at the end: each telling is a commit of its own.
            if next - reported >= 1_024 || next == chunks.count {
                try await progress(next, chunks.count)
                reported = next
            }
            start = next
            vectors = try await upcoming
        }
        let count = Int64(chunks.count)
        try await database.withTransaction { executor in
            try await executor.execute(
                "UPDATE knowledge_documents SET status = 'indexed', chunks = $2 WHERE id = $1",
                [.text(id), .int(count)]
            )
            try await executor.execute("DELETE FROM knowledge_sources WHERE document_id = $1", [.text(id)])
        }
        return ["document": .string(id), "status": "indexed", "chunks": .int(count), "embedded": .bool(embedded)]
    }

    /// The vectors of an indexed document of the collection with the digest `sha256`, in order.
    private func vectors(sha256: String, orgID: String, collection: String) async throws -> [[UInt8]]? {
        let rows = try await database.read { executor in
            try await executor.query(
                """
                SELECT c.vector FROM knowledge_chunks c
                WHERE c.document_id = (SELECT id FROM knowledge_documents WHERE org_id = $1 AND collection = $2
                    AND sha256 = $3 AND status = 'indexed' LIMIT 1)
                ORDER BY c.position
                """,
                [.text(orgID), .text(collection), .text(sha256)]
            )
        }
        return rows.isEmpty ? nil : try rows.map { try $0.blob("vector") }
    }

    /// Stores chunks from `position` on, with their vectors, in one transaction; a chunk
    /// already stored (a batch committed by an attempt that did not live to say so) is kept as it is.
    /// - Returns: `false` when the document is gone.
    private func store(
        _ chunks: [String],
        vectors: [[UInt8]],
        from position: Int,
        documentID: String,
        orgID: String,
        collection: String
    ) async throws -> Bool {
        try await database.withTransaction { executor in
            guard
                try await executor.queryFirst(
                    "SELECT id FROM knowledge_documents WHERE id = $1",
                    [.text(documentID)]
                ) != nil
            else { return false }
            try await executor.execute(
                "UPDATE knowledge_collections SET generation = generation + 1 WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(collection)]
            )
            // A statement for up to 256 chunks: one round trip to PostgreSQL, not one a chunk.
            for first in stride(from: 0, to: chunks.count, by: 256) {
                let rows = first..<min(chunks.count, first + 256)
                var values: [String] = []
                var parameters: [SQLValue] = [.text(documentID), .text(orgID), .text(collection)]
                for offset in rows {
                    let at = parameters.count
                    values.append("($1, $2, $3, $\(at + 1), $\(at + 2), $\(at + 3))")
                    parameters += [.int(Int64(position + offset)), .text(chunks[offset]), .blob(vectors[offset])]
                }
                try await executor.execute(
                    """
                    INSERT INTO knowledge_chunks (document_id, org_id, collection, position, text, vector)
                    VALUES \(values.joined(separator: ", ")) ON CONFLICT DO NOTHING
                    """,
                    parameters
                )
            }
            return true
        }
    }

    public func documents(
        orgID: String,
        collection: String,
        after cursor: String?,
        limit: Int
    ) async throws
        -> [JSONValue]
    {
        try await database.read { executor in
            try await executor.query(
                """
                SELECT * FROM knowledge_documents WHERE org_id = $1 AND collection = $2 AND id > $3 ORDER BY id LIMIT $4
                """,
                [.text(orgID), .text(collection), .text(cursor ?? ""), .int(Int64(limit))]
            ).map(Self.document)
        }
    }

    /// A document, with its chunks unless `withChunks` is false.
    public func document(
        orgID: String,
        collection: String,
        id: String,
        withChunks: Bool = true
    ) async throws
        -> JSONValue?
    {
        try await database.read { executor in
            guard
                let row = try await executor.queryFirst(
                    "SELECT * FROM knowledge_documents WHERE org_id = $1 AND collection = $2 AND id = $3",
                    [.text(orgID), .text(collection), .text(id)]
                ), case .object(var json) = try Self.document(row)
            else { return nil }
            guard withChunks else { return .object(json) }
            json["chunks"] = .array(
                try await executor.query(
                    "SELECT position, text FROM knowledge_chunks WHERE document_id = $1 ORDER BY position",
                    [.text(id)]
                ).map { row in ["position": .int(try row.int("position")), "text": .string(try row.string("text"))] }
            )
            return .object(json)
        }
    }

    public func deleteDocument(orgID: String, collection: String, id: String) async throws -> Bool {
        try await database.withTransaction { executor in
            guard
                try await executor.queryFirst(
                    "SELECT id FROM knowledge_documents WHERE org_id = $1 AND collection = $2 AND id = $3",
                    [.text(orgID), .text(collection), .text(id)]
                ) != nil
            else { return false }
            try await Self.deleteDocument(id: id, in: executor)
            return true
        }
    }

    static func deleteDocument(id: String, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            """
            UPDATE knowledge_collections SET generation = generation + 1
            WHERE (org_id, name) = (SELECT org_id, collection FROM knowledge_documents WHERE id = $1)
            """,
            [.text(id)]
        )
        try await executor.execute("DELETE FROM knowledge_documents WHERE id = $1", [.text(id)])
    }

    // MARK: Search

    /// The `k` best chunks for `query`: with their document, position, score and text. `filter` keeps the chunks
    /// whose document's metadata holds each of its keys with that value.
    public func search(
        orgID: String,
        collection name: String,
        query: String,
        k: Int,
        mode: SearchMode,
        filter: [String: JSONValue],
        requestID: String?
    ) async throws -> [JSONValue] {
        guard let collection = try await collection(orgID: orgID, name: name) else {
            throw CaravanError.notFound("The collection '\(name)'")
        }
        // Fusion and filters need more candidates than they answer.
        let wanted = mode == .hybrid || !filter.isEmpty ? max(k * 10, 50) : k
        var vectorRanked: [Int64] = []
        var textRanked: [Int64] = []
        var scores: [Int64: Double] = [:]
        if mode != .text {
            let queryVector =
                try await embed([query], model: collection.embeddingModel, orgID: orgID, requestID: requestID)
                .first ?? []
            for (id, similarity) in try await chunkIndex.nearest(
                queryVector,
                k: wanted,
                orgID: orgID,
                collection: name,
                in: database
            ) {
                vectorRanked.append(id)
                scores[id] = similarity
            }
        }
        if mode != .vector {
            for (id, score) in try await chunkIndex.matching(
                query,
                k: wanted,
                orgID: orgID,
                collection: name,
                in: database
            ) {
                textRanked.append(id)
                if mode == .text { scores[id] = score }
            }
        }
        var ranked: [Int64]
        switch mode {
        case .vector: ranked = vectorRanked
        case .text: ranked = textRanked
        case .hybrid:
            // Reciprocal rank fusion: 1 / (60 + rank) from each list.
            var fused: [Int64: Double] = [:]
            for list in [vectorRanked, textRanked] {
                for (rank, id) in list.enumerated() { fused[id, default: 0] += 1 / Double(61 + rank) }
            }
            ranked = fused.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
            scores = fused
        }
        guard !ranked.isEmpty else { return [] }
        // By primary keys alone, so that no planner (PostgreSQL's before it has statistics of a table just
        // filled) prefers to scan the collection; the chunks' collection is checked here.
        let ids = ranked.map(String.init).joined(separator: ",")
        let (chunkRows, documentRows) = try await database.read { executor -> ([SQLRow], [SQLRow]) in
            let chunks = try await executor.query(
                "SELECT id, org_id, collection, document_id, position, text FROM knowledge_chunks WHERE id IN (\(ids))",
                []
            )
            let documentIDs = Array(Set(try chunks.map { try $0.string("document_id") }))
            guard !documentIDs.isEmpty else { return (chunks, [SQLRow]()) }
            let documents = try await executor.query(
                """
                SELECT id, name, metadata FROM knowledge_documents
                WHERE id IN (\(documentIDs.indices.map { "$\($0 + 1)" }.joined(separator: ","))) AND status = 'indexed'
                """,
                documentIDs.map(SQLValue.text)
            )
            return (chunks, documents)
        }
        var documents: [String: SQLRow] = [:]
        for row in documentRows { documents[try row.string("id")] = row }
        var byID: [Int64: (chunk: SQLRow, document: SQLRow)] = [:]
        for row in chunkRows where try row.string("org_id") == orgID && row.string("collection") == name {
            if let document = documents[try row.string("document_id")] { byID[try row.int("id")] = (row, document) }
        }
        var results: [JSONValue] = []
        for id in ranked {
            guard let (chunk, document) = byID[id] else { continue }
            let metadata = try document.json("metadata") ?? [:]
            guard filter.allSatisfy({ metadata[$0.key] == $0.value }) else { continue }
            results.append([
                "chunk_id": .int(id), "document_id": .string(try chunk.string("document_id")),
                "document": .string(try document.string("name")), "position": .int(try chunk.int("position")),
                "score": .double(((scores[id] ?? 0) * 1_000_000).rounded() / 1_000_000),
                "text": .string(try chunk.string("text")), "metadata": metadata,
            ])
            if results.count == k { break }
        }
        return results
    }

    // MARK: Vectors

    private func embed(
        _ texts: [String],
        model: String,
        orgID: String,
        requestID: String? = nil,
        runID: String? = nil
    ) async throws -> [[Float]] {
        guard let ref = ModelRef(parsing: model) else {
            throw CaravanError.validation("/embedding_model", "is not provider/model")
        }
        var context = ModelCallContext(orgID: orgID)
        context.requestID = requestID
        context.runID = runID
        context.endpoint = "embeddings"
        let body: JSONValue = ["model": .string(ref.model), "input": .array(texts.map(JSONValue.string))]
        let answer: Embeddings
        do { answer = try await gateway.embed(body, ref: ref, context: context) } catch {
            throw CaravanError(
                CaravanError.Code(error.code.rawValue, status: error.code.rawValue == "budget_exceeded" ? 402 : 502),
                "The embedding model could not embed: \(error.message)"
            )
        }
        let data = answer.json["data"]?.arrayValue ?? []
        guard data.count == texts.count else {
            throw CaravanError(
                .providerError,
                "The embedding model answered \(data.count) vectors for \(texts.count) texts."
            )
        }
        return data.map { item in (item["embedding"]?.arrayValue ?? []).map { Float($0.numberValue ?? 0) } }
    }

    static func bytes(_ vector: [Float]) -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(vector.count * 4)
        for value in vector { withUnsafeBytes(of: value.bitPattern.littleEndian) { raw += $0 } }
        return raw
    }

    static func floats(_ bytes: [UInt8]) -> [Float] {
        stride(from: 0, to: bytes.count - 3, by: 4).map { index in
            Float(
                bitPattern: UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16
                    | UInt32(bytes[index + 3]) << 24
            )
        }
    }

    // MARK: Rows

    static func collection(_ row: SQLRow) throws -> KnowledgeCollection {
        KnowledgeCollection(
            name: try row.string("name"),
            embeddingModel: try row.string("embedding_model"),
            chunker: TextChunker(size: Int(try row.int("chunk_size")), overlap: Int(try row.int("chunk_overlap"))),
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
    }

    static func document(_ row: SQLRow) throws -> JSONValue {
        [
            "id": .string(try row.string("id")), "name": .string(try row.string("name")),
            "collection": .string(try row.string("collection")), "format": .string(try row.string("format")),
            "sha256": .string(try row.string("sha256")), "metadata": try row.json("metadata") ?? [:],
            "characters": .int(try row.int("characters")), "chunk_count": .int(try row.int("chunks")),
            "status": .string(try row.string("status")),
            "run_id": try row.optionalString("run_id").map(JSONValue.string) ?? .null,
            "created_at": .string(Clock.rfc3339(try row.int("created_at"))),
        ]
    }
}

extension KnowledgeStore: KnowledgeSearcher {
    /// An agent's `knowledge` tool: a hybrid search.
    public func search(orgID: String, collection: String, query: String, k: Int) async throws -> [JSONValue] {
        try await search(
            orgID: orgID,
            collection: collection,
            query: query,
            k: k,
            mode: .hybrid,
            filter: [:],
            requestID: nil
        )
    }
}
