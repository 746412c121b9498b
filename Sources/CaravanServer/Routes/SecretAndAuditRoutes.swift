import CaravanAudit
import CaravanCore
import CaravanIdentity
import CaravanVault
import HTTPTypes
import Hummingbird

/// `/v1/secrets…`: write-only secrets; names are listed, values never leave except into outgoing requests.
struct SecretRoutes {
    let secrets: SecretStore
    let bodies: RequestBodyReader

    static func json(_ secret: SecretSummary) -> JSONValue {
        [
            "name": .string(secret.name),
            "allowed_hosts": secret.allowedHosts.map { .array($0.map(JSONValue.string)) } ?? .null,
            "created_at": .string(Clock.rfc3339(secret.createdAt)),
            "updated_at": .string(Clock.rfc3339(secret.updatedAt)),
        ]
    }

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .put,
                "/v1/secrets/{name}",
                operationID: "putSecret",
                summary:
                    "Create or replace a secret (sealed at rest; never returned). Workflows use it as `{{ secrets.NAME }}`.",
                tag: "secrets",
                access: .organization(.manageSecrets),
                requestSchema: [
                    "type": "object", "required": ["value"], "additionalProperties": false,
                    "properties": [
                        "value": ["type": "string"],
                        "allowed_hosts": [
                            "type": ["array", "null"], "maxItems": 32,
                            "description":
                                "Hosts the secret may be sent to (`api.example.com`, `*.example.com`); null or absent: any.",
                            "items": ["type": "string", "minLength": 1, "maxLength": 255],
                        ],
                    ],
                ],
                responses: [
                    201: ("Created", object, "application/json"), 200: ("Replaced", object, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            try SecretStore.validate(name: name)
            let body = try await bodies.json(of: request)
            let fields = try BodyFields(body, allowed: ["value", "allowed_hosts"])
            guard let value = try fields.string("value", maxBytes: SecretStore.maxValueBytes) else {
                throw CaravanError.validation("/value", "value is required")
            }
            var allowedHosts: [String]?
            if let hosts = body["allowed_hosts"], !hosts.isNull {
                guard let list = hosts.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                    throw CaravanError.validation("/allowed_hosts", "must be an array of host names, or null")
                }
                allowedHosts = list.compactMap(\.stringValue)
            }
            let created = try await secrets.put(orgID: orgID, name: name, value: value, allowedHosts: allowedHosts)
            context.audit.target("secret:\(name)")
            return .json(["name": .string(name)], status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/secrets",
                operationID: "listSecrets",
                summary: "The organization's secret names (never values).",
                tag: "secrets",
                access: .organization(.listSecrets),
                query: APISchemas.page,
                responses: [200: ("Secret names", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await secrets.list(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.name, json: Self.json))
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/secrets/{name}",
                operationID: "deleteSecret",
                summary: "Delete a secret.",
                tag: "secrets",
                access: .organization(.manageSecrets),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            guard try await secrets.delete(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The secret '\(name)'")
            }
            context.audit.target("secret:\(name)")
            return Response(status: .noContent)
        }
    }
}

/// `/v1/audit…`: the organization's audit log and the check of its hash chain.
struct AuditRoutes {
    let audit: AuditLog
    let verifier: AuditVerifier

    /// An entry as the API shows it. Its `id` is its position in the organization's own chain: a server-wide row id
    /// would tell one organization how much the others do.
    static func json(_ entry: AuditEntry) -> JSONValue {
        [
            "id": .string(String(entry.seq)), "seq": .int(entry.seq), "at": .string(Clock.rfc3339(entry.at)),
            "actor": ["type": .string(entry.record.actor.kind.rawValue), "id": .string(entry.record.actor.id)],
            "action": .string(entry.record.action), "target": .string(entry.record.target),
            "outcome": .string(entry.record.outcome),
            "source": entry.record.source.map(JSONValue.string) ?? .null,
            "request_id": entry.record.requestID.map(JSONValue.string) ?? .null,
            "details": entry.record.details ?? .null, "previous_hash": .string(entry.previousHash),
            "hash": .string(entry.hash),
        ]
    }

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .get,
                "/v1/audit",
                operationID: "listAudit",
                summary: "The organization's audit log, newest first; `?action=` filters.",
                tag: "audit",
                access: .organization(.readAudit),
                query: APISchemas.auditQuery,
                responses: [200: ("Entries", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let before = try APIRequest.numericCursor(request)
            let action: String? = request.uri.queryParameters.get("action").map { String($0) }
            let page = try await audit.list(
                orgID: try context.organizationID(),
                before: before,
                limit: limit,
                action: action
            )
            return .json(APIRequest.page(page, limit: limit, cursor: { String($0.seq) }, json: Self.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/audit/verify",
                operationID: "verifyAudit",
                summary:
                    "Recompute the organization's keyed hash chain, check it against its signed head, and name the first entry where it breaks.",
                tag: "audit",
                access: .organization(.readAudit),
                responses: [200: ("The result", object, "application/json")]
            )
        ) { _, context in
            let result = try await verifier.verify(chain: try context.organizationID())
            var body: [String: JSONValue] = ["intact": .bool(result.isIntact), "checked": .int(Int64(result.checked))]
            if let broken = result.firstBreak {
                body["first_break"] = [
                    "id": .string(String(broken.seq)), "seq": .int(broken.seq), "reason": .string(broken.reason),
                ]
            }
            return .json(.object(body))
        }
    }
}
