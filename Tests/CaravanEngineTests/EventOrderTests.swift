import CaravanCore
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import Foundation
import Synchronization
import Testing

@testable import CaravanEngine

/// What the reader saw, and whether the writers are done.
final class Seen: Sendable {
    let state = Mutex<(runs: [String], done: Bool)>(([], false))
}

/// An organization's event stream reads by position; a reader that has passed a position must never meet an event
/// below it committed later, whatever order concurrent transactions commit in.
enum EventOrderChecks {
    static func insertRun(_ id: String, in database: any Database) async throws {
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO runs (id, org_id, kind, workflow, workflow_version, status, input, steps, created_at, updated_at,
                    last_seq, fence)
                VALUES ($1, 'org_default', 'workflow', 'w', 1, 'running', '{}', '[]', 0, 0, 0, 1)
                """,
                [.text(id)]
            )
        }
    }

    static func event(_ runID: String, _ seq: Int64) -> RunEvent {
        RunEvent(runID: runID, seq: seq, type: "step.succeeded", at: WallClock.system.nowMilliseconds())
    }

    /// A slow transaction takes its position first and commits last; a fast one appends meanwhile. A reader that
    /// follows positions throughout sees both events.
    static func positionsBecomeVisibleInOrder(_ database: any Database) async throws {
        try await insertRun("run_slow", in: database)
        try await insertRun("run_fast", in: database)
        let store = RunStore()
        let orgs = ["run_slow": "org_default", "run_fast": "org_default"]
        let slowAppended = WakeFlag()
        let seen = Seen()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await database.withTransaction { executor in
                    try await store.append([event("run_slow", 1)], orgs: orgs, in: executor)
                    slowAppended.signal()
                    try await Task.sleep(for: .milliseconds(800))
                }
            }
            group.addTask {
                await slowAppended.wait(timeout: .seconds(10))
                try await database.withTransaction { executor in
                    try await store.append([event("run_fast", 1)], orgs: orgs, in: executor)
                }
            }
            group.addTask {
                // The reader: follows positions as a stream consumer with Last-Event-ID would.
                var cursor: Int64 = 0
                let deadline = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < deadline {
                    let finished = seen.state.withLock { $0.done }
                    let after = cursor
                    let events = try await database.read {
                        try await store.events(orgID: "org_default", after: after, limit: 100, in: $0)
                    }
                    for event in events {
                        cursor = event.globalID
                        seen.state.withLock { $0.runs.append(event.runID) }
                    }
                    if finished { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            try await group.next()
            try await group.next()
            seen.state.withLock { $0.done = true }
            try await group.waitForAll()
        }
        let all = try await database.read { try await store.events(orgID: "org_default", after: 0, limit: 100, in: $0) }
        #expect(all.count == 2)
        let runs = seen.state.withLock { $0.runs }
        #expect(Set(runs) == ["run_slow", "run_fast"], "the reader missed an event: saw \(runs)")
        #expect(runs.count == 2, "an event was delivered twice")
    }
}

@Suite("Event order", .tags(.engine), .timeLimit(.minutes(2)))
struct EventOrderTests {
    @Test("A follower of positions misses nothing", arguments: TestBackend.available)
    func followerMissesNothing(backend: TestBackend) async throws {
        try await withTestDatabase(
            backend,
            migrations: Schema.migrations,
            EventOrderChecks.positionsBecomeVisibleInOrder
        )
    }
}
