import CaravanCore
import CaravanStorage
import CaravanTestSupport
import Testing

/// The storage contract's conformance checks. Each runs unchanged against SQLite and PostgreSQL; the two suites
/// below only say which backend.
enum StorageConformance {
    static func migrationsApplyOnce(_ database: any Database) async throws {
        let again = try await database.migrate(StorageTestSchema.migrations)
        #expect(again.isEmpty)
        let rows = try await database.read { try await $0.query("SELECT version FROM caravan_migrations", []) }
        #expect(try rows.map { try $0.int("version") } == StorageTestSchema.migrations.map { Int64($0.version) })
        let organization = try await database.read {
            try await OrganizationStore().get(id: Organization.defaultID, in: $0)
        }
        #expect(organization?.name == "default")
    }

    static func createReadUpdate(_ database: any Database) async throws {
        let store = OrganizationStore()
        let created = try await database.withTransaction { try await store.create(name: "acme", in: $0) }
        #expect(created.id.hasPrefix("org_"))
        let read = try await database.read { try await store.get(id: created.id, in: $0) }
        #expect(read == created)
        let renamed = try await database.withTransaction {
            try await store.rename(id: created.id, to: "acme-2", in: $0)
        }
        #expect(renamed)
        let missing = try await database.withTransaction { try await store.rename(id: "org_missing", to: "x", in: $0) }
        #expect(!missing)
        let all = try await database.read { try await store.list(in: $0) }
        #expect(all.map(\.name).sorted() == ["acme-2", "default"])
    }

    static func rollbackDiscardsEverything(_ database: any Database) async throws {
        struct Abort: Error {}
        let store = OrganizationStore()
        await #expect(throws: Abort.self) {
            try await database.withTransaction { executor in
                _ = try await store.create(name: "doomed", in: executor)
                let inside = try await store.list(in: executor)
                #expect(inside.contains { $0.name == "doomed" })
                throw Abort()
            }
        }
        let after = try await database.read { try await store.list(in: $0) }
        #expect(!after.contains { $0.name == "doomed" })
        // The database is still usable after a rollback.
        _ = try await database.withTransaction { try await store.create(name: "survivor", in: $0) }
    }

    static func uniqueViolationIsConflict(_ database: any Database) async throws {
        let store = OrganizationStore()
        _ = try await database.withTransaction { try await store.create(name: "taken", in: $0) }
        do {
            _ = try await database.withTransaction { try await store.create(name: "taken", in: $0) }
            Issue.record("a duplicate name was accepted")
        } catch let error as StorageError {
            #expect(error.code == .conflict)
        }
        let count = try await database.read {
            try await $0.query("SELECT COUNT(*) AS n FROM organizations WHERE name = $1", ["taken"])
        }
        #expect(try count.first?.int("n") == 1)
    }

    /// A write batch applies every write, each with its own values (placeholders renumbered on PostgreSQL, quoted
    /// text with `$` left alone), rows that reference rows written before it included; a failing write fails the
    /// whole transaction.
    static func writeBatchAppliesEveryWrite(_ database: any Database) async throws {
        let organization = try await database.withTransaction {
            try await OrganizationStore().create(name: "batch", in: $0)
        }
        try await database.withTransaction { executor in
            var writes = SQLWriteBatch()
            writes.add(
                "INSERT INTO storage_marks (id, org_id) VALUES ($1, $2), ($3, $2)",
                [.text("m1"), .text(organization.id), .text("m2")]
            )
            writes.add(
                "UPDATE organizations SET updated_at = $1 WHERE id = $2 AND name <> '$1'",
                [.int(77), .text(organization.id)]
            )
            writes.add("INSERT INTO storage_marks (id, org_id) VALUES ($2, $1)", [.text(organization.id), .text("m3")])
            #expect(!writes.isEmpty)
            try await writes.execute(in: executor)
            #expect(writes.isEmpty)
        }
        let marks = try await database.read {
            try await $0.query("SELECT id, org_id FROM storage_marks ORDER BY id", [])
        }
        #expect(try marks.map { try $0.string("id") } == ["m1", "m2", "m3"])
        #expect(try marks.allSatisfy { try $0.string("org_id") == organization.id })
        let updated = try await database.read { try await OrganizationStore().get(id: organization.id, in: $0) }
        #expect(updated?.updatedAt == 77)

        await #expect(throws: StorageError.self) {
            try await database.withTransaction { executor in
                var writes = SQLWriteBatch()
                writes.add(
                    "INSERT INTO storage_marks (id, org_id) VALUES ($1, $2)",
                    [.text("m4"), .text(organization.id)]
                )
                writes.add(
                    "INSERT INTO storage_marks (id, org_id) VALUES ($1, $2)",
                    [.text("m1"), .text(organization.id)]
                )
                try await writes.execute(in: executor)
            }
        }
        let count = try await database.read { try await $0.query("SELECT COUNT(*) AS n FROM storage_marks", []) }
        #expect(try count.first?.int("n") == 3, "the failed batch left nothing behind")
    }

    static func concurrentWritersLoseNothing(_ database: any Database) async throws {
        let writers = 40
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<writers {
                group.addTask {
                    try await database.withTransaction { executor in
                        _ = try await OrganizationStore().create(name: "writer-\(index)", in: executor)
                        try await executor.execute(
                            "UPDATE organizations SET updated_at = updated_at + 1 WHERE id = $1",
                            [.text(Organization.defaultID)]
                        )
                    }
                }
            }
            try await group.waitForAll()
        }
        let organization = try await database.read {
            try await OrganizationStore().get(id: Organization.defaultID, in: $0)
        }
        #expect(organization?.updatedAt == Int64(writers))
        let all = try await database.read { try await OrganizationStore().list(in: $0) }
        #expect(all.count == writers + 1)
    }

    static func valuesRoundTrip(_ database: any Database) async throws {
        try await database.withTransaction { executor in
            try await executor.execute(
                "CREATE TABLE conformance_values (id BIGINT PRIMARY KEY, t TEXT, i BIGINT, d DOUBLE PRECISION, b BYTEA)",
                []
            )
        }
        let samples: [(Int64, SQLValue, SQLValue, SQLValue, SQLValue)] = [
            (1, .text("plain"), .int(Int64.max), .double(1.5), .blob([0, 1, 255])),
            (2, .text("ünïcødé 🚐 'quoted' \"double\" $1 ?"), .int(Int64.min), .double(-0.25), .blob([])),
            (3, .null, .null, .null, .null),
        ]
        for sample in samples {
            try await database.withTransaction { executor in
                try await executor.execute(
                    "INSERT INTO conformance_values (id, t, i, d, b) VALUES ($1, $2, $3, $4, $5)",
                    [.int(sample.0), sample.1, sample.2, sample.3, sample.4]
                )
            }
        }
        let rows = try await database.read {
            try await $0.query("SELECT id, t, i, d, b FROM conformance_values ORDER BY id", [])
        }
        #expect(rows.count == samples.count)
        for (row, sample) in zip(rows, samples) {
            #expect(row["t"] == sample.1)
            #expect(row["i"] == sample.2)
            #expect(row["d"] == sample.3)
            #expect(row["b"] == sample.4)
        }
        // Placeholders may repeat and come out of order.
        let reordered = try await database.read {
            try await $0.query(
                "SELECT id FROM conformance_values WHERE i = $2 OR id = $1 OR id = $1",
                [.int(3), .int(Int64.max)]
            )
        }
        #expect(try reordered.map { try $0.int("id") }.sorted() == [1, 3])
    }

    static func readsSeeOnlyCommittedWrites(_ database: any Database) async throws {
        let store = OrganizationStore()
        let (gate, release) = AsyncStream<Void>.makeStream()
        let (started, signalStarted) = AsyncStream<Void>.makeStream()
        async let writer: Void = database.withTransaction { executor in
            _ = try await store.create(name: "pending", in: executor)
            signalStarted.yield()
            for await _ in gate { break }
        }
        for await _ in started { break }
        // While the write transaction is open, a reader is not blocked and does not see it.
        let during = try await database.read { try await store.list(in: $0) }
        #expect(!during.contains { $0.name == "pending" })
        release.yield()
        try await writer
        let after = try await database.read { try await store.list(in: $0) }
        #expect(after.contains { $0.name == "pending" })
    }
}

/// Every check runs on each available backend (`TestBackend.available`), as one test case per backend.
@Suite("Storage conformance", .tags(.storage), .timeLimit(.minutes(2)))
struct StorageConformanceTests {
    @Test(arguments: TestBackend.available) func migrationsApplyOnce(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: StorageTestSchema.migrations,
            StorageConformance.migrationsApplyOnce
        )
    }
    @Test(arguments: TestBackend.available) func createReadUpdate(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: StorageTestSchema.migrations,
            StorageConformance.createReadUpdate
        )
    }
    @Test(arguments: TestBackend.available) func rollback(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: StorageTestSchema.migrations,
            StorageConformance.rollbackDiscardsEverything
        )
    }
    @Test(arguments: TestBackend.available) func uniqueViolation(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: StorageTestSchema.migrations,
            StorageConformance.uniqueViolationIsConflict
        )
    }
    @Test(arguments: TestBackend.available) func concurrentWriters(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: StorageTestSchema.migrations,
            StorageConformance.concurrentWritersLoseNothing
        )
    }
    @Test(arguments: TestBackend.available) func valuesRoundTrip(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: StorageTestSchema.migrations,
            StorageConformance.valuesRoundTrip
        )
    }
    @Test(arguments: TestBackend.available) func writeBatch(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: StorageTestSchema.migrations,
            StorageConformance.writeBatchAppliesEveryWrite
        )
    }
    @Test(arguments: TestBackend.available) func readsSeeOnlyCommitted(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: StorageTestSchema.migrations,
            StorageConformance.readsSeeOnlyCommittedWrites
        )
    }
}
