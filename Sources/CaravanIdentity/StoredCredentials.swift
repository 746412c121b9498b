/// What authentication reads of the database, and keeps in a `ClusterCache`.

/// What the database says of an API key, as authentication needs it.
struct StoredAPIKey: Sendable {
    var id: String
    var orgID: String
    var role: Role?
    var createdBy: String
    var expiresAt: Int64?
    var revokedAt: Int64?
    var lastUsedAt: Int64?
    var rateLimitPerMinute: Int?
    /// The creator's current role in the key's organization; `nil` once they are no longer a member.
    var creatorRole: Role?
}

/// What the database says of a session, as authentication needs it.
struct StoredSession: Sendable {
    struct Membership: Sendable {
        var orgID: String
        var role: Role
        var rateLimitPerMinute: Int?
    }

    var userID: String
    var revokedAt: Int64?
    var expiresAt: Int64
    var memberships: [Membership]
}

/// A credential as the cache keeps it.
enum StoredCredential: Sendable {
    case apiKey(StoredAPIKey)
    case session(StoredSession)
}
