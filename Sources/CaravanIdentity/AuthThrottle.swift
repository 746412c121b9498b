public import CaravanCore
public import CaravanStorage

/// Brute-force protection for the endpoints that take passwords and codes, kept in the database so that it holds
/// across nodes:
/// - per source address, at most `attemptsPerMinute` attempts in each minute;
/// - per account and source address, after `freeFailures` failed logins in a row, each further attempt from that
///   address waits 1 s, 2 s, 4 s, … at most `maxBackoffSeconds`: guessing stays slow, and failures from one address
///   never shut the real user out from another. A success clears that address's count; failures older than an
///   hour are forgotten.
public struct AuthThrottle: Sendable {
    public var attemptsPerMinute: Int
    public var freeFailures = 5
    public var maxBackoffSeconds: Int64 = 300
    let database: any Database
    let store = IdentityStore()
    /// The wall clock that windows and backoffs are counted on.
    let clock: WallClock

    public init(database: any Database, attemptsPerMinute: Int, clock: WallClock = .system) {
        self.database = database
        self.attemptsPerMinute = attemptsPerMinute
        self.clock = clock
    }

    /// Counts an attempt from `source`.
    /// - Throws: `rate_limited` (with the seconds until the next minute) when over the limit.
    public func admit(source: String) async throws {
        guard attemptsPerMinute > 0 else { return }
        let now = clock.nowMilliseconds()
        let window = now / 60_000 * 60_000
        let count = try await database.withTransaction { executor in
            try await store.countAttempt(bucket: "auth:\(source)", window: window, in: executor)
        }
        if count > attemptsPerMinute {
            throw CaravanError.rateLimited(
                "Too many sign-in attempts from this address; try again shortly.",
                retryAfter: Int((window + 60_000 - now + 999) / 1000)
            )
        }
    }

    /// Refuses an attempt on `email` from `source` while that pair's backoff lasts. The backoff is kept per
    /// account and source address, so that failures from one address (someone guessing, or locking a known account
    /// out on purpose) never hold back the account's owner signing in from another.
    public func checkAccount(_ email: String, source: String) async throws {
        let now = clock.nowMilliseconds()
        let failed = try await database.read { executor in
            try await store.loginFailures(email: email, source: source, in: executor)
        }
        guard let failed else { return }
        let last = failed.lastFailureAt
        let wait = backoff(failures: failed.failures)
        let until = last + wait * 1000
        if wait > 0, now < until, now - last < 3_600_000 {
            throw CaravanError.rateLimited(
                "Too many failed sign-ins for this account from this address; try again in a moment.",
                retryAfter: Int((until - now + 999) / 1000)
            )
        }
    }

    /// The seconds an account waits after `failures` failures in a row.
    public func backoff(failures: Int64) -> Int64 {
        guard failures >= Int64(freeFailures) else { return 0 }
        let exponent = min(failures - Int64(freeFailures), 20)
        return min(Int64(1) << exponent, maxBackoffSeconds)
    }

    /// Counts a failed password or code for `email` from `source`.
    public func recordFailure(_ email: String, source: String) async throws {
        let now = clock.nowMilliseconds()
        try await database.withTransaction { executor in
            try await store.recordLoginFailure(email: email, source: source, at: now, in: executor)
            // Forget pairs idle for more than an hour, a few at a time, so that the table stays small.
            try await store.forgetLoginFailures(before: now - 3_600_000, in: executor)
        }
    }

    /// Clears the count of `email` from `source` after a success there (other addresses keep theirs).
    public func clearFailures(_ email: String, source: String) async throws {
        try await database.withTransaction { executor in
            try await store.clearLoginFailures(email: email, source: source, in: executor)
        }
    }
}
