import Synchronization

/// A circuit breaker for one provider, as a pure state machine: no I/O, the time passed in (milliseconds on
/// any clock that does not go backwards).
///
/// Closed: calls pass; `failureThreshold` consecutive failures open it. Open: calls are refused until
/// `openMilliseconds` have passed, then it is half-open. Half-open: exactly one call (the probe) passes; its
/// success closes the breaker, its failure opens it again for another `openMilliseconds`.
public struct CircuitBreaker: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
        case closed
        case open
        case halfOpen = "half_open"
    }

    public let failureThreshold: Int
    public let openMilliseconds: Int64
    /// The state as of the last call to `allow` or `record`.
    public private(set) var state: State = .closed
    /// Failures in a row while closed.
    public private(set) var consecutiveFailures = 0
    private var openedAt: Int64 = 0
    private var probeInFlight = false

    /// - Parameters:
    ///   - failureThreshold: consecutive failures that open the breaker (at least 1; 5 by default).
    ///   - openMilliseconds: how long it stays open before a probe (30 s by default).
    public init(failureThreshold: Int = 5, openMilliseconds: Int64 = 30_000) {
        self.failureThreshold = max(1, failureThreshold)
        self.openMilliseconds = max(0, openMilliseconds)
    }

    /// Whether a call may go out now. When the open period is over this turns the breaker half-open and lets
    /// this one call through as the probe; further calls are refused until the probe's result is recorded.
    public mutating func allow(now: Int64) -> Bool {
        switch state {
        case .closed:
            return true
        case .open:
            guard now - openedAt >= openMilliseconds else { return false }
            state = .halfOpen
            probeInFlight = true
            return true
        case .halfOpen:
            guard !probeInFlight else { return false }
            probeInFlight = true
            return true
        }
    }

    /// Records the result of a call that `allow` let through.
    public mutating func record(success: Bool, now: Int64) {
        if success {
            state = .closed
            consecutiveFailures = 0
            probeInFlight = false
            return
        }
        switch state {
        case .closed:
            consecutiveFailures += 1
            if consecutiveFailures >= failureThreshold { open(now: now) }
        case .halfOpen:
            open(now: now)
        case .open:
            break  // a call let through before the breaker opened: it is open already
        }
    }

    /// Gives back a call that `allow` let through but that told nothing about the provider (it never left, or
    /// was cancelled): a half-open breaker lets the next call probe instead.
    public mutating func release() {
        if state == .halfOpen { probeInFlight = false }
    }

    private mutating func open(now: Int64) {
        state = .open
        openedAt = now
        probeInFlight = false
    }
}

/// One circuit breaker per provider name, shared by every call on this node.
public final class CircuitBreakers: Sendable {
    private let breakers = Mutex<[String: CircuitBreaker]>([:])
    private let failureThreshold: Int
    private let openMilliseconds: Int64

    /// - Parameters: as `CircuitBreaker`, for every provider.
    public init(failureThreshold: Int = 5, openMilliseconds: Int64 = 30_000) {
        self.failureThreshold = failureThreshold
        self.openMilliseconds = openMilliseconds
    }

    /// Whether a call to `provider` may go out now (see `CircuitBreaker.allow`).
    public func allow(_ provider: String, now: Int64) -> Bool {
        update(provider) { $0.allow(now: now) }
    }

    /// Records the result of a call to `provider`.
    public func record(_ provider: String, success: Bool, now: Int64) {
        update(provider) { $0.record(success: success, now: now) }
    }

    /// Gives back a call that told nothing (see `CircuitBreaker.release`).
    public func release(_ provider: String) {
        update(provider) { $0.release() }
    }

    /// The state of `provider`'s breaker (`closed` when it was never used).
    public func state(_ provider: String) -> CircuitBreaker.State {
        breakers.withLock { $0[provider]?.state ?? .closed }
    }

    /// Every breaker's state, by provider name, e.g. for metrics.
    public func states() -> [String: CircuitBreaker.State] {
        breakers.withLock { $0.mapValues(\.state) }
    }

    private func update<T>(_ provider: String, _ body: (inout CircuitBreaker) -> T) -> T {
        breakers.withLock { breakers in
            var breaker =
                breakers[provider]
                ?? CircuitBreaker(failureThreshold: failureThreshold, openMilliseconds: openMilliseconds)
            defer { breakers[provider] = breaker }
            return body(&breaker)
        }
    }
}
