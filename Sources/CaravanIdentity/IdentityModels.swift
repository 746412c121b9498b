public import CaravanCore

/// A person who signs in.
public struct User: Sendable, Hashable {
    public var id: String
    public var email: String
    public var totpEnabled: Bool
    public var createdAt: Int64
}

/// A user's place in an organization.
public struct Membership: Sendable, Hashable {
    public var orgID: String
    public var orgName: String
    public var userID: String
    public var email: String
    public var role: Role
    public var createdAt: Int64
}

/// An API key as listed: never the key itself.
public struct APIKey: Sendable, Hashable {
    public var id: String
    public var orgID: String
    public var name: String
    public var role: Role
    /// The key's first characters, to recognise it.
    public var prefix: String
    public var createdBy: String
    public var createdAt: Int64
    public var expiresAt: Int64?
    public var lastUsedAt: Int64?
}

/// An invitation to join an organization.
public struct Invitation: Sendable, Hashable {
    public var id: String
    public var orgID: String
    public var email: String
    public var role: Role
    public var invitedBy: String
    public var createdAt: Int64
    public var expiresAt: Int64
}

/// The tokens of a signed-in session.
public struct SessionTokens: Sendable, Hashable {
    public var accessToken: String
    public var refreshToken: String
    /// Seconds until the access token expires.
    public var expiresIn: Int
}

/// Who is calling, once their credentials are checked, and the organization they act in.
public struct Principal: Sendable, Hashable {
    public enum Credential: Sendable, Hashable {
        case session(userID: String, sessionID: String)
        case apiKey(id: String)
    }

    public var credential: Credential
    /// The user, for sessions; the key's creator, for API keys.
    public var userID: String
    /// The organization acted in, and the role there (for a key, the key's role). `nil` for a session that names
    /// no organization and has none or several.
    public var orgID: String?
    public var role: Role?
    /// The requests per minute this credential may make, from its organization's settings (`nil`: the default).
    public var rateLimitPerMinute: Int?

    /// Who acted, as approvals and signals record it: `user:<id>` or `api_key:<id>`.
    public var actorName: String {
        switch credential {
        case .session(let userID, _): "user:\(userID)"
        case .apiKey(let id): "api_key:\(id)"
        }
    }

    /// The id requests are counted under for rate limiting.
    public var rateLimitKey: String {
        switch credential {
        case .session(let userID, _): "user:\(userID)"
        case .apiKey(let id): "key:\(id)"
        }
    }
}

extension CaravanError.Code {
    /// Login needs a TOTP code (or a recovery code) from a user with MFA enrolled.
    public static let mfaRequired = CaravanError.Code("mfa_required", status: 401)
}
