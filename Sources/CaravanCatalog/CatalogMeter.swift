public import CaravanCore
import CaravanStorage
public import CaravanWasm
public import Logging
public import ServiceLifecycle
import Synchronization

/// Charges the uses of installed listings to the ledger: every finished run of an installed agent or workflow
/// (found by following the runs that finish, off the engine's hot path), and every call of an installed module
/// (told by the module runner as it ends). Each use is charged once, by its key, whichever node sees it and however
/// often: a run replayed after a crash or seen by two nodes at once is one transaction. A run is charged by the
/// terms (listing version) its install had when the run started, even if the install changed or went since; a failed
/// or cancelled run that is retried is settled again when it finishes again (the price once it succeeds, the model
/// costs not charged before).
public final class CatalogMeter: Service, WasmCallMeter {
    let store: CatalogStore
    /// The platform's share of every price, in hundredths of a percent.
    let feeBasisPoints: Int
    let clock: WallClock
    let logger: Logger
    /// How often finished runs are looked for.
    let interval: Duration
    /// Returns once the schema is in place: `run()` reads nothing before.
    let ready: @Sendable () async -> Void
    /// How long after a run finished it is charged: time for its model calls' usage (written in batches) to land.
    static let settleMilliseconds: Int64 = 1_000
    /// How far before the last pass each pass looks again, for runs whose node's clock lags this one's.
    static let overlapMilliseconds: Int64 = 10_000
    /// Where the passes have reached (`nil` until read), and when that was last stored.
    private let watermark = Mutex<(through: Int64?, storedAt: Int64)>((nil, 0))

    public init(
        store: CatalogStore,
        feeBasisPoints: Int,
        clock: WallClock = .system,
        interval: Duration = .seconds(1),
        logger: Logger,
        ready: @escaping @Sendable () async -> Void = {}
    ) {
        self.ready = ready
        self.store = store
        self.feeBasisPoints = min(max(feeBasisPoints, 0), 10_000)  // a fee is a share of the price, never more
        self.clock = clock
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.ready() }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                while try await meterFinishedRuns() {}
            } catch {
                logger.warning(
                    "Could not charge finished runs of installed listings; trying again",
                    metadata: ["error.message": "\(error)"]
                )
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
    }

    /// Charges one batch of the runs of installed agents and workflows that finished since the last pass. A pass
    /// that finds nothing writes nothing (the watermark is kept in memory, and stored at most once a minute then).
    /// - Returns: whether there may be more.
    @discardableResult
    public func meterFinishedRuns(limit: Int = 500) async throws -> Bool {
        let now = clock.nowMilliseconds()
        let until = now - Self.settleMilliseconds
        let database = store.database
        let through: Int64
        if let kept = watermark.withLock({ $0.through }) {
            through = kept
        } else {
            through =
                try await database.read {
                    try await $0.queryFirst("SELECT finished_through FROM catalog_meter WHERE id = 1", [])
                }?.int("finished_through") ?? 0
        }
        let rows = try await database.read { executor in
            try await executor.query(
                """
                SELECT r.id AS run_id, r.status, r.created_at, r.started_at, r.finished_at, h.install_id AS id,
                    h.org_id, h.listing_id, h.version, h.kind, h.name, h.target, h.from_at AS installed_at,
                    h.from_at AS updated_at, l.publisher_org_id, v.price_micros,
                    (SELECT COALESCE(SUM(u.cost_usd), 0) FROM model_usage u
                        WHERE u.run_id = r.id AND u.outcome = 'success') AS model_cost,
                    (SELECT CAST(COALESCE(SUM(e.amount_micros), 0) AS BIGINT) FROM ledger_transactions t
                        JOIN ledger_entries e ON e.transaction_id = t.id
                        WHERE t.run_id = r.id AND e.account = 'model_costs') AS model_charged
                FROM runs r
                JOIN catalog_install_terms h ON h.org_id = r.org_id AND h.target = r.workflow AND h.kind <> 'module'
                    AND h.from_at <= r.created_at AND (h.until_at IS NULL OR r.created_at < h.until_at)
                JOIN catalog_listings l ON l.id = h.listing_id
                JOIN catalog_listing_versions v ON v.listing_id = h.listing_id AND v.version = h.version
                WHERE r.finished_at >= $1 AND r.finished_at < $2
                    AND NOT EXISTS (SELECT 1 FROM ledger_transactions t
                        WHERE t.key = 'run:' || r.id || ':' || r.finished_at)
                ORDER BY r.finished_at, r.id LIMIT $3
                """,
                [.int(through - Self.overlapMilliseconds), .int(until), .int(Int64(limit))]
            )
        }
        let more = rows.count == limit
        let next = max(through, more ? (try rows.last?.int("finished_at") ?? through) : until)
        let stored = watermark.withLock { $0.storedAt }
        guard !rows.isEmpty || now - stored >= 60_000 else {
            watermark.withLock { $0.through = next }
            return false
        }
        let charges = try rows.map { row in
            let finished = try row.int("finished_at")
            let started = try row.optionalInt("started_at") ?? row.int("created_at")
            let modelCost = Int64((try row.double("model_cost") * 1_000_000).rounded())
            let runID = try row.string("run_id")
            return LedgerCharge(
                key: "run:\(runID):\(finished)",
                kind: "run",
                install: try CatalogStore.install(row),  // the terms the run started under
                publisherOrgID: try row.string("publisher_org_id"),
                runID: runID,
                outcome: try row.string("status"),
                milliseconds: max(0, finished - started),
                at: finished,
                priceMicros: try row.int("price_micros"),
                // A retried run is settled again when it finishes again: for what its models spent since.
                modelCostMicros: max(0, modelCost + (try row.int("model_charged")))
            )
        }
        let feeBasisPoints = self.feeBasisPoints
        try await database.withTransaction { executor in
            for charge in charges { try await Ledger.record(charge, feeBasisPoints: feeBasisPoints, in: executor) }
            try await executor.execute(
                """
                INSERT INTO catalog_meter (id, finished_through) VALUES (1, $1)
                ON CONFLICT (id) DO UPDATE SET finished_through = $1
                """,
                [.int(next)]
            )
        }
        watermark.withLock { $0 = (next, now) }
        return more
    }

    /// Charges one call of an installed module (`WasmCallMeter`); other modules' calls are not metered.
    /// A charge that cannot be written (the database unavailable) is tried three times over a second, then logged
    /// as an error with what it was.
    public func called(orgID: String, module: String, key: String, succeeded: Bool, milliseconds: Int64) async {
        // A success is charged once per call, however often it is seen; each failed attempt is a use of its own (it
        // costs nothing), so that a later success of the same call is still charged.
        let chargeKey = "call:" + orgID + ":" + key + (succeeded ? "" : ":failed:" + Identifier.make("att"))
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await charge(
                    orgID: orgID,
                    module: module,
                    key: chargeKey,
                    succeeded: succeeded,
                    milliseconds: milliseconds
                )
                return
            } catch  where attempt < 3 {
                try? await Task.sleep(for: .milliseconds(attempt * 300))
            } catch {
                logger.error(
                    "Could not charge a call of an installed module",
                    metadata: [
                        "org.id": "\(orgID)", "module": "\(module)", "caravan.meter_key": "\(key)",
                        "caravan.succeeded": "\(succeeded)", "error.message": "\(error)",
                    ]
                )
                return
            }
        }
    }

    private func charge(orgID: String, module: String, key: String, succeeded: Bool, milliseconds: Int64) async throws {
        guard let install = try await store.installedModule(orgID: orgID, name: module) else { return }
        let now = clock.nowMilliseconds()
        let feeBasisPoints = self.feeBasisPoints
        try await store.database.withTransaction { executor in
            guard
                let listing = try await executor.queryFirst(
                    """
                    SELECT l.publisher_org_id, v.price_micros FROM catalog_listings l
                    JOIN catalog_listing_versions v ON v.listing_id = l.id AND v.version = $2
                    WHERE l.id = $1
                    """,
                    [.text(install.listingID), .int(Int64(install.version))]
                )
            else { return }
            let charge = LedgerCharge(
                key: key,
                kind: "call",
                install: install,
                publisherOrgID: try listing.string("publisher_org_id"),
                runID: nil,
                outcome: succeeded ? "succeeded" : "failed",
                milliseconds: milliseconds,
                at: now,
                priceMicros: try listing.int("price_micros"),
                modelCostMicros: 0
            )
            try await Ledger.record(charge, feeBasisPoints: feeBasisPoints, in: executor)
        }
    }
}
