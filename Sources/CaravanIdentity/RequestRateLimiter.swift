import Synchronization

/// Per-credential request limits: a token bucket per API key or user that refills at `perMinute / 60` requests
/// a second and holds at most `perMinute`. Counted on each node separately: with N nodes behind a balancer a
/// credential gets up to N times its limit (documented in docs/operations.md).
public final class RequestRateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updatedAt: ContinuousClock.Instant
    }

    /// The limit for credentials whose organization sets none; 0 means no limit.
    public let defaultPerMinute: Int
    private let buckets = Mutex<[String: Bucket]>([:])
    private let maxBuckets = 100_000

    public init(defaultPerMinute: Int) {
        self.defaultPerMinute = defaultPerMinute
    }

    /// Takes one request from `key`'s bucket.
    /// - Returns: `nil` when admitted, else the seconds until a request would be.
    public func take(_ key: String, perMinute: Int?, now: ContinuousClock.Instant = .now) -> Int? {
        let limit = perMinute ?? defaultPerMinute
        guard limit > 0 else { return nil }
        let rate = Double(limit) / 60
        return buckets.withLock { buckets -> Int? in
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit), updatedAt: now)
            let elapsed = now - bucket.updatedAt
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(Double(limit), bucket.tokens + seconds * rate)
            bucket.updatedAt = now
            defer {
                if buckets.count >= maxBuckets && buckets[key] == nil { buckets.removeAll(keepingCapacity: true) }
                buckets[key] = bucket
            }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return Int(((1 - bucket.tokens) / rate).rounded(.up))
        }
    }
}
