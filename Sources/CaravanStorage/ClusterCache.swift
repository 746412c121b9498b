import Synchronization

/// What a node reads often and others may change, kept in memory and kept right across nodes: every change
/// empties the cache on the node that made it once committed, and is signalled to the other nodes in the same
/// transaction (`ClusterSignals`), which empty theirs. Correctness rests on three rules:
/// - a change goes through `change(in:_:)`, which sends the signal, empties this node's cache after the commit and
///   waits until the signal is delivered, so the change holds on the very next request on any node;
/// - a node that is not listening for signals (its listening connection lost) keeps nothing: it reads the
///   database until it listens again;
/// - an entry is used for `maxAge` at most, the bound on staleness should a signal be lost some other way.
/// A read that raced with a change is not stored (generations), so it cannot bring back what was dropped.
/// Absent values are never cached: what is created is seen at once.
public final class ClusterCache<Value: Sendable>: Sendable {
    private struct Stored {
        var value: Value
        var loadedAt: ContinuousClock.Instant
    }

    private struct State {
        var entries: [String: Stored] = [:]
        var generation: UInt64 = 0
        var enabled: Bool
    }

    private let state: Mutex<State>
    private let signals: ClusterSignals?
    private let topic: String
    public let maxAge: Duration
    let maxEntries: Int

    /// - Parameters:
    ///   - signals: the node's signals; `nil` for a cache of one process only (tests).
    ///   - topic: the signal that empties this cache on every node.
    public init(signals: ClusterSignals?, topic: String, maxAge: Duration = .seconds(10), maxEntries: Int = 10_000) {
        self.signals = signals
        self.topic = topic
        self.maxAge = maxAge
        self.maxEntries = maxEntries
        self.state = Mutex(State(enabled: !(signals?.isShared ?? false)))
        signals?.subscribe(topic) { [weak self] event in
            guard let self else { return }
            if case .resync = event {
                self.setEnabled(!(signals?.isShared ?? false) || (signals?.isListening ?? false))
            } else {
                self.invalidateAll()
            }
        }
    }

    /// The value for `key`, when cached and fresh.
    public func value(_ key: String) -> Value? {
        let now = ContinuousClock.now
        return state.withLock { state in
            guard state.enabled, let stored = state.entries[key] else { return nil }
            guard now - stored.loadedAt < maxAge else {
                state.entries.removeValue(forKey: key)
                return nil
            }
            return stored.value
        }
    }

    /// The value for `key`: from the cache, else from `load` (read from the database), which is then kept unless
    /// it is `nil` or a change committed while it was read.
    public func value(_ key: String, load: () async throws -> Value?) async throws -> Value? {
        if let cached = value(key) { return cached }
        let generation = self.generation()
        let loadedAt = ContinuousClock.now
        guard let loaded = try await load() else { return nil }
        store(key, loaded, generation: generation, loadedAt: loadedAt)
        return loaded
    }

    /// The generation to pass to `store` for a read that starts now; `nil` when nothing may be cached.
    func generation() -> UInt64? {
        state.withLock { $0.enabled ? $0.generation : nil }
    }

    /// Keeps `value`, unless the cache was emptied since `generation` was read.
    func store(_ key: String, _ value: Value, generation: UInt64?, loadedAt: ContinuousClock.Instant) {
        guard let generation else { return }
        state.withLock { state in
            guard state.enabled, state.generation == generation else { return }
            if state.entries.count >= maxEntries { state.entries.removeAll(keepingCapacity: true) }
            state.entries[key] = Stored(value: value, loadedAt: loadedAt)
        }
    }

    /// Changes the value kept for `key`, if any (e.g. a key's `last_used_at`, written by this node).
    public func update(_ key: String, _ change: (inout Value) -> Void) {
        state.withLock { state in
            guard var stored = state.entries[key] else { return }
            change(&stored.value)
            state.entries[key] = stored
        }
    }

    /// Drops every entry on this node only (after a change made to the database directly); reads in flight do
    /// not store theirs.
    public func invalidateAll() {
        state.withLock { state in
            state.generation &+= 1
            state.entries.removeAll(keepingCapacity: true)
        }
    }

    /// Turns keeping entries on or off; either way drops what is kept.
    func setEnabled(_ enabled: Bool) {
        state.withLock { state in
            state.enabled = enabled
            state.generation &+= 1
            state.entries.removeAll(keepingCapacity: true)
        }
    }

    /// How many entries are kept.
    public var count: Int { state.withLock { $0.entries.count } }

    /// Runs a change in one transaction of `database` with this cache's signal; once committed, empties this
    /// node's cache and waits until the other nodes were told to empty theirs.
    public func change<T: Sendable>(
        in database: any Database,
        _ body: @Sendable (any SQLExecutor) async throws -> T
    ) async throws -> T {
        let signals = self.signals
        let topic = self.topic
        let (result, token) = try await database.withTransaction { executor -> (T, String?) in
            let result = try await body(executor)
            return (result, try await signals?.send(topic, awaited: true, in: executor))
        }
        invalidateAll()
        await signals?.awaitDelivery(token)
        return result
    }
}
