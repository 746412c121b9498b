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

    /// A call let through by `admit`: give it back with `release` when it tells nothing of the provider.
    public struct Permit: Sendable, Hashable {
        /// The number of the probe this call is, or `nil` for a call let through while closed.
        let probe: UInt64?
    }

    public let failureThreshold: Int
    public let openMilliseconds: Int64
    /// The state as of the last call to `allow` or `record`.
    public private(set) var state: State = .closed
    /// Failures in a row while closed.
    public private(set) var consecutiveFailures = 0
    private var openedAt: Int64 = 0
    private var probeInFlight = false
    /// Probes let through so far: the last one's number.
    private var probes: UInt64 = 0

    /// - Parameters:
    ///   - failureThreshold: consecutive failures that open the breaker (at least 1; 5 by default).
    ///   - openMilliseconds: how long it stays open before a probe (30 s by default).
    public init(failureThreshold: Int = 5, openMilliseconds: Int64 = 30_000) {
        self.failureThreshold = max(1, failureThreshold)
        self.openMilliseconds = max(0, openMilliseconds)
    }

    /// Lets a call go out now, or refuses it (`nil`). When the open period is over this turns the breaker
    /// half-open and lets this one call through as the probe; further calls are refused until the probe's result
    /// is recorded or the probe is given back.
    public mutating func admit(now: Int64) -> Permit? {
        switch state {
        case .closed:
            return Permit(probe: nil)
        case .open:
            guard now - openedAt >= openMilliseconds else { return nil }
            state = .halfOpen
            return nextProbe()
        case .halfOpen:
            guard !probeInFlight else { return nil }
            return nextProbe()
        }
    }

    /// Whether a call may go out now, for callers that never give one back (see `admit`).
    public mutating func allow(now: Int64) -> Bool {
        admit(now: now) != nil
    }

    private mutating func nextProbe() -> Permit {
        probes += 1
        probeInFlight = true
        return Permit(probe: probes)
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

    /// Gives back a call that `admit` let through but that told nothing about the provider (it never left, or
    /// was cancelled): when it is the probe in flight, the next call probes instead. Any other call given back
    /// (one let through before the breaker opened) changes nothing.
    public mutating func release(_ permit: Permit) {
        if state == .halfOpen, let probe = permit.probe, probe == probes { probeInFlight = false }
    }

    private mutating func open(now: Int64) {
        state = .open
        openedAt = now
        probeInFlight = false
    }
}

/// One circuit breaker per name (a provider's model: see `ProviderRouter.breakerName`), shared by every call on
/// this node.
public final class CircuitBreakers: Sendable {
    private let breakers = Mutex<[String: CircuitBreaker]>([:])
    private let failureThreshold: Int
    private let openMilliseconds: Int64

    /// - Parameters: as `CircuitBreaker`, for every provider.
    public init(failureThreshold: Int = 5, openMilliseconds: Int64 = 30_000) {
        self.failureThreshold = failureThreshold
        self.openMilliseconds = openMilliseconds
    }

    /// Lets a call to `provider` go out now, or refuses it (see `CircuitBreaker.admit`).
    public func admit(_ provider: String, now: Int64) -> CircuitBreaker.Permit? {
        update(provider) { $0.admit(now: now) }
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
    public func release(_ provider: String, _ permit: CircuitBreaker.Permit) {
        update(provider) { $0.release(permit) }
    }

    /// The state of `provider`'s breaker (`closed` when it was never used).
    public func state(_ provider: String) -> CircuitBreaker.State {
        breakers.withLock { $0[provider]?.state ?? .closed }
    }

    /// Every breaker's state, by name, e.g. for metrics.
    public func states() -> [String: CircuitBreaker.State] {
        breakers.withLock { $0.mapValues(\.state) }
    }

    /// The states of the breakers whose names start with `prefix`, by the rest of their names.
    public func states(prefix: String) -> [String: CircuitBreaker.State] {
        breakers.withLock { breakers in
            var states: [String: CircuitBreaker.State] = [:]
            for (name, breaker) in breakers where name.hasPrefix(prefix) {
                states[String(name.dropFirst(prefix.count))] = breaker.state
            }
            return states
        }
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
