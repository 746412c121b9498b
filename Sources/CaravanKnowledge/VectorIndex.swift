public import CaravanStorage
import Synchronization

/// The vectors of the collections this node searches, in memory: each collection's vectors normalized and laid end
/// to end, so a search is one pass of dot products (exact cosine, recall 1) and no read of the vectors. It is kept
/// consistent with the stored chunks on every node and across restarts by the collection's `generation`, which each
/// write of chunks changes in its own transaction: a search reads it (one row by key), and when it differs from the
/// generation held, first brings the index up to date, loading only the chunks it lacks and dropping those gone.
final class VectorIndex: Sendable {
    /// One collection's vectors.
    struct Entry: Sendable {
        var generation: Int64
        var createdAt: Int64
        var ids: [Int64] = []
        var vectors: [Float] = []
        var dimensions = 0
        var lastUsed: UInt64 = 0
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var clock: UInt64 = 0
    }

    private let state = Mutex(State())
    /// The most collections held at once; the least recently searched leaves first.
    let capacity: Int

    init(capacity: Int = 32) {
        self.capacity = capacity
    }

    /// The `k` chunks nearest to `query` (cosine similarity, best first) in the collection.
    func nearest(
        _ query: [Float],
        k: Int,
        orgID: String,
        collection: String,
        in database: any Database
    ) async throws -> [(id: Int64, similarity: Double)] {
        let entry = try await current(orgID: orgID, collection: collection, in: database)
        guard entry.dimensions > 0, query.count == entry.dimensions, k > 0 else { return [] }
        let normalized = Self.normalized(query)
        var best: [(id: Int64, similarity: Float)] = []
        best.reserveCapacity(k + 1)
        var floor = -Float.infinity
        entry.vectors.withUnsafeBufferPointer { vectors in
            normalized.withUnsafeBufferPointer { query in
                for row in 0..<entry.ids.count {
                    let score = Self.dot(query, vectors, offset: row * entry.dimensions, count: entry.dimensions)
                    guard best.count < k || score > floor else { continue }
                    let at = best.firstIndex { $0.similarity < score } ?? best.count
                    best.insert((entry.ids[row], score), at: at)
                    if best.count > k { best.removeLast() }
                    floor = best.last?.similarity ?? -Float.infinity
                }
            }
        }
        return best.map { ($0.id, Double($0.similarity)) }
    }

    /// The collection's entry, brought up to date with the stored chunks when its generation moved.
    private func current(orgID: String, collection: String, in database: any Database) async throws -> Entry {
        let key = orgID + "\u{0}" + collection
        guard
            let marker = try await database.read({ executor in
                try await executor.queryFirst(
                    "SELECT generation, created_at FROM knowledge_collections WHERE org_id = $1 AND name = $2",
                    [.text(orgID), .text(collection)]
                )
            })
        else { return Entry(generation: 0, createdAt: 0) }
        let generation = try marker.int("generation")
        let createdAt = try marker.int("created_at")
        let held = state.withLock { state -> Entry? in
            state.clock += 1
            state.entries[key]?.lastUsed = state.clock
            return state.entries[key]
        }
        if let held, held.generation == generation, held.createdAt == createdAt { return held }
        var entry =
            held.flatMap { $0.createdAt == createdAt ? $0 : nil } ?? Entry(generation: generation, createdAt: createdAt)
        entry.generation = generation
        try await reconcile(&entry, orgID: orgID, collection: collection, in: database)
        let updated = entry
        state.withLock { state in
            state.clock += 1
            var stored = updated
            stored.lastUsed = state.clock
            // A concurrent search may have brought a newer generation; keep the newer.
            if let other = state.entries[key], other.createdAt == stored.createdAt, other.generation > stored.generation
            {
                return
            }
            state.entries[key] = stored
            while state.entries.count > capacity,
                let oldest = state.entries.min(by: { $0.value.lastUsed < $1.value.lastUsed })?.key
            {
                state.entries[oldest] = nil
            }
        }
        return updated
    }

    /// Drops the chunks no longer stored and loads those not yet held.
    private func reconcile(
        _ entry: inout Entry,
        orgID: String,
        collection: String,
        in database: any Database
    )
        async throws
    {
        let stored = try await database.read { executor in
            try await executor.query(
                "SELECT id FROM knowledge_chunks WHERE org_id = $1 AND collection = $2 ORDER BY id",
                [.text(orgID), .text(collection)]
            ).map { try $0.int("id") }
        }
        let storedSet = Set(stored)
        let heldSet = Set(entry.ids)
        if heldSet.contains(where: { !storedSet.contains($0) }) {
            var ids: [Int64] = []
            var vectors: [Float] = []
            ids.reserveCapacity(stored.count)
            vectors.reserveCapacity(stored.count * entry.dimensions)
            for (row, id) in entry.ids.enumerated() where storedSet.contains(id) {
                ids.append(id)
                vectors += entry.vectors[(row * entry.dimensions)..<((row + 1) * entry.dimensions)]
            }
            entry.ids = ids
            entry.vectors = vectors
        }
        let missing = stored.filter { !heldSet.contains($0) }
        guard let first = missing.first else { return }
        let wanted = Set(missing)
        var after = first - 1
        while true {
            let from = after
            let rows = try await database.read { executor in
                try await executor.query(
                    """
                    SELECT id, vector FROM knowledge_chunks WHERE org_id = $1 AND collection = $2 AND id > $3
                    ORDER BY id LIMIT 4096
                    """,
                    [.text(orgID), .text(collection), .int(from)]
                )
            }
            for row in rows {
                let id = try row.int("id")
                after = id
                guard wanted.contains(id) else { continue }
                let vector = KnowledgeStore.floats(try row.blob("vector"))
                if entry.dimensions == 0 { entry.dimensions = vector.count }
                guard vector.count == entry.dimensions else { continue }  // another model's: not comparable
                entry.ids.append(id)
                entry.vectors += Self.normalized(vector)
            }
            if rows.count < 4096 { break }
        }
    }

    static func normalized(_ vector: [Float]) -> [Float] {
        var norm: Float = 0
        for value in vector { norm += value * value }
        guard norm > 0 else { return vector }
        let scale = 1 / norm.squareRoot()
        return vector.map { $0 * scale }
    }

    /// The dot product of `query` and the `count` floats of `vectors` from `offset`, eight lanes at a time.
    @inline(__always)
    static func dot(
        _ query: UnsafeBufferPointer<Float>,
        _ vectors: UnsafeBufferPointer<Float>,
        offset: Int,
        count: Int
    ) -> Float {
        var sum = SIMD8<Float>()
        var index = 0
        let base = vectors.baseAddress! + offset
        let q = query.baseAddress!
        while index + 8 <= count {
            let a = UnsafeRawPointer(q + index).loadUnaligned(as: SIMD8<Float>.self)
            let b = UnsafeRawPointer(base + index).loadUnaligned(as: SIMD8<Float>.self)
            sum += a * b
            index += 8
        }
        var total = sum.sum()
        while index < count {
            total += q[index] * base[index]
            index += 1
        }
        return total
    }
}
