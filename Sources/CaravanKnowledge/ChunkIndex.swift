public import CaravanStorage
import Foundation
import Synchronization

/// The chunks of the collections this node searches, indexed in memory both ways: their vectors (normalized, laid
/// end to end, compared exactly by dot products: recall 1) and their words (an inverted index ranked by BM25). A
/// search reads no vector and no text from the database.
///
/// It is kept consistent with the stored chunks on every node and across restarts by the collection's
/// `generation`, which every write of chunks changes in its own transaction: a search reads it (one row by key),
/// and when it differs from the generation held, first reconciles the index with the stored chunk ids, loading the
/// chunks it lacks and marking those gone as dead (the index is rebuilt once a quarter of its rows are dead).
final class ChunkIndex: Sendable {
    /// BM25's parameters, as SQLite's FTS5 and Lucene use them.
    static let k1: Float = 1.2
    static let b: Float = 0.75

    /// One collection's chunks.
    struct Entry: Sendable {
        var generation: Int64
        var createdAt: Int64
        var ids: [Int64] = []
        var rows: [Int64: Int32] = [:]
        var live: [Bool] = []
        var liveCount = 0
        var dead = 0
        var vectors: [Float] = []
        var dimensions = 0
        /// Each word's postings: the rows that hold it and how often.
        var postings: [String: [(row: Int32, count: UInt16)]] = [:]
        /// Each row's length in words.
        var lengths: [UInt16] = []
        var liveWords = 0
        var lastUsed: UInt64 = 0

        init(generation: Int64, createdAt: Int64) {
            self.generation = generation
            self.createdAt = createdAt
        }

        mutating func append(id: Int64, text: String, vector: [Float]) {
            if dimensions == 0 { dimensions = vector.count }
            guard vector.count == dimensions else { return }  // another model's: not comparable
            let row = Int32(ids.count)
            ids.append(id)
            rows[id] = row
            live.append(true)
            liveCount += 1
            vectors += ChunkIndex.normalized(vector)
            var counts: [String: Int] = [:]
            let words = ChunkIndex.words(text)
            for word in words { counts[word, default: 0] += 1 }
            for (word, count) in counts { postings[word, default: []].append((row, UInt16(min(count, 65_535)))) }
            let length = UInt16(min(words.count, 65_535))
            lengths.append(length)
            liveWords += Int(length)
        }

        mutating func remove(id: Int64) {
            guard let row = rows[id], live[Int(row)] else { return }
            live[Int(row)] = false
            liveCount -= 1
            dead += 1
            liveWords -= Int(lengths[Int(row)])
            rows[id] = nil
        }
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

    // MARK: Searching

    /// The `k` chunks nearest to `query` (cosine similarity, best first) in the collection.
    func nearest(
        _ query: [Float],
        k: Int,
        orgID: String,
        collection: String,
        in database: any Database
    ) async throws -> [(id: Int64, score: Double)] {
        let entry = try await current(orgID: orgID, collection: collection, in: database)
        guard entry.dimensions > 0, query.count == entry.dimensions, k > 0 else { return [] }
        let normalized = Self.normalized(query)
        var best = TopScores(k: k)
        entry.vectors.withUnsafeBufferPointer { vectors in
            normalized.withUnsafeBufferPointer { query in
                for row in 0..<entry.ids.count where entry.live[row] {
                    best.offer(
                        row: row,
                        score: Self.dot(query, vectors, offset: row * entry.dimensions, count: entry.dimensions)
                    )
                }
            }
        }
        return best.ranked.map { (entry.ids[$0.row], Double($0.score)) }
    }

    /// The `k` chunks that best match `query`'s words (BM25, any of the words, best first) in the collection.
    func matching(
        _ query: String,
        k: Int,
        orgID: String,
        collection: String,
        in database: any Database
    ) async throws -> [(id: Int64, score: Double)] {
        let words = Array(Set(Self.words(query)).prefix(32))
        guard !words.isEmpty, k > 0 else { return [] }
        let entry = try await current(orgID: orgID, collection: collection, in: database)
        guard entry.liveCount > 0 else { return [] }
        let documents = Float(entry.liveCount)
        let averageLength = max(1, Float(entry.liveWords) / documents)
        var scores = [Float](repeating: 0, count: entry.ids.count)
        var touched: [Int32] = []
        for word in words {
            guard let postings = entry.postings[word] else { continue }
            let frequency = Float(postings.count)
            let idf = log(1 + (documents - frequency + 0.5) / (frequency + 0.5))
            for posting in postings where entry.live[Int(posting.row)] {
                let count = Float(posting.count)
                let length = Float(entry.lengths[Int(posting.row)])
                let weight = count * (Self.k1 + 1) / (count + Self.k1 * (1 - Self.b + Self.b * length / averageLength))
                if scores[Int(posting.row)] == 0 { touched.append(posting.row) }
                scores[Int(posting.row)] += idf * weight
            }
        }
        var best = TopScores(k: k)
        for row in touched { best.offer(row: Int(row), score: scores[Int(row)]) }
        return best.ranked.map { (entry.ids[$0.row], Double($0.score)) }
    }

    /// The best `k` of the scores offered, best first (ties: the earlier row first).
    struct TopScores {
        let k: Int
        var ranked: [(row: Int, score: Float)] = []
        var floor = -Float.infinity

        init(k: Int) {
            self.k = k
            ranked.reserveCapacity(k + 1)
        }

        mutating func offer(row: Int, score: Float) {
            guard ranked.count < k || score > floor else { return }
            let at = ranked.firstIndex { $0.score < score } ?? ranked.count
            ranked.insert((row, score), at: at)
            if ranked.count > k { ranked.removeLast() }
            floor = ranked.last?.score ?? -Float.infinity
        }
    }

    // MARK: Keeping up with the stored chunks

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

    /// Marks the chunks no longer stored as dead and loads those not yet held; rebuilds the entry from the
    /// database once a quarter of its rows are dead.
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
        for id in Array(entry.rows.keys) where !storedSet.contains(id) { entry.remove(id: id) }
        if entry.dead > 0, entry.dead * 4 >= entry.ids.count {
            entry = Entry(generation: entry.generation, createdAt: entry.createdAt)
        }
        let missing = stored.filter { entry.rows[$0] == nil }
        guard let first = missing.first else { return }
        let wanted = Set(missing)
        var after = first - 1
        while true {
            let from = after
            let rows = try await database.read { executor in
                try await executor.query(
                    """
                    SELECT id, text, vector FROM knowledge_chunks WHERE org_id = $1 AND collection = $2 AND id > $3
                    ORDER BY id LIMIT 4096
                    """,
                    [.text(orgID), .text(collection), .int(from)]
                )
            }
            for row in rows {
                let id = try row.int("id")
                after = id
                guard wanted.contains(id) else { continue }
                entry.append(
                    id: id,
                    text: try row.string("text"),
                    vector: KnowledgeStore.floats(try row.blob("vector"))
                )
            }
            if rows.count < 4096 { break }
        }
    }

    // MARK: Words and vectors

    /// The words of `text` as the index keeps them: lowercased runs of letters and digits.
    static func words(_ text: String) -> [String] {
        var words: [String] = []
        var word = String.UnicodeScalarView()
        func end() {
            if !word.isEmpty {
                words.append(String(word))
                word = String.UnicodeScalarView()
            }
        }
        for scalar in text.unicodeScalars {
            if scalar.isASCII {
                let value = scalar.value
                if value >= 0x61 && value <= 0x7A || value >= 0x30 && value <= 0x39 {
                    word.append(scalar)
                } else if value >= 0x41 && value <= 0x5A {
                    word.append(Unicode.Scalar(value + 0x20)!)
                } else {
                    end()
                }
            } else if scalar.properties.isAlphabetic || scalar.properties.numericType != nil {
                word.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            } else {
                end()
            }
        }
        end()
        return words
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
