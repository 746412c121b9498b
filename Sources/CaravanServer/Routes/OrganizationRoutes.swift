import CaravanAudit
import CaravanCore
import CaravanIdentity
import CaravanStorage
import HTTPTypes
import Hummingbird

/// `/v1/organizations…` and `/v1/api-keys…`: organizations, their members and invitations, and API keys.
struct OrganizationRoutes {
    let identity: IdentityService
    let bodies: RequestBodyReader

    static func json(_ member: Membership) -> JSONValue {
        [
            "user_id": .string(member.userID), "email": .string(member.email), "role": .string(member.role.rawValue),
            "joined_at": .string(Clock.rfc3339(member.createdAt)),
        ]
    }

    static func json(_ key: APIKey) -> [String: JSONValue] {
        [
            "id": .string(key.id), "name": .string(key.name), "role": .string(key.role.rawValue),
            "prefix": .string(key.prefix),
            "created_by": .string(key.createdBy), "created_at": .string(Clock.rfc3339(key.createdAt)),
            "expires_at": APIRequest.time(key.expiresAt), "last_used_at": APIRequest.time(key.lastUsedAt),
        ]
    }

    static func principal(_ context: CaravanRequestContext) throws -> Principal {
        guard let principal = context.principal else { throw CaravanError(.unauthenticated, "No credentials.") }
        return principal
    }

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .post,
                "/v1/organizations",
                operationID: "createOrganization",
                summary: "Create an organization; the signed-in user is its owner.",
                tag: "organizations",
                access: .signedIn,
                requestSchema: APISchemas.createOrganization,
                responses: [201: ("The organization", object, "application/json")]
            )
        ) { request, context in
            let user = try IdentityRoutes.sessionUser(context)
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["name"])
            let membership = try await identity.createOrganization(
                userID: user.userID,
                name: try fields.string("name", maxLength: 400)
            )
            context.audit.actor(AuditActor(.user, user.userID), orgID: membership.orgID)
            context.audit.target("organization:\(membership.orgID)")
            return .json(IdentityRoutes.json(membership), status: .created)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/organizations",
                operationID: "listOrganizations",
                summary: "The organizations the caller belongs to.",
                tag: "organizations",
                access: .signedIn,
                responses: [200: ("Organizations", APISchemas.list(of: object), "application/json")]
            )
        ) { _, context in
            let principal = try Self.principal(context)
            if case .apiKey = principal.credential, let orgID = principal.orgID {
                let (organization, _) = try await identity.organization(orgID: orgID)
                return .json([
                    "items": [
                        [
                            "id": .string(organization.id), "name": .string(organization.name),
                            "role": .string(principal.role?.rawValue ?? ""),
                        ]
                    ], "next_cursor": .null,
                ])
            }
            let (_, memberships) = try await identity.me(userID: principal.userID)
            return .json(["items": .array(memberships.map(IdentityRoutes.json)), "next_cursor": .null])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/organizations/{org}",
                operationID: "getOrganization",
                summary: "An organization and its settings.",
                tag: "organizations",
                access: .organization(.read),
                responses: [200: ("The organization", object, "application/json")]
            )
        ) { _, context in
            let (organization, limit) = try await identity.organization(orgID: try context.organizationID())
            return .json([
                "id": .string(organization.id), "name": .string(organization.name),
                "rate_limit_per_minute": limit.map { .int(Int64($0)) } ?? .null,
                "created_at": .string(Clock.rfc3339(organization.createdAt)),
            ])
        }
        routes.add(
            EndpointDescription(
                .patch,
                "/v1/organizations/{org}",
                operationID: "updateOrganization",
                summary:
                    "Rename an organization or set its requests per minute per credential (0: no limit; null: the server default).",
                tag: "organizations",
                access: .organization(.manageOrganization),
                requestSchema: APISchemas.updateOrganization,
                responses: [200: ("The organization", object, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["name", "rate_limit_per_minute"])
            let limit: Int?? =
                fields.has("rate_limit_per_minute") ? .some(try fields.integer("rate_limit_per_minute")) : .none
            try await identity.updateOrganization(
                orgID: orgID,
                name: try fields.string("name", maxLength: 400),
                rateLimit: limit
            )
            let (organization, current) = try await identity.organization(orgID: orgID)
            return .json([
                "id": .string(organization.id), "name": .string(organization.name),
                "rate_limit_per_minute": current.map { .int(Int64($0)) } ?? .null,
            ])
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/organizations/{org}",
                operationID: "deleteOrganization",
                summary: "Delete an organization and everything it owns.",
                tag: "organizations",
                access: .organization(.deleteOrganization),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            try await identity.deleteOrganization(orgID: try context.organizationID())
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/organizations/{org}/invitations",
                operationID: "inviteMember",
                summary: "Invite an email with a role (no higher than yours); the token is shown once.",
                tag: "organizations",
                access: .organization(.manageMembers),
                requestSchema: APISchemas.invitation,
                responses: [201: ("The invitation and its token", object, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["email", "role"])
            let (invitation, token) = try await identity.invite(
                orgID: orgID,
                by: try Self.principal(context),
                email: try fields.string("email", maxLength: 320),
                role: try fields.string("role")
            )
            context.audit.target("invitation:\(invitation.id)")
            context.audit.details(["email": .string(invitation.email), "role": .string(invitation.role.rawValue)])
            return .json(
                [
                    "id": .string(invitation.id), "email": .string(invitation.email),
                    "role": .string(invitation.role.rawValue),
                    "token": .string(token), "expires_at": .string(Clock.rfc3339(invitation.expiresAt)),
                ],
                status: .created
            )
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/organizations/{org}/members",
                operationID: "listMembers",
                summary: "The organization's members.",
                tag: "organizations",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("Members", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await identity.members(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.userID, json: Self.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/organizations/{org}/members/{user}",
                operationID: "getMember",
                summary: "A member.",
                tag: "organizations",
                access: .organization(.read),
                responses: [200: ("The member", object, "application/json")]
            )
        ) { _, context in
            .json(
                Self.json(
                    try await identity.member(
                        orgID: try context.organizationID(),
                        userID: try context.parameters.require("user")
                    )
                )
            )
        }
        routes.add(
            EndpointDescription(
                .patch,
                "/v1/organizations/{org}/members/{user}",
                operationID: "updateMember",
                summary: "Change a member's role (never above yours; the last owner stays owner).",
                tag: "organizations",
                access: .organization(.manageMembers),
                requestSchema: APISchemas.memberRole,
                responses: [200: ("The member", object, "application/json")]
            )
        ) { request, context in
            let userID = try context.parameters.require("user")
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["role"])
            let member = try await identity.changeRole(
                orgID: try context.organizationID(),
                userID: userID,
                to: try fields.string("role"),
                by: try Self.principal(context)
            )
            context.audit.target("user:\(userID)")
            context.audit.details(["role": .string(member.role.rawValue)])
            return .json(Self.json(member))
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/organizations/{org}/members/{user}",
                operationID: "removeMember",
                summary: "Remove a member; their sessions end at once.",
                tag: "organizations",
                access: .organization(.manageMembers),
                responses: [204: ("Removed", nil, "application/json")]
            )
        ) { _, context in
            let userID = try context.parameters.require("user")
            try await identity.removeMember(
                orgID: try context.organizationID(),
                userID: userID,
                by: try Self.principal(context)
            )
            context.audit.target("user:\(userID)")
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/api-keys",
                operationID: "createAPIKey",
                summary: "Create an API key with a role no higher than yours; the key is shown once.",
                tag: "api-keys",
                access: .organization(.manageAPIKeys),
                requestSchema: APISchemas.createAPIKey,
                responses: [201: ("The key, shown once", object, "application/json")]
            )
        ) { request, context in
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["name", "role", "expires_at"])
            let (record, key) = try await identity.createAPIKey(
                orgID: try context.organizationID(),
                by: try Self.principal(context),
                name: try fields.string("name", maxLength: 400),
                role: try fields.string("role"),
                expiresAt: try fields.time("expires_at")
            )
            context.audit.target("api_key:\(record.id)")
            context.audit.details(["role": .string(record.role.rawValue)])
            var body = Self.json(record)
            body["key"] = .string(key)
            return .json(.object(body), status: .created)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/api-keys",
                operationID: "listAPIKeys",
                summary: "The organization's API keys (never the keys themselves).",
                tag: "api-keys",
                access: .organization(.manageAPIKeys),
                query: APISchemas.page,
                responses: [200: ("API keys", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await identity.apiKeys(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.id) { .object(Self.json($0)) })
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/api-keys/{id}",
                operationID: "revokeAPIKey",
                summary: "Revoke an API key, at once.",
                tag: "api-keys",
                access: .organization(.manageAPIKeys),
                responses: [204: ("Revoked", nil, "application/json")]
            )
        ) { _, context in
            let id = try context.parameters.require("id")
            guard try await identity.revokeAPIKey(orgID: try context.organizationID(), id: id) else {
                throw CaravanError.notFound("The API key '\(id)'")
            }
            context.audit.target("api_key:\(id)")
            return Response(status: .noContent)
        }
    }
}
