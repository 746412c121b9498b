public import CaravanCore
public import CaravanStorage
public import CaravanVault
import Foundation

/// Accounts and sessions: signup, login with optional TOTP, refresh-token rotation, logout, password change,
/// MFA enrolment; and turning a bearer credential into a `Principal`. Knows nothing of HTTP.
public struct IdentityService: Sendable {
    public struct Settings: Sendable {
        /// Whether anyone may sign up after the first user (else only with an invitation).
        public var openSignup = false
        /// How long a session (its refresh tokens) lives without signing in again.
        public var sessionLifetime: Duration = .seconds(30 * 86_400)
        /// The operator's requests per minute per credential (0: none): organizations may only set a lower limit.
        public var rateLimitCeiling = 0
        public init() {}
    }

    let database: any Database
    let hasher: PasswordHasher
    let tokens: AccessTokens
    let box: SecretBox
    let settings: Settings
    public let throttle: AuthThrottle
    /// The wall clock of every stored time and of every expiry decided here.
    let clock: WallClock
    let store = IdentityStore()
    /// Authenticated credentials, by key digest or `session:<id>`, so that a request need not read them.
    let credentials: ClusterCache<StoredCredential>

    /// - Parameters:
    ///   - signals: how credential changes reach the other nodes; credentials are kept in memory while they are
    ///     heard.
    ///   - clock: the wall clock of stored times, expiries and TOTP steps.
    public init(
        database: any Database,
        hasher: PasswordHasher,
        tokens: AccessTokens,
        box: SecretBox,
        throttle: AuthThrottle,
        signals: ClusterSignals,
        settings: Settings,
        clock: WallClock = .system
    ) {
        self.database = database
        self.credentials = ClusterCache(signals: signals, topic: Self.credentialsChanged)
        self.hasher = hasher
        self.tokens = tokens
        self.box = box
        self.throttle = throttle
        self.settings = settings
        self.clock = clock
    }

    // MARK: Signup and sessions

    /// Checks and normalizes an email address (trimmed, lowercased).
    public static func normalize(email: String?, pointer: String = "/email") throws(CaravanError) -> String {
        let email = (email ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard email.utf8.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
            !email.contains(where: { $0.isWhitespace || $0.isNewline })
        else { throw CaravanError.validation(pointer, "email must be an email address") }
        return email
    }

    static func checkOrganizationName(_ name: String?, pointer: String) throws(CaravanError) -> String {
        let name = (name ?? "").trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= 100,
            !name.contains(where: { $0.isNewline || $0.asciiValue.map { $0 < 32 } == true })
        else {
            throw CaravanError.validation(pointer, "The organization name must be 1 to 100 characters on one line.")
        }
        return name
    }

    /// Creates a user. The first user may always sign up (and owns a new organization, or the default one that
    /// holds data from before accounts existed); later users need an invitation unless signup is open.
    /// - Returns: the user, the organization they act in, their role there, and session tokens.
    public func signup(
        email rawEmail: String?,
        password: String?,
        organization: String?,
        invitation: String?
    ) async throws -> (user: User, membership: Membership, tokens: SessionTokens) {
        let email = try Self.normalize(email: rawEmail)
        guard let password else { throw CaravanError.validation("/password", "password is required") }
        try PasswordPolicy.check(password, email: email)
        let invitationHash = invitation.map(OpaqueToken.digest)
        let orgName: String? =
            invitation == nil ? try Self.checkOrganizationName(organization, pointer: "/organization") : nil
        let passwordHash = try await hasher.hash(password)
        let now = clock.nowMilliseconds()
        let userID = Identifier.make("usr")
        let openSignup = settings.openSignup
        let membership = try await changeCredentials { executor -> Membership in
            try await store.lockSignups(in: executor)
            let hasUsers = try await store.hasUsers(in: executor)
            var orgID: String
            var role = Role.owner
            var name = orgName ?? ""
            if let invitationHash {
                guard let found = try await store.openInvitation(tokenHash: invitationHash, at: now, in: executor),
                    found.email == email
                else {
                    throw CaravanError.validation(
                        "/invitation",
                        "The invitation is not valid for this email, or it expired or was used."
                    )
                }
                orgID = found.invitation.orgID
                role = try Role.parse(found.invitation.role, at: "/invitation")
                name = found.orgName
                try await store.markInvitationAccepted(id: found.invitation.id, at: now, in: executor)
            } else {
                guard !hasUsers || openSignup else {
                    throw CaravanError(
                        .forbidden,
                        "Signup needs an invitation: ask an admin of your organization to invite you."
                    )
                }
                orgID = Identifier.make("org")
                // The first user adopts the organization that holds what was created before accounts existed.
                if !hasUsers, try await store.isUnclaimedOrganization(id: Organization.defaultID, in: executor) {
                    orgID = Organization.defaultID
                    try await store.renameOrganization(id: orgID, to: name, at: now, in: executor)
                } else {
                    try await store.insertOrganization(id: orgID, name: name, at: now, in: executor)
                }
            }
            do {
                try await store.insertUser(id: userID, email: email, passwordHash: passwordHash, at: now, in: executor)
            } catch let error as StorageError where error.code == .conflict {
                throw CaravanError(.conflict, "An account with this email exists; sign in instead.")
            }
            try await store.insertMembership(orgID: orgID, userID: userID, role: role.rawValue, at: now, in: executor)
            return Membership(orgID: orgID, orgName: name, userID: userID, email: email, role: role, createdAt: now)
        }
        let session = try await startSession(userID: userID)
        return (User(id: userID, email: email, totpEnabled: false, createdAt: now), membership, session)
    }

    /// Checks a password (and TOTP or recovery code when MFA is enrolled) and starts a session.
    /// - Parameters:
    ///   - source: the client's address: the backoff after failures is kept per account and address.
    /// - Throws: `unauthenticated` for a wrong email or password (the same answer for both), `mfa_required`
    ///   when the code is missing, `rate_limited` during the backoff of this account from this address.
    public func login(
        email rawEmail: String?,
        password: String?,
        code: String?,
        source: String
    ) async throws -> (userID: String, tokens: SessionTokens) {
        let email = (rawEmail ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        let password = password ?? ""
        try await throttle.checkAccount(email, source: source)
        let account = try await database.read { executor in
            try await store.signInAccount(email: email, in: executor)
        }
        guard let account, password.utf8.count <= 4 * PasswordPolicy.maximumLength else {
            try await hasher.verifyNothing(password)
            try await throttle.recordFailure(email, source: source)
            throw CaravanError(.unauthenticated, "The email or password is wrong.")
        }
        guard try await hasher.verify(password, hash: account.passwordHash) else {
            try await throttle.recordFailure(email, source: source)
            throw CaravanError(.unauthenticated, "The email or password is wrong.")
        }
        let userID = account.userID
        if account.totpEnabled {
            guard let code, !code.isEmpty else {
                throw CaravanError(.mfaRequired, "This account uses two-factor authentication: send the code as totp.")
            }
            guard try await consumeSecondFactor(userID: userID, code: code) else {
                try await throttle.recordFailure(email, source: source)
                throw CaravanError(.unauthenticated, "The two-factor code is wrong or was already used.")
            }
        }
        try await throttle.clearFailures(email, source: source)
        return (userID, try await startSession(userID: userID))
    }

    func startSession(userID: String) async throws -> SessionTokens {
        let sessionID = Identifier.make("ses")
        let refresh = OpaqueToken.make(prefix: "cvr_")
        let now = clock.nowMilliseconds()
        let expires = now + settings.sessionLifetime.components.seconds * 1000
        try await database.withTransaction { executor in
            try await store.insertSession(
                id: sessionID,
                userID: userID,
                refreshTokenHash: OpaqueToken.digest(refresh),
                at: now,
                expiresAt: expires,
                in: executor
            )
        }
        return SessionTokens(
            accessToken: try await tokens.issue(userID: userID, sessionID: sessionID),
            refreshToken: refresh,
            expiresIn: Int(tokens.lifetime.components.seconds)
        )
    }

    /// Exchanges a refresh token for new tokens. Each refresh token works once: presenting a used one again
    /// (a sign that it was stolen) revokes the whole session.
    public func refresh(_ token: String?) async throws -> (userID: String, tokens: SessionTokens) {
        guard let token, !token.isEmpty, token.utf8.count <= 256 else {
            throw CaravanError(.unauthenticated, "The refresh token is not valid.")
        }
        let now = clock.nowMilliseconds()
        let next = OpaqueToken.make(prefix: "cvr_")
        let outcome = try await changeCredentials { executor -> Result<(String, String), CaravanError> in
            let hash = OpaqueToken.digest(token)
            guard let stored = try await store.refreshToken(hash: hash, in: executor) else {
                return .failure(CaravanError(.unauthenticated, "The refresh token is not valid."))
            }
            let sessionID = stored.sessionID
            guard stored.revokedAt == nil, stored.expiresAt > now else {
                return .failure(CaravanError(.unauthenticated, "The session has ended; sign in again."))
            }
            guard stored.usedAt == nil else {
                try await store.revokeSession(id: sessionID, at: now, in: executor)
                return .failure(
                    CaravanError(
                        .unauthenticated,
                        "The refresh token was already used; the session is revoked. Sign in again."
                    )
                )
            }
            try await store.markRefreshTokenUsed(hash: hash, at: now, in: executor)
            try await store.insertRefreshToken(
                hash: OpaqueToken.digest(next),
                sessionID: sessionID,
                at: now,
                in: executor
            )
            return .success((stored.userID, sessionID))
        }
        let (userID, sessionID) = try outcome.get()
        return (
            userID,
            SessionTokens(
                accessToken: try await tokens.issue(userID: userID, sessionID: sessionID),
                refreshToken: next,
                expiresIn: Int(tokens.lifetime.components.seconds)
            )
        )
    }

    /// Ends a session: its access and refresh tokens stop working at once.
    public func logout(sessionID: String) async throws {
        try await changeCredentials { executor in
            try await store.revokeSession(id: sessionID, at: clock.nowMilliseconds(), in: executor)
        }
    }

    /// Changes a password after checking the current one; every session of the user ends, and a new one starts.
    public func changePassword(userID: String, current: String?, new: String?) async throws -> SessionTokens {
        let stored = try await database.read { executor in try await store.password(userID: userID, in: executor) }
        guard let stored, try await hasher.verify(current ?? "", hash: stored.hash) else {
            throw CaravanError.validation("/current_password", "The current password is wrong.")
        }
        guard let new else { throw CaravanError.validation("/new_password", "new_password is required") }
        try PasswordPolicy.check(new, email: stored.email, pointer: "/new_password")
        let hash = try await hasher.hash(new)
        let now = clock.nowMilliseconds()
        try await changeCredentials { executor in
            try await store.updatePassword(userID: userID, hash: hash, at: now, in: executor)
            try await store.revokeSessions(userID: userID, at: now, in: executor)
        }
        return try await startSession(userID: userID)
    }

    // MARK: Credentials

    /// Turns a bearer credential into a principal acting in an organization.
    /// - Parameters:
    ///   - bearer: the token after `Bearer `: an API key (`cvk_…`) or a session access token.
    ///   - organization: the organization the caller asks to act in (the `{org}` of the path, or the
    ///     `Caravan-Organization` header); a user not a member of it is answered `not_found`.
    /// - Throws: `unauthenticated` for anything but a live credential.
    public func authenticate(bearer: String, organization: String?) async throws -> Principal {
        let now = clock.nowMilliseconds()
        if bearer.hasPrefix("cvk_") {
            let digest = OpaqueToken.digest(bearer)
            let key: StoredAPIKey?
            if case .apiKey(let found) = try await credentials.value(
                digest,
                load: { try await loadAPIKey(digest: digest).map { .apiKey($0) } }
            ) {
                key = found
            } else {
                key = nil
            }
            // A key never acts above its creator's current role in its organization, and a key whose creator is no
            // longer a member acts as no one: demoting or removing a person takes effect on their keys at once.
            guard let key, key.revokedAt == nil, key.expiresAt.map({ $0 > now }) ?? true,
                let keyRole = key.role, let creatorRole = key.creatorRole
            else { throw CaravanError(.unauthenticated, "The API key is not valid, expired or was revoked.") }
            if let organization, organization != key.orgID {
                throw CaravanError.notFound("The organization '\(organization)'")
            }
            if now - (key.lastUsedAt ?? 0) > 60_000 {
                try await database.withTransaction { executor in
                    try await store.touchAPIKey(id: key.id, at: now, in: executor)
                }
                credentials.update(digest) {
                    if case .apiKey(var key) = $0 {
                        key.lastUsedAt = now
                        $0 = .apiKey(key)
                    }
                }
            }
            return Principal(
                credential: .apiKey(id: key.id),
                userID: key.createdBy,
                orgID: key.orgID,
                role: Self.effectiveRole(key: keyRole, creator: creatorRole),
                rateLimitPerMinute: key.rateLimitPerMinute
            )
        }
        guard let verified = await tokens.verify(bearer) else {
            throw CaravanError(.unauthenticated, "The access token is not valid or expired; refresh it or sign in.")
        }
        let cacheID = "session:" + verified.sessionID
        let session: StoredSession?
        if case .session(let found) = try await credentials.value(
            cacheID,
            load: {
                try await loadSession(id: verified.sessionID, userID: verified.userID).map { .session($0) }
            }
        ), found.userID == verified.userID {
            session = found
        } else {
            session = nil
        }
        guard let session, session.revokedAt == nil, session.expiresAt > now else {
            throw CaravanError(.unauthenticated, "The session has ended; sign in again.")
        }
        var principal = Principal(
            credential: .session(userID: verified.userID, sessionID: verified.sessionID),
            userID: verified.userID,
            orgID: nil,
            role: nil,
            rateLimitPerMinute: nil
        )
        let chosen: StoredSession.Membership?
        if let organization {
            guard let match = session.memberships.first(where: { $0.orgID == organization }) else {
                throw CaravanError.notFound("The organization '\(organization)'")
            }
            chosen = match
        } else {
            chosen = session.memberships.count == 1 ? session.memberships[0] : nil
        }
        if let chosen {
            principal.orgID = chosen.orgID
            principal.role = chosen.role
            principal.rateLimitPerMinute = chosen.rateLimitPerMinute
        }
        return principal
    }

    /// Reads an API key by its digest.
    private func loadAPIKey(digest: String) async throws -> StoredAPIKey? {
        try await database.read { executor in try await store.apiKey(digest: digest, in: executor) }
    }

    /// Reads a session and its user's memberships.
    private func loadSession(id: String, userID: String) async throws -> StoredSession? {
        try await database.read { executor in try await store.session(id: id, userID: userID, in: executor) }
    }

    /// Drops the credentials this node keeps in memory, after a change written to the database directly rather
    /// than through this service (which forgets them on its own).
    public func forgetCredentials() {
        credentials.invalidateAll()
    }

    /// The topic of the signal that tells every node to forget the credentials it keeps.
    static let credentialsChanged = "identity"

    /// Runs a change that can alter how a credential authenticates (revoking, changing a role, removing a member,
    /// ending a session, changing a rate limit) in one transaction, so that it holds on the very next request on
    /// every node (see `ClusterCache.change`).
    func changeCredentials<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await credentials.change(in: database, body)
    }

    /// The account with `email` and the organizations it belongs to: where a failed sign-in on it is audited.
    /// - Returns: `nil` for an email of no account.
    public func accountOrganizations(email rawEmail: String?) async throws -> (userID: String, orgIDs: [String])? {
        let email = (rawEmail ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        return try await database.read { executor in try await store.account(email: email, in: executor) }
    }

    /// The role an API key acts with: its own, capped by its creator's current role in the organization.
    public static func effectiveRole(key: Role, creator: Role) -> Role {
        min(key, creator)
    }

    /// A user and their memberships.
    public func me(userID: String) async throws -> (User, [Membership]) {
        try await database.read { executor in
            guard let user = try await store.user(id: userID, in: executor) else {
                throw CaravanError(.unauthenticated, "The account no longer exists.")
            }
            return (user, try await store.memberships(of: user, in: executor))
        }
    }
}
