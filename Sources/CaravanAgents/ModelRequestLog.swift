public import CaravanCore
public import CaravanModels
public import CaravanStorage

/// One model call as the request log shows it: its `UsageRecord` and its position in the log.
public struct ModelRequestEntry: Sendable {
    /// Increasing: a later call has a greater id.
    public var id: Int64
    public var record: UsageRecord
}

/// What an organization keeps of its gateway requests beyond the metered facts.
public struct RequestLogSettings: Sendable, Hashable {
    /// Keep each front-door request's body and the answer's (off unless the organization opts in).
    public var logBodies: Bool
    /// Days a kept body lives, 1...365.
    public var bodyRetentionDays: Int

    public static let off = RequestLogSettings(logBodies: false, bodyRetentionDays: 30)

    public init(logBodies: Bool, bodyRetentionDays: Int) {
        self.logBodies = logBodies
        self.bodyRetentionDays = bodyRetentionDays
    }

    public var json: JSONValue {
        ["log_bodies": .bool(logBodies), "body_retention_days": .int(Int64(bodyRetentionDays))]
    }
}

/// The bodies of one front-door request, kept when the organization opted in.
public struct RequestBodies: Sendable {
    public var orgID: String
    public var requestID: String
    public var at: Int64
    public var request: JSONValue
    public var response: JSONValue
    public var expiresAt: Int64

    /// A body is kept up to this size (its JSON text); a larger one keeps its start.
    public static let maxBytes = 65_536

    public init(orgID: String, requestID: String, at: Int64, request: JSONValue, response: JSONValue, expiresAt: Int64)
    {
        self.orgID = orgID
        self.requestID = requestID
        self.at = at
        self.request = Self.bounded(request)
        self.response = Self.bounded(response)
        self.expiresAt = expiresAt
    }

    /// `body`, or, past `maxBytes`, `{truncated: true, bytes, prefix}`.
    static func bounded(_ body: JSONValue) -> JSONValue {
        let text = body.canonicalText
        guard text.utf8.count > maxBytes else { return body }
        return [
            "truncated": true, "bytes": .int(Int64(text.utf8.count)),
            "prefix": .string(String(decoding: text.utf8.prefix(maxBytes), as: UTF8.self)),
        ]
    }
}

/// Which calls a request-log page holds.
public struct ModelRequestFilter: Sendable {
    public var keyID: String?
    public var model: ModelRef?
    public var runID: String?
    /// `success`, `cached`, `failed` (every failure), or one error code.
    public var outcome: String?
    public var from: Int64?
    public var to: Int64?

    public init(
        keyID: String? = nil,
        model: ModelRef? = nil,
        runID: String? = nil,
        outcome: String? = nil,
        from: Int64? = nil,
        to: Int64? = nil
    ) {
        self.keyID = keyID
        self.model = model
        self.runID = runID
        self.outcome = outcome
        self.from = from
        self.to = to
    }
}

/// An organization's log of model calls, as an admin reads it: every call, made through the gateway's front door or
/// by a run, with its model, key, tokens, cost, latency and outcome (failures and cached answers included), and the
/// bodies of front-door requests when the organization keeps them. Written by the `UsageMeter`'s batches.
public final class ModelRequestLog: Sendable {
    private let database: any Database
    private let clock: WallClock
    private let recent: RecentValues<RequestLogSettings>

    init(database: any Database, clock: WallClock) {
        self.database = database
        self.clock = clock
        self.recent = RecentValues(clock: clock)
    }

    /// The organization's settings (read at most once a second).
    public func settings(orgID: String) async throws -> RequestLogSettings {
        try await recent.value(orgID) {
            try await database.read { executor in
                try await executor.queryFirst(
                    "SELECT log_bodies, body_retention_days FROM model_request_log_settings WHERE org_id = $1",
                    [.text(orgID)]
                )
            }.map { row in
                RequestLogSettings(
                    logBodies: try row.int("log_bodies") != 0,
                    bodyRetentionDays: Int(try row.int("body_retention_days"))
                )
            }
        } ?? .off
    }

    public func setSettings(orgID: String, _ settings: RequestLogSettings) async throws {
        let now = clock.nowMilliseconds()
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO model_request_log_settings (org_id, log_bodies, body_retention_days, updated_at)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (org_id) DO UPDATE SET log_bodies = $2, body_retention_days = $3, updated_at = $4
                """,
                [.text(orgID), .int(settings.logBodies ? 1 : 0), .int(Int64(settings.bodyRetentionDays)), .int(now)]
            )
        }
        recent.store(settings, for: orgID)
    }

    /// Calls newest first, before the call `before` (a previous page's last id).
    public func list(
        orgID: String,
        before: Int64?,
        limit: Int,
        filter: ModelRequestFilter
    ) async throws
        -> [ModelRequestEntry]
    {
        var conditions = ["org_id = $1"]
        var binds: [SQLValue] = [.text(orgID)]
        func add(_ condition: (String) -> String, _ value: SQLValue) {
            binds.append(value)
            conditions.append(condition("$\(binds.count)"))
        }
        if let before { add({ "id < \($0)" }, .int(before)) }
        if let keyID = filter.keyID { add({ "key_id = \($0)" }, .text(keyID)) }
        if let model = filter.model {
            add({ "provider = \($0)" }, .text(model.provider))
            add({ "model = \($0)" }, .text(model.model))
        }
        if let runID = filter.runID { add({ "run_id = \($0)" }, .text(runID)) }
        if let from = filter.from { add({ "at >= \($0)" }, .int(from)) }
        if let to = filter.to { add({ "at < \($0)" }, .int(to)) }
        switch filter.outcome {
        case nil: break
        case "failed"?: conditions.append("outcome NOT IN ('success', 'cached')")
        case let outcome?: add({ "outcome = \($0)" }, .text(outcome))
        }
        binds.append(.int(Int64(limit)))
        let sql =
            "SELECT * FROM model_usage WHERE \(conditions.joined(separator: " AND ")) ORDER BY id DESC LIMIT $\(binds.count)"
        let values = binds
        let rows = try await database.read { executor in try await executor.query(sql, values) }
        return try rows.map(Self.entry)
    }

    /// One call of the organization.
    public func entry(orgID: String, id: Int64) async throws -> ModelRequestEntry? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM model_usage WHERE org_id = $1 AND id = $2",
                [.text(orgID), .int(id)]
            )
        }.map(Self.entry)
    }

    /// The bodies kept for a front-door request of the organization, if any.
    public func bodies(orgID: String, requestID: String) async throws -> (request: JSONValue, response: JSONValue)? {
        try await database.read { executor in
            try await executor.queryFirst(
                """
                SELECT request, response FROM model_request_bodies
                WHERE org_id = $1 AND request_id = $2 AND expires_at > $3
                """,
                [.text(orgID), .text(requestID), .int(clock.nowMilliseconds())]
            )
        }.map { row in (try row.json("request") ?? .null, try row.json("response") ?? .null) }
    }

    private static func entry(_ row: SQLRow) throws -> ModelRequestEntry {
        ModelRequestEntry(
            id: try row.int("id"),
            record: UsageRecord(
                orgID: try row.string("org_id"),
                at: try row.int("at"),
                runID: try row.optionalString("run_id"),
                agent: try row.optionalString("agent"),
                provider: try row.string("provider"),
                model: try row.string("model"),
                usage: TokenUsage(
                    inputTokens: Int(try row.int("input_tokens")),
                    outputTokens: Int(try row.int("output_tokens"))
                ),
                costUSD: try row.double("cost_usd"),
                latencyMilliseconds: try row.int("latency_ms"),
                outcome: try row.string("outcome"),
                keyID: try row.optionalString("key_id"),
                requestID: try row.optionalString("request_id"),
                endpoint: try row.optionalString("endpoint")
            )
        )
    }
}
