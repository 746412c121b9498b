import CaravanStorage
import CaravanTestSupport
import Synchronization
import Testing

/// A commit queue's linger: the batch after one that answered several callers waits for them to come back, so
/// that callers who each send one unit at a time do not split into groups taking turns; a lone caller never waits.
@Suite("Group commit linger")
struct CommitQueueLingerTests {
    /// The batches a queue committed.
    final class BatchLog: Sendable {
        private let state = Mutex<[[Int]]>([])
        func append(_ works: [Int]) { state.withLock { $0.append(works) } }
        var batches: [[Int]] { state.withLock { $0 } }
    }

    /// A queue whose every unit is an arrival, recording its batches.
    private static func queue(
        _ database: any Database,
        linger: Duration,
        into log: BatchLog
    ) -> CommitQueue<Int, Int> {
        CommitQueue<Int, Int>(database: database, maxBatch: 64, isArrival: { _ in true }, linger: linger) {
            works,
            _ in
            log.append(works)
            return works
        }
    }

    @Test func callersAnsweredTogetherAreWaitedForAndCommitTogetherAgain() async throws {
        try await withTestDatabase(.sqlite, migrations: []) { database in
            let batches = BatchLog()
            // An hour: if the second batch did not wait for all four, or waited for a fifth, the test would hang.
            let queue = Self.queue(database, linger: .seconds(3_600), into: batches)
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Four callers send at once (queued before the queue runs, so that they share the first batch),
                // then each sends again once answered, one after another.
                try await withThrowingTaskGroup(of: Void.self) { callers in
                    for caller in 0..<4 {
                        callers.addTask {
                            _ = try await queue.submit(caller)
                            try await Task.sleep(for: .milliseconds(20 * caller))
                            _ = try await queue.submit(10 + caller)
                        }
                    }
                    try await Task.sleep(for: .milliseconds(200))
                    group.addTask { await queue.run() }
                    try await callers.waitForAll()
                }
                queue.close()
                try await group.waitForAll()
            }
            let seen = batches.batches
            #expect(seen.map { Set($0) } == [[0, 1, 2, 3], [10, 11, 12, 13]])
        }
    }

    @Test func aLoneCallerNeverWaits() async throws {
        try await withTestDatabase(.sqlite, migrations: []) { database in
            let batches = BatchLog()
            let queue = Self.queue(database, linger: .seconds(3_600), into: batches)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await queue.run() }
                for work in 0..<5 { #expect(try await queue.submit(work) == work) }
                queue.close()
                try await group.waitForAll()
            }
            #expect(batches.batches == [[0], [1], [2], [3], [4]])
        }
    }

    @Test func callersThatDoNotComeBackAreWaitedForNoLongerThanTheLinger() async throws {
        try await withTestDatabase(.sqlite, migrations: []) { database in
            let batches = BatchLog()
            let queue = Self.queue(database, linger: .milliseconds(300), into: batches)
            try await withThrowingTaskGroup(of: Void.self) { group in
                try await withThrowingTaskGroup(of: Void.self) { callers in
                    for caller in 0..<3 { callers.addTask { _ = try await queue.submit(caller) } }
                    try await Task.sleep(for: .milliseconds(200))  // queued before the queue runs: one batch
                    group.addTask { await queue.run() }
                    try await callers.waitForAll()
                }
                // Of three callers answered together, one comes back: it is committed once the linger ends.
                #expect(try await queue.submit(7) == 7)
                queue.close()
                try await group.waitForAll()
            }
            #expect(batches.batches.map { Set($0) } == [[0, 1, 2], [7]])
        }
    }
}
