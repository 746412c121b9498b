import CaravanCore
import CaravanStorage
import Synchronization

/// Writes delivery records, and the buffered events of batching triggers, through one group committer: the
/// records of concurrent deliveries share one transaction (one disk flush), and each caller returns only once its
/// own record has committed. A buffered event is inserted in the same transaction as its accepted record, so a
/// replay finds one or the other complete, never half.
///
/// Refusals are bounded: refusals by rate limit are counted in one row per trigger and minute, and other refusals
/// get a row each up to `refusalRowsPerMinute` per trigger and minute, then are counted the same way, so that a
/// flood of bad requests cannot fill the disk.
final class DeliveryLog: Sendable {
    /// A unit of work: a record, with the event to buffer when the delivery joins a batch.
    struct Entry: Sendable {
        var triggerID: String
        var record: DeliveryRecord
        /// The rendered events and their sizes, for a batching trigger's accepted delivery (one, or one per item
        /// of a split delivery).
        var buffered: [(event: String, bytes: Int)]?
    }

    private struct Counted: Hashable {
        var triggerID: String
        var bucket: Int64
        var reason: String
        var status: Int
    }

    private struct Counters {
        var counted: [Counted: Int] = [:]
        /// Refusal rows written per trigger in the current minute.
        var rows: [String: (minute: Int64, count: Int)] = [:]
    }

    static let refusalRowsPerMinute = 60

    let queue: CommitQueue<Entry, Bool>
    private let database: any Database
    private let counters = Mutex(Counters())

    init(database: any Database) {
        self.database = database
        queue = CommitQueue(database: database, maxBatch: 500) { entries, executor in
            try await Self.apply(entries, in: executor)
        }
    }

    /// Writes `entry` and waits for its commit.
    /// - Returns: whether the record was inserted (`false`: an accepted delivery id already recorded).
    func write(_ entry: Entry) async throws -> Bool {
        try await queue.submit(entry)
    }

    /// Records a refusal: as a row of its own while the trigger's refusals this minute are few, else counted.
    func refuse(triggerID: String, record: DeliveryRecord) async throws {
        let minute = record.receivedAt / 60_000
        let ownRow = counters.withLock { counters -> Bool in
            if record.reason == "rate_limited" { return false }
            var current = counters.rows[triggerID] ?? (minute, 0)
            if current.minute != minute { current = (minute, 0) }
            current.count += 1
            if counters.rows.count > 10_000 { counters.rows.removeAll() }
            counters.rows[triggerID] = current
            return current.count <= Self.refusalRowsPerMinute
        }
        if ownRow {
            _ = try await write(Entry(triggerID: triggerID, record: record))
        } else {
            count(
                triggerID: triggerID,
                reason: record.reason ?? "refused",
                status: record.status,
                at: record.receivedAt
            )
        }
    }

    /// Counts a refusal in its trigger's row for the minute, written by the next `flushCounted`.
    func count(triggerID: String, reason: String, status: Int, at now: Int64) {
        counters.withLock { counters in
            let key = Counted(triggerID: triggerID, bucket: now / 60_000, reason: reason, status: status)
            counters.counted[key, default: 0] += 1
        }
    }

    /// Writes the counted refusals gathered since the last call.
    func flushCounted(now: Int64) async throws {
        let counted = counters.withLock { counters -> [Counted: Int] in
            defer { counters.counted.removeAll() }
            return counters.counted
        }
        guard !counted.isEmpty else { return }
        try await database.withTransaction { executor in
            for (key, count) in counted {
                // The trigger may be gone meanwhile; its counts go with it.
                guard
                    try await executor.queryFirst("SELECT id FROM triggers WHERE id = $1", [.text(key.triggerID)])
                        != nil
                else { continue }
                try await TriggerStore.addCounted(
                    triggerID: key.triggerID,
                    bucket: key.bucket,
                    reason: key.reason,
                    status: key.status,
                    count: count,
                    at: now,
                    in: executor
                )
            }
        }
    }

    /// Inserts delivery records, 100 a statement; an accepted delivery id already recorded for its trigger is
    /// left as it is.
    /// - Returns: `trigger id + NUL + delivery id` of the accepted records inserted.
    static func insert(
        _ records: [(triggerID: String, record: DeliveryRecord)],
        in executor: any SQLExecutor
    ) async throws -> Set<String> {
        var insertedKeys = Set<String>()
        for start in stride(from: 0, to: records.count, by: 100) {
            var values: [String] = []
            var binds: [SQLValue] = []
            for (triggerID, record) in records[start..<min(start + 100, records.count)] {
                let base = binds.count
                values.append("(" + (1...8).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
                binds += [
                    .text(triggerID), .text(record.deliveryID), .int(record.receivedAt),
                    .text(record.outcome.rawValue), .text(record.reason), .text(record.runID),
                    .int(Int64(record.status)), .int(Int64(record.bodyBytes)),
                ]
            }
            let rows = try await executor.query(
                """
                INSERT INTO trigger_deliveries
                    (trigger_id, delivery_id, received_at, outcome, reason, run_id, status, body_bytes)
                VALUES \(values.joined(separator: ", "))
                ON CONFLICT DO NOTHING
                RETURNING trigger_id, delivery_id, outcome
                """,
                binds
            )
            for row in rows where (try? row.string("outcome")) == DeliveryRecord.Outcome.accepted.rawValue {
                insertedKeys.insert((try row.string("trigger_id")) + "\u{0}" + (try row.string("delivery_id")))
            }
        }
        return insertedKeys
    }

    /// The rows of one batch: accepted records first (a delivery id seen earlier in the batch is not inserted
    /// again), then the buffered events of those inserted, each as multi-row statements.
    private static func apply(_ entries: [Entry], in executor: any SQLExecutor) async throws -> [Bool] {
        var outcomes = [Bool](repeating: true, count: entries.count)
        var seen = Set<String>()
        var candidates: [Int] = []
        for (index, entry) in entries.enumerated() {
            if entry.record.outcome == .accepted {
                guard seen.insert(entry.triggerID + "\u{0}" + entry.record.deliveryID).inserted else {
                    outcomes[index] = false
                    continue
                }
            }
            candidates.append(index)
        }
        let insertedKeys = try await insert(
            candidates.map { (entries[$0].triggerID, entries[$0].record) },
            in: executor
        )
        var buffered: [Int] = []
        for index in candidates where entries[index].record.outcome == .accepted {
            let inserted = insertedKeys.contains(entries[index].triggerID + "\u{0}" + entries[index].record.deliveryID)
            outcomes[index] = inserted
            if inserted, entries[index].buffered != nil { buffered.append(index) }
        }
        var rows: [(triggerID: String, at: Int64, event: String, bytes: Int)] = []
        for index in buffered {
            for event in entries[index].buffered ?? [] {
                rows.append((entries[index].triggerID, entries[index].record.receivedAt, event.event, event.bytes))
            }
        }
        for start in stride(from: 0, to: rows.count, by: 500) {
            var values: [String] = []
            var binds: [SQLValue] = []
            for row in rows[start..<min(start + 500, rows.count)] {
                let base = binds.count
                values.append("($\(base + 1), $\(base + 2), $\(base + 3), $\(base + 4))")
                binds += [.text(row.triggerID), .int(row.at), .text(row.event), .int(Int64(row.bytes))]
            }
            try await executor.execute(
                "INSERT INTO trigger_batch_events (trigger_id, received_at, event, bytes) VALUES "
                    + values.joined(separator: ", "),
                binds
            )
        }
        return outcomes
    }
}
