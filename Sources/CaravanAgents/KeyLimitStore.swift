public import CaravanCore
public import CaravanModels
public import CaravanStorage

/// What one API key may do through the gateway: the models it may call and what it may spend in a month, as a
/// gateway's "virtual keys" are limited. A key without limits has the organization's.
public struct KeyModelLimits: Sendable, Hashable {
    /// `provider/model` names, or `provider/*` for every model of a provider; `nil` for every model.
    public var models: [String]?
    /// USD a calendar month (UTC); `nil` for no limit of the key's own.
    public var monthlyCostUSD: Double?

    public init(models: [String]? = nil, monthlyCostUSD: Double? = nil) {
        self.models = models
        self.monthlyCostUSD = monthlyCostUSD
    }

    /// Whether the key may call `ref`.
    public func allows(_ ref: ModelRef) -> Bool {
        guard let models else { return true }
        return models.contains(ref.description) || models.contains(ref.provider + "/*")
    }

    public var json: JSONValue {
        [
            "models": models.map { .array($0.map(JSONValue.string)) } ?? .null,
            "monthly_cost_usd": monthlyCostUSD.map(JSONValue.double) ?? .null,
        ]
    }
}

/// Stores each API key's `KeyModelLimits`, read at most once a second per key (a change made on this node applies
/// at once, one made on another node within a second).
public final class KeyLimitStore: Sendable {
    private let database: any Database
    private let clock: WallClock
    private let recent: RecentValues<KeyModelLimits>

    public init(database: any Database, clock: WallClock = .system) {
        self.database = database
        self.clock = clock
        self.recent = RecentValues(clock: clock)
    }

    /// The key's limits, or `nil` when it has none.
    public func limits(orgID: String, keyID: String) async throws -> KeyModelLimits? {
        try await recent.value(orgID + "/" + keyID) {
            try await database.read { executor in
                try await executor.queryFirst(
                    "SELECT models, monthly_cost_usd FROM model_key_limits WHERE org_id = $1 AND key_id = $2",
                    [.text(orgID), .text(keyID)]
                )
            }.map { row in
                KeyModelLimits(
                    models: try row.json("models")?.arrayValue?.compactMap(\.stringValue),
                    monthlyCostUSD: row["monthly_cost_usd"] == .null ? nil : try row.double("monthly_cost_usd")
                )
            }
        }
    }

    /// Sets the key's limits; both `nil` removes them.
    public func setLimits(orgID: String, keyID: String, _ limits: KeyModelLimits) async throws {
        let now = clock.nowMilliseconds()
        try await database.withTransaction { executor in
            if limits.models == nil && limits.monthlyCostUSD == nil {
                try await executor.execute(
                    "DELETE FROM model_key_limits WHERE org_id = $1 AND key_id = $2",
                    [.text(orgID), .text(keyID)]
                )
                return
            }
            try await executor.execute(
                """
                INSERT INTO model_key_limits (org_id, key_id, models, monthly_cost_usd, updated_at) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (org_id, key_id) DO UPDATE SET models = $3, monthly_cost_usd = $4, updated_at = $5
                """,
                [
                    .text(orgID), .text(keyID), .json(limits.models.map { .array($0.map(JSONValue.string)) }),
                    limits.monthlyCostUSD.map(SQLValue.double) ?? .null, .int(now),
                ]
            )
        }
        recent.store(limits.models == nil && limits.monthlyCostUSD == nil ? nil : limits, for: orgID + "/" + keyID)
    }
}
