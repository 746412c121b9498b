import CaravanCore
import CaravanEngine
import CaravanStorage
import Logging

/// Starts the runs of batching triggers from their buffered events, on any node, exactly once per batch.
///
/// A batch is due when its trigger holds `max_events` unclaimed events, or when its oldest unclaimed event is
/// `window` old. A pass first *claims* each due batch in one transaction: the oldest events (up to `max_events`,
/// and within the run input's size limit) are marked with the batch key `batch:<trigger id>:<first event id>`
/// (on PostgreSQL under the trigger's row lock, taken with `SKIP LOCKED`, so two nodes never claim the same
/// events). Then it starts the run under that key as its idempotency key and deletes the claimed events. A crash
/// between the two leaves claimed events behind: any node takes them up again after `reclaimAfter` and starts the
/// run under the same key, which finds the run already started instead of starting a second one.
struct BatchFlusher: Sendable {
    let database: any Database
    let receiver: HookReceiver
    let logger: Logger
    /// How long claimed events may wait for their run before another pass (on any node) takes them over.
    static let reclaimAfter: Int64 = 30_000
    /// The most batches of one trigger claimed in one pass.
    static let batchesPerPass = 50

    private struct Claim {
        var triggerID: String
        var key: String
    }

    /// Claims every due batch, then starts their runs (and those of batches claimed earlier and left behind).
    func flushDue() async throws {
        let now = receiver.clock.nowMilliseconds()
        let budget = receiver.engine.configuration.maxPayloadBytes - 4_096
        let postgres = database.dialect == .postgres
        var claims = try await database.withTransaction { executor -> [Claim] in
            var claims: [Claim] = []
            let pending = try await executor.query(
                """
                SELECT trigger_id, MIN(received_at) AS first_at, COUNT(*) AS waiting FROM trigger_batch_events
                WHERE batch_key IS NULL GROUP BY trigger_id
                """,
                []
            )
            for row in pending {
                let triggerID = try row.string("trigger_id")
                guard
                    let locked = try await executor.queryFirst(
                        "SELECT * FROM triggers WHERE id = $1" + (postgres ? " FOR UPDATE SKIP LOCKED" : ""),
                        [.text(triggerID)]
                    )
                else {
                    // Another node is flushing it, or it is gone: then what a delivery buffered while it was being
                    // deleted goes too.
                    if try await executor.queryFirst("SELECT id FROM triggers WHERE id = $1", [.text(triggerID)])
                        == nil
                    {
                        try await executor.execute(
                            "DELETE FROM trigger_batch_events WHERE trigger_id = $1",
                            [.text(triggerID)]
                        )
                    }
                    continue
                }
                let trigger = try TriggerStore.trigger(locked, maxBodyBytes: .max)
                // A trigger no longer batching still flushes what it buffered, at once.
                var maxEvents = TriggerDefinition.maxBatchEvents
                var due = true
                if case .batch(let max, let window, _) = trigger.definition.mode {
                    maxEvents = max
                    due = try row.int("waiting") >= Int64(max) || now >= (try row.int("first_at")) + window.milliseconds
                }
                guard due else { continue }
                for _ in 0..<Self.batchesPerPass {
                    let events = try await executor.query(
                        """
                        SELECT id, bytes, received_at FROM trigger_batch_events
                        WHERE trigger_id = $1 AND batch_key IS NULL ORDER BY id LIMIT $2
                        """,
                        [.text(triggerID), .int(Int64(maxEvents))]
                    )
                    guard let first = events.first else { break }
                    if case .batch(let max, let window, _) = trigger.definition.mode, events.count < max,
                        now < (try first.int("received_at")) + window.milliseconds
                    {
                        break  // what is left is a window still open
                    }
                    var size = 0
                    let firstID = try first.int("id")
                    var last = firstID
                    for (index, event) in events.enumerated() {
                        size += Int(try event.int("bytes")) + 1
                        if size > budget && index > 0 { break }
                        last = try event.int("id")
                    }
                    let key = "batch:\(triggerID):\(firstID)"
                    try await executor.execute(
                        """
                        UPDATE trigger_batch_events SET batch_key = $1, claimed_at = $2
                        WHERE trigger_id = $3 AND batch_key IS NULL AND id >= $4 AND id <= $5
                        """,
                        [.text(key), .int(now), .text(triggerID), .int(firstID), .int(last)]
                    )
                    claims.append(Claim(triggerID: triggerID, key: key))
                }
            }
            return claims
        }
        let leftovers = try await database.read { executor in
            try await executor.query(
                """
                SELECT DISTINCT trigger_id, batch_key FROM trigger_batch_events
                WHERE batch_key IS NOT NULL AND claimed_at < $1
                """,
                [.int(now - Self.reclaimAfter)]
            ).map { Claim(triggerID: try $0.string("trigger_id"), key: try $0.string("batch_key")) }
        }
        claims += leftovers
        for claim in claims {
            do {
                try await start(claim)
            } catch {
                logger.warning(
                    "Starting a batch's run failed; it is tried again",
                    metadata: ["caravan.trigger_id": "\(claim.triggerID)", "error.message": "\(error)"]
                )
            }
        }
    }

    /// Starts the run of a claimed batch (or finds it started), then deletes its events.
    private func start(_ claim: Claim) async throws {
        let rows = try await database.read { executor in
            try await executor.query(
                "SELECT id, received_at, event FROM trigger_batch_events WHERE batch_key = $1 ORDER BY id",
                [.text(claim.key)]
            )
        }
        guard let first = rows.first, let last = rows.last,
            let trigger = try await receiver.store.get(id: claim.triggerID)
        else { return }
        var events: [JSONValue] = []
        for row in rows { events.append(try row.json("event") ?? .null) }
        let input: JSONValue = [
            "events": .array(events),
            "trigger": ["name": .string(trigger.name), "id": .string(trigger.id)],
            "window": [
                "start": .string(Clock.rfc3339(try first.int("received_at"))),
                "end": .string(Clock.rfc3339(try last.int("received_at"))),
            ],
        ]
        do {
            _ = try await receiver.targets.start(trigger.orgID, trigger.definition.target, input, claim.key, nil)
        } catch let error as CaravanError
            where [.notFound, .validationFailed, .payloadTooLarge].contains(error.code)
        {
            // The batch can never start (its workflow is gone, or refuses the input): it is dropped, said once.
            logger.error(
                "A batch of buffered events cannot start its run and is dropped",
                metadata: [
                    "caravan.trigger_id": "\(trigger.id)", "caravan.events": "\(rows.count)",
                    "error.message": "\(error)",
                ]
            )
        }
        try await database.withTransaction { executor in
            try await executor.execute("DELETE FROM trigger_batch_events WHERE batch_key = $1", [.text(claim.key)])
        }
    }
}
