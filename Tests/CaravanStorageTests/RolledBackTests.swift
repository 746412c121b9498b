import CaravanCore
import CaravanStorage
import CaravanTestSupport
import Synchronization
import Testing

/// How many times the apply closure ran.
final class AttemptCount: Sendable {
    let value = Mutex(0)
    func next() -> Int {
        value.withLock {
            $0 += 1
            return $0
        }
    }
}

@Suite("Group commits the database rolled back")
struct RolledBackTests {
    @Test("A batch the database rolled back is committed on a later attempt, once; one that keeps failing fails")
    func retried() async throws {
        try await withTestDatabase(.sqlite, migrations: StorageTestSchema.migrations) { database in
            try await database.withTransaction { try await $0.execute("CREATE TABLE marks (n BIGINT NOT NULL)", []) }
            let attempts = AttemptCount()
            let queue = CommitQueue<Int, Int>(database: database, maxBatch: 8) { works, executor in
                for work in works {
                    try await executor.execute("INSERT INTO marks (n) VALUES ($1)", [.int(Int64(work))])
                }
                let attempt = attempts.next()
                // The first attempt of every batch is rolled back after it wrote, as a deadlock victim would be.
                if attempt == 1 || works.contains(99) { throw StorageError(.rolledBack, "deadlock detected") }
                return works.map { $0 * 10 }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await queue.run() }
                #expect(try await queue.submit(7) == 70)
                #expect(attempts.value.withLock { $0 } == 2)
                await #expect(throws: StorageError.self) { try await queue.submit(99) }
                queue.close()
                try await group.waitForAll()
            }
            let rows = try await database.read { try await $0.query("SELECT n FROM marks ORDER BY n", []) }
            #expect(
                try rows.map { try $0.int("n") } == [7],
                "a rolled-back attempt left rows, or the committed one is missing"
            )
        }
    }

    @Test("PostgreSQL: the victim of a deadlock fails as rolledBack", .enabled(if: PostgresTestServer.isConfigured))
    func deadlockIsRolledBack() async throws {
        try await withTestDatabase(.postgres, migrations: StorageTestSchema.migrations) { database in
            try await database.withTransaction { executor in
                try await executor.execute("CREATE TABLE pair (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)", [])
                try await executor.execute("INSERT INTO pair (id, n) VALUES (1, 0), (2, 0)", [])
            }
            // Two transactions lock the two rows in opposite orders.
            let outcomes = try await withThrowingTaskGroup(of: StorageError.Code?.self) { group in
                for (first, second) in [(1, 2), (2, 1)] {
                    group.addTask {
                        do {
                            try await database.withTransaction { executor in
                                try await executor.execute(
                                    "UPDATE pair SET n = n + 1 WHERE id = $1",
                                    [.int(Int64(first))]
                                )
                                try await Task.sleep(for: .milliseconds(300))
                                try await executor.execute(
                                    "UPDATE pair SET n = n + 1 WHERE id = $1",
                                    [.int(Int64(second))]
                                )
                            }
                            return nil
                        } catch let error as StorageError {
                            return error.code
                        }
                    }
                }
                var codes: [StorageError.Code?] = []
                for try await code in group { codes.append(code) }
                return codes
            }
            #expect(outcomes.filter { $0 == nil }.count == 1, "\(outcomes)")
            #expect(outcomes.contains(.rolledBack), "\(outcomes)")
        }
    }
}
