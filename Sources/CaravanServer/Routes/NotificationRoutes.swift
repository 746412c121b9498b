import CaravanAudit
import CaravanCore
import CaravanIdentity
import CaravanNotify
import CaravanOutbound
import CaravanStorage
import CaravanVault
import HTTPTypes
import Hummingbird

/// `/v1/notifications…`: the organization's SMTP settings (the password stays in the vault: only its secret's
/// name is stored and shown), and one test notification to see a target work before a workflow relies on it.
struct NotificationRoutes {
    let settings: SMTPSettingsStore
    let notifier: Notifier
    let bodies: RequestBodyReader

    /// The notifier of the server: webhooks through the egress client, email with the password read from the
    /// vault when a message is sent, each such read written to the audit log (the secret's name, never its value).
    static func notifier(
        http: EgressHTTPClient,
        settings: SMTPSettingsStore,
        secrets: SecretStore,
        audit: AuditLog,
        clock: WallClock
    ) -> Notifier {
        Notifier(
            http: http,
            settings: settings,
            clock: clock,
            secret: { orgID, name in
                let value = try await secrets.resolve(orgID: orgID, names: [name])[name]
                try await audit.record(
                    AuditRecord(
                        orgID: orgID,
                        actor: AuditActor(.system, "notifications"),
                        action: "secret.use",
                        target: "smtp",
                        outcome: value == nil ? "failure" : "success",
                        details: ["secrets": [.string(name)]]
                    )
                )
                return value
            },
            secretHosts: { orgID, name in
                try await secrets.allowedHosts(orgID: orgID, names: [name])[name]
            }
        )
    }

    /// The problem+json code of a notification that was not delivered, with the status it is answered with.
    static func problem(_ error: NotifyError) -> CaravanError {
        let status: Int =
            switch error.code {
            case NotifyError.smtpNotConfigured, .egressDenied: 422
            case .timeout: 504
            default: 502
            }
        return CaravanError(CaravanError.Code(error.code.rawValue, status: status), error.message)
    }

    static let settingsSchema: JSONValue = [
        "type": "object", "required": ["host", "port", "security", "from"], "additionalProperties": false,
        "properties": [
            "host": ["type": "string", "minLength": 1, "maxLength": 253],
            "port": ["type": "integer", "minimum": 1, "maximum": 65535],
            "security": ["type": "string", "enum": ["starttls", "tls", "none"]],
            "username": ["type": ["string", "null"], "minLength": 1, "maxLength": 256],
            "password_secret": [
                "type": ["string", "null"], "minLength": 1, "maxLength": 64,
                "description": "The name of the secret (/v1/secrets/{name}) that holds the password.",
            ],
            "from": ["type": "string", "minLength": 3, "maxLength": 320],
            "insecure_skip_verify": [
                "type": "boolean",
                "description": "Skip TLS certificate verification: only for test servers and self-signed certificates.",
            ],
        ],
    ]

    static let settingsAnswer: JSONValue = [
        "type": "object",
        "properties": [
            "host": ["type": "string"], "port": ["type": "integer"], "security": ["type": "string"],
            "username": ["type": ["string", "null"]], "password_secret": ["type": ["string", "null"]],
            "from": ["type": "string"], "insecure_skip_verify": ["type": "boolean"],
            "created_at": ["type": "string"], "updated_at": ["type": "string"],
        ],
    ]

    static let testSchema: JSONValue = [
        "type": "object", "required": ["target"], "additionalProperties": false,
        "properties": [
            "target": [
                "type": "object",
                "description":
                    "Exactly one of {\"slack\": URL}, {\"webhook\": URL}, {\"email\": {\"to\": [addresses], \"subject\"}}.",
                "properties": [
                    "slack": ["type": "string"], "webhook": ["type": "string"],
                    "email": [
                        "type": "object",
                        "properties": [
                            "to": ["type": ["array", "string"], "items": ["type": "string"]],
                            "subject": ["type": "string"],
                        ],
                    ],
                ],
            ],
            "title": ["type": "string", "maxLength": 256],
            "text": ["type": "string", "maxLength": 40000],
        ],
    ]

    func register(in routes: RouteRegistrar) {
        routes.add(
            EndpointDescription(
                .put,
                "/v1/notifications/smtp",
                operationID: "putSMTPSettings",
                summary:
                    "Set the organization's SMTP server for email notifications (the password as a secret's name).",
                tag: "notifications",
                access: .organization(.manageOrganization),
                requestSchema: Self.settingsSchema,
                responses: [
                    201: ("Created", Self.settingsAnswer, "application/json"),
                    200: ("Replaced", Self.settingsAnswer, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let body = try await bodies.json(of: request)
            let fields = try BodyFields(
                body,
                allowed: ["host", "port", "security", "username", "password_secret", "from", "insecure_skip_verify"]
            )
            guard let host = try fields.string("host", maxLength: 253) else {
                throw CaravanError.validation("/host", "host is required")
            }
            guard let port = try fields.integer("port") else {
                throw CaravanError.validation("/port", "port is required")
            }
            guard let securityText = try fields.string("security", maxLength: 16),
                let security = SMTPSecurity(rawValue: securityText)
            else {
                throw CaravanError.validation("/security", "security must be starttls, tls or none")
            }
            guard let from = try fields.string("from", maxLength: 320) else {
                throw CaravanError.validation("/from", "from is required")
            }
            var insecure = false
            switch body["insecure_skip_verify"] {
            case nil, .null?: break
            case .bool(let value)?: insecure = value
            default: throw CaravanError.validation("/insecure_skip_verify", "insecure_skip_verify must be a boolean")
            }
            let stored = try await settings.put(
                orgID: orgID,
                SMTPSettings(
                    host: host,
                    port: port,
                    security: security,
                    username: try fields.string("username", maxLength: 256),
                    passwordSecret: try fields.string("password_secret", maxLength: 64),
                    from: from,
                    insecureSkipVerify: insecure
                )
            )
            context.audit.target("smtp")
            context.audit.details(["host": .string(host), "security": .string(security.rawValue)])
            return .json(stored.settings.json, status: stored.created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/notifications/smtp",
                operationID: "getSMTPSettings",
                summary: "The organization's SMTP settings (never a password).",
                tag: "notifications",
                access: .organization(.read),
                responses: [200: ("The settings", Self.settingsAnswer, "application/json")]
            )
        ) { _, context in
            guard let stored = try await settings.get(orgID: try context.organizationID()) else {
                throw CaravanError.notFound("The organization's SMTP settings")
            }
            return .json(stored.json)
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/notifications/smtp",
                operationID: "deleteSMTPSettings",
                summary: "Remove the organization's SMTP settings; email notifications fail until new ones are set.",
                tag: "notifications",
                access: .organization(.manageOrganization),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            guard try await settings.delete(orgID: try context.organizationID()) else {
                throw CaravanError.notFound("The organization's SMTP settings")
            }
            context.audit.target("smtp")
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/notifications/test",
                operationID: "testNotification",
                summary:
                    "Send one test notification to a Slack-compatible webhook, a JSON webhook or email addresses; answers what happened.",
                tag: "notifications",
                access: .organization(.write),
                requestSchema: Self.testSchema,
                responses: [
                    200: (
                        "Delivered",
                        [
                            "type": "object",
                            "properties": [
                                "delivered": ["type": "boolean"], "target": ["type": "string"],
                                "status": ["type": "integer"], "truncated": ["type": "boolean"],
                            ],
                        ],
                        "application/json"
                    )
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let body = try await bodies.json(of: request)
            let fields = try BodyFields(body, allowed: ["target", "title", "text"])
            guard let targetValue = body["target"] else {
                throw CaravanError.validation("/target", "target is required")
            }
            var target = try NotificationTarget.parse(targetValue, at: "/target")
            let title = try fields.string("title", maxLength: Notification.maxTitleCharacters) ?? "Caravan test"
            let text =
                try fields.string("text", maxLength: Notification.maxTextCharacters)
                ?? "A test notification from Caravan: this target works."
            if case .email(let to, nil) = target { target = .email(to: to, subject: title) }
            context.audit.target("notification:\(target.kind)")
            // A refusal by the egress policy is audited in this organization.
            let outcome = await EgressAttribution.$current.withValue(EgressAttribution(orgID: orgID, runID: nil)) {
                () async -> Result<NotificationReceipt, NotifyError> in
                do throws(NotifyError) {
                    return .success(
                        try await notifier.send(
                            Notification(title: title, text: text),
                            to: target,
                            orgID: orgID,
                            timeout: .seconds(30)
                        )
                    )
                } catch {
                    return .failure(error)
                }
            }
            switch outcome {
            case .success(let receipt): return .json(receipt.json)
            case .failure(let error): throw Self.problem(error)
            }
        }
    }
}
