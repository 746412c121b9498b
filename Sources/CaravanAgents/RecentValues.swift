import CaravanCore
import Synchronization

/// Values read from the database kept for a short while (a second by default), so that a hot path reads each at
/// most that often: a change made on this node is stored at once, one made on another node is seen when the value
/// expires. Absent values (`nil`) are kept too. Bounded: past `capacity` entries, all are dropped.
final class RecentValues<Value: Sendable>: Sendable {
    private let entries = Mutex<[String: (value: Value?, readAt: Int64)]>([:])
    private let clock: WallClock
    private let maxAge: Int64
    private let capacity: Int

    init(clock: WallClock, maxAgeMilliseconds: Int64 = 1_000, capacity: Int = 10_000) {
        self.clock = clock
        self.maxAge = maxAgeMilliseconds
        self.capacity = capacity
    }

    /// The value kept for `key`, or the one `read` gives (then kept).
    func value(_ key: String, read: () async throws -> Value?) async throws -> Value? {
        let now = clock.nowMilliseconds()
        if let kept = entries.withLock({ $0[key] }), now - kept.readAt < maxAge { return kept.value }
        let value = try await read()
        store(value, for: key, at: now)
        return value
    }

    /// Keeps `value` for `key` (a change this node made).
    func store(_ value: Value?, for key: String, at now: Int64? = nil) {
        let now = now ?? clock.nowMilliseconds()
        entries.withLock { entries in
            if entries.count >= capacity && entries[key] == nil { entries.removeAll() }
            entries[key] = (value, now)
        }
    }

    /// Forgets `key`: the next read goes to the database.
    func forget(_ key: String) {
        _ = entries.withLock { $0.removeValue(forKey: key) }
    }
}
