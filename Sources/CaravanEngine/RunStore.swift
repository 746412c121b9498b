import CaravanCore
import CaravanStorage

/// A run to insert, with its first events.
struct NewRun: Sendable {
    var run: RunRecord
    /// Set when the run starts leased to this node.
    var leaseOwner: String?
    var leaseExpiresAt: Int64?
    var wakeAt: Int64?
}

/// A fenced write of a run's projection: applied only while `owner` still holds the lease at `fence`.
struct RunUpdate: Sendable {
    var run: RunRecord
    var owner: String
    var fence: Int64
    /// The lease after this write: `nil` owner releases the run.
    var newOwner: String?
    var leaseExpiresAt: Int64?
    var wakeAt: Int64?
    /// The run's wake count when this node took it: if others woke it since (a signal, a cancel, a finished
    /// child), a release keeps it due now instead of putting it to sleep over their wake-up.
    var seenWakeSeq: Int64 = 0
}

/// A run claimed by this node, with the fence its writes must carry.
struct ClaimedRun: Sendable {
    var run: RunRecord
    var fence: Int64
    var wakeSeq: Int64
}

/// Reads and writes runs, their events and signals. Every read is scoped by organization.
struct RunStore: Sendable {
    static let columns = """
        id, org_id, kind, workflow, workflow_version, status, input, output, error, steps, idempotency_key,
        request_hash, parent_run_id, parent_step, created_at, started_at, finished_at, updated_at, last_seq,
        cancel_requested, fence, wake_seq
        """

    // MARK: Writes (inside the commit queue's transaction)

    /// Inserts runs; a run whose idempotency key is taken is skipped.
    /// - Returns: the ids actually inserted.
    func insert(_ runs: [NewRun], in executor: any SQLExecutor) async throws -> Set<String> {
        var inserted = Set<String>()
        for chunk in runs.chunked(into: Self.maxRowsPerStatement) {
            let statement = Self.insertStatement(chunk)
            for row in try await executor.query(statement.sql, statement.binds) {
                inserted.insert(try row.string("id"))
            }
        }
        return inserted
    }

    /// The most rows one insert or update statement writes.
    static var maxRowsPerStatement: Int { 1000 }

    /// `INSERT … RETURNING id` of `runs`, skipping those whose idempotency key is taken.
    static func insertStatement(_ runs: some Collection<NewRun>) -> (sql: String, binds: [SQLValue]) {
        var sql = """
            INSERT INTO runs (id, org_id, kind, workflow, workflow_version, status, input, output, error, steps,
            idempotency_key, request_hash, parent_run_id, parent_step, created_at, started_at, finished_at,
            updated_at, last_seq, wake_at, lease_owner, lease_expires_at, fence) VALUES
            """
        var binds: [SQLValue] = []
        binds.reserveCapacity(runs.count * 23)
        for (index, new) in runs.enumerated() {
            sql += index == 0 ? " (" : ", ("
            sql += (1...23).map { "$\(binds.count + $0)" }.joined(separator: ", ") + ")"
            binds += insertValues(new)
        }
        return (sql + " ON CONFLICT DO NOTHING RETURNING id", binds)
    }

    /// The 23 values a new run is inserted with, in the order of `insertStatement`'s columns.
    static func insertValues(_ new: NewRun) -> [SQLValue] {
        let run = new.run
        return [
            .text(run.id), .text(run.orgID), .text(run.kind), .text(run.workflow),
            .int(Int64(run.workflowVersion)), .text(run.status.rawValue), .json(run.input), .json(run.output),
            .json(run.error?.json), .text(StepList.text(run.steps)), .text(run.idempotencyKey),
            .text(run.requestHash), .text(run.parentRunID), .text(run.parentStep), .int(run.createdAt),
            .int(run.startedAt), .int(run.finishedAt), .int(run.updatedAt), .int(run.lastSeq),
            .int(new.wakeAt), .text(new.leaseOwner), .int(new.leaseExpiresAt), .int(1),
        ]
    }

    /// Writes run projections (`update`) and inserts new runs (`insert`) that do not depend on which of the
    /// projections land: on PostgreSQL in one statement (one round trip), elsewhere in two.
    /// - Returns: the ids written and the ids inserted.
    func write(
        _ updates: [RunUpdate],
        inserting runs: [NewRun],
        in executor: any SQLExecutor
    ) async throws -> (written: Set<String>, inserted: Set<String>) {
        guard executor.dialect == .postgres, !updates.isEmpty || !runs.isEmpty else {
            return (try await update(updates, in: executor), try await insert(runs, in: executor))
        }
        // Each column as an array, in the order of `updateValues` and `insertValues`.
        let updateColumns = Self.columns(of: updates.map(Self.updateValues), count: 16)
        let insertColumns = Self.columns(of: runs.map(Self.insertValues), count: 23)
        let integers: Set<Int> = [2, 7, 8, 9, 10, 11, 13, 14, 15, 20, 30, 31, 32, 33, 34, 35, 37, 38]
        let parameters = (0..<39).map { "$\($0 + 1)::" + (integers.contains($0) ? "BIGINT[]" : "TEXT[]") }
        var result: (written: Set<String>, inserted: Set<String>) = ([], [])
        for row in try await executor.query(
            "SELECT out_kind, out_id FROM caravan_write_runs(" + parameters.joined(separator: ", ") + ")",
            (updateColumns + insertColumns).map(Self.arrayLiteral)
        ) {
            if try row.string("out_kind") == "written" {
                result.written.insert(try row.string("out_id"))
            } else {
                result.inserted.insert(try row.string("out_id"))
            }
        }
        return result
    }

    /// The values of `rows` (each of `count` values), column by column.
    static func columns(of rows: [[SQLValue]], count: Int) -> [[SQLValue]] {
        (0..<count).map { column in rows.map { $0[column] } }
    }

    /// A PostgreSQL array literal of `values` (cast to the array's type by the statement): text quoted, with `"`
    /// and `\\` escaped; integers as they are; `NULL` for null.
    static func arrayLiteral(_ values: [SQLValue]) -> SQLValue {
        var literal = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { literal += "," }
            switch value {
            case .null: literal += "NULL"
            case .int(let number): literal += String(number)
            case .double(let number): literal += "\(number)"
            case .text(let text):
                literal += "\""
                for character in text.unicodeScalars {
                    if character == "\"" || character == "\\" { literal += "\\" }
                    literal.unicodeScalars.append(character)
                }
                literal += "\""
            case .blob: literal += "NULL"  // runs have no blob columns
            }
        }
        return .text(literal + "}")
    }

    /// Writes run projections, each only if its writer still holds the lease at the same fence.
    /// - Returns: the ids written; a missing id means another node took the run over.
    func update(_ updates: [RunUpdate], in executor: any SQLExecutor) async throws -> Set<String> {
        var written = Set<String>()
        for chunk in updates.chunked(into: Self.maxRowsPerStatement) {
            let statement = Self.updateStatement(chunk)
            for row in try await executor.query(statement.sql, statement.binds) {
                written.insert(try row.string("id"))
            }
        }
        return written
    }

    /// The 16 values of a fenced run write, in the order of `updateStatement`'s `VALUES` columns.
    static func updateValues(_ update: RunUpdate) -> [SQLValue] {
        let run = update.run
        return [
            .text(run.id), .text(update.owner), .int(update.fence), .text(run.status.rawValue),
            .json(run.output), .json(run.error?.json), .text(StepList.text(run.steps)),
            .int(run.startedAt), .int(run.finishedAt), .int(run.updatedAt), .int(run.lastSeq),
            .int(update.wakeAt), .text(update.newOwner), .int(update.leaseExpiresAt),
            .int(run.cancelRequested ? 1 : 0), run.status.isTerminal ? .int(-1) : .int(update.seenWakeSeq),
        ]
    }

    /// The fenced `UPDATE … RETURNING id` of `updates`.
    static func updateStatement(_ updates: some Collection<RunUpdate>) -> (sql: String, binds: [SQLValue]) {
        var values: [String] = []
        var binds: [SQLValue] = []
        binds.reserveCapacity(updates.count * 16)
        for update in updates {
            let base = binds.count
            values.append("(" + (1...16).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
            binds += updateValues(update)
        }
        // VALUES columns are column1…column16 in both dialects; casts give PostgreSQL the types of NULLs.
        let sql = """
            UPDATE runs SET
                status = v.column4,
                output = CAST(v.column5 AS TEXT),
                error = CAST(v.column6 AS TEXT),
                steps = v.column7,
                started_at = CAST(v.column8 AS BIGINT),
                finished_at = CAST(v.column9 AS BIGINT),
                updated_at = CAST(v.column10 AS BIGINT),
                last_seq = CAST(v.column11 AS BIGINT),
                wake_at = CASE
                    WHEN v.column13 IS NULL AND CAST(v.column16 AS BIGINT) >= 0 AND runs.wake_seq <> CAST(v.column16 AS BIGINT)
                    THEN CAST(v.column10 AS BIGINT)
                    ELSE CAST(v.column12 AS BIGINT) END,
                lease_owner = CAST(v.column13 AS TEXT),
                lease_expires_at = CAST(v.column14 AS BIGINT),
                cancel_requested = CASE WHEN runs.cancel_requested = 1 THEN 1 ELSE CAST(v.column15 AS BIGINT) END
            FROM (VALUES \(values.joined(separator: ", "))) AS v
            WHERE runs.id = v.column1 AND runs.lease_owner = v.column2 AND runs.fence = CAST(v.column3 AS BIGINT)
            RETURNING runs.id
            """
        return (sql, binds)
    }

    /// Records journal entries; an entry already recorded under its key keeps its first value.
    func insertJournal(_ entries: [JournalEntry], into writes: inout SQLWriteBatch) {
        guard !entries.isEmpty else { return }
        var values: [String] = []
        var binds: [SQLValue] = []
        for entry in entries {
            let base = binds.count
            values.append("(" + (1...5).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
            binds += [.text(entry.runID), .text(entry.step), .text(entry.key), .json(entry.value), .int(entry.at)]
        }
        writes.add(
            """
            INSERT INTO run_journal (run_id, step, key, value, created_at) VALUES \(values.joined(separator: ", "))
            ON CONFLICT (run_id, step, key) DO NOTHING
            """,
            binds
        )
    }

    /// A step's journal, by key.
    func journal(runID: String, step: String, in executor: any SQLExecutor) async throws -> [String: JSONValue] {
        var entries: [String: JSONValue] = [:]
        for row in try await executor.query(
            "SELECT key, value FROM run_journal WHERE run_id = $1 AND step = $2",
            [.text(runID), .text(step)]
        ) {
            let text = try row.string("value")
            entries[try row.string("key")] = try JSONValue(parsing: Array(text.utf8), maxDepth: 512)
        }
        return entries
    }

    /// Appends events.
    ///
    /// An organization's stream reads its events by position (`id`), so positions must become visible in order: on
    /// PostgreSQL, where concurrent transactions draw positions from one sequence and may commit in another order,
    /// each transaction first takes a lock per organization it writes events of (held until it commits), so that of
    /// two transactions appending events of one organization the second draws its positions after the first has
    /// committed. A reader at position p then never meets an event below p committed later. SQLite has one writer.
    func append(_ events: [RunEvent], orgs: [String: String], in executor: any SQLExecutor) async throws {
        _ = try await prelude(
            admissionsOf: [],
            eventsOf: Set(events.map { orgs[$0.runID] ?? "" }),
            counting: [],
            auditChains: [],
            in: executor
        )
        var writes = SQLWriteBatch()
        append(events, orgs: orgs, into: &writes)
        try await writes.execute(in: executor)
    }

    /// Adds the inserts of `events` to `writes`; the caller holds the event-order locks of their organizations.
    func append(_ events: [RunEvent], orgs: [String: String], into writes: inout SQLWriteBatch) {
        for chunk in events.chunked(into: 2000) {
            var sql = "INSERT INTO run_events (org_id, run_id, seq, type, step, at, data) VALUES "
            var binds: [SQLValue] = []
            binds.reserveCapacity(chunk.count * 7)
            for (index, event) in chunk.enumerated() {
                let base = binds.count
                sql += (index == 0 ? "(" : ", (") + (1...7).map { "$\(base + $0)" }.joined(separator: ", ") + ")"
                binds += [
                    .text(orgs[event.runID] ?? ""), .text(event.runID), .int(event.seq), .text(event.type),
                    .text(event.step), .int(event.at), .json(event.data),
                ]
            }
            writes.add(sql, binds)
        }
    }

    /// What a commit batch reads under its locks before writing.
    struct Prelude {
        /// Executing runs by organization, and by organization and workflow (`org/workflow`).
        var organizations: [String: Int] = [:]
        var workflows: [String: Int] = [:]
        /// Rows of the audit chains' locked tails, by chain (for `AuditLog.append`).
        var auditTails: [String: SQLRow] = [:]
    }

    /// An organization and one of its workflows.
    struct OrganizationWorkflow: Hashable {
        var orgID: String
        var workflow: String
    }

    /// On PostgreSQL, in one statement (`caravan_commit_prelude`): takes the admission locks of `admissions` (which
    /// serialize an organization's admissions across nodes), then the event-order locks of `events`, each kind
    /// sorted, counts the executing runs of each organization and workflow in `counting`, and locks and reads the
    /// tails of `auditChains`. Every transaction takes these locks in this order, so none waits on another in a
    /// cycle. On SQLite nothing is locked or read ahead (its writer is alone): counts and tails are read when
    /// needed.
    func prelude(
        admissionsOf admissions: Set<String>,
        eventsOf events: Set<String>,
        counting: Set<OrganizationWorkflow>,
        auditChains: Set<String>,
        in executor: any SQLExecutor
    ) async throws -> Prelude {
        var prelude = Prelude()
        guard executor.dialect == .postgres,
            !admissions.isEmpty || !events.isEmpty || !counting.isEmpty || !auditChains.isEmpty
        else { return prelude }
        let counted = counting.sorted { ($0.orgID, $0.workflow) < ($1.orgID, $1.workflow) }
        let rows = try await executor.query(
            "SELECT * FROM caravan_commit_prelude($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])",
            [
                Self.arrayLiteral(admissions.sorted().map(SQLValue.text)),
                Self.arrayLiteral(events.sorted().map(SQLValue.text)),
                Self.arrayLiteral(counted.map(\.orgID).map(SQLValue.text)),
                Self.arrayLiteral(counted.map(\.workflow).map(SQLValue.text)),
                Self.arrayLiteral(auditChains.sorted().map(SQLValue.text)),
            ]
        )
        for row in rows {
            let orgID = try row.string("org_id")
            if try row.string("kind") == "count" {
                prelude.organizations[orgID] = Int(try row.int("total"))
                prelude.workflows[orgID + "/" + (try row.string("workflow"))] = Int(try row.int("of_workflow"))
            } else {
                prelude.auditTails[orgID] = row
            }
        }
        return prelude
    }

    // MARK: Leases

    /// Makes every unfinished run leased by `owner` (by anyone, when `nil`) claimable now.
    /// - Returns: how many runs were handed back.
    @discardableResult
    func releaseLeases(owner: String?, now: Int64, in executor: any SQLExecutor) async throws -> Int {
        if let owner {
            return try await executor.query(
                """
                UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, wake_at = $2
                WHERE lease_owner = $1 AND finished_at IS NULL RETURNING id
                """,
                [.text(owner), .int(now)]
            ).count
        }
        return try await executor.query(
            """
            UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, wake_at = $1
            WHERE lease_owner IS NOT NULL AND finished_at IS NULL RETURNING id
            """,
            [.int(now)]
        ).count
    }

    /// Marks an unfinished run of `orgID` as to be cancelled, and wakes it.
    /// - Returns: whether the run exists unfinished.
    func requestCancel(id: String, orgID: String, now: Int64, in executor: any SQLExecutor) async throws -> Bool {
        !(try await executor.query(
            """
            UPDATE runs SET cancel_requested = 1, wake_at = $3, wake_seq = wake_seq + 1
            WHERE id = $1 AND org_id = $2 AND finished_at IS NULL RETURNING id
            """,
            [.text(id), .text(orgID), .int(now)]
        )).isEmpty
    }

    /// Queues a finished run again with `run`'s steps and sequence (a retry), claimable now.
    /// - Returns: whether the run was still finished (and so was queued).
    func requeue(_ run: RunRecord, now: Int64, in executor: any SQLExecutor) async throws -> Bool {
        !(try await executor.query(
            """
            UPDATE runs SET status = 'queued', error = NULL, output = NULL, finished_at = NULL, cancel_requested = 0,
                steps = $2, last_seq = $3, updated_at = $4, wake_at = $4, lease_owner = NULL, lease_expires_at = NULL
            WHERE id = $1 AND finished_at IS NOT NULL RETURNING id
            """,
            [.text(run.id), .text(StepList.text(run.steps)), .int(run.lastSeq), .int(now)]
        )).isEmpty
    }

    /// Whether a cancel was asked for the run.
    func isCancelRequested(id: String, in executor: any SQLExecutor) async throws -> Bool {
        try await executor.queryFirst("SELECT cancel_requested FROM runs WHERE id = $1", [.text(id)])?
            .bool("cancel_requested") ?? false
    }

    /// A run's status, whatever its organization.
    func status(id: String, in executor: any SQLExecutor) async throws -> RunStatus? {
        guard let row = try await executor.queryFirst("SELECT status FROM runs WHERE id = $1", [.text(id)]) else {
            return nil
        }
        return RunStatus(rawValue: try row.string("status"))
    }

    /// Claims up to `limit` runs that need a worker now: due timers, woken runs, and runs whose owner's lease ran
    /// out. Several nodes may claim at once; each run goes to one of them.
    func claim(
        owner: String,
        now: Int64,
        leaseUntil: Int64,
        limit: Int,
        in executor: any SQLExecutor
    ) async throws
        -> [ClaimedRun]
    {
        let lock = executor.dialect == .postgres ? "FOR UPDATE SKIP LOCKED" : ""
        let rows = try await executor.query(
            """
            UPDATE runs SET lease_owner = $1, lease_expires_at = $2, wake_at = $2, fence = fence + 1
            WHERE id IN (
                SELECT id FROM runs
                WHERE wake_at <= $3 AND (lease_owner IS NULL OR lease_expires_at <= $3)
                ORDER BY wake_at LIMIT $4 \(lock)
            )
            RETURNING \(Self.columns)
            """,
            [.text(owner), .int(leaseUntil), .int(now), .int(Int64(limit))]
        )
        return try rows.map {
            ClaimedRun(run: try Self.decode($0), fence: try $0.int("fence"), wakeSeq: try $0.int("wake_seq"))
        }
    }

    /// Extends this node's leases on `ids`.
    /// - Returns: for each run still held, whether a cancel was requested.
    func renew(
        owner: String,
        ids: [String],
        leaseUntil: Int64,
        in executor: any SQLExecutor
    ) async throws
        -> [String: Bool]
    {
        var result: [String: Bool] = [:]
        for chunk in ids.sorted().chunked(into: 1000) {
            let placeholders = chunk.indices.map { "$\($0 + 3)" }.joined(separator: ", ")
            // On PostgreSQL the rows are locked in id order first: group commits lock the rows of their runs too, and
            // two statements locking rows in different orders can deadlock.
            let rows = try await executor.query(
                executor.dialect == .postgres
                    ? """
                    UPDATE runs SET lease_expires_at = $2, wake_at = $2
                    WHERE lease_owner = $1
                        AND id IN (SELECT id FROM runs WHERE lease_owner = $1 AND id IN (\(placeholders)) ORDER BY id FOR UPDATE)
                    RETURNING id, cancel_requested
                    """
                    : """
                    UPDATE runs SET lease_expires_at = $2, wake_at = $2
                    WHERE lease_owner = $1 AND id IN (\(placeholders))
                    RETURNING id, cancel_requested
                    """,
                [.text(owner), .int(leaseUntil)] + chunk.map { .text($0) }
            )
            for row in rows { result[try row.string("id")] = try row.bool("cancel_requested") }
        }
        return result
    }

    /// Marks a run as needing a worker now (a signal, a cancel, a finished child).
    func wake(runID: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            """
            UPDATE runs SET wake_seq = wake_seq + 1,
                wake_at = CASE WHEN wake_at IS NULL OR wake_at > $2 THEN $2 ELSE wake_at END
            WHERE id = $1 AND finished_at IS NULL
            """,
            [.text(runID), .int(now)]
        )
    }

    /// Wakes the oldest parked queued run of a workflow, after a slot was freed.
    func wakeQueued(orgID: String, workflow: String, now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            """
            UPDATE runs SET wake_at = $3 WHERE id IN (
                SELECT id FROM runs WHERE org_id = $1 AND workflow = $2 AND status = 'queued' AND wake_at IS NULL
                ORDER BY created_at LIMIT 1
            )
            """,
            [.text(orgID), .text(workflow), .int(now)]
        )
    }

    /// Wakes every parked queued run (a periodic sweep, for organization-wide caps).
    func wakeAllQueued(now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE runs SET wake_at = $1 WHERE status = 'queued' AND wake_at IS NULL AND lease_owner IS NULL",
            [.int(now)]
        )
    }

    /// How many runs are executing (running or waiting), in the organization and for one workflow.
    func activeCounts(
        orgID: String,
        workflow: String,
        in executor: any SQLExecutor
    ) async throws -> (org: Int, workflow: Int) {
        let row = try await executor.queryFirst(
            """
            SELECT COUNT(*) AS total, SUM(CASE WHEN workflow = $2 THEN 1 ELSE 0 END) AS of_workflow
            FROM runs WHERE org_id = $1 AND status IN ('running', 'waiting')
            """,
            [.text(orgID), .text(workflow)]
        )
        return (Int(try row?.optionalInt("total") ?? 0), Int(try row?.optionalInt("of_workflow") ?? 0))
    }

    // MARK: Reads

    /// The run with `id` in `orgID`, or `nil` (also when it belongs to another organization).
    func get(orgID: String, id: String, in executor: any SQLExecutor) async throws -> RunRecord? {
        guard
            let row = try await executor.queryFirst(
                "SELECT \(Self.columns) FROM runs WHERE id = $1 AND org_id = $2",
                [.text(id), .text(orgID)]
            )
        else { return nil }
        return try Self.decode(row)
    }

    /// The run with `id`, whatever its organization: for the engine, which already holds the id.
    /// How many ancestors `runID` has (0 for a run started by a request), counting no further than `limit`.
    func depth(of runID: String, limit: Int, in executor: any SQLExecutor) async throws -> Int {
        let row = try await executor.queryFirst(
            """
            WITH RECURSIVE chain (id, parent, depth) AS (
                SELECT id, parent_run_id, 0 FROM runs WHERE id = $1
                UNION ALL
                SELECT r.id, r.parent_run_id, c.depth + 1 FROM runs r JOIN chain c ON r.id = c.parent WHERE c.depth < $2
            )
            SELECT MAX(depth) AS depth FROM chain
            """,
            [.text(runID), .int(Int64(limit))]
        )
        return Int(try row?.optionalInt("depth") ?? 0)
    }

    /// Asks every unfinished descendant of `runID` (children, their children, …) to cancel.
    /// - Returns: their ids.
    func cancelDescendants(of runID: String, at now: Int64, in executor: any SQLExecutor) async throws -> [String] {
        let rows = try await executor.query(
            """
            UPDATE runs SET cancel_requested = 1, wake_at = $2, wake_seq = wake_seq + 1
            WHERE finished_at IS NULL AND id IN (
                WITH RECURSIVE descendants (id) AS (
                    SELECT id FROM runs WHERE parent_run_id = $1
                    UNION
                    SELECT r.id FROM runs r JOIN descendants d ON r.parent_run_id = d.id
                )
                SELECT id FROM descendants
            )
            RETURNING id
            """,
            [.text(runID), .int(now)]
        )
        return try rows.map { try $0.string("id") }
    }

    func get(id: String, in executor: any SQLExecutor) async throws -> RunRecord? {
        guard let row = try await executor.queryFirst("SELECT \(Self.columns) FROM runs WHERE id = $1", [.text(id)])
        else { return nil }
        return try Self.decode(row)
    }

    /// The run started in `orgID` with `idempotencyKey`, if any.
    func get(orgID: String, idempotencyKey: String, in executor: any SQLExecutor) async throws -> RunRecord? {
        guard
            let row = try await executor.queryFirst(
                "SELECT \(Self.columns) FROM runs WHERE org_id = $1 AND idempotency_key = $2",
                [.text(orgID), .text(idempotencyKey)]
            )
        else { return nil }
        return try Self.decode(row)
    }

    /// A page of runs, newest first.
    func list(
        orgID: String,
        workflow: String?,
        status: RunStatus?,
        created: CreatedRange = CreatedRange(),
        before cursor: String?,
        limit: Int,
        in executor: any SQLExecutor
    ) async throws -> [RunRecord] {
        var sql = "SELECT \(Self.columns) FROM runs WHERE org_id = $1"
        var binds: [SQLValue] = [.text(orgID)]
        if let workflow {
            binds.append(.text(workflow))
            sql += " AND workflow = $\(binds.count)"
        }
        if let status {
            binds.append(.text(status.rawValue))
            sql += " AND status = $\(binds.count)"
        }
        if let cursor {
            binds.append(.text(cursor))
            sql += " AND id < $\(binds.count)"
        }
        // A run's id begins with its creation time, so a time range is a range of the index it is listed by.
        if let from = created.from {
            binds.append(.text(Identifier.bound("run", milliseconds: from)))
            sql += " AND id >= $\(binds.count)"
        }
        if let to = created.to {
            binds.append(.text(Identifier.bound("run", milliseconds: to)))
            sql += " AND id < $\(binds.count)"
        }
        binds.append(.int(Int64(limit)))
        sql += " ORDER BY id DESC LIMIT $\(binds.count)"
        return try await executor.query(sql, binds).map(Self.decode)
    }

    /// A run's events after `seq`, in order.
    func events(runID: String, after seq: Int64, limit: Int, in executor: any SQLExecutor) async throws -> [RunEvent] {
        try await executor.query(
            "SELECT id, run_id, seq, type, step, at, data FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            [.text(runID), .int(seq), .int(Int64(limit))]
        ).map(Self.decodeEvent)
    }

    /// The organization's events after the global position `after`, in order.
    func events(orgID: String, after: Int64, limit: Int, in executor: any SQLExecutor) async throws -> [RunEvent] {
        try await executor.query(
            "SELECT id, run_id, seq, type, step, at, data FROM run_events WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            [.text(orgID), .int(after), .int(Int64(limit))]
        ).map(Self.decodeEvent)
    }

    /// The newest global event position of the organization.
    func latestEventID(orgID: String, in executor: any SQLExecutor) async throws -> Int64 {
        try await executor.queryFirst("SELECT MAX(id) AS id FROM run_events WHERE org_id = $1", [.text(orgID)])?
            .optionalInt("id") ?? 0
    }

    // MARK: Signals

    /// Stores a signal for a run.
    func addSignal(
        runID: String,
        name: String,
        data: JSONValue,
        sender: String?,
        at now: Int64,
        in executor: any SQLExecutor
    ) async throws {
        try await executor.execute(
            "INSERT INTO run_signals (run_id, name, data, sender, created_at) VALUES ($1, $2, $3, $4, $5)",
            [.text(runID), .text(name), .json(data), .text(sender), .int(now)]
        )
    }

    /// Unconsumed signals of a run, oldest first.
    func pendingSignals(
        runID: String,
        in executor: any SQLExecutor
    ) async throws -> [(id: Int64, name: String, data: JSONValue, sender: String?)] {
        try await executor.query(
            "SELECT id, name, data, sender FROM run_signals WHERE run_id = $1 AND consumed_at IS NULL ORDER BY id",
            [.text(runID)]
        ).map { row in
            (try row.int("id"), try row.string("name"), try row.json("data") ?? .null, try row.optionalString("sender"))
        }
    }

    /// Marks signals consumed.
    func consumeSignals(_ ids: [Int64], at now: Int64, in executor: any SQLExecutor) async throws {
        var writes = SQLWriteBatch()
        consumeSignals(ids, at: now, into: &writes)
        try await writes.execute(in: executor)
    }

    /// Adds the marking of signals `ids` as consumed to `writes`.
    func consumeSignals(_ ids: [Int64], at now: Int64, into writes: inout SQLWriteBatch) {
        guard !ids.isEmpty else { return }
        let placeholders = ids.indices.map { "$\($0 + 2)" }.joined(separator: ", ")
        writes.add(
            "UPDATE run_signals SET consumed_at = $1 WHERE id IN (\(placeholders))",
            [.int(now)] + ids.map { .int($0) }
        )
    }

    // MARK: Retention

    /// Deletes up to `limit` runs that finished before `cutoff` (their events and signals go with them).
    /// - Returns: how many were deleted.
    func deleteFinished(before cutoff: Int64, limit: Int, in executor: any SQLExecutor) async throws -> Int {
        try await executor.query(
            """
            DELETE FROM runs WHERE id IN (
                SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2
            ) RETURNING id
            """,
            [.int(cutoff), .int(Int64(limit))]
        ).count
    }

    // MARK: Decoding

    static func decode(_ row: SQLRow) throws -> RunRecord {
        RunRecord(
            id: try row.string("id"),
            orgID: try row.string("org_id"),
            kind: try row.string("kind"),
            workflow: try row.string("workflow"),
            workflowVersion: Int(try row.int("workflow_version")),
            status: RunStatus(rawValue: try row.string("status")) ?? .failed,
            input: try row.json("input") ?? .null,
            output: try row.json("output"),
            error: RunFailure(json: try row.json("error")),
            steps: try StepList.decode(try row.json("steps")),
            idempotencyKey: try row.optionalString("idempotency_key"),
            requestHash: try row.optionalString("request_hash"),
            parentRunID: try row.optionalString("parent_run_id"),
            parentStep: try row.optionalString("parent_step"),
            createdAt: try row.int("created_at"),
            startedAt: try row.optionalInt("started_at"),
            finishedAt: try row.optionalInt("finished_at"),
            updatedAt: try row.int("updated_at"),
            lastSeq: try row.int("last_seq"),
            cancelRequested: try row.bool("cancel_requested")
        )
    }

    static func decodeEvent(_ row: SQLRow) throws -> RunEvent {
        var event = RunEvent(
            runID: try row.string("run_id"),
            seq: try row.int("seq"),
            type: try row.string("type"),
            step: try row.optionalString("step"),
            at: try row.int("at"),
            data: try row.json("data")
        )
        event.globalID = try row.int("id")
        return event
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements.
    func chunked(into size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
