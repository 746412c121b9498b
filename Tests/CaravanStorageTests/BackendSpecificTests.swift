import CaravanCore
import CaravanPostgres
import CaravanSQLite
import CaravanStorage
import CaravanTestSupport
import Testing

@Suite("SQLite data directory")
struct SQLiteDirectoryTests {
    @Test("A second opener of the same data directory is refused with a clear message")
    func secondOpenerRefused() async throws {
        try await withTemporaryDirectory { directory in
            let first = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
            _ = try await first.migrate(Schema.migrations)
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
                _ = try await first.migrate(Schema.migrations)
            }
            let second = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
            #expect(try await second.migrate(Schema.migrations).isEmpty)
        }
    }
}

@Suite("PostgreSQL migrations", .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)"))
struct PostgresMigrationTests {
    @Test("Several nodes migrating one fresh database at once apply the schema exactly once")
    func concurrentMigrations() async throws {
        try await PostgresTestServer.withFreshDatabase { url in
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let node = try PostgresDatabase(url: url, maximumConnections: 2, logger: TestLogging.quiet)
                        return try await node.withRunningPool { try await $0.migrate(Schema.migrations) }
                    }
                }
                var all: [[Int]] = []
                for try await result in group { all.append(result) }
                return all
            }
            #expect(applied.flatMap { $0 }.sorted() == Schema.migrations.map(\.version))
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
