import Logging
import Synchronization

/// Group commit: callers hand in units of work; one committer drains everything waiting into a single
/// transaction, so that a burst of step completions costs one disk flush, not one each. Every caller is resumed
/// only after the transaction that holds its work has committed (or failed).
public final class CommitQueue<Work: Sendable, Outcome: Sendable>: Sendable {
    public typealias Apply = @Sendable ([Work], any SQLExecutor) async throws -> [Outcome]

    private struct Pending {
        var items: [(work: Work, continuation: CheckedContinuation<Outcome, any Error>)] = []
        var closed = false
    }

    private let pending = Mutex(Pending())
    private let inFlight = Mutex(0)
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let database: any Database
    private let maxBatch: Int
    private let apply: Apply

    /// - Parameters:
    ///   - database: where the work is committed.
    ///   - maxBatch: the most units of work in one transaction.
    ///   - apply: writes a batch inside a transaction and returns one outcome per unit, in order.
    public init(database: any Database, maxBatch: Int, apply: @escaping Apply) {
        self.database = database
        self.maxBatch = maxBatch
        self.apply = apply
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues `work` and waits until it is committed.
    /// - Returns: the outcome `apply` gave for it.
    /// - Throws: the transaction's error, or `CancellationError` after `close()`.
    public func submit(_ work: Work) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = pending.withLock { state -> Bool in
                guard !state.closed else { return false }
                state.items.append((work, continuation))
                return true
            }
            if accepted {
                wake.yield()
            } else {
                continuation.resume(throwing: CancellationError())
            }
        }
    }

    /// Commits batches until `close()`; then fails whatever is still waiting.
    /// - Parameter committers: how many transactions may run at once (1 on SQLite, whose writer is serial).
    public func run(committers: Int) async {
        let limit = max(1, committers)
        await withDiscardingTaskGroup { group in
            for await _ in wakeups {
                while true {
                    let started = inFlight.withLock { count -> Bool in
                        guard count < limit else { return false }
                        count += 1
                        return true
                    }
                    guard started else { break }  // a finishing commit wakes us again
                    let batch = takeBatch()
                    if batch.isEmpty {
                        inFlight.withLock { $0 -= 1 }
                        break
                    }
                    group.addTask {
                        await self.commit(batch)
                        self.inFlight.withLock { $0 -= 1 }
                        self.wake.yield()
                    }
                }
            }
        }
        let leftovers = pending.withLock { state -> [CheckedContinuation<Outcome, any Error>] in
            state.closed = true
            defer { state.items.removeAll() }
            return state.items.map(\.continuation)
        }
        for continuation in leftovers { continuation.resume(throwing: CancellationError()) }
    }

    private func takeBatch() -> [(work: Work, continuation: CheckedContinuation<Outcome, any Error>)] {
        pending.withLock { state in
            let count = min(maxBatch, state.items.count)
            defer { state.items.removeFirst(count) }
            return Array(state.items.prefix(count))
        }
    }

    /// How many times a batch the database rolled back (a deadlock, a serialization conflict) is tried in all.
    static var maxAttempts: Int { 5 }

    /// Commits a batch. A batch the database rolled back is tried again as it is: nothing of it was written, and
    /// giving up would leave its callers to abandon work whose effects already happened (a step that ran whose
    /// result is then lost runs again).
    private func commit(_ batch: [(work: Work, continuation: CheckedContinuation<Outcome, any Error>)]) async {
        let works = batch.map(\.work)
        let apply = self.apply
        var attempt = 1
        while true {
            do {
                let outcomes = try await database.withTransaction { executor in try await apply(works, executor) }
                for (item, outcome) in zip(batch, outcomes) { item.continuation.resume(returning: outcome) }
                return
            } catch let error as StorageError where error.code == .rolledBack && attempt < Self.maxAttempts {
                attempt += 1
                try? await Task.sleep(for: .milliseconds(Int.random(in: 5...20) * attempt))
            } catch {
                for item in batch { item.continuation.resume(throwing: error) }
                return
            }
        }
    }

    /// Stops accepting work; `run` ends once the stream finishes.
    public func close() {
        wake.finish()
    }
}
