import CaravanCore
import CaravanPostgres
import CaravanSQLite
import CaravanStorage
import CaravanTestSupport
import Synchronization
import Testing

@Suite("SQLite data directory")
struct SQLiteDirectoryTests {
    @Test("A second opener of the same data directory is refused with a clear message")
    func secondOpenerRefused() async throws {
        try await withTemporaryDirectory { directory in
            let first = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
            _ = try await first.migrate(StorageTestSchema.migrations)
            do {
                _ = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
                Issue.record("a second database opened the locked directory")
            } catch let error as StorageError {
                #expect(error.code == .locked)
                #expect(error.message.contains(directory))
            }
            try await first.ping()
        }
    }

    @Test("The lock is released when the database is closed")
    func lockReleased() async throws {
        try await withTemporaryDirectory { directory in
            do {
                let first = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
                _ = try await first.migrate(StorageTestSchema.migrations)
            }
            let second = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
            #expect(try await second.migrate(StorageTestSchema.migrations).isEmpty)
        }
    }
}

@Suite(
    "PostgreSQL migrations",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)")
)
struct PostgresMigrationTests {
    @Test("Several nodes migrating one fresh database at once apply the schema exactly once")
    func concurrentMigrations() async throws {
        try await PostgresTestServer.withFreshDatabase { url in
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let node = try PostgresDatabase(url: url, maximumConnections: 2, logger: TestLogging.quiet)
                        return try await node.withRunningPool { try await $0.migrate(StorageTestSchema.migrations) }
                    }
                }
                var all: [[Int]] = []
                for try await result in group { all.append(result) }
                return all
            }
            #expect(applied.flatMap { $0 }.sorted() == StorageTestSchema.migrations.map(\.version))
            #expect(applied.filter { !$0.isEmpty }.count == 1)
        }
    }
}

@Suite("PostgreSQL URLs")
struct PostgresURLTests {
    @Test("A malformed URL is refused with a clear error", arguments: ["mysql://x", "postgres://", "not a url"])
    func malformedURL(url: String) {
        #expect(throws: StorageError.self) { try PostgresDatabase(url: url, logger: TestLogging.quiet) }
    }
}

@Suite(
    "PostgreSQL connections",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)")
)
struct PostgresConnectionTests {
    @Test("Right after the server ends every connection, each statement answers or fails at once; none waits forever")
    func terminatedConnections() async throws {
        try await withTestDatabase(.postgres, migrations: StorageTestSchema.migrations) { database in
            let name =
                try await database.read {
                    try await $0.queryFirst("SELECT current_database() AS name", [])?.string("name")
                } ?? ""
            let admin = try PostgresDatabase(
                url: PostgresTestServer.url ?? "",
                maximumConnections: 1,
                logger: TestLogging.quiet
            )
            try await admin.withRunningPool { admin in
                for _ in 0..<5 {
                    // Several idle connections in the pool (some may still be failing from the round before); then
                    // the server ends them all.
                    await withTaskGroup(of: Void.self) { group in
                        for _ in 0..<6 {
                            group.addTask {
                                _ = try? await database.read { try await $0.execute("SELECT pg_sleep(0.02)", []) }
                            }
                        }
                    }
                    try await admin.read {
                        try await $0.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                            [.text(name)]
                        )
                    }
                    let answered = AnswerCount()
                    let statements = (0..<6).map { _ in
                        Task {
                            do {
                                _ = try await database.withTransaction { try await $0.query("SELECT 1", []) }
                            } catch {
                                #expect((error as? StorageError)?.code == .unavailable, "\(error)")
                            }
                            answered.count.add(1, ordering: .relaxed)
                        }
                    }
                    // A statement stuck on a dead connection would ignore cancellation: it is waited for with a
                    // deadline, not awaited.
                    let deadline = ContinuousClock.now + .seconds(10)
                    while answered.count.load(ordering: .relaxed) < 6 && ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    #expect(
                        answered.count.load(ordering: .relaxed) == 6,
                        "statements waited forever on closed connections"
                    )
                    for statement in statements { statement.cancel() }
                    guard answered.count.load(ordering: .relaxed) == 6 else { return }
                }
            }
        }
    }
}

private final class AnswerCount: Sendable {
    let count = Atomic(0)
}
