import CaravanCore
import CaravanStorage
import CaravanTestSupport
import Synchronization
import Testing

/// What the transactions of a commit queue saw: how many ran at once, per lane and in all.
final class LaneObserver: Sendable {
    private struct State {
        var inFlight: [Int: Int] = [:]
        var mostPerLane = 0
        var mostAtOnce = 0
        var batches: [[Int]] = []
    }

    private let state = Mutex(State())

    func begin(_ lane: Int, _ works: [Int]) {
        state.withLock { state in
            state.inFlight[lane, default: 0] += 1
            state.mostPerLane = max(state.mostPerLane, state.inFlight[lane] ?? 0)
            state.mostAtOnce = max(state.mostAtOnce, state.inFlight.values.reduce(0, +))
            state.batches.append(works)
        }
    }

    func end(_ lane: Int) { state.withLock { $0.inFlight[lane, default: 0] -= 1 } }
    var mostPerLane: Int { state.withLock { $0.mostPerLane } }
    var mostAtOnce: Int { state.withLock { $0.mostAtOnce } }
    var batches: [[Int]] { state.withLock { $0.batches } }
}

@Suite(
    "Group commit lanes",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)")
)
struct CommitQueueLaneTests {
    /// Work of one lane (the last digit, here) never has two transactions in flight, and keeps its order; lanes
    /// commit side by side; work that waited joins one batch.
    @Test func oneTransactionPerLaneLanesInParallel() async throws {
        try await withTestDatabase(.postgres, migrations: StorageTestSchema.migrations) { database in
            let observer = LaneObserver()
            let queue = CommitQueue<Int, Int>(database: database, maxBatch: 64, lanes: 4, lane: { $0 % 4 }) {
                works,
                executor in
                let lane = works[0] % 4
                #expect(works.allSatisfy { $0 % 4 == lane }, "a batch mixes lanes: \(works)")
                observer.begin(lane, works)
                defer { observer.end(lane) }
                try await executor.execute("SELECT pg_sleep(0.05)", [])
                return works.map { $0 * 10 }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await queue.run() }
                let answers = try await withThrowingTaskGroup(of: (Int, Int).self) { submits in
                    for work in 0..<200 { submits.addTask { (work, try await queue.submit(work)) } }
                    return try await submits.reduce(into: [Int: Int]()) { $0[$1.0] = $1.1 }
                }
                #expect(answers.count == 200 && answers.allSatisfy { $0.value == $0.key * 10 })
                queue.close()
                try await group.waitForAll()
            }
            #expect(observer.mostPerLane == 1, "a lane had two transactions in flight")
            #expect(observer.mostAtOnce > 1, "lanes did not commit side by side")
            #expect(
                observer.batches.count < 60,
                "200 units waiting 50 ms a batch should take a few batches a lane: \(observer.batches.count)"
            )
        }
    }
}
