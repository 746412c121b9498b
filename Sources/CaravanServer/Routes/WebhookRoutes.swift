import CaravanCore
import CaravanIdentity
import CaravanOutbound
import CaravanWebhooks
import Foundation
import HTTPTypes
import Hummingbird

/// `/v1/webhooks…`: subscriptions to the organization's run events, their deliveries, re-sending, secret rotation.
struct WebhookRoutes {
    let webhooks: WebhookStore
    let egress: EgressPolicy
    let bodies: RequestBodyReader

    static func json(_ webhook: Webhook) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(webhook.id), "name": .string(webhook.name), "format": .string(webhook.target.format),
            "events": .array(webhook.events.map { .string($0.text) }),
            "filter": webhook.filter.map(JSONValue.string) ?? .null, "enabled": .bool(webhook.enabled),
            "disabled_reason": webhook.disabledReason.map(JSONValue.string) ?? .null,
            "disable_after": .string(CaravanDuration(milliseconds: webhook.disableAfter).description),
            "failing_since": APIRequest.time(webhook.failingSince),
            "created_at": .string(Clock.rfc3339(webhook.createdAt)),
            "updated_at": .string(Clock.rfc3339(webhook.updatedAt)),
        ]
        switch webhook.target {
        case .standard(let url), .slack(let url): object["url"] = .string(url.absoluteString)
        case .email(let to): object["to"] = .array(to.map(JSONValue.string))
        }
        return .object(object)
    }

    static func json(_ delivery: WebhookDelivery, payload: Bool = false) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(String(delivery.id)), "webhook_id": .string(delivery.webhookID),
            "message_id": .string(delivery.messageID), "event_id": .string(String(delivery.eventID)),
            "run_id": .string(delivery.runID), "type": .string(delivery.eventType),
            "status": .string(delivery.status.rawValue), "attempts": .int(delivery.attempts),
            "next_attempt_at": APIRequest.time(delivery.nextAttemptAt),
            "response_status": delivery.responseStatus.map(JSONValue.int) ?? .null,
            "latency_ms": delivery.latencyMilliseconds.map(JSONValue.int) ?? .null,
            "response_excerpt": delivery.responseExcerpt.map(JSONValue.string) ?? .null,
            "error": delivery.error.map(JSONValue.string) ?? .null,
            "created_at": .string(Clock.rfc3339(delivery.createdAt)),
            "last_attempt_at": APIRequest.time(delivery.lastAttemptAt),
            "delivered_at": APIRequest.time(delivery.deliveredAt),
        ]
        if payload {
            object["payload"] = (try? JSONValue(parsing: Array(delivery.payload.utf8))) ?? .string(delivery.payload)
        }
        return .object(object)
    }

    static let webhookSchema: JSONValue = [
        "type": "object",
        "properties": [
            "id": ["type": "string"], "name": ["type": "string"], "format": ["type": "string"],
            "url": ["type": "string"], "to": ["type": "array", "items": ["type": "string"]],
            "events": ["type": "array", "items": ["type": "string"]], "filter": ["type": ["string", "null"]],
            "enabled": ["type": "boolean"], "disabled_reason": ["type": ["string", "null"]],
            "disable_after": ["type": "string"], "failing_since": ["type": ["string", "null"]],
            "secret": ["type": "string", "description": "Only when created: the signing secret (whsec_…)."],
        ],
    ]

    static let deliverySchema: JSONValue = ["type": "object"]

    /// The webhook named in the path, in the caller's organization.
    private func webhook(_ context: CaravanRequestContext) async throws -> Webhook {
        let name = try context.parameters.require("name")
        guard let webhook = try await webhooks.get(orgID: try context.organizationID(), name: name) else {
            throw CaravanError.notFound("The webhook '\(name)'")
        }
        return webhook
    }

    private static func deliveryID(_ context: CaravanRequestContext) throws -> Int64 {
        guard let id = Int64(try context.parameters.require("delivery")), id > 0 else {
            throw CaravanError.notFound("The delivery")
        }
        return id
    }

    func register(in routes: RouteRegistrar) {
        routes.add(
            EndpointDescription(
                .put,
                "/v1/webhooks/{name}",
                operationID: "putWebhook",
                summary:
                    "Create or change a webhook: run events (with wildcards, and a filter) sent to a URL signed the Standard Webhooks way, to a Slack-compatible incoming webhook, or by email. The signing secret is returned once, at creation.",
                tag: "webhooks",
                access: .organization(.write),
                requestSchema: [
                    "type": "object", "required": ["events"], "additionalProperties": false,
                    "properties": [
                        "url": ["type": "string", "maxLength": 2048],
                        "format": ["type": "string", "enum": ["standard", "slack", "email"]],
                        "to": ["type": "array", "maxItems": 20, "items": ["type": "string", "maxLength": 254]],
                        "events": [
                            "type": "array", "minItems": 1, "maxItems": 32,
                            "items": ["type": "string", "maxLength": 64],
                        ],
                        "filter": ["type": ["string", "null"], "maxLength": 1000],
                        "enabled": ["type": "boolean"],
                        "disable_after": ["type": "string", "maxLength": 32],
                    ],
                ],
                responses: [
                    201: ("Created, with its secret", Self.webhookSchema, "application/json"),
                    200: ("Changed", Self.webhookSchema, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            guard name.utf8.count <= 64, !name.isEmpty,
                name.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 })
            else {
                throw CaravanError.validation("/name", "a webhook's name is 1 to 64 of a-z, 0-9 and -")
            }
            let definition = try WebhookDefinition(parsing: try await bodies.json(of: request), egress: egress)
            let (webhook, secret) = try await webhooks.put(orgID: orgID, name: name, definition: definition)
            context.audit.target("webhook:\(name)")
            var answer = Self.json(webhook).objectValue ?? [:]
            if let secret { answer["secret"] = .string(secret) }
            return .json(.object(answer), status: secret == nil ? .ok : .created)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/webhooks",
                operationID: "listWebhooks",
                summary: "The organization's webhooks, by name.",
                tag: "webhooks",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("Webhooks", APISchemas.list(of: Self.webhookSchema), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await webhooks.list(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.name, json: Self.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/webhooks/{name}",
                operationID: "getWebhook",
                summary: "A webhook (never its secret).",
                tag: "webhooks",
                access: .organization(.read),
                responses: [200: ("The webhook", Self.webhookSchema, "application/json")]
            )
        ) { _, context in
            .json(Self.json(try await webhook(context)))
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/webhooks/{name}",
                operationID: "deleteWebhook",
                summary: "Delete a webhook and its deliveries; nothing more is sent.",
                tag: "webhooks",
                access: .organization(.write),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            guard try await webhooks.delete(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The webhook '\(name)'")
            }
            context.audit.target("webhook:\(name)")
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/webhooks/{name}/rotate-secret",
                operationID: "rotateWebhookSecret",
                summary:
                    "Make a new signing secret. The previous one stays valid for `grace` (default 24h): meanwhile every delivery carries a signature by each.",
                tag: "webhooks",
                access: .organization(.write),
                requestSchema: [
                    "type": "object", "additionalProperties": false,
                    "properties": ["grace": ["type": "string", "maxLength": 32]],
                ],
                requestBodyRequired: false,
                responses: [200: ("The new secret", ["type": "object"], "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try await webhook(context).name  // another organization's: 404 before the body is read
            let body = try await bodies.optionalJSON(of: request) ?? [:]
            let fields = try BodyFields(body, allowed: ["grace"])
            var grace = WebhookStore.defaultRotationGrace
            if let text = try fields.string("grace", maxLength: 32) {
                guard let duration = CaravanDuration(parsing: text), duration.milliseconds <= 7 * 24 * 3_600_000 else {
                    throw CaravanError.validation("/grace", "grace must be a duration of at most 7d, such as 0s or 24h")
                }
                grace = duration.milliseconds
            }
            guard let secret = try await webhooks.rotateSecret(orgID: orgID, name: name, grace: grace) else {
                throw CaravanError.notFound("The webhook '\(name)'")
            }
            context.audit.target("webhook:\(name)")
            return .json([
                "secret": .string(secret),
                "previous_valid_for": .string(CaravanDuration(milliseconds: grace).description),
            ])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/webhooks/{name}/deliveries",
                operationID: "listWebhookDeliveries",
                summary:
                    "A webhook's deliveries, newest first: status, attempts, the receiver's last status code, latency and an excerpt of its answer.",
                tag: "webhooks",
                access: .organization(.read),
                query: APISchemas.page + [
                    QueryParameter(
                        "status",
                        "Only deliveries in this state.",
                        schema: ["type": "string", "enum": ["pending", "delivered", "failed"]]
                    )
                ],
                responses: [200: ("Deliveries", APISchemas.list(of: Self.deliverySchema), "application/json")]
            )
        ) { request, context in
            let webhook = try await webhook(context)
            let limit = try APIRequest.limit(request)
            var status: WebhookDelivery.Status?
            if let text = request.uri.queryParameters.get("status") {
                guard let value = WebhookDelivery.Status(rawValue: String(text)) else {
                    throw CaravanError.validation("/status", "status must be one of pending, delivered, failed")
                }
                status = value
            }
            var before: Int64?
            if let cursor = try APIRequest.cursor(request) {
                guard let value = Int64(cursor) else {
                    throw CaravanError.validation("/cursor", "cursor is not one this server gave out")
                }
                before = value
            }
            let page = try await webhooks.deliveries(
                webhookID: webhook.id,
                before: before,
                status: status,
                limit: limit
            )
            return .json(
                APIRequest.page(page, limit: limit, cursor: { String($0.id) }, json: { Self.json($0) })
            )
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/webhooks/{name}/deliveries/{delivery}",
                operationID: "getWebhookDelivery",
                summary: "One delivery, with the body it sends.",
                tag: "webhooks",
                access: .organization(.read),
                responses: [200: ("The delivery", Self.deliverySchema, "application/json")]
            )
        ) { _, context in
            let webhook = try await webhook(context)
            guard let delivery = try await webhooks.delivery(webhookID: webhook.id, id: try Self.deliveryID(context))
            else { throw CaravanError.notFound("The delivery") }
            return .json(Self.json(delivery, payload: true))
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/webhooks/{name}/deliveries/{delivery}/resend",
                operationID: "resendWebhookDelivery",
                summary:
                    "Send a delivery again now, with a fresh retry schedule (the same webhook-id: a receiver that already has it can drop it).",
                tag: "webhooks",
                access: .organization(.write),
                requestBodyRequired: false,
                responses: [202: ("Queued", Self.deliverySchema, "application/json")]
            )
        ) { _, context in
            let webhook = try await webhook(context)
            guard let delivery = try await webhooks.resend(webhookID: webhook.id, id: try Self.deliveryID(context))
            else { throw CaravanError.notFound("The delivery") }
            context.audit.target("webhook:\(webhook.name)")
            return .json(Self.json(delivery), status: .accepted)
        }
    }
}
