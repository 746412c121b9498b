public import CaravanCore
public import CaravanStorage
public import CaravanWorkflow
import Synchronization

/// A stored version of a workflow.
public struct StoredWorkflow: Sendable {
    public var orgID: String
    public var name: String
    public var version: Int
    public var latestVersion: Int
    public var definition: WorkflowDefinition
    public var createdAt: Int64
    public var updatedAt: Int64
    public var archivedAt: Int64?
}

/// Reads and writes workflow definitions and their versions. Versions are immutable, so parsed definitions are
/// cached for the engine's hot path; the latest version of each workflow (what a run start reads) is kept in a
/// `ClusterCache`, emptied on every node by every change of a workflow.
public final class WorkflowStore: Sendable {
    private let database: any Database
    private let kinds: StepKindRegistry
    private let cache = Mutex<[String: WorkflowDefinition]>([:])
    private let latest: ClusterCache<StoredWorkflow>
    private let clock: WallClock

    /// The topic of the signal that empties every node's cache of latest versions.
    static let workflowsChanged = "workflows"

    public init(
        database: any Database,
        kinds: StepKindRegistry,
        signals: ClusterSignals? = nil,
        clock: WallClock = .system
    ) {
        self.database = database
        self.clock = clock
        self.kinds = kinds
        self.latest = ClusterCache(signals: signals, topic: Self.workflowsChanged)
    }

    /// Creates the workflow or a new version of it; an unchanged definition keeps its version.
    /// - Returns: the stored version and whether it is new.
    public func put(
        orgID: String,
        definition: WorkflowDefinition
    ) async throws -> (workflow: StoredWorkflow, created: Bool) {
        let text = definition.source.canonicalText
        let now = clock.nowMilliseconds()
        let nextFire = definition.schedule.flatMap { Scheduler.nextFire(of: $0, after: now) }
        return try await latest.change(in: database) { executor in
            let existing = try await executor.queryFirst(
                """
                SELECT w.latest_version, w.created_at, w.archived_at, v.definition FROM workflows w
                JOIN workflow_versions v ON v.org_id = w.org_id AND v.name = w.name AND v.version = w.latest_version
                WHERE w.org_id = $1 AND w.name = $2
                """,
                [.text(orgID), .text(definition.name)]
            )
            if let existing, try existing.string("definition") == text, try existing.optionalInt("archived_at") == nil {
                let version = Int(try existing.int("latest_version"))
                return (
                    StoredWorkflow(
                        orgID: orgID,
                        name: definition.name,
                        version: version,
                        latestVersion: version,
                        definition: definition,
                        createdAt: try existing.int("created_at"),
                        updatedAt: now,
                        archivedAt: nil
                    ),
                    false
                )
            }
            let version = Int(try existing?.int("latest_version") ?? 0) + 1
            let createdAt = try existing?.int("created_at") ?? now
            let schedule: SQLValue = definition.schedule == nil ? .null : .int(Int64(version))
            if existing == nil {
                try await executor.execute(
                    """
                    INSERT INTO workflows (org_id, name, latest_version, schedule, next_fire_at, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $6)
                    """,
                    [.text(orgID), .text(definition.name), .int(Int64(version)), schedule, .int(nextFire), .int(now)]
                )
            } else {
                try await executor.execute(
                    """
                    UPDATE workflows SET latest_version = $3, schedule = $4, next_fire_at = $5, updated_at = $6,
                        archived_at = NULL
                    WHERE org_id = $1 AND name = $2
                    """,
                    [.text(orgID), .text(definition.name), .int(Int64(version)), schedule, .int(nextFire), .int(now)]
                )
            }
            try await executor.execute(
                "INSERT INTO workflow_versions (org_id, name, version, definition, created_at) VALUES ($1, $2, $3, $4, $5)",
                [.text(orgID), .text(definition.name), .int(Int64(version)), .text(text), .int(now)]
            )
            return (
                StoredWorkflow(
                    orgID: orgID,
                    name: definition.name,
                    version: version,
                    latestVersion: version,
                    definition: definition,
                    createdAt: createdAt,
                    updatedAt: now,
                    archivedAt: nil
                ),
                true
            )
        }
    }

    /// The workflow `name` at `version` (default: the latest), or `nil`.
    public func get(orgID: String, name: String, version: Int? = nil) async throws -> StoredWorkflow? {
        guard version == nil else { return try await load(orgID: orgID, name: name, version: version) }
        return try await latest.value(orgID + "/" + name) {
            try await self.load(orgID: orgID, name: name, version: nil)
        }
    }

    private func load(orgID: String, name: String, version: Int?) async throws -> StoredWorkflow? {
        try await database.read { try await self.load(orgID: orgID, name: name, version: version, in: $0) }
    }

    /// The workflow `name` at `version` (default: the latest), read in `executor`'s transaction.
    func load(orgID: String, name: String, version: Int?, in executor: any SQLExecutor) async throws -> StoredWorkflow?
    {
        let row = try await executor.queryFirst(
            """
            SELECT w.latest_version, w.created_at, w.updated_at, w.archived_at, v.version, v.definition
            FROM workflows w JOIN workflow_versions v ON v.org_id = w.org_id AND v.name = w.name
            WHERE w.org_id = $1 AND w.name = $2 AND v.version = COALESCE($3, w.latest_version)
            """,
            [.text(orgID), .text(name), .int(version.map(Int64.init))]
        )
        guard let row else { return nil }
        let storedVersion = Int(try row.int("version"))
        return StoredWorkflow(
            orgID: orgID,
            name: name,
            version: storedVersion,
            latestVersion: Int(try row.int("latest_version")),
            definition: try cachedDefinition(
                orgID: orgID,
                name: name,
                version: storedVersion,
                text: try row.string("definition")
            ),
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at"),
            archivedAt: try row.optionalInt("archived_at")
        )
    }

    /// A schedule tick that is due: the workflow and when it was due.
    struct DueTick: Sendable {
        var orgID: String
        var name: String
        var fireAt: Int64
    }

    /// The schedule ticks due at `now`, oldest first, their workflows' rows locked until the transaction ends (on
    /// PostgreSQL `SKIP LOCKED`: another node handling them passes them by).
    func dueTicks(now: Int64, limit: Int, in executor: any SQLExecutor) async throws -> [DueTick] {
        let lock = executor.dialect == .postgres ? "FOR UPDATE SKIP LOCKED" : ""
        return try await executor.query(
            """
            SELECT org_id, name, next_fire_at FROM workflows
            WHERE next_fire_at IS NOT NULL AND next_fire_at <= $1 AND archived_at IS NULL
            ORDER BY next_fire_at LIMIT \(limit) \(lock)
            """,
            [.int(now)]
        ).map { row in
            DueTick(orgID: try row.string("org_id"), name: try row.string("name"), fireAt: try row.int("next_fire_at"))
        }
    }

    /// Sets a workflow's next schedule tick (`nil`: none).
    func setNextFire(orgID: String, name: String, at next: Int64?, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE workflows SET next_fire_at = $3 WHERE org_id = $1 AND name = $2",
            [.text(orgID), .text(name), .int(next)]
        )
    }

    /// The definition of a version, from the cache or the database; for the engine.
    func definition(orgID: String, name: String, version: Int) async throws -> WorkflowDefinition? {
        let key = "\(orgID)/\(name)/\(version)"
        if let cached = cache.withLock({ $0[key] }) { return cached }
        return try await get(orgID: orgID, name: name, version: version)?.definition
    }

    /// A page of workflows (latest versions), by name. Without `reservedPrefix`, the organization's own
    /// workflows; with it, the workflows kept under reserved names that begin with it (e.g. agents', `agent:`).
    /// - Parameter reservedPrefix: letters, digits, `-` and `:` only.
    public func list(
        orgID: String,
        after cursor: String?,
        limit: Int,
        reservedPrefix: String? = nil
    ) async throws -> [StoredWorkflow] {
        // Workflow names cannot contain `:`; reserved names can.
        let kind =
            reservedPrefix.map { prefix in
                "AND w.name LIKE '\(prefix.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == ":" })%'"
            } ?? "AND w.name NOT LIKE '%:%'"
        let rows = try await database.read { executor in
            try await executor.query(
                """
                SELECT w.name, w.latest_version, w.created_at, w.updated_at, w.archived_at, v.definition
                FROM workflows w JOIN workflow_versions v
                    ON v.org_id = w.org_id AND v.name = w.name AND v.version = w.latest_version
                WHERE w.org_id = $1 AND w.archived_at IS NULL AND w.name > $2 \(kind)
                ORDER BY w.name LIMIT $3
                """,
                [.text(orgID), .text(cursor ?? ""), .int(Int64(limit))]
            )
        }
        return try rows.map { row in
            let name = try row.string("name")
            let version = Int(try row.int("latest_version"))
            return StoredWorkflow(
                orgID: orgID,
                name: name,
                version: version,
                latestVersion: version,
                definition: try cachedDefinition(
                    orgID: orgID,
                    name: name,
                    version: version,
                    text: try row.string("definition")
                ),
                createdAt: try row.int("created_at"),
                updatedAt: try row.int("updated_at"),
                archivedAt: try row.optionalInt("archived_at")
            )
        }
    }

    /// Archives a workflow: no new runs, no schedule; runs already started go on.
    /// - Returns: whether it existed.
    public func archive(orgID: String, name: String) async throws -> Bool {
        let now = clock.nowMilliseconds()
        return try await latest.change(in: database) { executor in
            !(try await executor.query(
                """
                UPDATE workflows SET archived_at = $3, next_fire_at = NULL, updated_at = $3
                WHERE org_id = $1 AND name = $2 AND archived_at IS NULL RETURNING name
                """,
                [.text(orgID), .text(name), .int(now)]
            )).isEmpty
        }
    }

    private func cachedDefinition(orgID: String, name: String, version: Int, text: String) throws -> WorkflowDefinition
    {
        let key = "\(orgID)/\(name)/\(version)"
        if let cached = cache.withLock({ $0[key] }) { return cached }
        let definition = try DefinitionParser.validate(
            try JSONValue(parsing: Array(text.utf8), maxDepth: 512),
            nameFromPath: name,
            kinds: kinds
        )
        cache.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[key] = definition
        }
        return definition
    }
}
