import CaravanModels
import Testing

@Suite("Circuit breaker")
struct CircuitBreakerTests {
    @Test func opensAfterConsecutiveFailures() {
        var breaker = CircuitBreaker(failureThreshold: 3, openMilliseconds: 1_000)
        for _ in 0..<2 {
            do {
                let allowed = breaker.allow(now: 0)
                #expect(allowed)
            }
            breaker.record(success: false, now: 0)
        }
        #expect(breaker.state == .closed)
        #expect(breaker.consecutiveFailures == 2)
        breaker.record(success: true, now: 0)  // a success resets the count
        #expect(breaker.consecutiveFailures == 0)
        for _ in 0..<3 { breaker.record(success: false, now: 10) }
        #expect(breaker.state == .open)
        do {
            let allowed = breaker.allow(now: 500)
            #expect(!allowed)
        }
        do {
            let allowed = breaker.allow(now: 1_009)
            #expect(!allowed)
        }
    }

    @Test func halfOpenLetsExactlyOneProbeThrough() {
        var breaker = CircuitBreaker(failureThreshold: 1, openMilliseconds: 1_000)
        breaker.record(success: false, now: 0)
        #expect(breaker.state == .open)
        do {
            let allowed = breaker.allow(now: 1_000)
            #expect(allowed)
        }
        #expect(breaker.state == .halfOpen)
        do {
            let allowed = breaker.allow(now: 1_001)
            #expect(!allowed)
        }
        do {
            let allowed = breaker.allow(now: 5_000)
            #expect(!allowed)
        }
        breaker.record(success: true, now: 1_100)
        #expect(breaker.state == .closed)
        do {
            let allowed = breaker.allow(now: 1_101)
            #expect(allowed)
        }
        do {
            let allowed = breaker.allow(now: 1_102)
            #expect(allowed)
        }
    }

    @Test func aFailedProbeOpensItAgain() {
        var breaker = CircuitBreaker(failureThreshold: 1, openMilliseconds: 1_000)
        breaker.record(success: false, now: 0)
        do {
            let allowed = breaker.allow(now: 2_000)
            #expect(allowed)
        }
        breaker.record(success: false, now: 2_000)
        #expect(breaker.state == .open)
        do {
            let allowed = breaker.allow(now: 2_999)
            #expect(!allowed)
        }  // a full open period from the failed probe
        do {
            let allowed = breaker.allow(now: 3_000)
            #expect(allowed)
        }
    }

    @Test func aReleasedProbeLetsAnotherOneThrough() {
        var breaker = CircuitBreaker(failureThreshold: 1, openMilliseconds: 0)
        breaker.record(success: false, now: 0)
        let probe = breaker.admit(now: 0)
        #expect(probe != nil)
        do {
            let allowed = breaker.allow(now: 0)
            #expect(!allowed)
        }
        if let probe { breaker.release(probe) }
        do {
            let allowed = breaker.allow(now: 0)
            #expect(allowed)
        }
        #expect(breaker.state == .halfOpen)
    }

    @Test func defaults() {
        var breaker = CircuitBreaker()
        #expect(breaker.failureThreshold == 5)
        #expect(breaker.openMilliseconds == 30_000)
        for _ in 0..<5 { breaker.record(success: false, now: 0) }
        do {
            let allowed = breaker.allow(now: 29_999)
            #expect(!allowed)
        }
        do {
            let allowed = breaker.allow(now: 30_000)
            #expect(allowed)
        }
    }

    @Test func breakersAreKeptPerProvider() {
        let breakers = CircuitBreakers(failureThreshold: 1, openMilliseconds: 100)
        breakers.record("a", success: false, now: 0)
        #expect(!breakers.allow("a", now: 50))
        #expect(breakers.allow("b", now: 50))
        #expect(breakers.state("a") == .open)
        #expect(breakers.state("never-used") == .closed)
        #expect(breakers.states() == ["a": .open, "b": .closed])
    }
}
