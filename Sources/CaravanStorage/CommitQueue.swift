import Logging
import Synchronization

/// Group commit: callers hand in units of work; a committer drains everything waiting into a single transaction,
/// so that a burst of step completions costs one disk flush, not one each. Every caller is resumed only after the
/// transaction that holds its work has committed (or failed).
///
/// Work is sorted into lanes (by organization, say): a lane has at most one transaction in flight, and lanes
/// commit in parallel up to the committers' number. Work that would wait on the same database locks anyway (one
/// organization's admissions and event order) thus waits in memory and joins the next batch, so batches grow
/// with load instead of splitting into many small transactions that queue on one lock.
public final class CommitQueue<Work: Sendable, Outcome: Sendable>: Sendable {
    public typealias Apply = @Sendable ([Work], any SQLExecutor) async throws -> [Outcome]
    private typealias Item = (work: Work, continuation: CheckedContinuation<Outcome, any Error>)

    private struct Pending {
        var lanes: [Int: [Item]] = [:]
        var busy = Set<Int>()
        var closed = false
    }

    private let pending = Mutex(Pending())
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let database: any Database
    private let maxBatch: Int
    private let lanes: Int
    private let lane: @Sendable (Work) -> Int
    private let apply: Apply

    /// - Parameters:
    ///   - database: where the work is committed.
    ///   - maxBatch: the most units of work in one transaction.
    ///   - lanes: how many lanes work is spread over (the most transactions that can be in flight).
    ///   - lane: a unit's lane key (hashed into `lanes`); work of one key commits one batch at a time, in order.
    ///   - apply: writes a batch inside a transaction and returns one outcome per unit, in order.
    public init(
        database: any Database,
        maxBatch: Int,
        lanes: Int = 1,
        lane: @escaping @Sendable (Work) -> Int = { _ in 0 },
        apply: @escaping Apply
    ) {
        self.database = database
        self.maxBatch = maxBatch
        self.lanes = max(1, lanes)
        self.lane = lane
        self.apply = apply
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues `work` and waits until it is committed.
    /// - Returns: the outcome `apply` gave for it.
    /// - Throws: the transaction's error, or `CancellationError` after `close()`.
    public func submit(_ work: Work) async throws -> Outcome {
        let index = lanes == 1 ? 0 : Int(UInt(bitPattern: lane(work)) % UInt(lanes))
        return try await withCheckedThrowingContinuation { continuation in
            let accepted = pending.withLock { state -> Bool in
                guard !state.closed else { return false }
                state.lanes[index, default: []].append((work, continuation))
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
    public func run() async {
        await withDiscardingTaskGroup { group in
            for await _ in wakeups {
                for (index, batch) in takeBatches() {
                    group.addTask {
                        await self.commit(batch)
                        self.pending.withLock { _ = $0.busy.remove(index) }
                        self.wake.yield()
                    }
                }
            }
        }
        let leftovers = pending.withLock { state -> [CheckedContinuation<Outcome, any Error>] in
            state.closed = true
            defer { state.lanes.removeAll() }
            return state.lanes.values.flatMap { $0.map(\.continuation) }
        }
        for continuation in leftovers { continuation.resume(throwing: CancellationError()) }
    }

    /// A batch of every lane that has work and no transaction in flight, marking those lanes busy.
    private func takeBatches() -> [(Int, [Item])] {
        pending.withLock { state in
            var batches: [(Int, [Item])] = []
            for (index, items) in state.lanes where !items.isEmpty && !state.busy.contains(index) {
                let count = min(maxBatch, items.count)
                batches.append((index, Array(items.prefix(count))))
                state.lanes[index]?.removeFirst(count)
                state.busy.insert(index)
            }
            return batches
        }
    }

    /// How many times a batch the database rolled back (a deadlock, a serialization conflict) is tried in all.
    static var maxAttempts: Int { 5 }

    /// Commits a batch. A batch the database rolled back is tried again as it is: nothing of it was written, and
    /// giving up would leave its callers to abandon work whose effects already happened (a step that ran whose
    /// result is then lost runs again).
    private func commit(_ batch: [Item]) async {
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
