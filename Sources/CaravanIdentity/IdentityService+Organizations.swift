public import CaravanCore
public import CaravanStorage
import Foundation

/// Organizations, members, invitations and API keys. Every call names the organization it acts in; the caller
/// (the HTTP layer) has already checked the permission in `AccessPolicy`, and the rules here are those that
/// depend on the people involved (no one grants more than their own role; an organization keeps an owner).
extension IdentityService {
    /// Creates an organization owned by `userID`.
    public func createOrganization(userID: String, name rawName: String?) async throws -> Membership {
        let name = try Self.checkOrganizationName(rawName, pointer: "/name")
        let now = Clock.nowMilliseconds()
        let orgID = Identifier.make("org")
        return try await changeCredentials { executor in
            do {
                try await executor.execute(
                    "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
                    [.text(orgID), .text(name), .int(now)]
                )
            } catch let error as StorageError where error.code == .conflict {
                throw CaravanError(.conflict, "An organization with this name exists; choose another name.")
            }
            let email =
                try await executor.queryFirst("SELECT email FROM users WHERE id = $1", [.text(userID)])?.string("email")
                ?? ""
            try await executor.execute(
                "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at) VALUES ($1, $2, 'owner', $3, $3)",
                [.text(orgID), .text(userID), .int(now)]
            )
            return Membership(orgID: orgID, orgName: name, userID: userID, email: email, role: .owner, createdAt: now)
        }
    }

    /// The organization's name and settings.
    public func organization(orgID: String) async throws -> (Organization, rateLimitPerMinute: Int?) {
        let row = try await database.read { executor in
            try await executor.queryFirst(
                "SELECT id, name, created_at, updated_at, rate_limit_per_minute FROM organizations WHERE id = $1",
                [.text(orgID)]
            )
        }
        guard let row else { throw CaravanError.notFound("The organization '\(orgID)'") }
        return (
            Organization(
                id: try row.string("id"),
                name: try row.string("name"),
                createdAt: try row.int("created_at"),
                updatedAt: try row.int("updated_at")
            ),
            (try row.optionalInt("rate_limit_per_minute")).map(Int.init)
        )
    }

    /// Renames an organization or sets its request limit (`0`: unlimited; `nil` in `rateLimit`: unchanged;
    /// `.some(nil)`: back to the server's default). When the operator set a limit (`Settings.rateLimitCeiling`),
    /// an organization may only lower it: a limit above it, or `0`, is refused.
    public func updateOrganization(orgID: String, name rawName: String?, rateLimit: Int??) async throws {
        let name = try rawName.map { name throws(CaravanError) in try Self.checkOrganizationName(name, pointer: "/name")
        }
        if case .some(.some(let limit)) = rateLimit {
            if limit < 0 || limit > 1_000_000 {
                throw CaravanError.validation(
                    "/rate_limit_per_minute",
                    "rate_limit_per_minute must be from 0 (no limit) to 1000000, or null"
                )
            }
            let ceiling = settings.rateLimitCeiling
            if ceiling > 0, limit == 0 || limit > ceiling {
                throw CaravanError.validation(
                    "/rate_limit_per_minute",
                    "rate_limit_per_minute must be from 1 to \(ceiling), the server's limit, or null (the server's limit)"
                )
            }
        }
        let now = Clock.nowMilliseconds()
        try await changeCredentials { executor in
            do {
                if let name {
                    try await executor.execute(
                        "UPDATE organizations SET name = $2, updated_at = $3 WHERE id = $1",
                        [.text(orgID), .text(name), .int(now)]
                    )
                }
            } catch let error as StorageError where error.code == .conflict {
                throw CaravanError(.conflict, "An organization with this name exists; choose another name.")
            }
            if case .some(let limit) = rateLimit {
                try await executor.execute(
                    "UPDATE organizations SET rate_limit_per_minute = $2, updated_at = $3 WHERE id = $1",
                    [.text(orgID), .int(limit.map(Int64.init)), .int(now)]
                )
            }
        }
    }

    /// Deletes an organization and everything it owns.
    public func deleteOrganization(orgID: String) async throws {
        try await changeCredentials { executor in
            try await executor.execute("DELETE FROM organizations WHERE id = $1", [.text(orgID)])
        }
    }

    // MARK: Members

    static let memberColumns = "m.org_id, o.name AS org_name, m.user_id, u.email, m.role, m.created_at"
    static let memberJoins = "memberships m JOIN organizations o ON o.id = m.org_id JOIN users u ON u.id = m.user_id"

    static func decodeMembership(_ row: SQLRow) throws -> Membership {
        Membership(
            orgID: try row.string("org_id"),
            orgName: try row.string("org_name"),
            userID: try row.string("user_id"),
            email: try row.string("email"),
            role: Role(rawValue: try row.string("role")) ?? .viewer,
            createdAt: try row.int("created_at")
        )
    }

    public func members(orgID: String, after: String?, limit: Int) async throws -> [Membership] {
        try await database.read { executor in
            try await executor.query(
                "SELECT \(Self.memberColumns) FROM \(Self.memberJoins) WHERE m.org_id = $1 AND m.user_id > $2 ORDER BY m.user_id LIMIT $3",
                [.text(orgID), .text(after ?? ""), .int(Int64(limit))]
            ).map(Self.decodeMembership)
        }
    }

    public func member(orgID: String, userID: String) async throws -> Membership {
        let row = try await database.read { executor in
            try await executor.queryFirst(
                "SELECT \(Self.memberColumns) FROM \(Self.memberJoins) WHERE m.org_id = $1 AND m.user_id = $2",
                [.text(orgID), .text(userID)]
            )
        }
        guard let row else { throw CaravanError.notFound("The member '\(userID)'") }
        return try Self.decodeMembership(row)
    }

    /// Invites `email` with `role`, which may not exceed the inviter's.
    /// - Returns: the invitation and its token (shown once; the invitee signs up or accepts with it).
    public func invite(
        orgID: String,
        by inviter: Principal,
        email rawEmail: String?,
        role rawRole: String?
    ) async throws -> (Invitation, token: String) {
        let email = try Self.normalize(email: rawEmail)
        let role = try Role.parse(rawRole, at: "/role")
        try Self.checkGrant(role, by: inviter, pointer: "/role")
        let token = OpaqueToken.make(prefix: "cvi_")
        let now = Clock.nowMilliseconds()
        let invitation = Invitation(
            id: Identifier.make("inv"),
            orgID: orgID,
            email: email,
            role: role,
            invitedBy: inviter.userID,
            createdAt: now,
            expiresAt: now + 7 * 86_400_000
        )
        try await database.withTransaction { executor in
            if try await executor.queryFirst(
                "SELECT 1 AS one FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND u.email = $2",
                [.text(orgID), .text(email)]
            ) != nil {
                throw CaravanError(.conflict, "\(email) is already a member.")
            }
            try await executor.execute(
                """
                INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """,
                [
                    .text(invitation.id), .text(orgID), .text(email), .text(role.rawValue),
                    .text(OpaqueToken.digest(token)),
                    .text(inviter.userID), .int(now), .int(invitation.expiresAt),
                ]
            )
        }
        return (invitation, token)
    }

    /// A signed-in user joins the organization that invited their email.
    public func acceptInvitation(userID: String, token: String?) async throws -> Membership {
        let now = Clock.nowMilliseconds()
        return try await changeCredentials { executor in
            guard let token,
                let row = try await executor.queryFirst(
                    """
                    SELECT i.id, i.org_id, i.role FROM invitations i JOIN users u ON u.email = i.email
                    WHERE i.token_hash = $1 AND u.id = $2 AND i.accepted_at IS NULL AND i.expires_at > $3
                    """,
                    [.text(OpaqueToken.digest(token)), .text(userID), .int(now)]
                )
            else {
                throw CaravanError.validation(
                    "/token",
                    "The invitation is not valid for this account, or it expired or was used."
                )
            }
            let orgID = try row.string("org_id")
            try await executor.execute(
                "UPDATE invitations SET accepted_at = $2 WHERE id = $1",
                [.text(try row.string("id")), .int(now)]
            )
            do {
                try await executor.execute(
                    "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
                    [.text(orgID), .text(userID), .text(try row.string("role")), .int(now)]
                )
            } catch let error as StorageError where error.code == .conflict {
                throw CaravanError(.conflict, "You are already a member of this organization.")
            }
            guard
                let member = try await executor.queryFirst(
                    "SELECT \(Self.memberColumns) FROM \(Self.memberJoins) WHERE m.org_id = $1 AND m.user_id = $2",
                    [.text(orgID), .text(userID)]
                )
            else { throw CaravanError(.internal, "The membership just written is missing.") }
            return try Self.decodeMembership(member)
        }
    }

    /// Changes a member's role. Neither the member's current role nor the new one may exceed the actor's; the
    /// last owner stays an owner.
    public func changeRole(
        orgID: String,
        userID: String,
        to rawRole: String?,
        by actor: Principal
    ) async throws -> Membership {
        let role = try Role.parse(rawRole, at: "/role")
        try Self.checkGrant(role, by: actor, pointer: "/role")
        try await changeCredentials { executor in
            let current = try await Self.lockedRole(orgID: orgID, userID: userID, executor: executor)
            try Self.checkGrant(current, by: actor, pointer: "/role")
            if current == .owner, role != .owner {
                try await Self.requireAnotherOwner(orgID: orgID, executor: executor)
            }
            try await executor.execute(
                "UPDATE memberships SET role = $3, updated_at = $4 WHERE org_id = $1 AND user_id = $2",
                [.text(orgID), .text(userID), .text(role.rawValue), .int(Clock.nowMilliseconds())]
            )
        }
        return try await member(orgID: orgID, userID: userID)
    }

    /// Removes a member (not one whose role exceeds the actor's, nor the last owner), ends their sessions and
    /// revokes the API keys they created in the organization.
    public func removeMember(orgID: String, userID: String, by actor: Principal) async throws {
        try await changeCredentials { executor in
            let current = try await Self.lockedRole(orgID: orgID, userID: userID, executor: executor)
            try Self.checkGrant(current, by: actor, pointer: "/role")
            if current == .owner { try await Self.requireAnotherOwner(orgID: orgID, executor: executor) }
            let now = Clock.nowMilliseconds()
            try await executor.execute(
                "DELETE FROM memberships WHERE org_id = $1 AND user_id = $2",
                [.text(orgID), .text(userID)]
            )
            try await executor.execute(
                "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                [.text(userID), .int(now)]
            )
            try await executor.execute(
                "UPDATE api_keys SET revoked_at = $3 WHERE org_id = $1 AND created_by = $2 AND revoked_at IS NULL",
                [.text(orgID), .text(userID), .int(now)]
            )
        }
    }

    static func checkGrant(_ role: Role, by actor: Principal, pointer: String) throws(CaravanError) {
        guard let actorRole = actor.role, role <= actorRole else {
            throw CaravanError(
                .forbidden,
                "You cannot grant or change a role above your own (\(actor.role?.rawValue ?? "none"))."
            )
        }
    }

    static func lockedRole(orgID: String, userID: String, executor: any SQLExecutor) async throws -> Role {
        let lock = executor.dialect == .postgres ? " FOR UPDATE" : ""
        guard
            let row = try await executor.queryFirst(
                "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2\(lock)",
                [.text(orgID), .text(userID)]
            )
        else { throw CaravanError.notFound("The member '\(userID)'") }
        return Role(rawValue: try row.string("role")) ?? .viewer
    }

    static func requireAnotherOwner(orgID: String, executor: any SQLExecutor) async throws {
        if executor.dialect == .postgres {
            try await executor.execute("SELECT pg_advisory_xact_lock(hashtext('owners:' || $1))", [.text(orgID)])
        }
        let owners =
            try await executor.queryFirst(
                "SELECT COUNT(*) AS n FROM memberships WHERE org_id = $1 AND role = 'owner'",
                [.text(orgID)]
            )?.int("n") ?? 0
        guard owners > 1 else {
            throw CaravanError(.conflict, "An organization keeps at least one owner: make someone else an owner first.")
        }
    }

    // MARK: API keys

    /// Creates an API key in the organization with a role no higher than the creator's.
    /// - Returns: the key's record and the key itself (shown once; only its hash is stored).
    public func createAPIKey(
        orgID: String,
        by creator: Principal,
        name rawName: String?,
        role rawRole: String?,
        expiresAt: Int64?
    ) async throws -> (APIKey, key: String) {
        let name = (rawName ?? "").trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= 100 else {
            throw CaravanError.validation("/name", "name must be 1 to 100 characters")
        }
        let role = try Role.parse(rawRole, at: "/role")
        try Self.checkGrant(role, by: creator, pointer: "/role")
        let now = Clock.nowMilliseconds()
        if let expiresAt, expiresAt <= now {
            throw CaravanError.validation("/expires_at", "expires_at must be in the future")
        }
        let key = OpaqueToken.make(prefix: "cvk_")
        let record = APIKey(
            id: Identifier.make("key"),
            orgID: orgID,
            name: name,
            role: role,
            prefix: String(key.prefix(12)),
            createdBy: creator.userID,
            createdAt: now,
            expiresAt: expiresAt,
            lastUsedAt: nil
        )
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO api_keys (id, org_id, name, role, key_hash, prefix, created_by, created_at, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                """,
                [
                    .text(record.id), .text(orgID), .text(name), .text(role.rawValue), .text(OpaqueToken.digest(key)),
                    .text(record.prefix), .text(creator.userID), .int(now), .int(expiresAt),
                ]
            )
        }
        return (record, key)
    }

    /// The organization's live keys.
    public func apiKeys(orgID: String, after: String?, limit: Int) async throws -> [APIKey] {
        try await database.read { executor in
            try await executor.query(
                """
                SELECT id, org_id, name, role, prefix, created_by, created_at, expires_at, last_used_at FROM api_keys
                WHERE org_id = $1 AND revoked_at IS NULL AND id > $2 ORDER BY id LIMIT $3
                """,
                [.text(orgID), .text(after ?? ""), .int(Int64(limit))]
            ).map { row in
                APIKey(
                    id: try row.string("id"),
                    orgID: try row.string("org_id"),
                    name: try row.string("name"),
                    role: Role(rawValue: try row.string("role")) ?? .viewer,
                    prefix: try row.string("prefix"),
                    createdBy: try row.string("created_by"),
                    createdAt: try row.int("created_at"),
                    expiresAt: try row.optionalInt("expires_at"),
                    lastUsedAt: try row.optionalInt("last_used_at")
                )
            }
        }
    }

    /// Revokes a key at once.
    /// - Returns: whether a live key with this id existed in the organization.
    public func revokeAPIKey(orgID: String, id: String) async throws -> Bool {
        try await changeCredentials { executor in
            !(try await executor.query(
                "UPDATE api_keys SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING id",
                [.text(orgID), .text(id), .int(Clock.nowMilliseconds())]
            )).isEmpty
        }
    }
}
