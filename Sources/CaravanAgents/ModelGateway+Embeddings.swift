public import CaravanCore
public import CaravanModels
import CaravanOutbound

extension ModelGateway {
    /// Sends an embeddings request (OpenAI's `/embeddings` body) to `ref`, within the organization's budget, and
    /// meters its tokens as the call's input.
    /// - Returns: the provider's answer.
    /// - Throws: `Failure`: `budget_exceeded`, `unsupported_parameter` (naming `model`) for a provider whose API
    ///   has no embeddings, or the provider error's code.
    public func embed(_ body: JSONValue, ref: ModelRef, context: ModelCallContext) async throws(Failure) -> Embeddings {
        let started = ContinuousClock.now
        do throws(Failure) {
            return try await embedOnce(body, ref: ref, context: context)
        } catch {
            record(context, ref: ref, outcome: error.code.rawValue, since: started)
            throw error
        }
    }

    private func embedOnce(
        _ body: JSONValue,
        ref: ModelRef,
        context: ModelCallContext
    ) async throws(Failure)
        -> Embeddings
    {
        _ = try await checkLimits(context, route: [ref])
        let orgID = context.orgID
        let config: ProviderConfig
        let endpoint: ProviderEndpoint
        do throws(ProviderError) {
            (endpoint, config) = try await providers.endpoint(orgID: orgID, for: ref)
            guard config.kind == .openai else {
                throw ProviderError(
                    .unsupportedParameter,
                    "The provider '\(ref.provider)' (\(config.kind.rawValue)) has no embeddings: name a model of an OpenAI-format provider."
                )
            }
        } catch {
            throw Failure(code: Failure.Code(rawValue: error.code), message: error.message, retryable: false)
        }
        var attribution = EgressAttribution(orgID: orgID, runID: context.runID)
        if let outer = EgressAttribution.current { attribution.redact = outer.redact }
        let router = self.router
        let outcome = await EgressAttribution.$current.withValue(attribution) {
            () async -> Result<(embeddings: Embeddings, ref: ModelRef, latencyMilliseconds: Int64), ProviderError> in
            do throws(ProviderError) {
                return .success(try await router.embed(body, route: [ref]) { _ throws(ProviderError) in endpoint })
            } catch {
                return .failure(error)
            }
        }
        let routed: (embeddings: Embeddings, ref: ModelRef, latencyMilliseconds: Int64)
        switch outcome {
        case .success(let value): routed = value
        case .failure(let error):
            throw Failure(
                code: Failure.Code(rawValue: error.code),
                message: error.message,
                retryable: error.isTransient,
                retryAfterMilliseconds: error.retryAfterMilliseconds
            )
        }
        let usage = routed.embeddings.usage
        let cost =
            (config.prices[ref.model].map { $0.cost(of: usage) })
            ?? prices.cost(provider: ref.provider, model: ref.model, usage: usage)
        record(
            context,
            ref: ref,
            outcome: "success",
            usage: usage,
            costUSD: cost,
            latencyMilliseconds: routed.latencyMilliseconds
        )
        return routed.embeddings
    }
}
