import CaravanAudit
import CaravanCore
import CaravanIdentity
import HTTPTypes
import Hummingbird

/// `/v1/auth/…`, `/v1/me`, `/v1/invitations/accept`: signing up and in, sessions, MFA.
struct IdentityRoutes {
    let identity: IdentityService
    let bodies: RequestBodyReader
    /// Where failed sign-ins on an account are recorded for the admins of its organizations.
    let audit: AuditLog

    static func json(_ tokens: SessionTokens) -> [String: JSONValue] {
        [
            "access_token": .string(tokens.accessToken), "refresh_token": .string(tokens.refreshToken),
            "token_type": "Bearer", "expires_in": .int(Int64(tokens.expiresIn)),
        ]
    }

    static func json(_ membership: Membership) -> JSONValue {
        [
            "id": .string(membership.orgID), "name": .string(membership.orgName),
            "role": .string(membership.role.rawValue),
        ]
    }

    /// The user of a session; API keys act for an organization, not a person, and may not use these endpoints.
    static func sessionUser(_ context: CaravanRequestContext) throws -> (userID: String, sessionID: String) {
        guard case .session(let userID, let sessionID)? = context.principal?.credential else {
            throw CaravanError(.forbidden, "This endpoint needs a signed-in user, not an API key.")
        }
        return (userID, sessionID)
    }

    /// A failed sign-in on an existing account goes into the audit chain of each of its organizations, where their
    /// admins see it (`auth.login_failed`): who was tried, from where, and why it failed; never the password.
    func recordFailedLogin(email: String?, error: CaravanError, context: CaravanRequestContext) async {
        guard let account = try? await identity.accountOrganizations(email: email) else { return }
        let reason =
            error.code == .rateLimited
            ? "backoff" : (error.detail.contains("two-factor") ? "wrong_code" : "wrong_password")
        for orgID in account.orgIDs {
            await audit.recordLogged(
                AuditRecord(
                    orgID: orgID,
                    actor: AuditActor(.anonymous, String((email ?? "").prefix(320))),
                    action: "auth.login_failed",
                    target: "user:\(account.userID)",
                    outcome: error.code == .rateLimited ? "denied" : "failure",
                    source: context.sourceAddress,
                    requestID: context.requestID,
                    details: ["reason": .string(reason)]
                )
            )
        }
    }

    func register(in routes: RouteRegistrar) {
        let tokensSchema: JSONValue = ["type": "object", "required": ["access_token", "refresh_token", "expires_in"]]
        routes.add(
            EndpointDescription(
                .post,
                "/v1/auth/signup",
                operationID: "signup",
                summary:
                    "Create an account and its organization (open while there are no users; then with an invitation).",
                tag: "auth",
                access: .open,
                requestSchema: APISchemas.signup,
                responses: [201: ("The account, its organization and session tokens", tokensSchema, "application/json")]
            )
        ) { request, context in
            try await identity.throttle.admit(source: context.sourceAddress)
            let fields = try BodyFields(
                try await bodies.json(of: request),
                allowed: ["email", "password", "organization", "invitation"]
            )
            let email = try fields.string("email", maxLength: 320)
            context.audit.actor(AuditActor(.anonymous, email ?? "unknown"))
            let (user, membership, tokens) = try await identity.signup(
                email: email,
                password: try fields.string("password", maxLength: 8192),
                organization: try fields.string("organization", maxLength: 400),
                invitation: try fields.string("invitation", maxLength: 256)
            )
            context.audit.actor(AuditActor(.user, user.id), orgID: membership.orgID)
            context.audit.target("user:\(user.id)")
            var body = Self.json(tokens)
            body["user"] = ["id": .string(user.id), "email": .string(user.email)]
            body["organization"] = Self.json(membership)
            return .json(.object(body), status: .created)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/auth/login",
                operationID: "login",
                summary: "Sign in with email and password (and `totp`, a TOTP or recovery code, when MFA is on).",
                tag: "auth",
                access: .open,
                requestSchema: APISchemas.login,
                responses: [200: ("Session tokens", tokensSchema, "application/json")]
            )
        ) { request, context in
            try await identity.throttle.admit(source: context.sourceAddress)
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["email", "password", "totp"])
            let email = try fields.string("email", maxLength: 320)
            context.audit.actor(AuditActor(.anonymous, email ?? "unknown"))
            let userID: String
            let tokens: SessionTokens
            do {
                (userID, tokens) = try await identity.login(
                    email: email,
                    password: try fields.string("password", maxLength: 8192),
                    code: try fields.string("totp", maxLength: 64),
                    source: context.sourceAddress
                )
            } catch let error as CaravanError where error.code == .unauthenticated || error.code == .rateLimited {
                await recordFailedLogin(email: email, error: error, context: context)
                throw error
            }
            context.audit.actor(AuditActor(.user, userID))
            context.audit.target("user:\(userID)")
            return .json(.object(Self.json(tokens)))
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/auth/refresh",
                operationID: "refreshSession",
                summary: "Exchange a refresh token (usable once) for new tokens.",
                tag: "auth",
                access: .open,
                requestSchema: APISchemas.refresh,
                responses: [200: ("Session tokens", tokensSchema, "application/json")]
            )
        ) { request, context in
            try await identity.throttle.admit(source: context.sourceAddress)
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["refresh_token"])
            let (userID, tokens) = try await identity.refresh(try fields.string("refresh_token", maxLength: 512))
            context.audit.actor(AuditActor(.user, userID))
            context.audit.target("user:\(userID)")
            return .json(.object(Self.json(tokens)))
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/auth/logout",
                operationID: "logout",
                summary: "End this session: its tokens stop working at once.",
                tag: "auth",
                access: .signedIn,
                responses: [204: ("Signed out", nil, "application/json")]
            )
        ) { _, context in
            try await identity.logout(sessionID: try Self.sessionUser(context).sessionID)
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/auth/password",
                operationID: "changePassword",
                summary: "Change the password; every session ends and a new one starts.",
                tag: "auth",
                access: .signedIn,
                requestSchema: APISchemas.changePassword,
                responses: [200: ("New session tokens", tokensSchema, "application/json")]
            )
        ) { request, context in
            let fields = try BodyFields(
                try await bodies.json(of: request),
                allowed: ["current_password", "new_password"]
            )
            let tokens = try await identity.changePassword(
                userID: try Self.sessionUser(context).userID,
                current: try fields.string("current_password", maxLength: 8192),
                new: try fields.string("new_password", maxLength: 8192)
            )
            return .json(.object(Self.json(tokens)))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/me",
                operationID: "getMe",
                summary: "The signed-in user and their organizations, or the API key.",
                tag: "auth",
                access: .signedIn,
                responses: [200: ("The caller", ["type": "object"], "application/json")]
            )
        ) { _, context in
            guard let principal = context.principal else { throw CaravanError(.unauthenticated, "No credentials.") }
            if case .apiKey(let id) = principal.credential {
                return .json([
                    "api_key": [
                        "id": .string(id), "organization_id": .string(principal.orgID ?? ""),
                        "role": .string(principal.role?.rawValue ?? ""),
                    ]
                ])
            }
            let (user, memberships) = try await identity.me(userID: principal.userID)
            return .json([
                "user": [
                    "id": .string(user.id), "email": .string(user.email), "mfa_enabled": .bool(user.totpEnabled),
                    "created_at": .string(Clock.rfc3339(user.createdAt)),
                ],
                "organizations": .array(memberships.map(Self.json)),
            ])
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/auth/mfa/totp",
                operationID: "enrollTOTP",
                summary: "Start TOTP enrolment: a secret for the authenticator and ten recovery codes, shown once.",
                tag: "auth",
                access: .signedIn,
                responses: [201: ("The secret and recovery codes", ["type": "object"], "application/json")]
            )
        ) { _, context in
            let enrollment = try await identity.enrollTOTP(userID: try Self.sessionUser(context).userID)
            return .json(
                [
                    "secret": .string(enrollment.secret), "otpauth_url": .string(enrollment.url),
                    "recovery_codes": .array(enrollment.recoveryCodes.map(JSONValue.string)),
                ],
                status: .created
            )
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/auth/mfa/totp/verify",
                operationID: "verifyTOTP",
                summary: "Finish TOTP enrolment with a code from the authenticator; from then on login needs a code.",
                tag: "auth",
                access: .signedIn,
                requestSchema: APISchemas.verifyTOTP,
                responses: [200: ("MFA is on", ["type": "object"], "application/json")]
            )
        ) { request, context in
            try await identity.throttle.admit(source: context.sourceAddress)
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["code"])
            try await identity.verifyTOTP(
                userID: try Self.sessionUser(context).userID,
                code: try fields.string("code", maxLength: 16)
            )
            return .json(["mfa_enabled": true])
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/invitations/accept",
                operationID: "acceptInvitation",
                summary: "Join the organization that invited the signed-in user's email.",
                tag: "organizations",
                access: .signedIn,
                requestSchema: APISchemas.acceptInvitation,
                responses: [200: ("The organization joined", ["type": "object"], "application/json")]
            )
        ) { request, context in
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["token"])
            let membership = try await identity.acceptInvitation(
                userID: try Self.sessionUser(context).userID,
                token: try fields.string("token", maxLength: 256)
            )
            context.audit.actor(AuditActor(.user, membership.userID), orgID: membership.orgID)
            return .json(Self.json(membership))
        }
    }
}
