import CaravanCore
import CaravanModels
import CaravanStorage
import Foundation

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

    public init(
        orgID: String, at: Int64, runID: String?, agent: String?, provider: String, model: String, usage: TokenUsage,
        costUSD: Double, latencyMilliseconds: Int64, outcome: String
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
    case model, agent, day, provider
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
public final class UsageMeter: Sendable {
    private let database: any Database

    public init(database: any Database) {
        self.database = database
    }

    /// Records a call.
    public func record(_ record: UsageRecord) async throws {
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO model_usage (org_id, at, run_id, agent, provider, model, input_tokens, output_tokens, cost_usd,
                    latency_ms, outcome)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                """,
                [
                    .text(record.orgID), .int(record.at), .text(record.runID), .text(record.agent), .text(record.provider),
                    .text(record.model), .int(Int64(record.usage.inputTokens)), .int(Int64(record.usage.outputTokens)),
                    .double(record.costUSD), .int(record.latencyMilliseconds), .text(record.outcome),
                ]
            )
        }
    }

    /// Totals between `from` (inclusive) and `to` (exclusive), grouped; at most 1,000 groups, largest cost first.
    public func totals(orgID: String, from: Int64, to: Int64, groupBy: UsageGrouping) async throws -> [UsageTotals] {
        let rows = try await database.read { executor in
            try await executor.query(
                """
                SELECT at, agent, provider, model, input_tokens, output_tokens, cost_usd FROM model_usage
                WHERE org_id = $1 AND at >= $2 AND at < $3
                """,
                [.text(orgID), .int(from), .int(to)]
            )
        }
        var groups: [String: UsageTotals] = [:]
        for row in rows {
            let key: String
            switch groupBy {
            case .model: key = try row.string("provider") + "/" + row.string("model")
            case .provider: key = try row.string("provider")
            case .agent: key = try row.optionalString("agent") ?? "(none)"
            case .day: key = String(Clock.rfc3339(try row.int("at")).prefix(10))
            }
            var totals = groups[key] ?? UsageTotals(key: key, requests: 0, inputTokens: 0, outputTokens: 0, costUSD: 0)
            totals.requests += 1
            totals.inputTokens += try row.int("input_tokens")
            totals.outputTokens += try row.int("output_tokens")
            totals.costUSD += try row.double("cost_usd")
            groups[key] = totals
        }
        return groups.values.sorted { ($0.costUSD, $1.key) > ($1.costUSD, $0.key) }.prefix(1000).map { $0 }
    }

    /// The organization's spend since the start of the current UTC month.
    public func monthToDate(orgID: String, now: Int64) async throws -> (tokens: Int64, costUSD: Double) {
        let start = Self.monthStart(now)
        let row = try await database.read { executor in
            try await executor.queryFirst(
                """
                SELECT CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS tokens,
                    CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost
                FROM model_usage WHERE org_id = $1 AND at >= $2
                """,
                [.text(orgID), .int(start)]
            )
        }
        return (try row?.int("tokens") ?? 0, try row?.double("cost") ?? 0)
    }

    /// Midnight UTC of the first day of `now`'s month, in Unix milliseconds.
    public static func monthStart(_ now: Int64) -> Int64 {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!  // UTC always exists
        let date = Date(timeIntervalSince1970: Double(now) / 1000)
        let start = calendar.date(from: calendar.dateComponents([.year, .month], from: date)) ?? date
        return Int64(start.timeIntervalSince1970 * 1000)
    }

    public func budget(orgID: String) async throws -> ModelBudget? {
        try await database.read { executor in
            try await executor.queryFirst("SELECT * FROM model_budgets WHERE org_id = $1", [.text(orgID)])
        }.map { row in
            ModelBudget(
                monthlyCostUSD: row["monthly_cost_usd"] == .null ? nil : try row.double("monthly_cost_usd"),
                monthlyTokens: try row.optionalInt("monthly_tokens")
            )
        }
    }

    public func setBudget(orgID: String, _ budget: ModelBudget) async throws {
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO model_budgets (org_id, monthly_cost_usd, monthly_tokens, updated_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (org_id) DO UPDATE SET monthly_cost_usd = $2, monthly_tokens = $3, updated_at = $4
                """,
                [
                    .text(orgID), budget.monthlyCostUSD.map(SQLValue.double) ?? .null, .int(budget.monthlyTokens),
                    .int(Clock.nowMilliseconds()),
                ]
            )
        }
    }

    /// Refuses a call when the organization has spent its monthly budget.
    /// - Throws: `BudgetExceeded`.
    public func checkMonthlyBudget(orgID: String, now: Int64) async throws {
        guard let budget = try await budget(orgID: orgID), budget.monthlyCostUSD != nil || budget.monthlyTokens != nil else { return }
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
