import CaravanAgents
import CaravanCore
import CaravanEngine
import CaravanIdentity
import CaravanStorage
import CaravanTriggers
import CaravanVault
import CaravanWorkflow
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `/v1/triggers…` (definitions and their delivery records) and `/v1/hooks/{id}`, the public URL senders call.
struct TriggerRoutes {
    let triggers: TriggerService
    let secrets: SecretStore
    let bodies: RequestBodyReader

    /// The trigger service, wired to the engine, agents, the vault and a rate limiter of its own (keyed by
    /// trigger, so a trigger's limit is its own whatever the operator's per-credential limit).
    static func service(
        database: any Database,
        engine: Engine,
        agents: AgentStore,
        secrets: SecretStore,
        signals: ClusterSignals,
        logger: Logger
    ) -> TriggerService {
        let limiter = RequestRateLimiter(defaultPerMinute: 0)
        return TriggerService(
            database: database,
            engine: engine,
            targets: TriggerTargets(
                exists: { orgID, target in
                    switch target {
                    case .workflow(let name):
                        guard let workflow = try await engine.workflows.get(orgID: orgID, name: name) else {
                            return false
                        }
                        return workflow.archivedAt == nil
                    case .agent(let name):
                        guard let agent = try await agents.get(orgID: orgID, name: name) else { return false }
                        return !agent.archived
                    }
                },
                start: { orgID, target, input, key, companion in
                    switch target {
                    case .workflow(let name):
                        let (run, created) = try await engine.startRun(
                            orgID: orgID,
                            workflow: name,
                            input: input,
                            idempotencyKey: key,
                            requestHash: nil,
                            companion: companion
                        )
                        return (run.id, created, companion != nil && created)
                    case .agent(let name):
                        let (run, created) = try await agents.startRun(
                            orgID: orgID,
                            name: name,
                            input: input,
                            thread: nil,
                            idempotencyKey: key,
                            requestHash: nil
                        )
                        return (run.id, created, false)
                    }
                }
            ),
            signals: signals,
            secret: { orgID, name in try await secrets.resolve(orgID: orgID, names: [name])[name] },
            rateLimit: { key, perMinute in limiter.take(key, perMinute: perMinute) },
            logger: logger
        )
    }

    static func json(_ trigger: Trigger) -> JSONValue {
        var fields = trigger.definition.source.objectValue ?? [:]
        fields["id"] = .string(trigger.id)
        fields["name"] = .string(trigger.name)
        fields["url"] = .string(trigger.hookPath)
        fields["created_at"] = .string(Clock.rfc3339(trigger.createdAt))
        fields["updated_at"] = .string(Clock.rfc3339(trigger.updatedAt))
        return .object(fields)
    }

    static func json(_ delivery: DeliveryRecord) -> JSONValue {
        [
            "delivery_id": .string(delivery.deliveryID), "received_at": .string(Clock.rfc3339(delivery.receivedAt)),
            "outcome": .string(delivery.outcome.rawValue), "reason": delivery.reason.map(JSONValue.string) ?? .null,
            "run_id": delivery.runID.map(JSONValue.string) ?? .null, "status": .int(Int64(delivery.status)),
            "body_bytes": .int(Int64(delivery.bodyBytes)), "count": .int(Int64(delivery.count)),
        ]
    }

    static let triggerSchema: JSONValue = [
        "type": "object",
        "properties": [
            "id": ["type": "string"], "name": ["type": "string"], "url": ["type": "string"],
            "workflow": ["type": "string"], "agent": ["type": "string"], "enabled": ["type": "boolean"],
            "verify": ["type": "object"],
        ],
    ]

    static let requestSchema: JSONValue = [
        "type": "object", "required": ["verify"], "additionalProperties": false,
        "properties": [
            "workflow": ["type": "string", "pattern": "^[a-z0-9-]{1,64}$"],
            "agent": ["type": "string", "pattern": "^[a-z0-9-]{1,64}$"],
            "input": ["description": "The run's input: a template over {body, headers, query, trigger, delivery}."],
            "verify": [
                "type": "object", "required": ["scheme"], "additionalProperties": false,
                "properties": [
                    "scheme": [
                        "type": "string", "enum": .array(VerificationScheme.allCases.map { .string($0.rawValue) }),
                    ],
                    "secret": ["type": "string"], "tolerance": ["type": "string"],
                ],
            ],
            "filter": ["type": "string", "maxLength": 1000],
            "mode": ["type": "object"],
            "rate_limit": [
                "type": "object", "additionalProperties": false,
                "properties": ["per_minute": ["type": "integer", "minimum": 1, "maximum": 1_000_000]],
            ],
            "max_body_bytes": ["type": "integer", "minimum": 1],
            "enabled": ["type": "boolean"],
        ],
    ]

    func register(in routes: RouteRegistrar) {
        routes.add(
            EndpointDescription(
                .put,
                "/v1/triggers/{name}",
                operationID: "putTrigger",
                summary:
                    "Create or replace an inbound trigger: a public hook URL whose verified deliveries start runs.",
                tag: "triggers",
                access: .organization(.write),
                requestSchema: Self.requestSchema,
                responses: [
                    201: ("Created", Self.triggerSchema, "application/json"),
                    200: ("Replaced", Self.triggerSchema, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            let body = try await bodies.json(of: request)
            let secrets = self.secrets
            let (trigger, created) = try await triggers.put(
                orgID: orgID,
                name: name,
                body: body,
                maxBodyBytes: bodies.maxBytes,
                secretExists: { secret in
                    try await secrets.resolve(orgID: orgID, names: [secret])[secret] != nil
                }
            )
            context.audit.target("trigger:\(name)")
            return .json(Self.json(trigger), status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/triggers",
                operationID: "listTriggers",
                summary: "The organization's triggers, by name.",
                tag: "triggers",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("Triggers", APISchemas.list(of: Self.triggerSchema), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await triggers.list(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.name, json: Self.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/triggers/{name}",
                operationID: "getTrigger",
                summary: "A trigger, with its hook URL.",
                tag: "triggers",
                access: .organization(.read),
                responses: [200: ("The trigger", Self.triggerSchema, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            guard let trigger = try await triggers.get(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The trigger '\(name)'")
            }
            return .json(Self.json(trigger))
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/triggers/{name}",
                operationID: "deleteTrigger",
                summary: "Delete a trigger: its hook answers 404 from now on; its records and buffered events go too.",
                tag: "triggers",
                access: .organization(.write),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            guard try await triggers.delete(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The trigger '\(name)'")
            }
            context.audit.target("trigger:\(name)")
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/triggers/{name}/deliveries",
                operationID: "listTriggerDeliveries",
                summary:
                    "The trigger's deliveries, newest first: accepted, duplicate, filtered or refused, with the reason and the run.",
                tag: "triggers",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("Deliveries", APISchemas.list(of: ["type": "object"]), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            var before: Int64?
            if let cursor = try APIRequest.cursor(request) {
                guard let seq = Int64(cursor) else {
                    throw CaravanError.validation("/cursor", "cursor is not one this server gave out")
                }
                before = seq
            }
            let page = try await triggers.deliveries(
                orgID: try context.organizationID(),
                name: try context.parameters.require("name"),
                before: before,
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: { String($0.seq) }, json: Self.json))
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/hooks/{id}",
                operationID: "deliverToHook",
                summary:
                    "A trigger's public hook: no API key; the delivery is verified by the trigger's scheme. 202 for a delivery accepted (or filtered), 200 for a replay.",
                tag: "triggers",
                access: .open,
                requestSchema: ["description": "Any body the sender signs (JSON, a form, text)."],
                requestBodyRequired: false,
                responses: [
                    202: ("Accepted, buffered, routed or filtered", ["type": "object"], "application/json"),
                    200: ("A replay of a delivery accepted before", ["type": "object"], "application/json"),
                ],
                audited: false
            )
        ) { request, context in
            let receiver = triggers.receiver
            let trigger = try await receiver.trigger(hookID: try context.parameters.require("id"))
            let limit = trigger.definition.bodyLimit(server: bodies.maxBytes)
            let buffer: ByteBuffer
            do {
                buffer = try await RequestBodyReader(maxBytes: limit).bytes(of: request)
            } catch let error as CaravanError where error.code == .payloadTooLarge {
                let announced = request.headers[.contentLength].flatMap(Int.init) ?? limit + 1
                await receiver.refused(trigger, error: error, bodyBytes: announced)
                throw error
            }
            var headers: [String: String] = [:]
            for field in request.headers {
                let name = field.name.canonicalName
                headers[name] = headers[name].map { $0 + ", " + field.value } ?? field.value
            }
            var query: [String: String] = [:]
            for (name, value) in request.uri.queryParameters { query[String(name)] = String(value) }
            let answer = try await receiver.receive(
                trigger,
                HookRequest(body: Array(buffer.readableBytesView), headers: headers, query: query)
            )
            return .json(answer.json, status: answer.status == 200 ? .ok : .accepted)
        }
    }
}
