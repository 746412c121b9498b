import CaravanAgents
import CaravanCore
import CaravanIdentity
import CaravanModels
import CaravanOutbound
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// `/v1/providers…`, `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`, `/v1/usage` and `/v1/budget`: the
/// LLM gateway.
struct ModelRoutes {
    let gateway: ModelGateway
    /// Image URLs in messages pass it (what can be told without a lookup: the provider fetches them).
    let egress: EgressPolicy
    let bodies: RequestBodyReader
    /// Whether the organization has an API key with this id (revoked ones included).
    let keyExists: @Sendable (_ orgID: String, _ id: String) async throws -> Bool

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .put,
                "/v1/providers/{name}",
                operationID: "putProvider",
                summary:
                    "Create or replace a model provider: `{kind: openai|anthropic, base_url, api_key_secret, models, timeout, max_retries, prices}`.",
                tag: "models",
                access: .organization(.manageOrganization),
                requestSchema: APISchemas.provider,
                responses: [
                    201: ("Created", object, "application/json"), 200: ("Replaced", object, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            let config = try ProviderConfig.parse(
                try await bodies.json(of: request),
                name: name,
                now: gateway.clock.nowMilliseconds()
            )
            let created = try await gateway.providers.put(orgID: orgID, config)
            context.audit.target("provider:\(name)")
            return .json(config.json, status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/providers",
                operationID: "listProviders",
                summary: "The organization's model providers.",
                tag: "models",
                access: .organization(.read),
                responses: [200: ("Providers", APISchemas.list(of: object), "application/json")]
            )
        ) { _, context in
            let orgID = try context.organizationID()
            let providers = try await gateway.providers.list(orgID: orgID)
            return .json(["items": .array(providers.map { json(of: $0, orgID: orgID) }), "next_cursor": .null])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/providers/{name}",
                operationID: "getProvider",
                summary: "A model provider.",
                tag: "models",
                access: .organization(.read),
                responses: [200: ("The provider", object, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            let orgID = try context.organizationID()
            guard let provider = try await gateway.providers.get(orgID: orgID, name: name) else {
                throw CaravanError.notFound("The provider '\(name)'")
            }
            return .json(json(of: provider, orgID: orgID))
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/providers/{name}",
                operationID: "deleteProvider",
                summary: "Delete a model provider.",
                tag: "models",
                access: .organization(.manageOrganization),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            guard try await gateway.providers.delete(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The provider '\(name)'")
            }
            context.audit.target("provider:\(name)")
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/models",
                operationID: "listModels",
                summary: "Every model of the organization's providers, as `provider/model`, in the OpenAI list format.",
                tag: "models",
                access: .organization(.read),
                responses: [200: ("Models", object, "application/json")]
            )
        ) { _, context in
            let providers = try await gateway.providers.list(orgID: try context.organizationID())
            let models: [JSONValue] = providers.flatMap { provider in
                provider.models.map { model in Self.modelJSON(model, of: provider) }
            }
            return .json(["object": "list", "data": .array(models)])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/models/{provider}/{model}",
                operationID: "getModel",
                summary: "One model of the organization's providers, `provider/model`, in the OpenAI format.",
                tag: "models",
                access: .organization(.read),
                responses: [200: ("The model", object, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("provider")
            let model = try context.parameters.require("model")
            return .json(
                try await modelJSON(ModelRef(provider: name, model: model), orgID: try context.organizationID())
            )
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/models/{provider}",
                operationID: "getModelByID",
                summary:
                    "One model by its id as OpenAI's SDKs send it: `provider%2Fmodel`, or a model of the default provider.",
                tag: "models",
                access: .organization(.read),
                responses: [200: ("The model", object, "application/json")]
            )
        ) { _, context in
            // The trie names this position `provider` for the route below it: here it holds the whole id.
            let id = try context.parameters.require("provider")
            let orgID = try context.organizationID()
            let name = id.removingPercentEncoding ?? id
            guard let ref = try? await modelRef(name, orgID: orgID) else {
                throw CaravanError.notFound("The model '\(name)'")
            }
            return .json(try await modelJSON(ref, orgID: orgID))
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/chat/completions",
                operationID: "createChatCompletion",
                summary:
                    "OpenAI-compatible chat completions (streaming with `stream: true`), routed to `provider/model` and metered.",
                tag: "models",
                access: .organization(.write),
                requestSchema: APISchemas.chatCompletion,
                responses: [200: ("A chat.completion, or a text/event-stream of chunks", object, "application/json")],
                audited: false
            )
        ) { request, context in
            try await keepingBodies(request, context) { body, keeper in
                try await chatCompletion(request, body, keeper: keeper, context)
            }
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/embeddings",
                operationID: "createEmbeddings",
                summary:
                    "OpenAI-compatible embeddings, routed to `provider/model` (an OpenAI-format provider) and metered.",
                tag: "models",
                access: .organization(.write),
                requestSchema: APISchemas.embeddings,
                responses: [200: ("A list of embeddings", object, "application/json")],
                audited: false
            )
        ) { request, context in
            try await keepingBodies(request, context) { body, keeper in
                try await embeddings(body, keeper: keeper, context)
            }
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/usage",
                operationID: "getUsage",
                summary:
                    "Model usage totals: `?from=&to=` (RFC 3339; default this month) `&group_by=model|agent|day|provider|key`.",
                tag: "models",
                access: .organization(.read),
                query: APISchemas.usageQuery,
                responses: [200: ("Totals", APISchemas.usage, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let now = gateway.clock.nowMilliseconds()
            func time(_ name: String) throws -> Int64? {
                guard let text = request.uri.queryParameters.get(name) else { return nil }
                guard let value = Clock.parseRFC3339(String(text)) else {
                    throw CaravanError.validation(
                        "/" + name,
                        "\(name) must be an RFC 3339 time such as 2030-01-01T00:00:00Z"
                    )
                }
                return value
            }
            let from = try time("from") ?? UsageMeter.monthStart(now)
            let to = try time("to") ?? now + 1
            let groupText = request.uri.queryParameters.get("group_by").map { String($0) } ?? "model"
            guard let grouping = UsageGrouping(rawValue: groupText) else {
                throw CaravanError.validation("/group_by", "group_by must be one of model, agent, day, provider, key")
            }
            let totals = try await gateway.meter.totals(orgID: orgID, from: from, to: to, groupBy: grouping)
            return .json([
                "from": .string(Clock.rfc3339(from)), "to": .string(Clock.rfc3339(to)),
                "group_by": .string(grouping.rawValue),
                "items": .array(
                    totals.map { total in
                        [
                            "key": .string(total.key), "requests": .int(total.requests),
                            "input_tokens": .int(total.inputTokens),
                            "output_tokens": .int(total.outputTokens), "cost_usd": .double(total.costUSD),
                        ]
                    }
                ),
                "next_cursor": .null,  // every total in one page, as lists answer {items, next_cursor}
            ])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/api-keys/{id}/limits",
                operationID: "getKeyLimits",
                summary: "An API key's gateway limits: the models it may call and its monthly spend (`null`: none).",
                tag: "models",
                access: .organization(.manageOrganization),
                responses: [200: ("The limits", object, "application/json")]
            )
        ) { _, context in
            let orgID = try context.organizationID()
            let id = try context.parameters.require("id")
            guard try await keyExists(orgID, id) else { throw CaravanError.notFound("The API key '\(id)'") }
            let limits = try await gateway.meter.keyLimits.limits(orgID: orgID, keyID: id) ?? KeyModelLimits()
            return .json(try await keyLimitsJSON(limits, orgID: orgID, keyID: id))
        }
        routes.add(
            EndpointDescription(
                .put,
                "/v1/api-keys/{id}/limits",
                operationID: "putKeyLimits",
                summary:
                    "Limit an API key's gateway calls: `{models?: [provider/model | provider/*], monthly_cost_usd?}` (null: no limit).",
                tag: "models",
                access: .organization(.manageOrganization),
                requestSchema: APISchemas.keyLimits,
                responses: [200: ("The limits", object, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let id = try context.parameters.require("id")
            guard try await keyExists(orgID, id) else { throw CaravanError.notFound("The API key '\(id)'") }
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["models", "monthly_cost_usd"])
            var limits = KeyModelLimits()
            if let value = fields.object["models"], !value.isNull {
                guard let list = value.arrayValue, list.count <= 1000,
                    list.allSatisfy({ ($0.stringValue.flatMap(ModelRef.init(parsing:))) != nil })
                else {
                    throw CaravanError.validation("/models", "models must be an array of provider/model or provider/*")
                }
                limits.models = list.compactMap(\.stringValue)
            }
            if let value = fields.object["monthly_cost_usd"], !value.isNull {
                guard let number = value.numberValue, number >= 0 else {
                    throw CaravanError.validation("/monthly_cost_usd", "monthly_cost_usd must be a number ≥ 0")
                }
                limits.monthlyCostUSD = number
            }
            try await gateway.meter.keyLimits.setLimits(orgID: orgID, keyID: id, limits)
            context.audit.target("api_key:\(id)")
            return .json(try await keyLimitsJSON(limits, orgID: orgID, keyID: id))
        }
        routes.add(
            EndpointDescription(
                .put,
                "/v1/model-routes/{name}",
                operationID: "putModelRoute",
                summary:
                    "A model name served by several deployments: `{deployments: [{model: provider/model, weight}], fallbacks?}`. Requests naming it draw a deployment by weight.",
                tag: "models",
                access: .organization(.manageOrganization),
                requestSchema: APISchemas.modelRoute,
                responses: [
                    201: ("Created", object, "application/json"), 200: ("Replaced", object, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            let route = try ModelRouteDefinition.parse(try await bodies.json(of: request), name: name)
            let created = try await gateway.routes.put(orgID: orgID, route)
            context.audit.target("model_route:\(name)")
            return .json(route.json, status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/model-routes",
                operationID: "listModelRoutes",
                summary: "The organization's model routes.",
                tag: "models",
                access: .organization(.read),
                responses: [200: ("Routes", APISchemas.list(of: object), "application/json")]
            )
        ) { _, context in
            let list = try await gateway.routes.list(orgID: try context.organizationID())
            return .json(["items": .array(list.map(\.json)), "next_cursor": .null])
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/model-routes/{name}",
                operationID: "deleteModelRoute",
                summary: "Delete a model route.",
                tag: "models",
                access: .organization(.manageOrganization),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            guard try await gateway.routes.delete(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The model route '\(name)'")
            }
            context.audit.target("model_route:\(name)")
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/budget",
                operationID: "getBudget",
                summary: "The organization's monthly model budget and what is spent.",
                tag: "models",
                access: .organization(.read),
                responses: [200: ("The budget", object, "application/json")]
            )
        ) { _, context in
            let orgID = try context.organizationID()
            return .json(try await budgetJSON(orgID: orgID))
        }
        routes.add(
            EndpointDescription(
                .put,
                "/v1/budget",
                operationID: "putBudget",
                summary:
                    "Set the monthly model budget: `{cost_usd?, tokens?}` (null: no limit). Calls past it fail with `budget_exceeded`.",
                tag: "models",
                access: .organization(.manageOrganization),
                requestSchema: APISchemas.budget,
                responses: [200: ("The budget", object, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["cost_usd", "tokens"])
            var cost: Double?
            if let value = fields.object["cost_usd"], !value.isNull {
                guard let number = value.numberValue, number >= 0 else {
                    throw CaravanError.validation("/cost_usd", "cost_usd must be a number ≥ 0")
                }
                cost = number
            }
            let tokens = try fields.integer("tokens")
            if let tokens, tokens < 0 { throw CaravanError.validation("/tokens", "tokens must be ≥ 0") }
            try await gateway.meter.setBudget(
                orgID: orgID,
                ModelBudget(monthlyCostUSD: cost, monthlyTokens: tokens.map(Int64.init))
            )
            context.audit.target("budget")
            return .json(try await budgetJSON(orgID: orgID))
        }
    }

    /// A provider with the states of this node's circuit breakers for it: `circuits` by model (those called on
    /// this node), and `circuit`, the worst of them (`open`, else `half_open`, else `closed`).
    private func json(of provider: ProviderConfig, orgID: String) -> JSONValue {
        guard case .object(var fields) = provider.json else { return provider.json }
        let states = gateway.circuitStates(orgID: orgID, provider: provider.name)
        let worst = ["open", "half_open"].first { state in states.values.contains(state) } ?? "closed"
        fields["circuit"] = .string(worst)
        fields["circuits"] = .object(states.mapValues(JSONValue.string))
        return .object(fields)
    }

    private func keyLimitsJSON(_ limits: KeyModelLimits, orgID: String, keyID: String) async throws -> JSONValue {
        guard case .object(var fields) = limits.json else { return limits.json }
        let spent = try await gateway.meter.monthToDate(
            orgID: orgID,
            keyID: keyID,
            now: gateway.clock.nowMilliseconds()
        )
        fields["spent_cost_usd"] = .double(spent.costUSD)
        return .object(fields)
    }

    private func budgetJSON(orgID: String) async throws -> JSONValue {
        let budget = try await gateway.meter.budget(orgID: orgID)
        let spent = try await gateway.meter.monthToDate(orgID: orgID, now: gateway.clock.nowMilliseconds())
        return [
            "cost_usd": budget?.monthlyCostUSD.map(JSONValue.double) ?? .null,
            "tokens": budget?.monthlyTokens.map(JSONValue.int) ?? .null,
            "spent_cost_usd": .double(spent.costUSD), "spent_tokens": .int(spent.tokens),
        ]
    }

    /// `ref` in the OpenAI format, if the organization has it.
    private func modelJSON(_ ref: ModelRef, orgID: String) async throws -> JSONValue {
        guard let provider = try await gateway.providers.get(orgID: orgID, name: ref.provider),
            provider.models.contains(ref.model)
        else { throw CaravanError.notFound("The model '\(ref)'") }
        return Self.modelJSON(ref.model, of: provider)
    }

    /// A model in the OpenAI format.
    static func modelJSON(_ model: String, of provider: ProviderConfig) -> JSONValue {
        [
            "id": .string(provider.name + "/" + model), "object": "model",
            "created": .int(provider.createdAt / 1000), "owned_by": .string(provider.name),
        ]
    }

    /// The error of a model call as an API error.
    static func apiError(_ error: Failure) -> CaravanError {
        switch error.code.rawValue {
        case BudgetExceeded.code: CaravanError(.budgetExceeded, error.message)
        case ProviderError.Kind.unknownModel.rawValue: CaravanError(.unknownModel, error.message)
        case ProviderError.Kind.timeout.rawValue: CaravanError(.providerTimeout, error.message)
        case ProviderError.Kind.rateLimited.rawValue:
            // Every retry and fallback was spent on a provider that says to wait: so must the client.
            CaravanError.rateLimited(
                "The provider is rate limiting: \(error.message)",
                retryAfter: Int(((error.retryAfterMilliseconds ?? 1_000) + 999) / 1_000)
            )
        case ProviderError.Kind.unsupportedParameter.rawValue: CaravanError(.unsupportedParameter, error.message)
        case CaravanError.Code.modelNotAllowed.rawValue: CaravanError(.modelNotAllowed, error.message)
        case ProviderError.Kind.badRequest.rawValue:
            CaravanError(.invalidRequest, "The provider refused the request: \(error.message)")
        default: CaravanError(.providerError, "\(error.code): \(error.message)")
        }
    }

    /// The models a request is sent to, in order: `model`, then the fallbacks of `models` (the request-level
    /// fallbacks of OpenRouter and LiteLLM), each once. Refused here, before any call (and before a stream's 200):
    /// a route none of whose models is configured, or whose providers all cannot honour a parameter of the request;
    /// a model whose provider cannot honour one is left out of the route.
    func route(of request: ChatRequest, fallbacks: JSONValue?, orgID: String) async throws -> [ModelRef] {
        var refs: [ModelRef] = []
        for name in [request.model] + (fallbacks?.arrayValue?.compactMap(\.stringValue) ?? []) {
            // A named route: a deployment drawn by weight, then the others and the route's fallbacks.
            if !name.contains("/"), let named = try await gateway.routes.get(orgID: orgID, name: name) {
                for ref in named.route(draw: Int.random(in: 0..<named.totalWeight)) where !refs.contains(ref) {
                    refs.append(ref)
                }
                continue
            }
            let ref = try await modelRef(name, orgID: orgID)
            if !refs.contains(ref) { refs.append(ref) }
        }
        var usable: [ModelRef] = []
        var problem: CaravanError?
        for ref in refs {
            let config: ProviderConfig
            do {
                config = try await gateway.providers.endpoint(orgID: orgID, for: ref).1
            } catch {
                problem =
                    problem
                    ?? Self.apiError(
                        Failure(code: Failure.Code(rawValue: error.code), message: error.message, retryable: false)
                    )
                continue
            }
            if let field = config.kind.unsupportedParameter(of: request) {
                let detail = "The provider '\(ref.provider)' (\(config.kind.rawValue)) cannot honour '\(field)'."
                problem =
                    problem
                    ?? CaravanError(
                        .unsupportedParameter,
                        detail,
                        fieldErrors: [.init(pointer: "/" + field, detail: detail)]
                    )
                continue
            }
            usable.append(ref)
        }
        guard !usable.isEmpty else { throw problem ?? CaravanError(.unknownModel, "The request names no model.") }
        return usable
    }

    /// Refuses image URLs that name an address the egress policy refuses (a private or loopback address, unless the
    /// operator allowed it): the provider would fetch them, but a URL Caravan would not fetch is not passed on.
    func refuseInternalImages(_ messages: [ChatMessage]) throws {
        for (index, message) in messages.enumerated() {
            for (partIndex, part) in (message.parts ?? []).enumerated() {
                guard case .image(let image) = part, image.inline == nil, let url = URL(string: image.url),
                    let refusal = egress.refusalWithoutLookup(url)
                else { continue }
                let pointer = "/messages/\(index)/content/\(partIndex)/image_url/url"
                throw CaravanError(
                    .egressDenied,
                    refusal.message,
                    fieldErrors: [.init(pointer: pointer, detail: refusal.message)]
                )
            }
        }
    }

    /// Who a gateway call is for: the organization, and the API key when one calls (its limits and spend).
    static func callContext(orgID: String, _ context: CaravanRequestContext, endpoint: String) -> ModelCallContext {
        var call = ModelCallContext(orgID: orgID)
        if case .apiKey(let id)? = context.principal?.credential { call.keyID = id }
        call.requestID = context.requestID
        call.endpoint = endpoint
        return call
    }

    /// Answers a front-door request through `answer`, which is given the request's body and a keeper of its bodies
    /// (when the organization keeps them); an error answer is kept as the response.
    func keepingBodies(
        _ request: Request,
        _ context: CaravanRequestContext,
        _ answer: (JSONValue, RequestBodyKeeper?) async throws -> Response
    ) async throws -> Response {
        let orgID = try context.organizationID()
        let body = try await bodies.json(of: request)
        let keeper = await RequestBodyKeeper.make(
            gateway: gateway,
            orgID: orgID,
            requestID: context.requestID,
            request: body
        )
        do {
            return try await answer(body, keeper)
        } catch {
            keeper?.keep(error)
            throw error
        }
    }

    /// The model a request names: `provider/model`, or a bare model name of the organization's default provider.
    private func modelRef(_ name: String, orgID: String) async throws -> ModelRef {
        if let ref = ModelRef(parsing: name) { return ref }
        if let provider = try await gateway.providers.defaultProvider(orgID: orgID) {
            return ModelRef(provider: provider, model: name)
        }
        let detail =
            "model must be provider/model, e.g. openai/gpt-4o-mini (see GET /v1/models), or a model of the default provider once one is set"
        throw CaravanError(.invalidRequest, detail, fieldErrors: [.init(pointer: "/model", detail: detail)])
    }

    private func embeddings(
        _ body: JSONValue,
        keeper: RequestBodyKeeper?,
        _ context: CaravanRequestContext
    )
        async throws -> Response
    {
        let orgID = try context.organizationID()
        if let fault = Self.embeddingsFault(body) {
            throw CaravanError(
                .invalidRequest,
                "The request is not a valid embeddings request: \(fault.pointer.isEmpty ? "body" : fault.pointer) \(fault.detail)",
                fieldErrors: [.init(pointer: fault.pointer, detail: fault.detail)]
            )
        }
        let ref = try await modelRef(body["model"]?.stringValue ?? "", orgID: orgID)
        let embeddings: Embeddings
        do {
            embeddings = try await gateway.embed(
                body,
                ref: ref,
                context: Self.callContext(orgID: orgID, context, endpoint: "embeddings")
            )
        } catch {
            var problem = Self.apiError(error)
            if problem.code == .unsupportedParameter {
                problem.fieldErrors = [.init(pointer: "/model", detail: error.message)]
            }
            throw problem
        }
        guard case .object(var answer) = embeddings.json else { return .json(embeddings.json) }
        answer["model"] = .string(ref.description)
        answer["object"] = "list"
        keeper?.keep(.object(answer))
        return .json(.object(answer))
    }

    /// The first fault of an embeddings request body, as OpenAI would name it, or `nil`.
    static func embeddingsFault(_ body: JSONValue) -> (pointer: String, detail: String)? {
        guard let object = body.objectValue else { return ("", "must be a JSON object") }
        for key in object.keys.sorted()
        where !["model", "input", "encoding_format", "dimensions", "user"].contains(key) {
            return ("/" + key, "is not a parameter of embeddings (unrecognized request argument)")
        }
        guard let model = object["model"]?.stringValue, !model.isEmpty else {
            return ("/model", "is required and must be a non-empty string")
        }
        switch object["input"] {
        case .string(let text)? where !text.isEmpty: break
        case .array(let items)? where !items.isEmpty && items.count <= 2048:
            let strings = items.allSatisfy { ($0.stringValue.map { !$0.isEmpty }) ?? false }
            let tokens = items.allSatisfy { if case .int = $0 { true } else { false } }
            let tokenLists = items.allSatisfy { item in
                guard let list = item.arrayValue, !list.isEmpty else { return false }
                return list.allSatisfy { if case .int = $0 { true } else { false } }
            }
            guard strings || tokens || tokenLists else {
                return ("/input", "must be non-empty strings, token ids, or arrays of token ids")
            }
        default:
            return ("/input", "is required: a non-empty string, or an array of 1 to 2048 of them (or of token arrays)")
        }
        if let format = object["encoding_format"], !["float", "base64"].contains(format.stringValue ?? "") {
            return ("/encoding_format", "must be float or base64")
        }
        if let dimensions = object["dimensions"] {
            guard case .int(let count) = dimensions, count >= 1 else {
                return ("/dimensions", "must be an integer ≥ 1")
            }
        }
        if let user = object["user"], user.stringValue == nil { return ("/user", "must be a string") }
        return nil
    }

    private func chatCompletion(
        _ request: Request,
        _ body: JSONValue,
        keeper: RequestBodyKeeper?,
        _ context: CaravanRequestContext
    ) async throws -> Response {
        let orgID = try context.organizationID()
        let decoded: (request: ChatRequest, stream: Bool, choices: Int)
        do {
            decoded = try OpenAIWireFormat.decodeRequest(body)
        } catch {
            // 400, not 422: what OpenAI answers, and what its SDKs raise as `BadRequestError`.
            throw CaravanError(
                .invalidRequest,
                "The request is not a valid chat completion request: \(error.description)",
                fieldErrors: [.init(pointer: error.pointer, detail: error.detail)]
            )
        }
        try refuseInternalImages(decoded.request.messages)
        let route = try await route(of: decoded.request, fallbacks: body["models"], orgID: orgID)
        let ref = route[0]
        var cacheable = Self.callContext(orgID: orgID, context, endpoint: "chat.completions")
        cacheable.cacheable = decoded.choices == 1 && request.headers[.cacheControl]?.contains("no-cache") != true
        let callContext = cacheable
        let id = "chatcmpl-" + Identifier.make("c", milliseconds: gateway.clock.nowMilliseconds()).dropFirst(2)
        let created = gateway.clock.nowMilliseconds() / 1000
        if !decoded.stream {
            // n > 1: as many calls, at once (each metered); every one must answer.
            let gateway = self.gateway
            let request = decoded.request
            let answers = await withTaskGroup(of: (Int, Result<ModelAnswer, Failure>).self) { group in
                for index in 0..<decoded.choices {
                    group.addTask {
                        do throws(Failure) {
                            return (
                                index, .success(try await gateway.complete(request, route: route, context: callContext))
                            )
                        } catch {
                            return (index, .failure(error))
                        }
                    }
                }
                var results: [(Int, Result<ModelAnswer, Failure>)] = []
                for await result in group { results.append(result) }
                return results.sorted { $0.0 < $1.0 }.map(\.1)
            }
            var responses: [ChatResponse] = []
            var answered = ref
            for answer in answers {
                switch answer {
                case .success(let answer):
                    if responses.isEmpty { answered = answer.ref }  // after fallbacks, the model that answered
                    responses.append(answer.response)
                case .failure(let error): throw Self.apiError(error)
                }
            }
            let completion = OpenAIWireFormat.encodeResponse(
                responses,
                id: id,
                model: answered.description,
                created: created
            )
            keeper?.keep(completion)
            return .json(completion)
        }
        let gateway = self.gateway
        let request = decoded.request
        let includeUsage = body["stream_options"]?["include_usage"] == .bool(true)
        let call = try await StreamedModelCall.start(gateway: gateway, request, route: route, context: callContext)
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                do {
                    try await writer.write(
                        Self.frame(OpenAIWireFormat.roleChunk(id: id, model: ref.description, created: created))
                    )
                    for await delta in call.deltas {
                        try await writer.write(
                            Self.frame(
                                OpenAIWireFormat.encodeChunk(delta, id: id, model: ref.description, created: created)
                            )
                        )
                    }
                } catch {
                    call.cancel()  // the client left
                    throw error
                }
                switch await call.result {
                case .success(let answer):
                    keeper?.keep(
                        OpenAIWireFormat.encodeResponse(
                            [answer.response],
                            id: id,
                            model: answer.ref.description,
                            created: created
                        )
                    )
                    try await writer.write(
                        Self.frame(
                            OpenAIWireFormat.finalChunk(
                                finishReason: answer.response.finishReason,
                                usage: nil,
                                id: id,
                                model: ref.description,
                                created: created
                            )
                        )
                    )
                    if includeUsage {
                        // As OpenAI sends it: a chunk of its own, with no choices, after the finish.
                        let usage = OpenAIWireFormat.usageChunk(
                            answer.response.usage,
                            id: id,
                            model: ref.description,
                            created: created
                        )
                        try await writer.write(Self.frame(usage))
                    }
                case .failure(let error):
                    // After the first token the status is sent: the failure goes as a last chunk.
                    let problem = Self.apiError(error)
                    keeper?.keep(problem)
                    try await writer.write(
                        Self.frame([
                            "error": [
                                "message": .string(problem.detail), "type": .string(problem.code.rawValue),
                                "code": .string(error.code.rawValue),
                            ]
                        ])
                    )
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            }
        )
    }

    static func frame(_ json: JSONValue) -> ByteBuffer {
        var text = "data: "
        json.write(to: &text)
        text += "\n\n"
        return ByteBuffer(string: text)
    }
}
