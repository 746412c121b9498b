import Synchronization

/// Per-credential request limits: a token bucket per API key or user that refills at `perMinute / 60` requests
/// a second and holds at most `perMinute`. Counted on each node separately: with N nodes behind a balancer a
/// credential gets up to N times its limit (documented in docs/operations.md).
public final class RequestRateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updatedAt: ContinuousClock.Instant
    }

    /// The operator's limit: the limit of credentials whose organization sets none, and the ceiling of those whose
    /// organization sets one; 0 means no limit.
    public let defaultPerMinute: Int
    private let buckets = Mutex<[String: Bucket]>([:])
    private let maxBuckets = 100_000

    public init(defaultPerMinute: Int) {
        self.defaultPerMinute = defaultPerMinute
    }

    /// The limit that applies to a credential whose organization sets `organization` (`nil`: none, `0`: no limit):
    /// the organization's limit never lifts the operator's, even one stored before the operator lowered theirs.
    /// - Returns: requests per minute, 0 for no limit.
    public func effectiveLimit(organization: Int?) -> Int {
        guard let organization, organization > 0 else { return defaultPerMinute }
        return defaultPerMinute > 0 ? min(organization, defaultPerMinute) : organization
    }

    /// Takes one request from `key`'s bucket.
    /// - Parameters:
    ///   - perMinute: the organization's limit, if it sets one; capped by the operator's (`effectiveLimit`).
    /// - Returns: `nil` when admitted, else the seconds until a request would be.
    public func take(_ key: String, perMinute: Int?, now: ContinuousClock.Instant = .now) -> Int? {
        account(key, perMinute: perMinute, now: now)?.retryAfterSeconds
    }

    /// Takes one request from `key`'s bucket and says where the bucket stands, for `x-ratelimit-*` headers.
    /// - Returns: `nil` when no limit applies.
    public func account(_ key: String, perMinute: Int?, now: ContinuousClock.Instant = .now) -> RateLimitState? {
        let limit = effectiveLimit(organization: perMinute)
        guard limit > 0 else { return nil }
        let rate = Double(limit) / 60
        return buckets.withLock { buckets -> RateLimitState in
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit), updatedAt: now)
            let elapsed = now - bucket.updatedAt
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(Double(limit), bucket.tokens + seconds * rate)
            bucket.updatedAt = now
            defer {
                if buckets.count >= maxBuckets && buckets[key] == nil { buckets.removeAll(keepingCapacity: true) }
                buckets[key] = bucket
            }
            var retryAfter: Int?
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
            } else {
                retryAfter = Int(((1 - bucket.tokens) / rate).rounded(.up))
            }
            return RateLimitState(
                limit: limit,
                remaining: Int(bucket.tokens.rounded(.down)),
                resetSeconds: (Double(limit) - bucket.tokens) / rate,
                retryAfterSeconds: retryAfter
            )
        }
    }
}

/// Where a credential's request budget stands after a request.
public struct RateLimitState: Sendable, Hashable {
    /// Requests a minute.
    public var limit: Int
    /// Requests that may be made at once from now.
    public var remaining: Int
    /// Seconds until the budget is whole again.
    public var resetSeconds: Double
    /// When the request was refused: seconds until one would be admitted.
    public var retryAfterSeconds: Int?

    /// As OpenAI's `x-ratelimit-reset-requests` states a time: `1s`, `6m0s`, `120ms`.
    public var resetText: String {
        if resetSeconds < 1 { return "\(Int((resetSeconds * 1000).rounded(.up)))ms" }
        let whole = Int(resetSeconds.rounded(.up))
        return whole < 60 ? "\(whole)s" : "\(whole / 60)m\(whole % 60)s"
    }
}
