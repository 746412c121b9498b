import CaravanCore
import CaravanModels
import CaravanOutbound
import CaravanTestSupport
import Logging
import Synchronization
import Testing

@Suite("Provider router: retries, fallbacks, breakers")
struct ProviderRouterTests {
    let request = ChatRequest(model: "ignored", messages: [.user("hello")])
    let primary = ModelRef(provider: "primary", model: "gpt-4o")
    let secondary = ModelRef(provider: "secondary", model: "claude-sonnet-4")

    /// Runs `body` with an OpenAI fake as provider `primary` and an Anthropic fake as provider `secondary`.
    func withProviders(
        primaryTimeout: Int64 = 5_000,
        primaryRetries: Int = 0,
        breakers: CircuitBreakers = CircuitBreakers(),
        time: TestTime = TestTime(),
        _ body: (ProviderRouter, FakeOpenAIServer, FakeAnthropicServer, Resolver) async throws -> Void
    ) async throws {
        try await FakeOpenAIServer.with { openAIServer in
            try await FakeAnthropicServer.with { anthropicServer in
                let endpoints = [
                    "primary": endpoint(
                        openAIServer.baseURL,
                        kind: .openai,
                        name: "primary",
                        timeoutMilliseconds: primaryTimeout,
                        maxRetries: primaryRetries
                    ),
                    "secondary": endpoint(anthropicServer.baseURL, kind: .anthropic, name: "secondary"),
                ]
                let router = ProviderRouter(
                    openAI: openAIProvider,
                    anthropic: anthropicProvider,
                    breakers: breakers,
                    logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                    sleep: { try await time.sleep($0) },
                    now: { time.now }
                )
                try await body(router, openAIServer, anthropicServer, Resolver(endpoints: endpoints))
            }
        }
    }

    struct Resolver: Sendable {
        let endpoints: [String: ProviderEndpoint]
        var resolve: @Sendable (String) async throws(ProviderError) -> ProviderEndpoint {
            { name throws(ProviderError) in
                guard let endpoint = endpoints[name] else { throw ProviderError(.unknownModel, "No provider \(name).") }
                return endpoint
            }
        }
    }

    final class AttemptLog: Sendable {
        let attempts = Mutex<[RouterAttempt]>([])
        var handler: @Sendable (RouterAttempt) async -> Void {
            { attempt in self.attempts.withLock { $0.append(attempt) } }
        }
        var all: [RouterAttempt] { attempts.withLock { $0 } }
    }

    @Test func firstRefAnswers() async throws {
        try await withProviders { router, openAI, anthropic, resolver in
            openAI.enqueue(.text("from primary", usage: FakeUsage(input: 7, output: 2)))
            let log = AttemptLog()
            let routed = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil,
                onAttempt: log.handler
            )
            #expect(routed.ref == primary)
            #expect(routed.attempts == 1)
            #expect(routed.response.message.content == "from primary")
            #expect(openAI.lastBody?["model"] == "gpt-4o")  // the ref's model, not the request's
            #expect(anthropic.callCount == 0)
            #expect(log.all.count == 1)
            #expect(log.all.first?.error == nil)
            #expect(log.all.first?.usage == TokenUsage(inputTokens: 7, outputTokens: 2))
        }
    }

    @Test(arguments: [
        FakeModelReply.error(status: 429), .error(status: 500), .error(status: 529), .hang(), .error(status: 404),
    ])
    func fallsBackAfterATransientFailure(failure: FakeModelReply) async throws {
        try await withProviders(primaryTimeout: 300) { router, openAI, anthropic, resolver in
            openAI.enqueue(failure)
            let log = AttemptLog()
            let routed = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil,
                onAttempt: log.handler
            )
            #expect(routed.ref == secondary)
            #expect(routed.attempts == 2)
            #expect(routed.response.message.content == "ok: hello")
            #expect(anthropic.lastBody?["model"] == "claude-sonnet-4")
            #expect(log.all.map(\.ref) == [primary, secondary])
            #expect(log.all.first?.error != nil)
        }
    }

    @Test func retriesHonourMaxRetriesThenFallBack() async throws {
        let time = TestTime()
        try await withProviders(primaryRetries: 2, time: time) { router, openAI, anthropic, resolver in
            openAI.enqueue(.error(status: 500), .error(status: 503), .error(status: 502))
            let routed = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(openAI.callCount == 3)  // one call and two retries
            #expect(routed.ref == secondary)
            #expect(routed.attempts == 4)
            #expect(time.sleeps.count == 2)
            // Exponential with equal jitter: 125…250 ms, then 250…500 ms.
            #expect((125...250).contains(time.sleeps[0]))
            #expect((250...500).contains(time.sleeps[1]))
        }
    }

    @Test func aRetryCanSucceedOnTheSameProvider() async throws {
        let time = TestTime()
        try await withProviders(primaryRetries: 3, time: time) { router, openAI, anthropic, resolver in
            openAI.enqueue(.error(status: 429, retryAfter: "1"), .text("second time lucky"))
            let routed = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(routed.ref == primary)
            #expect(routed.attempts == 2)
            #expect(time.sleeps == [1_000])  // Retry-After honoured
            #expect(anthropic.callCount == 0)
        }
    }

    @Test func aLongRetryAfterMovesOnAtOnce() async throws {
        let time = TestTime()
        try await withProviders(primaryRetries: 3, time: time) { router, openAI, anthropic, resolver in
            openAI.enqueue(.error(status: 429, retryAfter: "120"))
            let routed = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(routed.ref == secondary)
            #expect(openAI.callCount == 1)
            #expect(time.sleeps.isEmpty)
        }
    }

    @Test func aBadRequestIsNotSentElsewhere() async throws {
        try await withProviders(primaryRetries: 3) { router, openAI, anthropic, resolver in
            openAI.enqueue(.error(status: 400, message: "context too long"))
            let error = await providerError { () async throws(ProviderError) in
                try await router.complete(
                    request,
                    route: [primary, secondary],
                    resolve: resolver.resolve,
                    onDelta: nil
                )
            }
            #expect(error?.kind == .badRequest)
            #expect(openAI.callCount == 1)
            #expect(anthropic.callCount == 0)
        }
    }

    @Test func unknownProviderMovesOn() async throws {
        try await withProviders { router, openAI, anthropic, resolver in
            let routed = try await router.complete(
                request,
                route: [ModelRef(provider: "nowhere", model: "x"), secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(routed.ref == secondary)
            #expect(routed.attempts == 1)
        }
    }

    @Test func theLastErrorIsThrownWhenEveryRefFails() async throws {
        try await withProviders { router, openAI, anthropic, resolver in
            openAI.enqueue(.error(status: 500))
            anthropic.enqueue(.error(status: 529, message: "Overloaded"))
            let error = await providerError { () async throws(ProviderError) in
                try await router.complete(
                    request,
                    route: [primary, secondary],
                    resolve: resolver.resolve,
                    onDelta: nil
                )
            }
            #expect(error?.kind == .unavailable)
            #expect(error?.status == 529)
        }
    }

    @Test func theCircuitOpensAndThenSkipsTheProvider() async throws {
        let breakers = CircuitBreakers(failureThreshold: 2, openMilliseconds: 10_000)
        let time = TestTime()
        try await withProviders(breakers: breakers, time: time) { router, openAI, anthropic, resolver in
            openAI.respond { _ in .error(status: 500) }
            for _ in 0..<2 {
                let routed = try await router.complete(
                    request,
                    route: [primary, secondary],
                    resolve: resolver.resolve,
                    onDelta: nil
                )
                #expect(routed.ref == secondary)
            }
            #expect(breakers.state(ProviderRouter.breakerName(endpoint: "primary", model: "gpt-4o")) == .open)
            #expect(openAI.callCount == 2)

            let log = AttemptLog()
            let routed = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil,
                onAttempt: log.handler
            )
            #expect(routed.ref == secondary)
            #expect(routed.attempts == 1)
            #expect(openAI.callCount == 2)  // skipped
            #expect(log.all.first?.error?.kind == .circuitOpen)

            // After the open period one probe goes through; it fails and the circuit opens again.
            time.advance(10_000)
            _ = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(openAI.callCount == 3)
            #expect(breakers.state(ProviderRouter.breakerName(endpoint: "primary", model: "gpt-4o")) == .open)
            _ = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(openAI.callCount == 3)

            // The next probe succeeds and closes it.
            time.advance(10_000)
            openAI.respond(with: nil)
            let recovered = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(recovered.ref == primary)
            #expect(breakers.state(ProviderRouter.breakerName(endpoint: "primary", model: "gpt-4o")) == .closed)
        }
    }

    /// One failing model opens its own circuit: the provider's other models are still called.
    @Test func aFailingModelOpensItsOwnCircuitOnly() async throws {
        let breakers = CircuitBreakers(failureThreshold: 2, openMilliseconds: 10_000)
        try await withProviders(breakers: breakers, time: TestTime()) { router, openAI, anthropic, resolver in
            openAI.respond { request in request.model == "gpt-4o" ? .error(status: 500) : .text("fine") }
            let sibling = ModelRef(provider: "primary", model: "gpt-4o-mini")
            for _ in 0..<3 {
                let routed = try await router.complete(
                    request,
                    route: [primary, secondary],
                    resolve: resolver.resolve,
                    onDelta: nil
                )
                #expect(routed.ref == secondary)
            }
            #expect(breakers.state(ProviderRouter.breakerName(endpoint: "primary", model: "gpt-4o")) == .open)
            #expect(openAI.callCount == 2, "the third call skipped the open model")
            let routed = try await router.complete(
                request,
                route: [sibling, secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(routed.ref == sibling)
            #expect(openAI.callCount == 3)
            #expect(router.breakerStates("primary") == ["gpt-4o": "open", "gpt-4o-mini": "closed"])
        }
    }

    @Test func noFallbackOnceDeltasWereDelivered() async throws {
        try await withProviders(primaryRetries: 2) { router, openAI, anthropic, resolver in
            openAI.enqueue(.failMidStream(text: "partial answer"))
            let collector = DeltaCollector()
            let error = await providerError { () async throws(ProviderError) in
                try await router.complete(
                    request,
                    route: [primary, secondary],
                    resolve: resolver.resolve,
                    onDelta: collector.handler
                )
            }
            #expect(error?.kind == .unavailable)
            #expect(collector.text == "partial answer")
            #expect(openAI.callCount == 1)
            #expect(anthropic.callCount == 0)
        }
    }

    @Test func aStreamThatFailsBeforeAnyDeltaFallsBack() async throws {
        try await withProviders { router, openAI, anthropic, resolver in
            openAI.enqueue(.error(status: 503))
            anthropic.enqueue(.text("streamed from secondary"))
            let collector = DeltaCollector()
            let routed = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: collector.handler
            )
            #expect(routed.ref == secondary)
            #expect(collector.text == "streamed from secondary")
            #expect(routed.response.message.content == "streamed from secondary")
        }
    }

    @Test func egressDenialMovesOnWithoutCountingAgainstTheBreaker() async throws {
        let breakers = CircuitBreakers(failureThreshold: 1)
        try await FakeAnthropicServer.with { anthropicServer in
            let router = ProviderRouter(
                openAI: OpenAIProvider(client: EgressHTTPClient(client: loopbackHTTPClient, policy: .strict)),
                anthropic: anthropicProvider,
                breakers: breakers,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                sleep: { _ in }
            )
            let resolver = Resolver(endpoints: [
                "primary": endpoint("http://127.0.0.1:9/v1", kind: .openai, name: "primary"),
                "secondary": endpoint(anthropicServer.baseURL, kind: .anthropic, name: "secondary"),
            ])
            let routed = try await router.complete(
                request,
                route: [primary, secondary],
                resolve: resolver.resolve,
                onDelta: nil
            )
            #expect(routed.ref == secondary)
            #expect(breakers.state(ProviderRouter.breakerName(endpoint: "primary", model: "gpt-4o")) == .closed)
        }
    }

    @Test func cancellationStopsRoutingAtOnce() async throws {
        try await withProviders(primaryRetries: 3) { router, openAI, anthropic, resolver in
            openAI.enqueue(.hang())
            let request = request
            let (primary, secondary) = (primary, secondary)
            let task = Task {
                await providerError { () async throws(ProviderError) in
                    try await router.complete(
                        request,
                        route: [primary, secondary],
                        resolve: resolver.resolve,
                        onDelta: nil
                    )
                }
            }
            // Cancelled once the call hangs at the provider (not after a fixed delay: a loaded machine may not have
            // sent it yet).
            let deadline = ContinuousClock.now + .seconds(10)
            while openAI.callCount == 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            let cancelled = ContinuousClock.now
            task.cancel()
            let error = await task.value
            #expect(error != nil)
            #expect(ContinuousClock.now - cancelled < .seconds(3))
            #expect(openAI.callCount == 1)
            #expect(anthropic.callCount == 0)
        }
    }

    @Test func backoffIsCappedAndHonoursRetryAfter() {
        let backoff = RetryBackoff()
        for retry in 1...20 {
            let delay = try! #require(backoff.delay(retry: retry, retryAfterMilliseconds: nil))
            #expect(delay <= 10_000)
            #expect(delay >= min(10_000, 250 << (retry - 1)) / 2)
        }
        #expect(backoff.delay(retry: 1, retryAfterMilliseconds: 5_000) == 5_000)
        #expect(backoff.delay(retry: 1, retryAfterMilliseconds: 31_000) == nil)
    }
}
