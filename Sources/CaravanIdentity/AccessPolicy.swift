public import CaravanCore

/// A member's role in an organization, from least to most trusted.
public enum Role: String, Sendable, CaseIterable, Comparable, Codable {
    case viewer, developer, admin, owner

    public static func < (lhs: Role, rhs: Role) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }

    /// Parses a role named in a request body.
    public static func parse(_ text: String?, at pointer: String) throws(CaravanError) -> Role {
        guard let text, let role = Role(rawValue: text) else {
            throw CaravanError.validation(pointer, "role must be one of owner, admin, developer, viewer")
        }
        return role
    }
}

/// What an endpoint needs of the caller's role in the organization it acts in.
public enum Permission: String, Sendable, CaseIterable {
    /// Read workflows, runs, events, agents, members, usage.
    case read
    /// Write workflows, agents, threads; start, signal, cancel and retry runs.
    case write
    /// Read secret names (never values).
    case listSecrets
    /// Invite members, change roles, remove members.
    case manageMembers
    /// Create and revoke API keys.
    case manageAPIKeys
    /// Write and delete secrets.
    case manageSecrets
    /// Write providers and the organization's settings.
    case manageOrganization
    /// Read the audit log and verify it.
    case readAudit
    /// Delete the organization.
    case deleteOrganization
}

/// The one table that says which role may do what. Every endpoint names the permission it needs; nothing else in
/// the code decides access by role.
public enum AccessPolicy {
    /// The least role that holds each permission.
    public static let minimumRole: [Permission: Role] = [
        .read: .viewer,
        .write: .developer,
        .listSecrets: .developer,
        .manageMembers: .admin,
        .manageAPIKeys: .admin,
        .manageSecrets: .admin,
        .manageOrganization: .admin,
        .readAudit: .admin,
        .deleteOrganization: .owner,
    ]

    /// Whether `role` holds `permission`.
    public static func allows(_ role: Role, _ permission: Permission) -> Bool {
        guard let minimum = minimumRole[permission] else { return false }
        return role >= minimum
    }
}
