import CaravanCore
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import CaravanWorkflow
import Foundation
import Logging
import Testing

@testable import CaravanEngine

/// An engine on a fresh database. Schedule tests drive it by hand (`running: false`: no background scheduler
/// races them); retention tests need it running to execute runs.
private func withEngine(
    _ backend: TestBackend,
    running: Bool = false,
    clock: WallClock = .system,
    _ body: @escaping @Sendable (Engine, any Database) async throws -> Void
) async throws {
    try await withTestDatabase(backend, migrations: Schema.migrations) { database in
        let engine = Engine(
            database: database,
            executors: [TemplateStep()],
            configuration: EngineConfiguration(),
            clock: clock,
            logger: TestLogging.quiet
        )
        guard running else { return try await body(engine, database) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await engine.run() }
            engine.schemaIsReady()
            defer { group.cancelAll() }
            try await body(engine, database)
        }
    }
}

private let scheduled = """
    name: tick
    schedule: {cron: "*/5 * * * *", timezone: Europe/Berlin, input: {from: cron}}
    steps: [{id: a, template: "{{ input.from }}"}]
    """

@Suite("Schedules and retention", .tags(.engine), .timeLimit(.minutes(2)))
struct ScheduleAndRetentionTests {
    @Test(
        "A due tick starts exactly one run, however often it is handled; the next tick is set",
        arguments: TestBackend.available
    )
    func scheduleFiresOnce(backend: TestBackend) async throws {
        // The middle of a five-minute period, where the time stays: no boundary passes during the test.
        let time = ManualTime(WallClock.system.nowMilliseconds() / 300_000 * 300_000 + 150_000)
        try await withEngine(backend, clock: time.clock) { engine, database in
            let definition = try DefinitionParser.parse(Array(scheduled.utf8), format: .yaml, nameFromPath: "tick")
            _ = try await engine.workflows.put(orgID: Organization.defaultID, definition: definition)
            let tick = time.milliseconds - 1_000
            try await database.withTransaction {
                try await $0.execute("UPDATE workflows SET next_fire_at = $1", [.int(tick)])
            }
            // Two nodes handling the same tick: the second finds nothing due.
            async let first: Void = engine.fireDueSchedules()
            async let second: Void = engine.fireDueSchedules()
            _ = try await (first, second)
            try await engine.fireDueSchedules()
            let runs = try await engine.runs(
                orgID: Organization.defaultID,
                workflow: "tick",
                status: nil,
                cursor: nil,
                limit: 10
            )
            #expect(runs.count == 1)
            #expect(runs.first?.input == ["from": "cron"])
            #expect(runs.first?.idempotencyKey == "schedule:\(tick)")
            let next =
                try await database.read {
                    try await $0.queryFirst("SELECT next_fire_at FROM workflows", [])?.int("next_fire_at")
                } ?? 0
            #expect(next == time.milliseconds + 150_000, "the next five-minute boundary")
        }
    }

    @Test("A tick missed long ago starts once on recovery, or not at all with catch_up: false")
    func missedTicks() async throws {
        try await withEngine(.sqlite) { engine, database in
            for (name, catchUp) in [("catches-up", true), ("skips", false)] {
                let yaml = scheduled.replacingOccurrences(of: "name: tick", with: "name: \(name)")
                    .replacingOccurrences(of: "input: {from: cron}", with: "input: {from: cron}, catch_up: \(catchUp)")
                _ = try await engine.workflows.put(
                    orgID: Organization.defaultID,
                    definition: try DefinitionParser.parse(Array(yaml.utf8), format: .yaml, nameFromPath: name)
                )
            }
            try await database.withTransaction {
                try await $0.execute(
                    "UPDATE workflows SET next_fire_at = $1",
                    [.int(WallClock.system.nowMilliseconds() - 3_600_000)]
                )
            }
            try await engine.fireDueSchedules()
            try await engine.fireDueSchedules()
            #expect(
                try await engine.runs(
                    orgID: Organization.defaultID,
                    workflow: "catches-up",
                    status: nil,
                    cursor: nil,
                    limit: 10
                ).count == 1
            )
            #expect(
                try await engine.runs(
                    orgID: Organization.defaultID,
                    workflow: "skips",
                    status: nil,
                    cursor: nil,
                    limit: 10
                ).isEmpty
            )
        }
    }

    @Test("Finished runs past retention are deleted with their events; others stay")
    func retention() async throws {
        try await withEngine(.sqlite, running: true) { engine, database in
            let definition = try DefinitionParser.parse(
                Array("steps: [{id: a, template: x}]".utf8),
                format: .yaml,
                nameFromPath: "short"
            )
            _ = try await engine.workflows.put(orgID: Organization.defaultID, definition: definition)
            let old = try await engine.startRun(
                orgID: Organization.defaultID,
                workflow: "short",
                input: [:],
                idempotencyKey: nil,
                requestHash: nil
            ).run
            let recent = try await engine.startRun(
                orgID: Organization.defaultID,
                workflow: "short",
                input: [:],
                idempotencyKey: nil,
                requestHash: nil
            ).run
            for run in [old, recent] {
                #expect(
                    try await engine.waitForRun(orgID: Organization.defaultID, id: run.id, timeout: .seconds(10))?
                        .status == .succeeded
                )
            }
            try await database.withTransaction { executor in
                try await executor.execute(
                    "UPDATE runs SET status = 'succeeded', finished_at = $2 WHERE id = $1",
                    [.text(old.id), .int(WallClock.system.nowMilliseconds() - 86_400_000)]
                )
                try await executor.execute(
                    "UPDATE runs SET status = 'succeeded', finished_at = $2 WHERE id = $1",
                    [.text(recent.id), .int(WallClock.system.nowMilliseconds())]
                )
            }
            let deleted = try await database.withTransaction {
                try await RunStore().deleteFinished(
                    before: WallClock.system.nowMilliseconds() - 60_000,
                    limit: 10,
                    in: $0
                )
            }
            #expect(deleted == 1)
            #expect(try await engine.run(orgID: Organization.defaultID, id: old.id) == nil)
            #expect(try await engine.events(runID: old.id, after: 0, limit: 10).isEmpty)
            #expect(try await engine.run(orgID: Organization.defaultID, id: recent.id) != nil)
        }
    }
}
