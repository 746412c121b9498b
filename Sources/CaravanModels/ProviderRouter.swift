public import CaravanCore
public import Logging
import Synchronization

/// One call to a provider made (or skipped) by `ProviderRouter`, reported for metering and logs.
public struct RouterAttempt: Sendable {
    /// The model tried.
    public var ref: ModelRef
    /// 1 for the first call to this ref, 2 for its first retry, and so on.
    public var attempt: Int
    /// Why it failed; `nil` when it answered. A ref skipped because its breaker is open is reported once with
    /// `circuitOpen` and no latency.
    public var error: ProviderError?
    /// The answer's usage, when it answered.
    public var usage: TokenUsage?
    public var latencyMilliseconds: Int64

    public init(
        ref: ModelRef,
        attempt: Int,
        error: ProviderError?,
        usage: TokenUsage? = nil,
        latencyMilliseconds: Int64
    ) {
        self.ref = ref
        self.attempt = attempt
        self.error = error
        self.usage = usage
        self.latencyMilliseconds = latencyMilliseconds
    }
}

/// The answer of a routed call.
public struct RoutedResponse: Sendable {
    public var response: ChatResponse
    /// The model that answered.
    public var ref: ModelRef
    /// How many calls went out in all (retries and fallbacks included).
    public var attempts: Int
    /// From the start of routing to the answer.
    public var latencyMilliseconds: Int64
}

/// How long to wait before retrying a transient failure on the same provider: exponential from
/// `baseMilliseconds`, capped at `capMilliseconds`, with equal jitter; a provider's `Retry-After` is honoured
/// instead, unless it exceeds `maxRetryAfterMilliseconds`, in which case the router moves on to the next model.
public struct RetryBackoff: Sendable, Hashable {
    public var baseMilliseconds: Int64
    public var capMilliseconds: Int64
    public var maxRetryAfterMilliseconds: Int64

    public init(
        baseMilliseconds: Int64 = 250,
        capMilliseconds: Int64 = 10_000,
        maxRetryAfterMilliseconds: Int64 = 30_000
    ) {
        self.baseMilliseconds = baseMilliseconds
        self.capMilliseconds = capMilliseconds
        self.maxRetryAfterMilliseconds = maxRetryAfterMilliseconds
    }

    /// The wait before retry number `retry` (1-based), or `nil` to stop retrying this provider.
    public func delay(retry: Int, retryAfterMilliseconds: Int64?) -> Int64? {
        if let retryAfter = retryAfterMilliseconds {
            return retryAfter > maxRetryAfterMilliseconds ? nil : max(0, retryAfter)
        }
        let exponent = min(max(0, retry - 1), 30)
        let full = min(capMilliseconds, baseMilliseconds << exponent)
        let half = max(0, full / 2)
        return half + (half > 0 ? Int64.random(in: 0...half) : 0)
    }
}

/// Sends a request to the first model of a route that answers: retries transient failures on the same provider
/// (up to `endpoint.maxRetries`, with backoff), falls back to the next model when they persist, and skips
/// providers whose circuit breaker is open.
///
/// A non-transient error (a bad request, a refused key, a malformed answer) is thrown at once: it would fail on
/// every provider. `unknownModel` and `egressDenied` move on to the next model. Once a streamed attempt has passed
/// a delta to `onDelta`, its failure is thrown as is: the client has seen partial output. A cancelled task stops
/// routing at once.
public final class ProviderRouter: Sendable {
    private let openAI: any ChatProvider
    private let anthropic: any ChatProvider
    private let breakers: CircuitBreakers
    private let logger: Logger
    private let backoff: RetryBackoff
    private let sleep: @Sendable (Int64) async throws -> Void
    private let now: @Sendable () -> Int64

    /// - Parameters:
    ///   - openAI: the provider for endpoints of kind `openai`.
    ///   - anthropic: the provider for endpoints of kind `anthropic`.
    ///   - breakers: the breakers, one a model of an endpoint (`breakerName`).
    ///   - backoff: the waits between retries.
    ///   - sleep: waits that many milliseconds (tests replace it).
    ///   - now: a monotonic clock in milliseconds (tests replace it).
    public init(
        openAI: any ChatProvider,
        anthropic: any ChatProvider,
        breakers: CircuitBreakers,
        logger: Logger,
        backoff: RetryBackoff = RetryBackoff(),
        sleep: @escaping @Sendable (Int64) async throws -> Void = { try await Task.sleep(for: .milliseconds($0)) },
        now: @escaping @Sendable () -> Int64 = ProviderRouter.monotonicMilliseconds
    ) {
        self.openAI = openAI
        self.anthropic = anthropic
        self.breakers = breakers
        self.logger = logger
        self.backoff = backoff
        self.sleep = sleep
        self.now = now
    }

    /// The breaker of one model of an endpoint: a model that fails opens its own circuit, not its provider's.
    public static func breakerName(endpoint: String, model: String) -> String { endpoint + "\u{0}" + model }

    /// The states of the breakers of the endpoint named `endpoint` (`closed`, `open`, `half_open`), by model, for
    /// the models called on this node.
    public func breakerStates(_ endpoint: String) -> [String: String] {
        breakers.states(prefix: Self.breakerName(endpoint: endpoint, model: "")).mapValues(\.rawValue)
    }

    private static let origin = ContinuousClock.now

    /// Milliseconds since this process first asked, on a clock that never goes backwards.
    public static func monotonicMilliseconds() -> Int64 {
        let elapsed = origin.duration(to: .now).components
        return elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000
    }

    /// Routes `request` along `route`.
    /// - Parameters:
    ///   - request: its `model` is replaced by each ref's model in turn.
    ///   - route: the models to try, in order.
    ///   - resolve: the endpoint of a provider name (`unknownModel` when there is none: the next ref is tried).
    ///   - onDelta: streams the answer when given.
    ///   - onAttempt: told of every call, failed or not, and of every ref skipped for an open breaker.
    /// - Throws: the first non-transient error, or the last error once every ref has failed.
    public func complete(
        _ request: ChatRequest,
        route: [ModelRef],
        resolve: @Sendable (String) async throws(ProviderError) -> ProviderEndpoint,
        onDelta: ChatDeltaHandler?,
        onAttempt: (@Sendable (RouterAttempt) async -> Void)? = nil
    ) async throws(ProviderError) -> RoutedResponse {
        let openAI = self.openAI
        let anthropic = self.anthropic
        let routed = try await self.route(route, resolve: resolve, onAttempt: onAttempt) {
            endpoint,
            ref,
            delivered throws(ProviderError) in
            let provider = endpoint.kind == .openai ? openAI : anthropic
            var request = request
            request.model = ref.model
            var relay: ChatDeltaHandler?
            if let onDelta {
                relay = { @Sendable delta in
                    delivered.set()
                    await onDelta(delta)
                }
            }
            let response = try await provider.complete(request, endpoint: endpoint, onDelta: relay)
            return (response, response.usage)
        }
        return RoutedResponse(
            response: routed.answer,
            ref: routed.ref,
            attempts: routed.attempts,
            latencyMilliseconds: routed.latencyMilliseconds
        )
    }

    /// Routes an embeddings request (OpenAI's `/embeddings` body, its `model` replaced by each ref's) along
    /// `route`, as `complete` does.
    /// - Returns: the provider's answer, with the ref that gave it.
    public func embed(
        _ body: JSONValue,
        route: [ModelRef],
        resolve: @Sendable (String) async throws(ProviderError) -> ProviderEndpoint,
        onAttempt: (@Sendable (RouterAttempt) async -> Void)? = nil
    ) async throws(ProviderError) -> (embeddings: Embeddings, ref: ModelRef, latencyMilliseconds: Int64) {
        let openAI = self.openAI
        let anthropic = self.anthropic
        let routed = try await self.route(route, resolve: resolve, onAttempt: onAttempt) {
            endpoint,
            ref,
            _ throws(ProviderError) in
            let provider = endpoint.kind == .openai ? openAI : anthropic
            let embeddings = try await provider.embed(body, model: ref.model, endpoint: endpoint)
            return (embeddings, embeddings.usage)
        }
        return (routed.answer, routed.ref, routed.latencyMilliseconds)
    }

    /// Calls the first model of `route` that answers, with retries, breakers and fallbacks (see the type).
    private func route<Answer: Sendable>(
        _ route: [ModelRef],
        resolve: @Sendable (String) async throws(ProviderError) -> ProviderEndpoint,
        onAttempt: (@Sendable (RouterAttempt) async -> Void)?,
        call: @Sendable (ProviderEndpoint, ModelRef, DeliveryFlag) async throws(ProviderError) -> (Answer, TokenUsage)
    ) async throws(ProviderError) -> (answer: Answer, ref: ModelRef, attempts: Int, latencyMilliseconds: Int64) {
        let start = now()
        var lastError: ProviderError?
        var attempts = 0
        for ref in route {
            let endpoint: ProviderEndpoint
            do {
                endpoint = try await resolve(ref.provider)
            } catch {
                guard Self.movesOn(error) else { throw error }
                lastError = error
                continue
            }
            let breaker = Self.breakerName(endpoint: endpoint.name, model: ref.model)
            var attempt = 0
            retrying: while true {
                if Task.isCancelled { throw lastError ?? ProviderError(.timeout, "The call was cancelled.") }
                attempt += 1
                guard let permit = breakers.admit(breaker, now: now()) else {
                    // A retry refused because this very call opened the breaker: its own error stands.
                    if attempt > 1 { break retrying }
                    let error = ProviderError(.circuitOpen, "The circuit breaker of model '\(ref)' is open.")
                    await onAttempt?(RouterAttempt(ref: ref, attempt: attempt, error: error, latencyMilliseconds: 0))
                    logger.debug("Skipped a model: its circuit is open", metadata: ["model": "\(ref)"])
                    lastError = error
                    break retrying
                }
                attempts += 1
                let delivered = DeliveryFlag()
                let callStart = now()
                do {
                    let (answer, usage) = try await call(endpoint, ref, delivered)
                    let finished = now()
                    breakers.record(breaker, success: true, now: finished)
                    await onAttempt?(
                        RouterAttempt(
                            ref: ref,
                            attempt: attempt,
                            error: nil,
                            usage: usage,
                            latencyMilliseconds: finished - callStart
                        )
                    )
                    return (answer, ref, attempts, finished - start)
                } catch {
                    let finished = now()
                    let cancelled = Task.isCancelled
                    if cancelled || error.kind == .egressDenied {
                        breakers.release(breaker, permit)  // the provider was not heard from
                    } else {
                        // Only failures that say the provider is unwell count against it.
                        breakers.record(breaker, success: !error.isTransient, now: finished)
                    }
                    await onAttempt?(
                        RouterAttempt(
                            ref: ref,
                            attempt: attempt,
                            error: error,
                            latencyMilliseconds: finished - callStart
                        )
                    )
                    logger.debug(
                        "A model call failed",
                        metadata: [
                            "model": "\(ref)", "attempt": "\(attempt)", "error": "\(error.code)",
                            "message": "\(error.message)",
                        ]
                    )
                    lastError = error
                    if cancelled || delivered.value { throw error }
                    guard error.isTransient else {
                        if Self.movesOn(error) { break retrying }
                        throw error
                    }
                    guard attempt <= endpoint.maxRetries,
                        let delay = backoff.delay(retry: attempt, retryAfterMilliseconds: error.retryAfterMilliseconds)
                    else { break retrying }
                    do {
                        try await sleep(delay)
                    } catch {
                        throw lastError ?? ProviderError(.timeout, "The call was cancelled.")
                    }
                }
            }
            if ref != route.last {
                logger.notice(
                    "Falling back to the next model",
                    metadata: ["model": "\(ref)", "error": "\(lastError?.code ?? "")"]
                )
            }
        }
        throw lastError ?? ProviderError(.unknownModel, "No model to send the request to: the route is empty.")
    }

    /// Errors after which the next model of the route is tried although they are not transient.
    private static func movesOn(_ error: ProviderError) -> Bool {
        error.isTransient || error.kind == .unknownModel || error.kind == .egressDenied
    }
}

/// Whether an attempt has passed a delta on.
final class DeliveryFlag: Sendable {
    private let flag = Atomic(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var value: Bool { flag.load(ordering: .relaxed) }
}
