import CaravanCore
import CaravanStorage

/// Organizations, members, invitations and API keys. Every read is scoped by organization.
extension IdentityStore {
    // MARK: Organizations

    /// Inserts an organization.
    /// - Throws: `StorageError` `.conflict` when the name is taken.
    func insertOrganization(id: String, name: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
            [.text(id), .text(name), .int(now)]
        )
    }

    /// The organization `id` and the request limit it sets, or `nil`.
    func organization(
        id: String,
        in executor: any SQLExecutor
    ) async throws -> (
        Organization, rateLimitPerMinute: Int?
    )? {
        guard
            let row = try await executor.queryFirst(
                "SELECT id, name, created_at, updated_at, rate_limit_per_minute FROM organizations WHERE id = $1",
                [.text(id)]
            )
        else { return nil }
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

    /// Renames an organization.
    /// - Throws: `StorageError` `.conflict` when the name is taken.
    func renameOrganization(id: String, to name: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE organizations SET name = $2, updated_at = $3 WHERE id = $1",
            [.text(id), .text(name), .int(now)]
        )
    }

    /// Sets an organization's requests per minute (`nil`: the server's default).
    func setRateLimit(orgID: String, perMinute: Int?, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE organizations SET rate_limit_per_minute = $2, updated_at = $3 WHERE id = $1",
            [.text(orgID), .int(perMinute.map(Int64.init)), .int(now)]
        )
    }

    /// Deletes an organization; what it owns goes with it.
    func deleteOrganization(id: String, in executor: any SQLExecutor) async throws {
        try await executor.execute("DELETE FROM organizations WHERE id = $1", [.text(id)])
    }

    // MARK: Members

    static let memberColumns = "m.org_id, o.name AS org_name, m.user_id, u.email, m.role, m.created_at"
    static let memberJoins = "memberships m JOIN organizations o ON o.id = m.org_id JOIN users u ON u.id = m.user_id"

    /// Makes a user a member with `role` (as stored: a role's raw value).
    /// - Throws: `StorageError` `.conflict` when they already are one.
    func insertMembership(
        orgID: String,
        userID: String,
        role: String,
        at now: Int64,
        in executor: any SQLExecutor
    ) async throws {
        try await executor.execute(
            "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            [.text(orgID), .text(userID), .text(role), .int(now)]
        )
    }

    /// A page of the organization's members, in user id order after `after`.
    func members(orgID: String, after: String?, limit: Int, in executor: any SQLExecutor) async throws -> [Membership] {
        try await executor.query(
            "SELECT \(Self.memberColumns) FROM \(Self.memberJoins) WHERE m.org_id = $1 AND m.user_id > $2 ORDER BY m.user_id LIMIT $3",
            [.text(orgID), .text(after ?? ""), .int(Int64(limit))]
        ).map(Self.decodeMembership)
    }

    /// The membership of `userID` in `orgID`, or `nil`.
    func member(orgID: String, userID: String, in executor: any SQLExecutor) async throws -> Membership? {
        guard
            let row = try await executor.queryFirst(
                "SELECT \(Self.memberColumns) FROM \(Self.memberJoins) WHERE m.org_id = $1 AND m.user_id = $2",
                [.text(orgID), .text(userID)]
            )
        else { return nil }
        return try Self.decodeMembership(row)
    }

    /// The memberships of `user`, in organization id order.
    func memberships(of user: User, in executor: any SQLExecutor) async throws -> [Membership] {
        try await executor.query(
            """
            SELECT m.org_id, o.name, m.role, m.created_at FROM memberships m JOIN organizations o ON o.id = m.org_id
            WHERE m.user_id = $1 ORDER BY m.org_id
            """,
            [.text(user.id)]
        ).map { row in
            Membership(
                orgID: try row.string("org_id"),
                orgName: try row.string("name"),
                userID: user.id,
                email: user.email,
                role: Role(rawValue: try row.string("role")) ?? .viewer,
                createdAt: try row.int("created_at")
            )
        }
    }

    /// Whether someone with `email` is a member of the organization.
    func isMember(orgID: String, email: String, in executor: any SQLExecutor) async throws -> Bool {
        try await executor.queryFirst(
            "SELECT 1 AS one FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND u.email = $2",
            [.text(orgID), .text(email)]
        ) != nil
    }

    /// A member's role, locking their membership until the transaction ends (on PostgreSQL); `nil` for no member.
    func lockedRole(orgID: String, userID: String, in executor: any SQLExecutor) async throws -> Role? {
        let lock = executor.dialect == .postgres ? " FOR UPDATE" : ""
        guard
            let row = try await executor.queryFirst(
                "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2\(lock)",
                [.text(orgID), .text(userID)]
            )
        else { return nil }
        return Role(rawValue: try row.string("role")) ?? .viewer
    }

    /// Serializes the changes to an organization's owners until the transaction ends (PostgreSQL; SQLite's writer
    /// is serial already).
    func lockOwners(orgID: String, in executor: any SQLExecutor) async throws {
        guard executor.dialect == .postgres else { return }
        try await executor.execute("SELECT pg_advisory_xact_lock(hashtext('owners:' || $1))", [.text(orgID)])
    }

    /// How many owners the organization has.
    func ownerCount(orgID: String, in executor: any SQLExecutor) async throws -> Int64 {
        try await executor.queryFirst(
            "SELECT COUNT(*) AS n FROM memberships WHERE org_id = $1 AND role = 'owner'",
            [.text(orgID)]
        )?.int("n") ?? 0
    }

    /// Changes a member's role.
    func setRole(
        orgID: String,
        userID: String,
        to role: Role,
        at now: Int64,
        in executor: any SQLExecutor
    )
        async throws
    {
        try await executor.execute(
            "UPDATE memberships SET role = $3, updated_at = $4 WHERE org_id = $1 AND user_id = $2",
            [.text(orgID), .text(userID), .text(role.rawValue), .int(now)]
        )
    }

    /// Removes a member.
    func deleteMembership(orgID: String, userID: String, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "DELETE FROM memberships WHERE org_id = $1 AND user_id = $2",
            [.text(orgID), .text(userID)]
        )
    }

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

    // MARK: Invitations

    /// Inserts an invitation, with the digest of its token.
    func insertInvitation(_ invitation: Invitation, tokenHash: String, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            """
            INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            [
                .text(invitation.id), .text(invitation.orgID), .text(invitation.email), .text(invitation.role.rawValue),
                .text(tokenHash), .text(invitation.invitedBy), .int(invitation.createdAt), .int(invitation.expiresAt),
            ]
        )
    }

    /// The open invitation whose token has `tokenHash`, if it was sent to the email of `userID`.
    func openInvitation(
        tokenHash: String,
        userID: String,
        at now: Int64,
        in executor: any SQLExecutor
    ) async throws -> OpenInvitation? {
        guard
            let row = try await executor.queryFirst(
                """
                SELECT i.id, i.org_id, i.role FROM invitations i JOIN users u ON u.email = i.email
                WHERE i.token_hash = $1 AND u.id = $2 AND i.accepted_at IS NULL AND i.expires_at > $3
                """,
                [.text(tokenHash), .text(userID), .int(now)]
            )
        else { return nil }
        return OpenInvitation(id: try row.string("id"), orgID: try row.string("org_id"), role: try row.string("role"))
    }

    /// Marks an invitation accepted.
    func markInvitationAccepted(id: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute("UPDATE invitations SET accepted_at = $2 WHERE id = $1", [.text(id), .int(now)])
    }

    // MARK: API keys

    /// Inserts an API key, with the digest of the key.
    func insertAPIKey(_ key: APIKey, digest: String, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            """
            INSERT INTO api_keys (id, org_id, name, role, key_hash, prefix, created_by, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            """,
            [
                .text(key.id), .text(key.orgID), .text(key.name), .text(key.role.rawValue), .text(digest),
                .text(key.prefix), .text(key.createdBy), .int(key.createdAt), .int(key.expiresAt),
            ]
        )
    }

    /// A page of the organization's live keys, in id order after `after`.
    func apiKeys(orgID: String, after: String?, limit: Int, in executor: any SQLExecutor) async throws -> [APIKey] {
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

    /// Revokes a live key of the organization.
    /// - Returns: whether there was one with this id.
    func revokeAPIKey(orgID: String, id: String, at now: Int64, in executor: any SQLExecutor) async throws -> Bool {
        !(try await executor.query(
            "UPDATE api_keys SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING id",
            [.text(orgID), .text(id), .int(now)]
        )).isEmpty
    }

    /// Revokes every live key `userID` created in the organization.
    func revokeAPIKeys(
        orgID: String,
        createdBy userID: String,
        at now: Int64,
        in executor: any SQLExecutor
    )
        async throws
    {
        try await executor.execute(
            "UPDATE api_keys SET revoked_at = $3 WHERE org_id = $1 AND created_by = $2 AND revoked_at IS NULL",
            [.text(orgID), .text(userID), .int(now)]
        )
    }
}
