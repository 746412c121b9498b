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
///
/// Arrivals (work that callers outside send, such as run starts, as opposed to the work a commit sets off) may
/// linger: when a lane's last batch held several, its next batch waits, no longer than `linger` after that
/// commit, until the callers it answered could have sent their next arrival: until as many arrivals are queued
/// as were queued when it committed plus as many as it held. Callers answered by a commit usually send their next
/// work a moment later; without the wait the next batch would already be in flight without them, the callers
/// would split into two groups taking turns, and each would wait for two commits. A lane whose last batch held at
/// most one arrival (a lone caller) never waits.
public final class CommitQueue<Work: Sendable, Outcome: Sendable>: Sendable {
    public typealias Apply = @Sendable ([Work], any SQLExecutor) async throws -> [Outcome]
    private typealias Item = (work: Work, continuation: CheckedContinuation<Outcome, any Error>)

    private struct Pending {
        var lanes: [Int: [Item]] = [:]
        var busy = Set<Int>()
        /// By lane, after its last batch committed when it held more than one arrival: how many arrivals its
        /// next batch waits for, and until when at most.
        var linger: [Int: (arrivals: Int, until: ContinuousClock.Instant)] = [:]
        /// The earliest wake-up set for the end of a linger, if any.
        var lingerTimer: ContinuousClock.Instant?
        var closed = false
    }

    private let pending = Mutex(Pending())
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let database: any Database
    private let maxBatch: Int
    private let lanes: Int
    private let lane: @Sendable (Work) -> Int
    private let isArrival: @Sendable (Work) -> Bool
    private let linger: Duration
    private let apply: Apply

    /// - Parameters:
    ///   - database: where the work is committed.
    ///   - maxBatch: the most units of work in one transaction.
    ///   - lanes: how many lanes work is spread over (the most transactions that can be in flight).
    ///   - lane: a unit's lane key (hashed into `lanes`); work of one key commits one batch at a time, in order.
    ///   - isArrival: whether a unit is an arrival, which batches may wait for (none by default).
    ///   - linger: the longest a lane's next batch waits for arrivals after its last commit.
    ///   - apply: writes a batch inside a transaction and returns one outcome per unit, in order.
    public init(
        database: any Database,
        maxBatch: Int,
        lanes: Int = 1,
        lane: @escaping @Sendable (Work) -> Int = { _ in 0 },
        isArrival: @escaping @Sendable (Work) -> Bool = { _ in false },
        linger: Duration = .zero,
        apply: @escaping Apply
    ) {
        self.database = database
        self.maxBatch = maxBatch
        self.lanes = max(1, lanes)
        self.lane = lane
        self.isArrival = isArrival
        self.linger = linger
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
        await withDiscardingTaskGroup { commits in
            // The lingers' wake-ups, cancelled once the queue closes (the commits in flight are awaited).
            await withDiscardingTaskGroup { timers in
                for await _ in wakeups {
                    let (batches, lingerUntil) = takeBatches(now: .now)
                    for (index, batch) in batches {
                        commits.addTask { await self.commit(batch, lane: index) }
                    }
                    if let lingerUntil {
                        timers.addTask {
                            try? await Task.sleep(until: lingerUntil, clock: .continuous)
                            self.pending.withLock { if $0.lingerTimer == lingerUntil { $0.lingerTimer = nil } }
                            self.wake.yield()
                        }
                    }
                }
                timers.cancelAll()
            }
        }
        let leftovers = pending.withLock { state -> [CheckedContinuation<Outcome, any Error>] in
            state.closed = true
            defer { state.lanes.removeAll() }
            return state.lanes.values.flatMap { $0.map(\.continuation) }
        }
        for continuation in leftovers { continuation.resume(throwing: CancellationError()) }
    }

    /// A batch of every lane that has work, no transaction in flight and no reason to linger, marking those lanes
    /// busy; and when a wake-up must be set for the end of a linger, when.
    private func takeBatches(now: ContinuousClock.Instant) -> ([(Int, [Item])], ContinuousClock.Instant?) {
        pending.withLock { state in
            var batches: [(Int, [Item])] = []
            var lingerUntil: ContinuousClock.Instant?
            for (index, items) in state.lanes where !items.isEmpty && !state.busy.contains(index) {
                if let wait = state.linger[index], wait.until > now, items.count < maxBatch,
                    arrivals(in: items) < wait.arrivals
                {
                    lingerUntil = min(lingerUntil ?? wait.until, wait.until)
                    continue
                }
                let count = min(maxBatch, items.count)
                batches.append((index, Array(items.prefix(count))))
                state.lanes[index]?.removeFirst(count)
                state.busy.insert(index)
            }
            if let until = lingerUntil {
                if let set = state.lingerTimer, set <= until { lingerUntil = nil } else { state.lingerTimer = until }
            }
            return (batches, lingerUntil)
        }
    }

    private func arrivals(in items: some Collection<Item>) -> Int {
        items.reduce(0) { $0 + (isArrival($1.work) ? 1 : 0) }
    }

    /// How many times a batch the database rolled back (a deadlock, a serialization conflict) is tried in all.
    static var maxAttempts: Int { 5 }

    /// Commits a batch. A batch the database rolled back is tried again as it is: nothing of it was written, and
    /// giving up would leave its callers to abandon work whose effects already happened (a step that ran whose
    /// result is then lost runs again).
    private func commit(_ batch: [Item], lane index: Int) async {
        await commit(batch)
        let arrivals = self.arrivals(in: batch)
        pending.withLock { state in
            state.busy.remove(index)
            state.linger[index] =
                arrivals > 1 ? (arrivals + self.arrivals(in: state.lanes[index] ?? []), .now + linger) : nil
        }
        wake.yield()
    }

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
