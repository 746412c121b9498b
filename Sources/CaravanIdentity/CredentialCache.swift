import CaravanStorage
import Synchronization

/// What the database says of an API key, as authentication needs it.
struct StoredAPIKey: Sendable {
    var id: String
    var orgID: String
    var role: Role?
    var createdBy: String
    var expiresAt: Int64?
    var revokedAt: Int64?
    var lastUsedAt: Int64?
    var rateLimitPerMinute: Int?
    /// The creator's current role in the key's organization; `nil` once they are no longer a member.
    var creatorRole: Role?
}

/// What the database says of a session, as authentication needs it.
struct StoredSession: Sendable {
    struct Membership: Sendable {
        var orgID: String
        var role: Role
        var rateLimitPerMinute: Int?
    }

    var userID: String
    var revokedAt: Int64?
    var expiresAt: Int64
    var memberships: [Membership]
}

/// Authenticated credentials kept in memory, so that a request does not read its API key or session from the
/// database. Correctness rests on three rules:
/// - every change that can alter an authentication's outcome (a key revoked, a role changed, a member removed, a
///   session ended, an organization's rate limit) empties the cache on this node once committed, and signals the
///   other nodes in the same transaction (`ClusterSignals`), which empty theirs;
/// - a node that is not listening for those signals (its listening connection lost) keeps nothing: every
///   request reads the database until it listens again;
/// - an entry is used for `maxAge` at most, the bound on staleness should a signal be lost some other way.
/// A lookup that raced with an invalidation is not stored (generations), so it cannot bring back what was dropped.
/// Unknown credentials are never cached: a new key works at once.
final class CredentialCache: Sendable {
    enum Entry: Sendable {
        case apiKey(StoredAPIKey)
        case session(StoredSession)
    }

    private struct Stored {
        var entry: Entry
        var loadedAt: ContinuousClock.Instant
    }

    private struct State {
        var entries: [String: Stored] = [:]
        var generation: UInt64 = 0
        var enabled: Bool
    }

    private let state: Mutex<State>
    let maxAge: Duration
    let maxEntries: Int

    /// - Parameter enabled: whether entries are kept from the start (one node), or only once listening.
    init(enabled: Bool, maxAge: Duration = .seconds(10), maxEntries: Int = 10_000) {
        self.state = Mutex(State(enabled: enabled))
        self.maxAge = maxAge
        self.maxEntries = maxEntries
    }

    /// The entry for `id` (a key digest, or `session:` and a session id), when cached and fresh.
    func entry(_ id: String) -> Entry? {
        let now = ContinuousClock.now
        return state.withLock { state in
            guard state.enabled, let stored = state.entries[id] else { return nil }
            guard now - stored.loadedAt < maxAge else {
                state.entries.removeValue(forKey: id)
                return nil
            }
            return stored.entry
        }
    }

    /// The generation to pass to `store` for a lookup that starts now; `nil` when nothing may be cached.
    func generation() -> UInt64? {
        state.withLock { $0.enabled ? $0.generation : nil }
    }

    /// Keeps `entry`, unless the cache was emptied since `generation` was read.
    func store(_ id: String, _ entry: Entry, generation: UInt64?, loadedAt: ContinuousClock.Instant) {
        guard let generation else { return }
        state.withLock { state in
            guard state.enabled, state.generation == generation else { return }
            if state.entries.count >= maxEntries { state.entries.removeAll(keepingCapacity: true) }
            state.entries[id] = Stored(entry: entry, loadedAt: loadedAt)
        }
    }

    /// Records a key's new `last_used_at` in its entry.
    func touch(_ id: String, at time: Int64) {
        state.withLock { state in
            guard case .apiKey(var key) = state.entries[id]?.entry else { return }
            key.lastUsedAt = time
            state.entries[id]?.entry = .apiKey(key)
        }
    }

    /// Drops every entry; lookups in flight will not store theirs.
    func invalidateAll() {
        state.withLock { state in
            state.generation &+= 1
            state.entries.removeAll(keepingCapacity: true)
        }
    }

    /// Turns keeping entries on or off (listening started or stopped); either way drops what is kept.
    func setEnabled(_ enabled: Bool) {
        state.withLock { state in
            state.enabled = enabled
            state.generation &+= 1
            state.entries.removeAll(keepingCapacity: true)
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
