import CaravanCore
public import CaravanStorage
import Foundation

/// One metered use of an installed listing: a run of an agent or workflow, or a call of a module.
public struct LedgerCharge: Sendable {
    /// Names the use once, however often it is seen again (`run:ID`, `call:KEY`): a replayed or retried run or
    /// call is charged once.
    public var key: String
    public var kind: String
    public var install: ListingInstall
    public var publisherOrgID: String
    public var runID: String?
    /// `succeeded`, `failed` or `cancelled`.
    public var outcome: String
    public var milliseconds: Int64
    public var at: Int64
    /// The listing's price, charged when the use succeeded.
    public var priceMicros: Int64
    /// What the use spent on models, charged whatever its outcome.
    public var modelCostMicros: Int64
}

/// One line of the ledger: an amount on one account of one organization (`nil`: the platform's).
public struct LedgerEntry: Sendable, Equatable {
    public var orgID: String?
    public var account: String
    public var amountMicros: Int64
}

/// The double-entry ledger of the catalog, in integer micro-dollars. Every charge is one transaction whose entries
/// sum to zero: the installer pays the price and its model costs; the publisher earns the price less the platform's
/// fee; the platform keeps the fee and passes the model costs on to the providers.
public enum Ledger {
    /// The accounts, as `GET /v1/ledger` names them.
    public enum Account {
        /// The installer: prices of the listings it used (negative).
        public static let purchases = "purchases"
        /// The installer: what its uses of listings spent on models (negative).
        public static let modelCosts = "model_costs"
        /// The publisher: prices earned, less the fee (positive).
        public static let sales = "sales"
        /// The platform: its fee on each price.
        public static let platformFees = "platform_fees"
        /// The platform: model costs, owed to the providers.
        public static let providers = "model_providers"
    }

    /// The entries of `charge`, balanced; none when it costs nothing.
    public static func entries(of charge: LedgerCharge, feeBasisPoints: Int) -> [LedgerEntry] {
        var entries: [LedgerEntry] = []
        let price = charge.outcome == "succeeded" ? charge.priceMicros : 0
        if price > 0 {
            let fee = price * Int64(feeBasisPoints) / 10_000
            entries.append(LedgerEntry(orgID: charge.install.orgID, account: Account.purchases, amountMicros: -price))
            if price > fee {
                entries.append(
                    LedgerEntry(orgID: charge.publisherOrgID, account: Account.sales, amountMicros: price - fee)
                )
            }
            if fee > 0 { entries.append(LedgerEntry(orgID: nil, account: Account.platformFees, amountMicros: fee)) }
        }
        if charge.modelCostMicros > 0 {
            entries.append(
                LedgerEntry(
                    orgID: charge.install.orgID,
                    account: Account.modelCosts,
                    amountMicros: -charge.modelCostMicros
                )
            )
            entries.append(LedgerEntry(orgID: nil, account: Account.providers, amountMicros: charge.modelCostMicros))
        }
        return entries
    }

    /// Records `charge` in `executor`'s transaction, unless its key was recorded before.
    /// - Returns: whether it was recorded now.
    @discardableResult
    public static func record(
        _ charge: LedgerCharge,
        feeBasisPoints: Int,
        in executor: any SQLExecutor
    ) async throws
        -> Bool
    {
        let id = Identifier.make("txn", milliseconds: charge.at)
        let month = month(of: charge.at)
        let inserted = try await executor.query(
            """
            INSERT INTO ledger_transactions (id, key, kind, listing_id, version, install_id, installer_org_id,
                publisher_org_id, run_id, outcome, duration_ms, at, month)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            ON CONFLICT (key) DO NOTHING RETURNING id
            """,
            [
                .text(id), .text(charge.key), .text(charge.kind), .text(charge.install.listingID),
                .int(Int64(charge.install.version)), .text(charge.install.id), .text(charge.install.orgID),
                .text(charge.publisherOrgID), .text(charge.runID), .text(charge.outcome), .int(charge.milliseconds),
                .int(charge.at), .text(month),
            ]
        )
        guard !inserted.isEmpty else { return false }
        try await executor.execute(
            """
            INSERT INTO catalog_listing_stats (listing_id, uses, succeeded) VALUES ($1, 1, $2)
            ON CONFLICT (listing_id) DO UPDATE SET uses = catalog_listing_stats.uses + 1,
                succeeded = catalog_listing_stats.succeeded + excluded.succeeded
            """,
            [.text(charge.install.listingID), .int(charge.outcome == "succeeded" ? 1 : 0)]
        )
        let entries = entries(of: charge, feeBasisPoints: feeBasisPoints)
        guard !entries.isEmpty else { return true }
        var sql =
            "INSERT INTO ledger_entries (transaction_id, org_id, account, amount_micros, listing_id, at, month) VALUES "
        var binds: [SQLValue] = [.text(id), .text(charge.install.listingID), .int(charge.at), .text(month)]
        for (index, entry) in entries.enumerated() {
            let base = binds.count
            sql += (index == 0 ? "" : ", ") + "($1, $\(base + 1), $\(base + 2), $\(base + 3), $2, $3, $4)"
            binds += [.text(entry.orgID), .text(entry.account), .int(entry.amountMicros)]
        }
        try await executor.execute(sql, binds)
        return true
    }

    /// `YYYY-MM` of a time in milliseconds, in UTC: the month of a statement.
    public static func month(of milliseconds: Int64) -> String {
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let days = Int64((Double(milliseconds) / 86_400_000).rounded(.down)) + 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shifted = (5 * dayOfYear + 2) / 153
        let month = shifted < 10 ? shifted + 3 : shifted - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return String(format: "%04d-%02d", year, month)
    }

    /// Whether `text` is a month as `YYYY-MM`.
    public static func isMonth(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let month = Int(parts[1]),
            Int(parts[0]) != nil
        else { return false }
        return (1...12).contains(month)
    }
}
