public import CaravanCore
public import CaravanModels
import CaravanOutbound
public import Logging
import Metrics

/// Who a model call is for, for metering and budgets.
public struct ModelCallContext: Sendable {
    public var orgID: String
    public var runID: String?
    public var agent: String?
    /// The API key calling through the gateway: its limits apply and its spend is counted.
    public var keyID: String?
    /// Whether a deterministic call may be answered from the gateway's `ResponseCache` (the front door's
    /// non-streamed calls, unless the client sent `Cache-Control: no-cache`).
    public var cacheable = false
    /// The front-door request making the call, and its endpoint (`chat.completions`, `responses`, `embeddings`),
    /// for the request log.
    public var requestID: String?
    public var endpoint: String?

    public init(orgID: String, runID: String? = nil, agent: String? = nil, keyID: String? = nil) {
        self.orgID = orgID
        self.runID = runID
        self.agent = agent
        self.keyID = keyID
    }
}

/// A metered answer.
public struct ModelAnswer: Sendable {
    public var response: ChatResponse
    /// The `provider/model` that answered (after fallbacks).
    public var ref: ModelRef
    public var costUSD: Double
    public var latencyMilliseconds: Int64
    public var attempts: Int
    /// Answered from the `ResponseCache`: no provider was called and nothing was metered for it.
    public var cached = false
}

// A model call that did not produce an answer throws a `Failure`: a stable code (`budget_exceeded`, or the last provider error's) and
// whether trying later may help.

/// The one way Caravan calls models: checks the organization's monthly budget, resolves each `provider/model`
/// to its endpoint (key unsealed), routes through fallbacks, retries and circuit breakers, prices and records
/// the call.
public final class ModelGateway: Sendable {
    let router: ProviderRouter
    public let providers: ProviderStore
    public let meter: UsageMeter
    let prices: PriceTable
    let logger: Logger
    private let succeeded = Counter(label: "caravan.llm.requests", dimensions: [("outcome", "success")])
    private let inputTokens = Counter(label: "caravan.llm.tokens", dimensions: [("direction", "input")])
    private let outputTokens = Counter(label: "caravan.llm.tokens", dimensions: [("direction", "output")])
    private let duration = Timer(label: "caravan.llm.duration")

    public let clock: WallClock
    /// Answers kept for deterministic calls, when the operator turned it on.
    public let cache: ResponseCache?
    /// Named routes: several deployments behind one model name.
    public let routes: ModelRouteStore

    public init(
        router: ProviderRouter,
        providers: ProviderStore,
        meter: UsageMeter,
        prices: PriceTable,
        clock: WallClock = .system,
        cache: ResponseCache? = nil,
        routes: ModelRouteStore,
        logger: Logger
    ) {
        self.clock = clock
        self.cache = cache
        self.routes = routes
        self.router = router
        self.providers = providers
        self.meter = meter
        self.prices = prices
        self.logger = logger
    }

    /// The states of this node's circuit breakers for the models of a provider of the organization that were
    /// called here (`closed`, `open` or `half_open`), by model.
    public func circuitStates(orgID: String, provider: String) -> [String: String] {
        router.breakerStates(orgID + "/" + provider)
    }

    /// Parses a route: one `provider/model` or a list of them, tried in order.
    /// - Throws: `validation_failed` at `pointer`.
    public static func route(_ value: JSONValue?, at pointer: String) throws(CaravanError) -> [ModelRef] {
        let names: [String]
        if let single = value?.stringValue {
            names = [single]
        } else if let list = value?.arrayValue, !list.isEmpty, list.count <= 8,
            list.allSatisfy({ $0.stringValue != nil })
        {
            names = list.compactMap(\.stringValue)
        } else {
            throw CaravanError.validation(pointer, "must be a model as provider/model, or a list of up to 8 of them")
        }
        var refs: [ModelRef] = []
        for (index, name) in names.enumerated() {
            guard let ref = ModelRef(parsing: name) else {
                throw CaravanError.validation(
                    value?.stringValue == nil ? "\(pointer)/\(index)" : pointer,
                    "'\(name)' is not provider/model"
                )
            }
            refs.append(ref)
        }
        return refs
    }

    /// Calls the first model of `route` that answers, and records the call (answered, cached or failed).
    /// - Throws: `Failure`: `budget_exceeded`, or the last provider error's code.
    public func complete(
        _ request: ChatRequest,
        route: [ModelRef],
        context: ModelCallContext,
        onDelta: ChatDeltaHandler? = nil
    ) async throws(Failure) -> ModelAnswer {
        let started = ContinuousClock.now
        do throws(Failure) {
            let answer = try await answer(request, route: route, context: context, onDelta: onDelta)
            if answer.cached {
                record(context, ref: answer.ref, outcome: "cached", since: started)
            } else {
                record(
                    context,
                    ref: answer.ref,
                    outcome: "success",
                    usage: answer.response.usage,
                    costUSD: answer.costUSD,
                    latencyMilliseconds: answer.latencyMilliseconds
                )
            }
            return answer
        } catch {
            record(
                context,
                ref: route.first ?? ModelRef(provider: "", model: ""),
                outcome: error.code.rawValue,
                since: started
            )
            throw error
        }
    }

    /// Records a call in the `UsageMeter`: what a provider answered, or a call that cost nothing (cached, failed),
    /// timed from `since`.
    func record(
        _ context: ModelCallContext,
        ref: ModelRef,
        outcome: String,
        usage: TokenUsage = .zero,
        costUSD: Double = 0,
        latencyMilliseconds: Int64? = nil,
        since started: ContinuousClock.Instant? = nil
    ) {
        let elapsed = started.map { ContinuousClock.now - $0 }
        meter.record(
            UsageRecord(
                orgID: context.orgID,
                at: clock.nowMilliseconds(),
                runID: context.runID,
                agent: context.agent,
                provider: ref.provider,
                model: ref.model,
                usage: usage,
                costUSD: costUSD,
                latencyMilliseconds: latencyMilliseconds ?? elapsed.map {
                    $0.components.seconds * 1_000 + $0.components.attoseconds / 1_000_000_000_000_000
                } ?? 0,
                outcome: outcome,
                keyID: context.keyID,
                requestID: context.requestID,
                endpoint: context.endpoint
            )
        )
    }

    private func answer(
        _ request: ChatRequest,
        route: [ModelRef],
        context: ModelCallContext,
        onDelta: ChatDeltaHandler?
    ) async throws(Failure) -> ModelAnswer {
        let route = try await checkLimits(context, route: route)
        var cacheKey: String?
        if let cache, context.cacheable, onDelta == nil, ResponseCache.isCacheable(request) {
            let key = ResponseCache.key(orgID: context.orgID, route: route, request: request)
            if var answer = cache.answer(for: key) {
                answer.cached = true
                return answer
            }
            cacheKey = key
        }
        let orgID = context.orgID
        // Each model of the route must be one its provider lists, of a provider that can honour every parameter;
        // those that are not are left out (and reported if none is left).
        var endpoints: [String: (endpoint: ProviderEndpoint, config: ProviderConfig)] = [:]
        var usable: [ModelRef] = []
        var firstProblem: ProviderError?
        for ref in route {
            do throws(ProviderError) {
                let resolved = try await providers.endpoint(orgID: orgID, for: ref)
                if let field = resolved.1.kind.unsupportedParameter(of: request) {
                    throw ProviderError(
                        .unsupportedParameter,
                        "The provider '\(ref.provider)' (\(resolved.1.kind.rawValue)) cannot honour '\(field)'."
                    )
                }
                endpoints[ref.provider] = resolved
                usable.append(ref)
            } catch {
                firstProblem = firstProblem ?? error
            }
        }
        var routed: RoutedResponse
        do throws(ProviderError) {
            if usable.isEmpty { throw firstProblem ?? ProviderError(.unknownModel, "The route names no model.") }
            let resolved = endpoints
            // A provider address the egress policy refuses is audited in this organization (by the egress client).
            var attribution = EgressAttribution(orgID: orgID, runID: context.runID)
            if let outer = EgressAttribution.current { attribution.redact = outer.redact }
            let router = self.router
            let resolve: @Sendable (String) throws(ProviderError) -> ProviderEndpoint = { name throws(ProviderError) in
                guard let found = resolved[name] else {
                    throw ProviderError(.unknownModel, "No provider named '\(name)'.")
                }
                return found.endpoint
            }
            let outcome = await EgressAttribution.$current.withValue(attribution) {
                () async -> Result<RoutedResponse, ProviderError> in
                do throws(ProviderError) {
                    return .success(
                        try await router.complete(request, route: usable, resolve: resolve, onDelta: onDelta)
                    )
                } catch {
                    return .failure(error)
                }
            }
            routed = try outcome.get()
        } catch {
            Counter(label: "caravan.llm.requests", dimensions: [("outcome", error.code)]).increment()
            logger.debug(
                "Model call failed",
                metadata: [
                    "caravan.org_id": "\(orgID)", "caravan.run_id": "\(context.runID ?? "")",
                    "error.type": "\(error.code)",
                ]
            )
            throw Failure(
                code: Failure.Code(rawValue: error.code),
                message: error.message,
                retryable: error.isTransient,
                retryAfterMilliseconds: error.retryAfterMilliseconds
            )
        }
        if routed.response.usage.totalTokens == 0 {
            // Some servers (llama.cpp's among them) count nothing when they stream: budgets and reports then use
            // an estimate rather than zero.
            routed.response.usage = Self.estimatedUsage(request, answer: routed.response.message)
        }
        let overrides = endpoints[routed.ref.provider]?.config.prices ?? [:]
        let cost =
            (overrides[routed.ref.model].map { $0.cost(of: routed.response.usage) })
            ?? prices.cost(provider: routed.ref.provider, model: routed.ref.model, usage: routed.response.usage)
        succeeded.increment()
        inputTokens.increment(by: routed.response.usage.inputTokens)
        outputTokens.increment(by: routed.response.usage.outputTokens)
        duration.recordMilliseconds(routed.latencyMilliseconds)
        let answer = ModelAnswer(
            response: routed.response,
            ref: routed.ref,
            costUSD: cost,
            latencyMilliseconds: routed.latencyMilliseconds,
            attempts: routed.attempts
        )
        if let cache, let cacheKey { cache.store(answer, for: cacheKey) }
        return answer
    }
}

extension ModelGateway {
    /// Refuses a call once the organization's monthly budget, or its API key's, is spent; leaves out of `route`
    /// the models the key may not call.
    /// - Returns: the models of `route` the call may use.
    /// - Throws: `budget_exceeded`, or `model_not_allowed` when the key may call none of the route's models.
    func checkLimits(_ context: ModelCallContext, route: [ModelRef]) async throws(Failure) -> [ModelRef] {
        let now = clock.nowMilliseconds()
        var allowed = route
        do {
            try await meter.checkMonthlyBudget(orgID: context.orgID, now: now)
            if let keyID = context.keyID,
                let limits = try await meter.keyLimits.limits(orgID: context.orgID, keyID: keyID)
            {
                allowed = route.filter(limits.allows)
                guard !allowed.isEmpty else {
                    throw Failure(
                        code: "model_not_allowed",
                        message: "This API key may not call \(route.map(\.description).joined(separator: ", ")).",
                        retryable: false
                    )
                }
                if let cap = limits.monthlyCostUSD,
                    try await meter.monthToDate(orgID: context.orgID, keyID: keyID, now: now).costUSD >= cap
                {
                    throw BudgetExceeded(message: "This API key has spent its model budget of $\(cap) for this month.")
                }
            }
        } catch let error as Failure {
            throw error
        } catch let error as BudgetExceeded {
            throw Failure(code: Failure.Code(rawValue: BudgetExceeded.code), message: error.message, retryable: false)
        } catch {
            throw Failure(
                code: "usage_unavailable",
                message: "The organization's usage could not be read.",
                retryable: true
            )
        }
        return allowed
    }

    /// About four characters a token, as for English text with the common tokenizers.
    static func estimatedUsage(_ request: ChatRequest, answer: ChatMessage) -> TokenUsage {
        func tokens(_ messages: [ChatMessage]) -> Int {
            let characters = messages.reduce(0) { sum, message in
                sum + (message.content?.count ?? 0)
                    + message.toolCalls.reduce(0) { $0 + $1.name.count + $1.arguments.count }
            }
            return (characters + 3) / 4
        }
        let toolCharacters = request.tools.reduce(0) {
            $0 + $1.name.count + $1.description.count + $1.parameters.canonicalText.count
        }
        return TokenUsage(
            inputTokens: tokens(request.messages) + (toolCharacters + 3) / 4,
            outputTokens: tokens([answer])
        )
    }
}
