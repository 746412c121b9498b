import CaravanCore

/// One numbered, forward-only schema change. Applied in a transaction, under a lock, and recorded in
/// `caravan_migrations` so that it runs once.
public struct Migration: Sendable {
    /// The version; versions are applied in ascending order.
    public var version: Int
    /// A short name, recorded beside the version.
    public var name: String
    /// The statements for SQLite.
    public var sqlite: [String]
    /// The statements for PostgreSQL.
    public var postgres: [String]

    /// A migration whose statements differ between the dialects.
    public init(version: Int, name: String, sqlite: [String], postgres: [String]) {
        self.version = version
        self.name = name
        self.sqlite = sqlite
        self.postgres = postgres
    }

    /// A migration whose statements are the same in both dialects.
    public init(version: Int, name: String, statements: [String]) {
        self.init(version: version, name: name, sqlite: statements, postgres: statements)
    }

    /// The statements for `dialect`.
    public func statements(for dialect: SQLDialect) -> [String] {
        dialect == .sqlite ? sqlite : postgres
    }
}

extension Migration {
    /// One numbered sequence from the migrations each part (a target's tables) owns: the parts of one version are
    /// applied as one migration, their statements in the order of `parts`, their names joined.
    public static func compose(_ parts: [[Migration]]) -> [Migration] {
        var byVersion: [Int: Migration] = [:]
        for part in parts {
            for migration in part {
                guard var merged = byVersion[migration.version] else {
                    byVersion[migration.version] = migration
                    continue
                }
                merged.name += "; " + migration.name
                merged.sqlite += migration.sqlite
                merged.postgres += migration.postgres
                byVersion[migration.version] = merged
            }
        }
        return byVersion.values.sorted { $0.version < $1.version }
    }

    /// Creates the bookkeeping table and applies `migrations` not yet recorded, inside `executor`'s transaction.
    /// Shared by both implementations; each calls it while holding its own lock.
    /// - Returns: the versions applied.
    public static func apply(
        _ migrations: [Migration],
        using executor: any SQLExecutor
    ) async throws(StorageError)
        -> [Int]
    {
        try await executor.execute(
            """
            CREATE TABLE IF NOT EXISTS caravan_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at BIGINT NOT NULL
            )
            """,
            []
        )
        let rows = try await executor.query("SELECT version FROM caravan_migrations", [])
        var applied = Set<Int64>()
        for row in rows { applied.insert(try row.int("version")) }
        if let newest = applied.max(), let known = migrations.map(\.version).max(), newest > Int64(known) {
            throw StorageError(
                .migration,
                "The database schema is at version \(newest), newer than this binary knows (\(known)). "
                    + "Run a newer caravan."
            )
        }
        var done: [Int] = []
        for migration in migrations.sorted(by: { $0.version < $1.version })
        where !applied.contains(Int64(migration.version)) {
            for statement in migration.statements(for: executor.dialect) {
                try await executor.execute(statement, [])
            }
            try await executor.execute(
                "INSERT INTO caravan_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                [.int(Int64(migration.version)), .text(migration.name), .int(WallClock.system.nowMilliseconds())]
            )
            done.append(migration.version)
        }
        return done
    }
}
