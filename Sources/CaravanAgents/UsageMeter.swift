public import CaravanCore
public import CaravanModels
public import CaravanStorage
import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// One model call, as metered.
public struct UsageRecord: Sendable, Hashable {
    public var orgID: String
    public var at: Int64
    public var runID: String?
    public var agent: String?
    public var provider: String
    public var model: String
    public var usage: TokenUsage
    public var costUSD: Double
    public var latencyMilliseconds: Int64
    /// `success`, or the error code of a failed call.
    public var outcome: String
    /// The API key that made the call through the gateway, if one did.
    public var keyID: String?
    /// The front-door request that made the call (`nil` for a run's).
    public var requestID: String?
    /// The front door's endpoint: `chat.completions`, `responses` or `embeddings` (`nil` for a run's call).
    public var endpoint: String?

    public init(
        orgID: String,
        at: Int64,
        runID: String?,
        agent: String?,
        provider: String,
        model: String,
        usage: TokenUsage,
        costUSD: Double,
        latencyMilliseconds: Int64,
        outcome: String,
        keyID: String? = nil,
        requestID: String? = nil,
        endpoint: String? = nil
    ) {
        self.orgID = orgID
        self.at = at
        self.runID = runID
        self.agent = agent
        self.provider = provider
        self.model = model
        self.usage = usage
        self.costUSD = costUSD
        self.latencyMilliseconds = latencyMilliseconds
        self.outcome = outcome
        self.keyID = keyID
        self.requestID = requestID
        self.endpoint = endpoint
    }
}

/// Totals of a group of model calls.
public struct UsageTotals: Sendable, Hashable {
    public var key: String
    public var requests: Int64
    public var inputTokens: Int64
    public var outputTokens: Int64
    public var costUSD: Double
}

/// How usage is grouped in a report.
public enum UsageGrouping: String, Sendable, CaseIterable {
    case model, agent, day, provider, key
}

/// An organization's monthly model budget.
public struct ModelBudget: Sendable, Hashable {
    public var monthlyCostUSD: Double?
    public var monthlyTokens: Int64?

    public init(monthlyCostUSD: Double?, monthlyTokens: Int64?) {
        self.monthlyCostUSD = monthlyCostUSD
        self.monthlyTokens = monthlyTokens
    }
}

/// Records every model call and answers totals; enforces the organization's monthly budget.
///
/// Calls are written in batches (one transaction every 100 ms, or at once past 500 waiting) so that metering
/// adds no disk flush to a model call; `flush()` writes what waits (shutdown, reports). A crash loses at most
/// the last batch's records. Budgets are read at most once a second per organization, and the month's spend is
/// the stored sum plus what this node has not written yet.
public final class UsageMeter: Service, Sendable {
    private let database: any Database
    private let logger: Logger
    private let wake = WakeFlag()

    private struct State {
        var pending: [UsageRecord] = []
        /// The batch being written: still counted as waiting until its commit has moved it into `spend`.
        var writing: [UsageRecord] = []
        /// Request bodies to keep, written with the next batch.
        var pendingBodies: [RequestBodies] = []
        /// When this node last removed the expired bodies.
        var prunedAt: Int64 = 0
        /// Per organization: its budget and when it was read.
        var budgets: [String: (budget: ModelBudget?, readAt: Int64)] = [:]
        /// Per organization: the stored spend of the month, when it was read.
        var spend: [String: (monthStart: Int64, tokens: Int64, cost: Double, readAt: Int64)] = [:]
    }

    private let state = Mutex(State())
    /// One batch at a time, and no stored sum read while one is being written.
    private let writer = AsyncSerialLock()
    static let batchSize = 500
    static let cacheMilliseconds: Int64 = 1_000

    private let clock: WallClock
    /// Each API key's models and monthly spend through the gateway.
    public let keyLimits: KeyLimitStore
    /// Every call, as an admin reads it, and the organization's choice of keeping request bodies.
    public let requestLog: ModelRequestLog

    private let ready: @Sendable () async -> Void

    /// - Parameter ready: returns once the schema is in place; `run()` writes nothing before.
    public init(
        database: any Database,
        clock: WallClock = .system,
        logger: Logger,
        ready: @escaping @Sendable () async -> Void = {}
    ) {
        self.clock = clock
        self.database = database
        self.logger = logger
        self.ready = ready
        self.keyLimits = KeyLimitStore(database: database, clock: clock)
        self.requestLog = ModelRequestLog(database: database, clock: clock)
    }

    // MARK: Recording

    /// Records a call (written with the next batch).
    public func record(_ record: UsageRecord) {
        let count = state.withLock { state in
            state.pending.append(record)
            return state.pending.count
        }
        if count >= Self.batchSize { wake.signal() }
    }

    /// Keeps a front-door request's bodies (written with the next batch).
    public func record(_ bodies: RequestBodies) {
        state.withLock { $0.pendingBodies.append(bodies) }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.ready() }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await cancelWhenGracefulShutdown { await self.wake.wait(timeout: .milliseconds(100)) }
            await flushLogged()
        }
        await flushLogged()
    }

    private func flushLogged() async {
        do { try await flush() } catch {
            logger.warning(
                "Could not write model usage; retrying with the next batch",
                metadata: ["error.message": "\(error)"]
            )
        }
    }

    /// Writes every waiting record now.
    public func flush() async throws {
        try await writer.withLock { try await writeBatch() }
    }

    private func writeBatch() async throws {
        let now = clock.nowMilliseconds()
        let (batch, bodies, prune) = state.withLock { state -> ([UsageRecord], [RequestBodies], Bool) in
            state.writing = state.pending
            state.pending = []
            let bodies = state.pendingBodies
            state.pendingBodies = []
            // Expired bodies go once every ten minutes on each node.
            let prune = now - state.prunedAt >= 600_000
            if prune { state.prunedAt = now }
            return (state.writing, bodies, prune)
        }
        guard !batch.isEmpty || !bodies.isEmpty || prune else { return }
        do {
            try await database.withTransaction { executor in
                for body in bodies {
                    try await executor.execute(
                        """
                        INSERT INTO model_request_bodies (org_id, request_id, at, request, response, expires_at)
                        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, request_id) DO NOTHING
                        """,
                        [
                            .text(body.orgID), .text(body.requestID), .int(body.at), .json(body.request),
                            .json(body.response), .int(body.expiresAt),
                        ]
                    )
                }
                if prune {
                    try await executor.execute("DELETE FROM model_request_bodies WHERE expires_at <= $1", [.int(now)])
                }
                for chunk in stride(from: 0, to: batch.count, by: 100).map({
                    Array(batch[$0..<min($0 + 100, batch.count)])
                }) {
                    var sql = """
                        INSERT INTO model_usage (org_id, at, run_id, agent, provider, model, input_tokens, output_tokens, cost_usd,
                            latency_ms, outcome, key_id, request_id, endpoint) VALUES
                        """
                    var binds: [SQLValue] = []
                    for (index, record) in chunk.enumerated() {
                        let base = binds.count
                        sql +=
                            (index == 0 ? " (" : ", (") + (1...14).map { "$\(base + $0)" }.joined(separator: ", ") + ")"
                        binds += [
                            .text(record.orgID), .int(record.at), .text(record.runID), .text(record.agent),
                            .text(record.provider),
                            .text(record.model), .int(Int64(record.usage.inputTokens)),
                            .int(Int64(record.usage.outputTokens)),
                            .double(record.costUSD), .int(record.latencyMilliseconds), .text(record.outcome),
                            .text(record.keyID), .text(record.requestID), .text(record.endpoint),
                        ]
                    }
                    try await executor.execute(sql, binds)
                }
            }
        } catch {
            state.withLock { state in
                state.pending.insert(contentsOf: batch, at: 0)
                state.pendingBodies.insert(contentsOf: bodies, at: 0)
                state.writing = []
                if prune { state.prunedAt = 0 }
            }
            throw error
        }
        // What was written moves from the waiting records into the cached sums.
        state.withLock { state in
            state.writing = []
            for record in batch {
                // The organization's sum, and its key's when a key made the call.
                for cacheKey in [record.orgID] + (record.keyID.map { [record.orgID + "\u{0}" + $0] } ?? []) {
                    guard var spend = state.spend[cacheKey], record.at >= spend.monthStart else { continue }
                    spend.tokens += Int64(record.usage.totalTokens)
                    spend.cost += record.costUSD
                    state.spend[cacheKey] = spend
                }
            }
        }
    }

    // MARK: Reports

    /// Totals of the calls a provider answered between `from` (inclusive) and `to` (exclusive), grouped (failed
    /// calls and cached answers, which cost nothing, are in the request log); at most 1,000 groups, largest cost
    /// first.
    public func totals(orgID: String, from: Int64, to: Int64, groupBy: UsageGrouping) async throws -> [UsageTotals] {
        try await flush()
        // Grouped by the database: a month of calls never comes into memory row by row. Days are whole UTC days
        // since 1970 (integer division in both dialects).
        let (selected, grouped): (String, String) =
            switch groupBy {
            case .model: ("provider, model", "provider, model")
            case .provider: ("provider", "provider")
            case .agent: ("agent", "agent")
            case .day: ("at / 86400000 AS day", "at / 86400000")
            case .key: ("key_id", "key_id")
            }
        let rows = try await database.read { executor in
            try await executor.query(
                """
                SELECT \(selected), COUNT(*) AS requests,
                    CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, CAST(SUM(output_tokens) AS BIGINT) AS output_tokens,
                    CAST(SUM(cost_usd) AS DOUBLE PRECISION) AS cost
                FROM model_usage WHERE org_id = $1 AND at >= $2 AND at < $3 AND outcome = 'success'
                GROUP BY \(grouped) ORDER BY cost DESC LIMIT 1000
                """,
                [.text(orgID), .int(from), .int(to)]
            )
        }
        return try rows.map { row in
            let key: String
            switch groupBy {
            case .model: key = try row.string("provider") + "/" + row.string("model")
            case .provider: key = try row.string("provider")
            case .agent: key = try row.optionalString("agent") ?? "(none)"
            case .day: key = String(Clock.rfc3339(try row.int("day") * 86_400_000).prefix(10))
            case .key: key = try row.optionalString("key_id") ?? "(session)"
            }
            return UsageTotals(
                key: key,
                requests: try row.int("requests"),
                inputTokens: try row.int("input_tokens"),
                outputTokens: try row.int("output_tokens"),
                costUSD: try row.double("cost")
            )
        }.sorted { ($0.costUSD, $1.key) > ($1.costUSD, $0.key) }
    }

    /// The organization's spend since the start of the current UTC month: what is stored (read at most once a
    /// second) and what this node has not written yet.
    public func monthToDate(
        orgID: String,
        keyID: String? = nil,
        now: Int64
    ) async throws
        -> (tokens: Int64, costUSD: Double)
    {
        let start = Self.monthStart(now)
        let cacheKey = keyID.map { orgID + "\u{0}" + $0 } ?? orgID
        var stored = state.withLock { state in
            state.spend[cacheKey].flatMap {
                $0.monthStart == start && now - $0.readAt < Self.cacheMilliseconds ? ($0.tokens, $0.cost) : nil
            }
        }
        if stored == nil {
            // Write what waits, and read the sum before another batch can be written: nothing is counted twice.
            stored = try await writer.withLock { () async throws -> (Int64, Double) in
                try await writeBatch()
                let row = try await database.read { executor in
                    try await executor.queryFirst(
                        """
                        SELECT CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS tokens,
                            CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost
                        FROM model_usage WHERE org_id = $1 AND at >= $2\(keyID == nil ? "" : " AND key_id = $3")
                        """,
                        [.text(orgID), .int(start)] + (keyID.map { [SQLValue.text($0)] } ?? [])
                    )
                }
                let read = (try row?.int("tokens") ?? 0, try row?.double("cost") ?? 0)
                state.withLock { $0.spend[cacheKey] = (start, read.0, read.1, now) }
                return read
            }
        }
        let waiting = state.withLock { state in
            (state.writing + state.pending).reduce(into: (Int64(0), 0.0)) { sum, record in
                guard record.orgID == orgID, record.at >= start, keyID == nil || record.keyID == keyID else { return }
                sum.0 += Int64(record.usage.totalTokens)
                sum.1 += record.costUSD
            }
        }
        return ((stored?.0 ?? 0) + waiting.0, (stored?.1 ?? 0) + waiting.1)
    }

    /// Midnight UTC of the first day of `now`'s month, in Unix milliseconds.
    public static func monthStart(_ now: Int64) -> Int64 {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!  // UTC always exists
        let date = Date(timeIntervalSince1970: Double(now) / 1000)
        let start = calendar.date(from: calendar.dateComponents([.year, .month], from: date)) ?? date
        return Int64(start.timeIntervalSince1970 * 1000)
    }

    // MARK: Budgets

    /// The organization's monthly budget (read at most once a second).
    public func budget(orgID: String) async throws -> ModelBudget? {
        let now = clock.nowMilliseconds()
        if let cached = state.withLock({ $0.budgets[orgID] }), now - cached.readAt < Self.cacheMilliseconds {
            return cached.budget
        }
        let budget = try await database.read { executor in
            try await executor.queryFirst("SELECT * FROM model_budgets WHERE org_id = $1", [.text(orgID)])
        }.map { row in
            ModelBudget(
                monthlyCostUSD: row["monthly_cost_usd"] == .null ? nil : try row.double("monthly_cost_usd"),
                monthlyTokens: try row.optionalInt("monthly_tokens")
            )
        }
        state.withLock { $0.budgets[orgID] = (budget, now) }
        return budget
    }

    public func setBudget(orgID: String, _ budget: ModelBudget) async throws {
        let now = clock.nowMilliseconds()
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO model_budgets (org_id, monthly_cost_usd, monthly_tokens, updated_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (org_id) DO UPDATE SET monthly_cost_usd = $2, monthly_tokens = $3, updated_at = $4
                """,
                [
                    .text(orgID), budget.monthlyCostUSD.map(SQLValue.double) ?? .null, .int(budget.monthlyTokens),
                    .int(now),
                ]
            )
        }
        state.withLock { $0.budgets[orgID] = (budget, now) }
    }

    /// Refuses a call when the organization has spent its monthly budget.
    /// - Throws: `BudgetExceeded`.
    public func checkMonthlyBudget(orgID: String, now: Int64) async throws {
        guard let budget = try await budget(orgID: orgID), budget.monthlyCostUSD != nil || budget.monthlyTokens != nil
        else { return }
        let spent = try await monthToDate(orgID: orgID, now: now)
        if let limit = budget.monthlyTokens, spent.tokens >= limit {
            throw BudgetExceeded(message: "The organization has used its \(limit) model tokens for this month.")
        }
        if let limit = budget.monthlyCostUSD, spent.costUSD >= limit {
            throw BudgetExceeded(message: "The organization has spent its model budget of $\(limit) for this month.")
        }
    }
}

/// A budget stopped a model call before it was made.
public struct BudgetExceeded: Error, Sendable {
    public var message: String
    public static let code = "budget_exceeded"
}
