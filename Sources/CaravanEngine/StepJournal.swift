public import CaravanCore
import Synchronization

/// Durable progress inside one step attempt, for kinds that make several calls in one step (an agent's model
/// turns and tool calls). Each entry is committed, with its events, under the run's lease before `record`
/// returns; after a crash or a retry the step starts again and finds in `entries` everything already done, so
/// it does not call a model or a tool again for work that completed.
public final class StepJournal: Sendable {
    /// One write to commit: an entry and the events that announce it.
    struct Write: Sendable {
        var stepID: String
        var key: String
        var value: JSONValue
        var events: [(type: String, data: JSONValue)]
        var done: @Sendable (Bool) -> Void
    }

    /// What earlier attempts (or earlier lives of this node) recorded, by key.
    public let entries: [String: JSONValue]
    let stepID: String
    private let writes: AsyncStream<Write>.Continuation
    private let live: @Sendable (String, JSONValue) -> Void

    init(
        stepID: String,
        entries: [String: JSONValue],
        writes: AsyncStream<Write>.Continuation,
        live: @escaping @Sendable (String, JSONValue) -> Void
    ) {
        self.stepID = stepID
        self.entries = entries
        self.writes = writes
        self.live = live
    }

    /// Records `value` under `key`, with `events` appended to the run's history, and returns once committed.
    /// - Throws: `Failure` `lease_lost` when this node no longer holds the run (another node continues it).
    public func record(
        _ key: String,
        value: JSONValue,
        events: [(type: String, data: JSONValue)] = []
    ) async throws(Failure) {
        // Resumed once: by the execution after the commit, or with `false` when the step is cancelled first (the
        // execution then stops and never answers).
        let answer = Answer()
        let finish: @Sendable (Bool) -> Void = { landed in answer.take()?.resume(returning: landed) }
        let landed = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                answer.set(continuation)
                if Task.isCancelled {
                    finish(false)
                    return
                }
                let write = Write(stepID: stepID, key: key, value: value, events: events, done: finish)
                if case .terminated = writes.yield(write) { finish(false) }
            }
        } onCancel: {
            finish(false)
        }
        if !landed {
            throw Failure(code: "lease_lost", message: "The run moved to another node.", retryable: true)
        }
    }

    private final class Answer: Sendable {
        private let continuation = Mutex<CheckedContinuation<Bool, Never>?>(nil)
        func set(_ value: CheckedContinuation<Bool, Never>) { continuation.withLock { $0 = value } }
        func take() -> CheckedContinuation<Bool, Never>? { continuation.withLock { $0.take() } }
    }

    /// Sends an event to live subscribers of the run without storing it (`llm.delta`).
    public func publish(_ type: String, data: JSONValue) {
        live(type, data)
    }
}

/// Live, unstored events of runs executing on this node (token deltas), for their event streams.
public final class LiveEventFeed: Sendable {
    private struct Subscriber {
        var buffer: [RunEvent] = []
    }

    private let state = Mutex<[String: [UInt64: Subscriber]]>([:])
    private let counter = Atomic<UInt64>(0)

    public init() {}

    /// Delivers an event to the run's current subscribers (at most 10,000 buffered each; older ones drop).
    func publish(_ event: RunEvent) {
        state.withLock { state in
            guard var subscribers = state[event.runID] else { return }
            for (id, var subscriber) in subscribers {
                if subscriber.buffer.count >= 10_000 { subscriber.buffer.removeFirst(subscriber.buffer.count / 2) }
                subscriber.buffer.append(event)
                subscribers[id] = subscriber
            }
            state[event.runID] = subscribers
        }
    }

    /// Starts buffering the run's live events; read them with `drain`, end with `unsubscribe`.
    public func subscribe(runID: String) -> UInt64 {
        let id = counter.add(1, ordering: .relaxed).newValue
        state.withLock { $0[runID, default: [:]][id] = Subscriber() }
        return id
    }

    /// The events buffered since the last drain.
    public func drain(runID: String, subscription: UInt64) -> [RunEvent] {
        state.withLock { state in
            guard let events = state[runID]?[subscription]?.buffer, !events.isEmpty else { return [] }
            state[runID]?[subscription]?.buffer = []
            return events
        }
    }

    public func unsubscribe(runID: String, subscription: UInt64) {
        state.withLock { state in
            state[runID]?[subscription] = nil
            if state[runID]?.isEmpty == true { state[runID] = nil }
        }
    }
}
