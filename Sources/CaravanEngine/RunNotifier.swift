import CaravanCore
import Synchronization

/// In-process wake-ups: a run's execution is poked when a signal or a cancel arrives for it; `?wait=` requests
/// and event streams subscribe to a run (or an organization's runs) and wake when it changes.
public final class RunNotifier: Sendable {
    private struct State {
        var pokes: [String: WakeFlag] = [:]
        var subscribers: [String: [UInt64: WakeFlag]] = [:]
        var nextSubscriber: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Registers a running execution; its flag is signalled on every poke.
    func register(runID: String) -> WakeFlag {
        let flag = WakeFlag()
        state.withLock { $0.pokes[runID] = flag }
        return flag
    }

    /// Forgets an execution.
    func unregister(runID: String) {
        _ = state.withLock { $0.pokes.removeValue(forKey: runID) }
    }

    /// Pokes the execution of `runID`, if this node has one. Returns whether it did.
    @discardableResult
    func poke(runID: String) -> Bool {
        guard let flag = state.withLock({ $0.pokes[runID] }) else { return false }
        flag.signal()
        return true
    }

    /// Tells the subscribers of `key` (a run id, or `org:<id>`) that it changed.
    func changed(_ key: String) {
        let flags = state.withLock { $0.subscribers[key].map { Array($0.values) } ?? [] }
        for flag in flags { flag.signal() }
    }

    /// Subscribes to changes of `key`. Subscribe *before* reading what you wait on: a change in between is kept,
    /// and the next `wait` returns at once.
    public func subscribe(_ key: String) -> ChangeSubscription {
        let flag = WakeFlag()
        let id = state.withLock { state -> UInt64 in
            state.nextSubscriber += 1
            state.subscribers[key, default: [:]][state.nextSubscriber] = flag
            return state.nextSubscriber
        }
        return ChangeSubscription(notifier: self, key: key, id: id, flag: flag)
    }

    fileprivate func unsubscribe(_ key: String, id: UInt64) {
        state.withLock { state in
            state.subscribers[key]?[id] = nil
            if state.subscribers[key]?.isEmpty == true { state.subscribers[key] = nil }
        }
    }
}

/// A subscription to changes of a run (or of an organization's runs); end it with `cancel()`.
public final class ChangeSubscription: Sendable {
    private let notifier: RunNotifier
    private let key: String
    private let id: UInt64
    private let flag: WakeFlag

    fileprivate init(notifier: RunNotifier, key: String, id: UInt64, flag: WakeFlag) {
        self.notifier = notifier
        self.key = key
        self.id = id
        self.flag = flag
    }

    /// Returns at the next change (at once if one happened since the last wait), or after `timeout`.
    public func wait(timeout: Duration) async {
        await flag.wait(timeout: timeout)
    }

    /// Ends the subscription.
    public func cancel() {
        notifier.unsubscribe(key, id: id)
    }

    deinit {
        notifier.unsubscribe(key, id: id)
    }
}
