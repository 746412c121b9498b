import CaravanStorage
import Dispatch
import Metrics

/// Wraps a `Database` and records, by `db.system`: transaction and read durations, failures, and how many are
/// in flight — the figures an operator watches to see the pool or the SQLite writer saturate.
struct MeteredDatabase: Database {
    let base: any Database
    private let transactionTimer: Metrics.Timer
    private let readTimer: Metrics.Timer
    private let failures: Counter
    private let active: Meter
    private let poolSize: Gauge

    init(_ base: any Database, poolSize: Int) {
        self.base = base
        let system = ("db.system", base.dialect == .sqlite ? "sqlite" : "postgresql")
        transactionTimer = Metrics.Timer(
            label: "db.client.operation.duration",
            dimensions: [system, ("db.operation.name", "transaction")],
            preferredDisplayUnit: .seconds
        )
        readTimer = Metrics.Timer(
            label: "db.client.operation.duration",
            dimensions: [system, ("db.operation.name", "read")],
            preferredDisplayUnit: .seconds
        )
        failures = Counter(label: "caravan.db.failures", dimensions: [system])
        active = Meter(label: "db.client.connections.usage", dimensions: [system])
        self.poolSize = Gauge(label: "db.client.connections.max", dimensions: [system])
        self.poolSize.record(poolSize)
    }

    var dialect: SQLDialect { base.dialect }

    func listen(
        channel: String,
        listening: @escaping @Sendable (Bool) -> Void,
        received: @escaping @Sendable (String) -> Void
    ) async {
        await base.listen(channel: channel, listening: listening, received: received)
    }

    func withTransaction<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await measure(transactionTimer) { try await base.withTransaction(body) }
    }

    func read<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await measure(readTimer) { try await base.read(body) }
    }

    func migrate(_ migrations: [Migration]) async throws(StorageError) -> [Int] {
        try await base.migrate(migrations)
    }

    func ping() async throws(StorageError) {
        try await base.ping()
    }

    private func measure<T>(_ timer: Metrics.Timer, _ body: () async throws -> T) async throws -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        active.increment()
        defer {
            active.decrement()
            timer.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
        }
        do {
            return try await body()
        } catch {
            failures.increment()
            throw error
        }
    }
}
