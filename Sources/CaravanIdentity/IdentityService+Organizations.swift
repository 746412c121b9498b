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
        let now = clock.nowMilliseconds()
        let orgID = Identifier.make("org")
        return try await changeCredentials { executor in
            do {
                try await store.insertOrganization(id: orgID, name: name, at: now, in: executor)
            } catch let error as StorageError where error.code == .conflict {
                throw CaravanError(.conflict, "An organization with this name exists; choose another name.")
            }
            let email = try await store.email(userID: userID, in: executor) ?? ""
            try await store.insertMembership(
                orgID: orgID,
                userID: userID,
                role: Role.owner.rawValue,
                at: now,
                in: executor
            )
            return Membership(orgID: orgID, orgName: name, userID: userID, email: email, role: .owner, createdAt: now)
        }
    }

    /// The organization's name and settings.
    public func organization(orgID: String) async throws -> (Organization, rateLimitPerMinute: Int?) {
        let found = try await database.read { executor in try await store.organization(id: orgID, in: executor) }
        guard let found else { throw CaravanError.notFound("The organization '\(orgID)'") }
        return found
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
        let now = clock.nowMilliseconds()
        try await changeCredentials { executor in
            do {
                if let name { try await store.renameOrganization(id: orgID, to: name, at: now, in: executor) }
            } catch let error as StorageError where error.code == .conflict {
                throw CaravanError(.conflict, "An organization with this name exists; choose another name.")
            }
            if case .some(let limit) = rateLimit {
                try await store.setRateLimit(orgID: orgID, perMinute: limit, at: now, in: executor)
            }
        }
    }

    /// Deletes an organization and everything it owns.
    public func deleteOrganization(orgID: String) async throws {
        try await changeCredentials { executor in
            try await store.deleteOrganization(id: orgID, in: executor)
        }
    }

    // MARK: Members

    public func members(orgID: String, after: String?, limit: Int) async throws -> [Membership] {
        try await database.read { executor in
            try await store.members(orgID: orgID, after: after, limit: limit, in: executor)
        }
    }

    public func member(orgID: String, userID: String) async throws -> Membership {
        let member = try await database.read { executor in
            try await store.member(orgID: orgID, userID: userID, in: executor)
        }
        guard let member else { throw CaravanError.notFound("The member '\(userID)'") }
        return member
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
        let now = clock.nowMilliseconds()
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
            if try await store.isMember(orgID: orgID, email: email, in: executor) {
                throw CaravanError(.conflict, "\(email) is already a member.")
            }
            try await store.insertInvitation(invitation, tokenHash: OpaqueToken.digest(token), in: executor)
        }
        return (invitation, token)
    }

    /// A signed-in user joins the organization that invited their email.
    public func acceptInvitation(userID: String, token: String?) async throws -> Membership {
        let now = clock.nowMilliseconds()
        return try await changeCredentials { executor in
            guard let token,
                let invitation = try await store.openInvitation(
                    tokenHash: OpaqueToken.digest(token),
                    userID: userID,
                    at: now,
                    in: executor
                )
            else {
                throw CaravanError.validation(
                    "/token",
                    "The invitation is not valid for this account, or it expired or was used."
                )
            }
            let orgID = invitation.orgID
            try await store.markInvitationAccepted(id: invitation.id, at: now, in: executor)
            do {
                try await store.insertMembership(
                    orgID: orgID,
                    userID: userID,
                    role: invitation.role,
                    at: now,
                    in: executor
                )
            } catch let error as StorageError where error.code == .conflict {
                throw CaravanError(.conflict, "You are already a member of this organization.")
            }
            guard let member = try await store.member(orgID: orgID, userID: userID, in: executor) else {
                throw CaravanError(.internal, "The membership just written is missing.")
            }
            return member
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
            let current = try await lockedRole(orgID: orgID, userID: userID, executor: executor)
            try Self.checkGrant(current, by: actor, pointer: "/role")
            if current == .owner, role != .owner {
                try await requireAnotherOwner(orgID: orgID, executor: executor)
            }
            try await store.setRole(orgID: orgID, userID: userID, to: role, at: clock.nowMilliseconds(), in: executor)
        }
        return try await member(orgID: orgID, userID: userID)
    }

    /// Removes a member (not one whose role exceeds the actor's, nor the last owner), ends their sessions and
    /// revokes the API keys they created in the organization.
    public func removeMember(orgID: String, userID: String, by actor: Principal) async throws {
        try await changeCredentials { executor in
            let current = try await lockedRole(orgID: orgID, userID: userID, executor: executor)
            try Self.checkGrant(current, by: actor, pointer: "/role")
            if current == .owner { try await requireAnotherOwner(orgID: orgID, executor: executor) }
            let now = clock.nowMilliseconds()
            try await store.deleteMembership(orgID: orgID, userID: userID, in: executor)
            try await store.revokeSessions(userID: userID, at: now, in: executor)
            try await store.revokeAPIKeys(orgID: orgID, createdBy: userID, at: now, in: executor)
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

    func lockedRole(orgID: String, userID: String, executor: any SQLExecutor) async throws -> Role {
        guard let role = try await store.lockedRole(orgID: orgID, userID: userID, in: executor) else {
            throw CaravanError.notFound("The member '\(userID)'")
        }
        return role
    }

    func requireAnotherOwner(orgID: String, executor: any SQLExecutor) async throws {
        try await store.lockOwners(orgID: orgID, in: executor)
        guard try await store.ownerCount(orgID: orgID, in: executor) > 1 else {
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
        let now = clock.nowMilliseconds()
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
            try await store.insertAPIKey(record, digest: OpaqueToken.digest(key), in: executor)
        }
        return (record, key)
    }

    /// The organization's live keys.
    public func apiKeys(orgID: String, after: String?, limit: Int) async throws -> [APIKey] {
        try await database.read { executor in
            try await store.apiKeys(orgID: orgID, after: after, limit: limit, in: executor)
        }
    }

    /// Revokes a key at once.
    /// - Returns: whether a live key with this id existed in the organization.
    public func revokeAPIKey(orgID: String, id: String) async throws -> Bool {
        try await changeCredentials { executor in
            try await store.revokeAPIKey(orgID: orgID, id: id, at: clock.nowMilliseconds(), in: executor)
        }
    }
}
