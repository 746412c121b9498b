import CaravanCore
import CaravanStorage

/// An invitation neither accepted nor expired, as signing up or joining reads it.
struct OpenInvitation: Sendable {
    var id: String
    var orgID: String
    /// The role to grant, as stored.
    var role: String
}

/// What the database says of a refresh token and its session, as a refresh needs it.
struct StoredRefreshToken: Sendable {
    var sessionID: String
    var userID: String
    var usedAt: Int64?
    var revokedAt: Int64?
    var expiresAt: Int64
}

/// Reads and writes the identity tables: users and their second factors, sessions and refresh tokens, the
/// credentials authentication reads (here); organizations, members, invitations and API keys
/// (`IdentityStore+Organizations`); sign-in counters (`IdentityStore+Throttle`). Callers choose the transaction.
struct IdentityStore: Sendable {
    // MARK: Signup

    /// Serializes signups across nodes until the transaction ends, so that only one can be the first user
    /// (PostgreSQL; SQLite's writer is serial already).
    func lockSignups(in executor: any SQLExecutor) async throws {
        guard executor.dialect == .postgres else { return }
        try await executor.execute("SELECT pg_advisory_xact_lock(hashtext('caravan:signup'))", [])
    }

    /// Whether any user exists.
    func hasUsers(in executor: any SQLExecutor) async throws -> Bool {
        try await executor.queryFirst("SELECT id FROM users LIMIT 1", []) != nil
    }

    /// The open invitation whose token has `tokenHash`, with the email it was sent to and its organization's name.
    func openInvitation(
        tokenHash: String,
        at now: Int64,
        in executor: any SQLExecutor
    ) async throws -> (invitation: OpenInvitation, email: String, orgName: String)? {
        guard
            let row = try await executor.queryFirst(
                """
                SELECT i.id, i.org_id, i.email, i.role, o.name FROM invitations i JOIN organizations o ON o.id = i.org_id
                WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.expires_at > $2
                """,
                [.text(tokenHash), .int(now)]
            )
        else { return nil }
        return (
            OpenInvitation(id: try row.string("id"), orgID: try row.string("org_id"), role: try row.string("role")),
            try row.string("email"),
            try row.string("name")
        )
    }

    /// Whether the organization `id` exists and has no members (the default one, before the first user).
    func isUnclaimedOrganization(id: String, in executor: any SQLExecutor) async throws -> Bool {
        try await executor.queryFirst(
            "SELECT id FROM organizations WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM memberships WHERE org_id = $1)",
            [.text(id)]
        ) != nil
    }

    /// Inserts a user.
    /// - Throws: `StorageError` `.conflict` when the email is taken.
    func insertUser(
        id: String,
        email: String,
        passwordHash: String,
        at now: Int64,
        in executor: any SQLExecutor
    ) async throws {
        try await executor.execute(
            "INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            [.text(id), .text(email), .text(passwordHash), .int(now)]
        )
    }

    // MARK: Users

    /// The account signing in with `email`: its id, password hash and whether it uses TOTP.
    func signInAccount(
        email: String,
        in executor: any SQLExecutor
    ) async throws -> (userID: String, passwordHash: String, totpEnabled: Bool)? {
        guard
            let row = try await executor.queryFirst(
                "SELECT id, password_hash, totp_secret, totp_enabled, totp_last_step FROM users WHERE email = $1",
                [.text(email)]
            )
        else { return nil }
        return (try row.string("id"), try row.string("password_hash"), try row.bool("totp_enabled"))
    }

    /// A user's email and password hash.
    func password(userID: String, in executor: any SQLExecutor) async throws -> (email: String, hash: String)? {
        guard
            let row = try await executor.queryFirst(
                "SELECT email, password_hash FROM users WHERE id = $1",
                [.text(userID)]
            )
        else { return nil }
        return (try row.string("email"), try row.string("password_hash"))
    }

    /// Replaces a user's password hash.
    func updatePassword(userID: String, hash: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
            [.text(userID), .text(hash), .int(now)]
        )
    }

    /// A user's email, or `nil` when there is no such user.
    func email(userID: String, in executor: any SQLExecutor) async throws -> String? {
        try await executor.queryFirst("SELECT email FROM users WHERE id = $1", [.text(userID)])?.string("email")
    }

    /// The user with `id`, or `nil`.
    func user(id: String, in executor: any SQLExecutor) async throws -> User? {
        guard
            let row = try await executor.queryFirst(
                "SELECT id, email, totp_enabled, created_at FROM users WHERE id = $1",
                [.text(id)]
            )
        else { return nil }
        return User(
            id: try row.string("id"),
            email: try row.string("email"),
            totpEnabled: try row.bool("totp_enabled"),
            createdAt: try row.int("created_at")
        )
    }

    /// The account with `email` and the organizations it belongs to, in id order; `nil` for no account.
    func account(email: String, in executor: any SQLExecutor) async throws -> (userID: String, orgIDs: [String])? {
        let rows = try await executor.query(
            "SELECT u.id, m.org_id FROM users u LEFT JOIN memberships m ON m.user_id = u.id WHERE u.email = $1 ORDER BY m.org_id",
            [.text(email)]
        )
        guard let first = rows.first else { return nil }
        return (try first.string("id"), try rows.compactMap { try $0.optionalString("org_id") })
    }

    // MARK: Sessions

    /// Inserts a session and its first refresh token.
    func insertSession(
        id: String,
        userID: String,
        refreshTokenHash: String,
        at now: Int64,
        expiresAt: Int64,
        in executor: any SQLExecutor
    ) async throws {
        try await executor.execute(
            "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            [.text(id), .text(userID), .int(now), .int(expiresAt)]
        )
        try await insertRefreshToken(hash: refreshTokenHash, sessionID: id, at: now, in: executor)
    }

    /// Adds a refresh token to a session.
    func insertRefreshToken(hash: String, sessionID: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
            [.text(hash), .text(sessionID), .int(now)]
        )
    }

    /// The refresh token with `hash` and its session, or `nil`.
    func refreshToken(hash: String, in executor: any SQLExecutor) async throws -> StoredRefreshToken? {
        guard
            let row = try await executor.queryFirst(
                """
                SELECT r.session_id, r.used_at, s.user_id, s.revoked_at, s.expires_at FROM refresh_tokens r
                JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1
                """,
                [.text(hash)]
            )
        else { return nil }
        return StoredRefreshToken(
            sessionID: try row.string("session_id"),
            userID: try row.string("user_id"),
            usedAt: try row.optionalInt("used_at"),
            revokedAt: try row.optionalInt("revoked_at"),
            expiresAt: try row.int("expires_at")
        )
    }

    /// Marks a refresh token used.
    func markRefreshTokenUsed(hash: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1",
            [.text(hash), .int(now)]
        )
    }

    /// Ends a session, unless it already ended.
    func revokeSession(id: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            [.text(id), .int(now)]
        )
    }

    /// Ends every live session of a user.
    func revokeSessions(userID: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            [.text(userID), .int(now)]
        )
    }

    // MARK: Credentials

    /// The API key whose digest is `digest`, with its organization's rate limit and its creator's current role.
    func apiKey(digest: String, in executor: any SQLExecutor) async throws -> StoredAPIKey? {
        guard
            let row = try await executor.queryFirst(
                """
                SELECT k.id, k.org_id, k.role, k.created_by, k.expires_at, k.revoked_at, k.last_used_at, o.rate_limit_per_minute,
                    m.role AS creator_role
                FROM api_keys k JOIN organizations o ON o.id = k.org_id
                LEFT JOIN memberships m ON m.org_id = k.org_id AND m.user_id = k.created_by
                WHERE k.key_hash = $1
                """,
                [.text(digest)]
            )
        else { return nil }
        return StoredAPIKey(
            id: try row.string("id"),
            orgID: try row.string("org_id"),
            role: Role(rawValue: try row.string("role")),
            createdBy: try row.string("created_by"),
            expiresAt: try row.optionalInt("expires_at"),
            revokedAt: try row.optionalInt("revoked_at"),
            lastUsedAt: try row.optionalInt("last_used_at"),
            rateLimitPerMinute: (try row.optionalInt("rate_limit_per_minute")).map(Int.init),
            creatorRole: (try row.optionalString("creator_role")).flatMap(Role.init(rawValue:))
        )
    }

    /// Records when an API key was last used.
    func touchAPIKey(id: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute("UPDATE api_keys SET last_used_at = $2 WHERE id = $1", [.text(id), .int(now)])
    }

    /// The session `id` of `userID`, with the user's memberships (those of an unknown role left out).
    func session(id: String, userID: String, in executor: any SQLExecutor) async throws -> StoredSession? {
        let rows = try await executor.query(
            """
            SELECT m.org_id, m.role, o.rate_limit_per_minute, s.revoked_at, s.expires_at
            FROM sessions s LEFT JOIN memberships m ON m.user_id = s.user_id
            LEFT JOIN organizations o ON o.id = m.org_id
            WHERE s.id = $1 AND s.user_id = $2
            """,
            [.text(id), .text(userID)]
        )
        guard let first = rows.first else { return nil }
        var session = StoredSession(
            userID: userID,
            revokedAt: try first.optionalInt("revoked_at"),
            expiresAt: try first.int("expires_at"),
            memberships: []
        )
        for row in rows {
            guard let orgID = try row.optionalString("org_id"), let role = Role(rawValue: try row.string("role")) else {
                continue
            }
            session.memberships.append(
                .init(
                    orgID: orgID,
                    role: role,
                    rateLimitPerMinute: (try row.optionalInt("rate_limit_per_minute")).map(Int.init)
                )
            )
        }
        return session
    }

    // MARK: Second factors

    /// A user's email and whether TOTP is on.
    func totpState(userID: String, in executor: any SQLExecutor) async throws -> (email: String, enabled: Bool)? {
        guard
            let row = try await executor.queryFirst(
                "SELECT email, totp_enabled FROM users WHERE id = $1",
                [.text(userID)]
            )
        else { return nil }
        return (try row.string("email"), try row.bool("totp_enabled"))
    }

    /// A user's sealed TOTP secret and the last time step used; `nil` when the user has no secret.
    func totpSecret(userID: String, in executor: any SQLExecutor) async throws -> (sealed: String, lastStep: Int64)? {
        guard
            let row = try await executor.queryFirst(
                "SELECT totp_secret, totp_last_step FROM users WHERE id = $1",
                [.text(userID)]
            ), let sealed = try row.optionalString("totp_secret")
        else { return nil }
        return (sealed, try row.int("totp_last_step"))
    }

    /// Stores a new sealed TOTP secret, not yet in use.
    func setTOTPSecret(userID: String, sealed: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE users SET totp_secret = $2, totp_last_step = 0, updated_at = $3 WHERE id = $1",
            [.text(userID), .text(sealed), .int(now)]
        )
    }

    /// Turns TOTP on, with `step` used.
    func enableTOTP(userID: String, step: Int64, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE users SET totp_enabled = 1, totp_last_step = $2, updated_at = $3 WHERE id = $1",
            [.text(userID), .int(step), .int(now)]
        )
    }

    /// Uses up a TOTP time step.
    /// - Returns: whether `step` is later than the last used one (and is now the last).
    func useTOTPStep(userID: String, step: Int64, in executor: any SQLExecutor) async throws -> Bool {
        !(try await executor.query(
            "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2 RETURNING id",
            [.text(userID), .int(step)]
        )).isEmpty
    }

    /// Replaces a user's recovery codes with those of `digests`.
    func replaceRecoveryCodes(userID: String, digests: [String], in executor: any SQLExecutor) async throws {
        try await executor.execute("DELETE FROM recovery_codes WHERE user_id = $1", [.text(userID)])
        for digest in digests {
            try await executor.execute(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                [.text(userID), .text(digest)]
            )
        }
    }

    /// Uses up a recovery code.
    /// - Returns: whether the user had it unused.
    func useRecoveryCode(
        userID: String,
        digest: String,
        at now: Int64,
        in executor: any SQLExecutor
    ) async throws
        -> Bool
    {
        !(try await executor.query(
            "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL RETURNING user_id",
            [.text(userID), .text(digest), .int(now)]
        )).isEmpty
    }
}
