import CaravanAgents
import CaravanCore
import CaravanIdentity
import CaravanModels
import Hummingbird

/// `/v1/model-requests…`: the gateway's request log, for those who may read the audit log. Every model call of the
/// organization (through the front door or by a run) with its key, model, tokens, cost, latency and status; the
/// bodies of front-door requests when the organization keeps them (`/v1/model-requests/settings`).
struct ModelRequestLogRoutes {
    /// Writes the calls it holds before the log is read, so that a call is listed once it has been answered.
    let meter: UsageMeter
    let bodies: RequestBodyReader
    private var log: ModelRequestLog { meter.requestLog }

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .get,
                "/v1/model-requests",
                operationID: "listModelRequests",
                summary:
                    "The model calls of the organization, newest first: `?key_id=&model=&run_id=&outcome=success|cached|failed|<code>&from=&to=` (RFC 3339).",
                tag: "models",
                access: .organization(.readAudit),
                query: APISchemas.modelRequestQuery,
                responses: [200: ("Calls", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let before = try APIRequest.numericCursor(request)
            try await meter.flush()
            let page = try await log.list(
                orgID: try context.organizationID(),
                before: before,
                limit: limit,
                filter: try Self.filter(request)
            )
            return .json(APIRequest.page(page, limit: limit, cursor: { String($0.id) }, json: { Self.json($0) }))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/model-requests/settings",
                operationID: "getModelRequestSettings",
                summary: "Whether the organization keeps request and response bodies, and for how long.",
                tag: "models",
                access: .organization(.readAudit),
                responses: [200: ("The settings", APISchemas.requestLogSettings, "application/json")]
            )
        ) { _, context in
            .json(try await log.settings(orgID: try context.organizationID()).json)
        }
        routes.add(
            EndpointDescription(
                .put,
                "/v1/model-requests/settings",
                operationID: "putModelRequestSettings",
                summary:
                    "Keep (or stop keeping) the bodies of gateway requests and their answers: `{log_bodies, body_retention_days?}` (1..365, default 30).",
                tag: "models",
                access: .organization(.manageOrganization),
                requestSchema: APISchemas.requestLogSettings,
                responses: [200: ("The settings", APISchemas.requestLogSettings, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let fields = try BodyFields(
                try await bodies.json(of: request),
                allowed: ["log_bodies", "body_retention_days"]
            )
            guard let logBodies = fields.object["log_bodies"]?.boolValue else {
                throw CaravanError.validation("/log_bodies", "log_bodies is required: true or false")
            }
            let days = try fields.integer("body_retention_days") ?? RequestLogSettings.off.bodyRetentionDays
            guard (1...365).contains(days) else {
                throw CaravanError.validation("/body_retention_days", "body_retention_days must be from 1 to 365")
            }
            let settings = RequestLogSettings(logBodies: logBodies, bodyRetentionDays: days)
            try await log.setSettings(orgID: orgID, settings)
            context.audit.target("model-requests")
            return .json(settings.json)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/model-requests/{id}",
                operationID: "getModelRequest",
                summary: "One model call, with the bodies of its request and answer when they were kept.",
                tag: "models",
                access: .organization(.readAudit),
                responses: [200: ("The call", object, "application/json")]
            )
        ) { _, context in
            let orgID = try context.organizationID()
            let text = try context.parameters.require("id")
            try await meter.flush()
            guard let id = Int64(text), let entry = try await log.entry(orgID: orgID, id: id) else {
                throw CaravanError.notFound("The model request '\(text)'")
            }
            guard case .object(var fields) = Self.json(entry) else { return .json(Self.json(entry)) }
            var kept: (request: JSONValue, response: JSONValue)?
            if let requestID = entry.record.requestID {
                kept = try await log.bodies(orgID: orgID, requestID: requestID)
            }
            fields["request"] = kept?.request ?? .null
            fields["response"] = kept?.response ?? .null
            return .json(.object(fields))
        }
    }

    private static func filter(_ request: Request) throws -> ModelRequestFilter {
        let query = request.uri.queryParameters
        func text(_ name: String) -> String? { query.get(name).map { String($0) }.flatMap { $0.isEmpty ? nil : $0 } }
        func time(_ name: String) throws -> Int64? {
            guard let value = text(name) else { return nil }
            guard let time = Clock.parseRFC3339(value) else {
                throw CaravanError.validation(
                    "/" + name,
                    "\(name) must be an RFC 3339 time such as 2030-01-01T00:00:00Z"
                )
            }
            return time
        }
        var filter = ModelRequestFilter(
            keyID: text("key_id"),
            runID: text("run_id"),
            outcome: text("outcome"),
            from: try time("from"),
            to: try time("to")
        )
        if let model = text("model") {
            guard let ref = ModelRef(parsing: model) else {
                throw CaravanError.validation("/model", "model must be provider/model")
            }
            filter.model = ref
        }
        return filter
    }

    static func json(_ entry: ModelRequestEntry) -> JSONValue {
        let record = entry.record
        let status: Int64 =
            switch record.outcome {
            case "success", "cached": 200
            default:
                Int64(
                    ProblemDetails.status(
                        of: ModelRoutes.apiError(
                            Failure(code: .init(rawValue: record.outcome), message: "", retryable: false)
                        ).code
                    ).code
                )
            }
        return [
            "id": .string(String(entry.id)),
            "at": .string(Clock.rfc3339(record.at)),
            "request_id": record.requestID.map(JSONValue.string) ?? .null,
            "endpoint": record.endpoint.map(JSONValue.string) ?? .null,
            "key_id": record.keyID.map(JSONValue.string) ?? .null,
            "run_id": record.runID.map(JSONValue.string) ?? .null,
            "agent": record.agent.map(JSONValue.string) ?? .null,
            "model": .string(record.provider + "/" + record.model),
            "status": .int(status),
            "outcome": .string(record.outcome),
            "input_tokens": .int(Int64(record.usage.inputTokens)),
            "output_tokens": .int(Int64(record.usage.outputTokens)),
            "cost_usd": .double(record.costUSD),
            "latency_ms": .int(record.latencyMilliseconds),
        ]
    }
}

/// Keeps a front-door request's body and its answer's in the request log, when the organization opted in.
struct RequestBodyKeeper: Sendable {
    let meter: UsageMeter
    let orgID: String
    let requestID: String
    let request: JSONValue
    let retentionDays: Int
    let clock: WallClock

    /// A keeper for the request, or `nil` when the organization keeps no bodies (or its settings can't be read:
    /// the call goes on without them).
    static func make(
        gateway: ModelGateway,
        orgID: String,
        requestID: String,
        request: JSONValue
    ) async
        -> RequestBodyKeeper?
    {
        guard let settings = try? await gateway.meter.requestLog.settings(orgID: orgID), settings.logBodies else {
            return nil
        }
        return RequestBodyKeeper(
            meter: gateway.meter,
            orgID: orgID,
            requestID: requestID,
            request: request,
            retentionDays: settings.bodyRetentionDays,
            clock: gateway.clock
        )
    }

    func keep(_ response: JSONValue) {
        let now = clock.nowMilliseconds()
        meter.record(
            RequestBodies(
                orgID: orgID,
                requestID: requestID,
                at: now,
                request: request,
                response: response,
                expiresAt: now + Int64(retentionDays) * 86_400_000
            )
        )
    }

    /// Keeps the error a request was answered with, as its OpenAI-shaped body.
    func keep(_ error: any Error) {
        guard let error = error as? CaravanError else { return }
        keep(["error": ProblemDetails(error).openAIError])
    }
}
