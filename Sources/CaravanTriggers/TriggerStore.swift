public import CaravanCore
public import CaravanStorage

/// One recorded delivery, as `GET /v1/triggers/{name}/deliveries` lists it.
public struct DeliveryRecord: Sendable {
    /// How a delivery ended.
    public enum Outcome: String, Sendable {
        /// It started a run, was buffered for a batch, or was sent to a routed run as a signal.
        case accepted
        /// Its delivery id had been accepted before: it started nothing and was answered with the same run.
        case duplicate
        /// The trigger's filter dropped it.
        case filtered
        /// It was refused (signature, size, rate limit, malformed body).
        case refused
    }

    /// The row's position (newest first in lists; the cursor of the next page).
    public var seq: Int64
    public var deliveryID: String
    public var receivedAt: Int64
    public var outcome: Outcome
    /// The error code of a refusal, or what an accepted delivery did (`started`, `buffered`, `signalled`).
    public var reason: String?
    public var runID: String?
    /// The HTTP status the sender was answered.
    public var status: Int
    public var bodyBytes: Int
    /// How many deliveries the row stands for (more than one for the per-minute row of rate-limit refusals).
    public var count: Int

    public init(
        seq: Int64 = 0,
        deliveryID: String,
        receivedAt: Int64,
        outcome: Outcome,
        reason: String?,
        runID: String?,
        status: Int,
        bodyBytes: Int,
        count: Int = 1
    ) {
        self.seq = seq
        self.deliveryID = deliveryID
        self.receivedAt = receivedAt
        self.outcome = outcome
        self.reason = reason
        self.runID = runID
        self.status = status
        self.bodyBytes = bodyBytes
        self.count = count
    }
}

/// Reads and writes triggers, their deliveries, their batch buffer and their routed keys. Every read of a
/// trigger by name is scoped by organization; the hook looks triggers up by their unguessable id.
public struct TriggerStore: Sendable {
    let database: any Database

    public init(database: any Database) {
        self.database = database
    }

    // MARK: Triggers

    static func trigger(_ row: SQLRow, maxBodyBytes: Int) throws -> Trigger {
        let source = try row.json("definition") ?? .object([:])
        return Trigger(
            id: try row.string("id"),
            orgID: try row.string("org_id"),
            name: try row.string("name"),
            definition: try TriggerDefinition.parse(source, maxBodyBytes: Int.max),
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
    }

    /// Creates or replaces the trigger `name`; a replaced trigger keeps its id (and so its URL).
    /// - Returns: the trigger and whether it was created.
    func put(
        orgID: String,
        name: String,
        definition: TriggerDefinition,
        now: Int64,
        in executor: any SQLExecutor
    ) async throws -> (Trigger, Bool) {
        if let row = try await executor.queryFirst(
            "SELECT id, created_at FROM triggers WHERE org_id = $1 AND name = $2",
            [.text(orgID), .text(name)]
        ) {
            let id = try row.string("id")
            try await executor.execute(
                "UPDATE triggers SET definition = $2, updated_at = $3 WHERE id = $1",
                [.text(id), .json(definition.source), .int(now)]
            )
            let trigger = Trigger(
                id: id,
                orgID: orgID,
                name: name,
                definition: definition,
                createdAt: try row.int("created_at"),
                updatedAt: now
            )
            return (trigger, false)
        }
        let id = Self.newTriggerID()
        try await executor.execute(
            """
            INSERT INTO triggers (id, org_id, name, definition, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $5)
            """,
            [.text(id), .text(orgID), .text(name), .json(definition.source), .int(now)]
        )
        return (Trigger(id: id, orgID: orgID, name: name, definition: definition, createdAt: now, updatedAt: now), true)
    }

    /// A trigger id: `trg_` and 26 characters of base32, each of five random bits (130 bits in all), so that
    /// hook URLs cannot be guessed or enumerated.
    static func newTriggerID() -> String {
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz".utf8)
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(26)
        for _ in 0..<26 { bytes.append(alphabet[Int(generator.next(upperBound: UInt8(32)))]) }
        return "trg_" + String(decoding: bytes, as: UTF8.self)
    }

    func get(orgID: String, name: String) async throws -> Trigger? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM triggers WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(name)]
            ).map { try Self.trigger($0, maxBodyBytes: .max) }
        }
    }

    func get(id: String) async throws -> Trigger? {
        try await database.read { executor in
            try await executor.queryFirst("SELECT * FROM triggers WHERE id = $1", [.text(id)]).map {
                try Self.trigger($0, maxBodyBytes: .max)
            }
        }
    }

    func list(orgID: String, after: String?, limit: Int) async throws -> [Trigger] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM triggers WHERE org_id = $1 AND name > $2 ORDER BY name LIMIT $3",
                [.text(orgID), .text(after ?? ""), .int(Int64(limit))]
            ).map { try Self.trigger($0, maxBodyBytes: .max) }
        }
    }

    func delete(orgID: String, name: String, in executor: any SQLExecutor) async throws -> String? {
        guard
            let row = try await executor.queryFirst(
                "SELECT id FROM triggers WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(name)]
            )
        else { return nil }
        let id = try row.string("id")
        // Its records and buffered events go with it here; its routes by ON DELETE CASCADE.
        try await executor.execute("DELETE FROM trigger_deliveries WHERE trigger_id = $1", [.text(id)])
        try await executor.execute("DELETE FROM trigger_batch_events WHERE trigger_id = $1", [.text(id)])
        try await executor.execute("DELETE FROM triggers WHERE id = $1", [.text(id)])
        return id
    }

    // MARK: Deliveries

    /// Inserts delivery records; an `accepted` record whose delivery id was accepted before is not inserted.
    /// - Returns: for each record, whether it was inserted.
    static func insert(
        _ records: [(triggerID: String, record: DeliveryRecord)],
        in executor: any SQLExecutor
    ) async throws -> [Bool] {
        var inserted: [Bool] = []
        for (triggerID, record) in records {
            let rows = try await executor.query(
                """
                INSERT INTO trigger_deliveries
                    (trigger_id, delivery_id, received_at, outcome, reason, run_id, status, body_bytes)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT DO NOTHING
                RETURNING id
                """,
                [
                    .text(triggerID), .text(record.deliveryID), .int(record.receivedAt), .text(record.outcome.rawValue),
                    .text(record.reason), .text(record.runID), .int(Int64(record.status)),
                    .int(Int64(record.bodyBytes)),
                ]
            )
            inserted.append(!rows.isEmpty)
        }
        return inserted
    }

    /// Adds `count` deliveries to the row that counts the trigger's refusals with `reason` in the minute `bucket`.
    static func addCounted(
        triggerID: String,
        bucket: Int64,
        reason: String,
        status: Int,
        count: Int,
        at now: Int64,
        in executor: any SQLExecutor
    ) async throws {
        try await executor.execute(
            """
            INSERT INTO trigger_deliveries
                (trigger_id, delivery_id, received_at, outcome, reason, status, body_bytes, count, bucket)
            VALUES ($1, $2, $3, 'refused', $4, $5, 0, $6, $2)
            ON CONFLICT (trigger_id, bucket) WHERE bucket IS NOT NULL
            DO UPDATE SET count = trigger_deliveries.count + excluded.count, received_at = excluded.received_at
            """,
            [
                .text(triggerID), .text("\(reason):\(bucket)"), .int(now), .text(reason), .int(Int64(status)),
                .int(Int64(count)),
            ]
        )
    }

    /// The accepted record of `deliveryID`, if that delivery was accepted before.
    func acceptedDelivery(triggerID: String, deliveryID: String) async throws -> DeliveryRecord? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM trigger_deliveries WHERE trigger_id = $1 AND delivery_id = $2 AND outcome = 'accepted'",
                [.text(triggerID), .text(deliveryID)]
            ).map(Self.delivery)
        }
    }

    static func delivery(_ row: SQLRow) throws -> DeliveryRecord {
        DeliveryRecord(
            seq: try row.int("id"),
            deliveryID: try row.string("delivery_id"),
            receivedAt: try row.int("received_at"),
            outcome: DeliveryRecord.Outcome(rawValue: try row.string("outcome")) ?? .refused,
            reason: try row.optionalString("reason"),
            runID: try row.optionalString("run_id"),
            status: Int(try row.int("status")),
            bodyBytes: Int(try row.int("body_bytes")),
            count: Int(try row.int("count"))
        )
    }

    /// A page of a trigger's deliveries, newest first; `before` is the last `seq` of the previous page.
    func deliveries(triggerID: String, before: Int64?, limit: Int) async throws -> [DeliveryRecord] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM trigger_deliveries WHERE trigger_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                [.text(triggerID), .int(before ?? Int64.max), .int(Int64(limit))]
            ).map(Self.delivery)
        }
    }

    /// Deletes up to `limit` delivery records received before `cutoff`.
    /// - Returns: how many were deleted.
    func pruneDeliveries(before cutoff: Int64, limit: Int) async throws -> Int {
        try await database.withTransaction { executor in
            let rows = try await executor.query(
                """
                DELETE FROM trigger_deliveries WHERE id IN
                    (SELECT id FROM trigger_deliveries WHERE received_at < $1 ORDER BY received_at LIMIT $2)
                RETURNING id
                """,
                [.int(cutoff), .int(Int64(limit))]
            )
            return rows.count
        }
    }

    // MARK: Routes

    /// The run and generation of a routed key, if any run was started for it.
    func route(triggerID: String, key: String) async throws -> (generation: Int64, runID: String)? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT generation, run_id FROM trigger_routes WHERE trigger_id = $1 AND route_key = $2",
                [.text(triggerID), .text(key)]
            ).map { (try $0.int("generation"), try $0.string("run_id")) }
        }
    }

    /// Records that generation `generation` of the key runs as `runID`, unless a later generation is recorded.
    func setRoute(triggerID: String, key: String, generation: Int64, runID: String, now: Int64) async throws {
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO trigger_routes (trigger_id, route_key, generation, run_id, updated_at)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (trigger_id, route_key) DO UPDATE
                SET generation = excluded.generation, run_id = excluded.run_id, updated_at = excluded.updated_at
                WHERE trigger_routes.generation < excluded.generation
                """,
                [.text(triggerID), .text(key), .int(generation), .text(runID), .int(now)]
            )
        }
    }
}
