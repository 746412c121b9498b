import CaravanModels
import PropertyBased
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Property tests of `CircuitBreaker`: random sequences of calls (`allow`), successes, transient failures,
/// permanent failures (recorded as successes, as `ProviderRouter` does: the provider answered), releases and clock
/// advances, with the breaker's contract checked after every step.
///
/// `CARAVAN_PROPERTY_COUNT` sets how many cases each property runs (default 500).
@Suite("Circuit breaker properties")
struct CircuitBreakerPropertyTests {
    static let count: Int = {
        guard let pointer = getenv("CARAVAN_PROPERTY_COUNT"), let number = Int(String(cString: pointer)), number > 0
        else { return 500 }
        return number
    }()

    @Test("Random calls, results and clock advances keep the breaker's contract")
    func contractHolds() async {
        await propertyCheck(count: Self.count, input: Gen.int(in: 0...999).array(of: 0...150)) { events in
            var model = BreakerModel()
            for event in events {
                model.handle(event)
                if !model.violations.isEmpty { break }
            }
            #expect(
                model.violations.isEmpty,
                "\(model.violations.prefix(3).joined(separator: "\n"))\nlog: \(model.log.suffix(12).joined(separator: "; "))"
            )
        }
    }

    @Test("Any threshold and open period: it opens exactly at the threshold and stays open the whole period")
    func thresholdsAndPeriods() async {
        await propertyCheck(
            count: Self.count,
            input: Gen.int(in: 1...10),
            Gen.int64(in: 0...100_000),
            Gen.int(in: 0...20)
        ) { threshold, period, successesBetween in
            var breaker = CircuitBreaker(failureThreshold: threshold, openMilliseconds: period)
            var now: Int64 = 0
            // Failures broken by a success never open it.
            for _ in 0..<3 {
                for _ in 0..<(threshold - 1) { breaker.record(success: false, now: now) }
                #expect(breaker.state == .closed)
                breaker.record(success: true, now: now)
                #expect(breaker.consecutiveFailures == 0)
            }
            for _ in 0..<successesBetween { breaker.record(success: true, now: now) }
            for index in 1...threshold {
                #expect(breaker.state == .closed)
                breaker.record(success: false, now: now)
                #expect(breaker.state == (index == threshold ? .open : .closed))
            }
            let openedAt = now
            now += max(0, period - 1)
            if period > 0 {
                let early = breaker.allow(now: now)
                #expect(!early)
            }
            now = openedAt + period
            let probe = breaker.allow(now: now)
            #expect(probe)
            #expect(breaker.state == .halfOpen)
            let second = breaker.allow(now: now + 1_000_000)
            #expect(!second)
        }
    }

    @Test("A call let through while closed and given back while half-open does not free a second probe")
    func staleReleaseDuringProbe() throws {
        var breaker = CircuitBreaker(failureThreshold: 1, openMilliseconds: 1_000)
        let slowCall = breaker.admit(now: 0)  // a long call (a streamed answer) goes out while closed
        let slow = try #require(slowCall)
        breaker.record(success: false, now: 10)  // another call fails: the breaker opens
        let probeCall = breaker.admit(now: 1_010)  // the probe goes out
        let probe = try #require(probeCall)
        breaker.release(slow)  // the slow call is cancelled by its client: it told nothing
        let second = breaker.admit(now: 1_011)
        #expect(second == nil, "the probe is still in flight")
        breaker.release(probe)  // the probe is cancelled too
        let next = breaker.admit(now: 1_012)
        #expect(next != nil, "the next call probes instead")
    }
}

/// The breaker under test, the calls it let through, and what its contract says it must do.
struct BreakerModel {
    var breaker = CircuitBreaker()
    let threshold = 5
    let period: Int64 = 30_000
    var now: Int64 = 0
    /// Calls let through and not yet recorded: whether each was let through as the half-open probe, and its permit.
    var calls: [(probe: Bool, permit: CircuitBreaker.Permit)] = []
    /// Transient failures recorded in a row while closed.
    var streak = 0
    var openedAt: Int64?
    var violations: [String] = []
    var log: [String] = []

    var probesInFlight: Int { calls.filter(\.probe).count }

    mutating func violation(_ text: String) { violations.append("\(text) (state \(breaker.state), now \(now))") }

    mutating func handle(_ code: Int) {
        let parameter = code / 8
        switch code % 8 {
        case 0, 1: allow()
        case 2, 3:
            guard !calls.isEmpty else { return allow() }
            transientFailure(calls.remove(at: parameter % calls.count))
        case 4:
            guard !calls.isEmpty else { return allow() }
            success(calls.remove(at: parameter % calls.count), permanentFailure: false)
        case 5:
            guard !calls.isEmpty else { return allow() }
            success(calls.remove(at: parameter % calls.count), permanentFailure: true)
        case 6:
            // Gives back a call that told nothing: the probe, or an older call (see `staleReleaseDuringProbe`).
            guard !calls.isEmpty else { return allow() }
            release(calls.remove(at: parameter % calls.count))
        default:
            now += [1, 100, 5_000, 29_999, 30_000, 31_000][parameter % 6]
            log.append("+\(now)")
        }
        checkAlways()
    }

    mutating func allow() {
        let before = breaker.state
        let permit = breaker.admit(now: now)
        let allowed = permit != nil
        log.append("allow→\(allowed)")
        switch before {
        case .closed:
            if !allowed { violation("a closed breaker refused a call") }
            if breaker.state != .closed { violation("allow changed a closed breaker") }
        case .open:
            guard let openedAt else { return violation("open without having been opened") }
            if now - openedAt < period {
                if allowed || breaker.state != .open {
                    violation("a call passed \(now - openedAt) ms into the open period")
                }
            } else if !allowed || breaker.state != .halfOpen {
                violation("no probe after the open period")
            }
        case .halfOpen:
            if allowed && probesInFlight > 0 { violation("a second probe passed while one is in flight") }
            if !allowed && probesInFlight == 0 { violation("no probe passed while none is in flight") }
            if breaker.state != .halfOpen { violation("allow changed a half-open breaker") }
        }
        if let permit { calls.append((breaker.state == .halfOpen, permit)) }
    }

    mutating func transientFailure(_ call: (probe: Bool, permit: CircuitBreaker.Permit)) {
        let probe = call.probe
        let before = breaker.state
        breaker.record(success: false, now: now)
        log.append("fail(probe: \(probe))")
        switch before {
        case .closed:
            streak += 1
            if streak >= threshold {
                if breaker.state != .open { violation("\(streak) failures in a row did not open it") }
                openedAt = now
                streak = 0
            } else if breaker.state != .closed {
                violation("it opened after \(streak) failures in a row")
            }
        case .halfOpen:
            // A failed probe (or any failure heard while probing) opens it for another full period.
            if breaker.state != .open { violation("a failure while half-open left it \(breaker.state)") }
            openedAt = now
        case .open:
            // A call let through before it opened: it stays open, the period unchanged.
            if breaker.state != .open { violation("a late failure changed an open breaker") }
        }
        // calls still out are no probes of the next period
        if breaker.state == .open { calls = calls.map { (false, $0.permit) } }
    }

    mutating func success(_ call: (probe: Bool, permit: CircuitBreaker.Permit), permanentFailure: Bool) {
        let probe = call.probe
        breaker.record(success: true, now: now)
        log.append(permanentFailure ? "permanent(probe: \(probe))" : "ok(probe: \(probe))")
        // The provider answered: it closes, and the count starts again. A permanent failure never opens it.
        if breaker.state != .closed { violation("a success left it \(breaker.state)") }
        if breaker.consecutiveFailures != 0 { violation("a success kept \(breaker.consecutiveFailures) failures") }
        streak = 0
        openedAt = nil
        calls = calls.map { (false, $0.permit) }  // calls still out are no probes of a closed breaker
    }

    mutating func release(_ call: (probe: Bool, permit: CircuitBreaker.Permit)) {
        let before = breaker.state
        breaker.release(call.permit)
        log.append("release(probe: \(call.probe))")
        if breaker.state != before { violation("release changed the state from \(before)") }
    }

    mutating func checkAlways() {
        if probesInFlight > 1 { violation("\(probesInFlight) probes in flight") }
        if breaker.state == .closed {
            if breaker.consecutiveFailures != streak {
                violation("consecutiveFailures \(breaker.consecutiveFailures), expected \(streak)")
            }
            if breaker.consecutiveFailures >= threshold {
                violation("closed with \(breaker.consecutiveFailures) failures in a row")
            }
        }
        if breaker.state != .halfOpen && probesInFlight > 0 && breaker.state != .open {
            violation("a probe is in flight while \(breaker.state)")
        }
    }
}
