public import CaravanCore
public import CaravanStorage

/// A secret's name and times: everything about a secret that is ever shown.
public struct SecretSummary: Sendable, Hashable {
    public var name: String
    /// The hosts the secret may be sent to (`nil`: any that the egress policy allows).
    public var allowedHosts: [String]?
    public var createdAt: Int64
    public var updatedAt: Int64
}

/// Organization secrets, sealed at rest. Every call is scoped by organization; values leave only through
/// `resolve`, for the engine to put into outgoing requests.
public struct SecretStore: Sendable {
    /// The longest secret value, in bytes.
    public static let maxValueBytes = 65_536

    let database: any Database
    let box: SecretBox

    let clock: WallClock

    public init(database: any Database, box: SecretBox, clock: WallClock = .system) {
        self.clock = clock
        self.database = database
        self.box = box
    }

    /// Checks a secret name: a letter or `_`, then letters, digits or `_`, at most 64 characters, so that it can
    /// be written `{{ secrets.NAME }}`.
    public static func validate(name: String) throws(CaravanError) {
        let bytes = Array(name.utf8)
        let valid =
            !bytes.isEmpty && bytes.count <= 64
            && bytes.enumerated().allSatisfy { index, byte in
                let letter = (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F
                return letter || (index > 0 && byte >= 0x30 && byte <= 0x39)
            }
        guard valid else {
            throw CaravanError.validation(
                "/name",
                "A secret name is 1 to 64 letters, digits or '_', not starting with a digit."
            )
        }
    }

    static func context(orgID: String, name: String) -> String { "secret:\(orgID):\(name)" }

    /// Checks a list of host patterns: host names (`api.example.com`) or a wildcard for subdomains
    /// (`*.example.com`), at most 32.
    public static func validate(allowedHosts: [String]) throws(CaravanError) {
        guard allowedHosts.count <= 32 else { throw CaravanError.validation("/allowed_hosts", "at most 32 hosts") }
        for (index, pattern) in allowedHosts.enumerated() {
            let host = pattern.hasPrefix("*.") ? String(pattern.dropFirst(2)) : pattern
            let valid =
                !host.isEmpty && host.utf8.count <= 253
                && host.utf8.allSatisfy { byte in
                    (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                        || byte == 0x2D
                        || byte == 0x2E || byte == 0x3A
                }
            if !valid {
                throw CaravanError.validation("/allowed_hosts/\(index)", "must be a host name, or *. and a domain")
            }
        }
    }

    /// Creates or replaces a secret.
    /// - Parameter allowedHosts: the hosts it may be sent to (see `SecretHosts`); `nil`: any.
    /// - Returns: whether the secret is new.
    public func put(orgID: String, name: String, value: String, allowedHosts: [String]? = nil) async throws -> Bool {
        try Self.validate(name: name)
        if let allowedHosts { try Self.validate(allowedHosts: allowedHosts) }
        let hosts: SQLValue =
            allowedHosts.map { .text(JSONValue.array($0.map { .string($0.lowercased()) }).canonicalText) } ?? .null
        guard value.utf8.count <= Self.maxValueBytes else {
            throw CaravanError.validation("/value", "A secret value is at most \(Self.maxValueBytes) bytes.")
        }
        let sealed = box.seal(Array(value.utf8), context: Self.context(orgID: orgID, name: name))
        let now = clock.nowMilliseconds()
        return try await database.withTransaction { executor in
            let rows = try await executor.query(
                """
                INSERT INTO secrets (org_id, name, sealed, allowed_hosts, created_at, updated_at) VALUES ($1, $2, $3, $5, $4, $4)
                ON CONFLICT (org_id, name) DO UPDATE
                SET sealed = excluded.sealed, allowed_hosts = excluded.allowed_hosts, updated_at = excluded.updated_at
                RETURNING created_at
                """,
                [.text(orgID), .text(name), .text(sealed), .int(now), hosts]
            )
            return try rows.first?.int("created_at") == now
        }
    }

    /// The organization's secrets, by name.
    public func list(orgID: String, after: String?, limit: Int) async throws -> [SecretSummary] {
        try await database.read { executor in
            let rows = try await executor.query(
                "SELECT name, allowed_hosts, created_at, updated_at FROM secrets WHERE org_id = $1 AND name > $2 ORDER BY name LIMIT $3",
                [.text(orgID), .text(after ?? ""), .int(Int64(limit))]
            )
            var result: [SecretSummary] = []
            for row in rows {
                result.append(
                    SecretSummary(
                        name: try row.string("name"),
                        allowedHosts: Self.hosts(try row.optionalString("allowed_hosts")),
                        createdAt: try row.int("created_at"),
                        updatedAt: try row.int("updated_at")
                    )
                )
            }
            return result
        }
    }

    /// Deletes a secret.
    /// - Returns: whether it existed.
    public func delete(orgID: String, name: String) async throws -> Bool {
        try await database.withTransaction { executor in
            !(try await executor.query(
                "DELETE FROM secrets WHERE org_id = $1 AND name = $2 RETURNING name",
                [.text(orgID), .text(name)]
            )).isEmpty
        }
    }

    static func hosts(_ text: String?) -> [String]? {
        guard let text, let array = (try? JSONValue(parsing: Array(text.utf8)))?.arrayValue else { return nil }
        return array.compactMap(\.stringValue)
    }

    /// The host lists of those of `names` that have one.
    public func allowedHosts(orgID: String, names: Set<String>) async throws -> [String: [String]] {
        var hosts: [String: [String]] = [:]
        for row in try await rows(
            orgID: orgID,
            names: names,
            columns: "name, allowed_hosts",
            where: "allowed_hosts IS NOT NULL"
        ) {
            hosts[try row.string("name")] = Self.hosts(try row.optionalString("allowed_hosts")) ?? []
        }
        return hosts
    }

    /// The values of `names` in the organization; a name without a secret is absent from the answer.
    public func resolve(orgID: String, names: Set<String>) async throws -> [String: String] {
        var values: [String: String] = [:]
        for row in try await rows(orgID: orgID, names: names, columns: "name, sealed") {
            let name = try row.string("name")
            let bytes = try box.open(try row.string("sealed"), context: Self.context(orgID: orgID, name: name))
            values[name] = String(decoding: bytes, as: UTF8.self)
        }
        return values
    }

    /// `columns` of the organization's secrets named in `names` (and matching `condition`).
    private func rows(
        orgID: String,
        names: Set<String>,
        columns: String,
        where condition: String = "TRUE"
    ) async throws -> [SQLRow] {
        guard !names.isEmpty else { return [] }
        let sorted = names.sorted()
        let placeholders = sorted.indices.map { "$\($0 + 2)" }.joined(separator: ", ")
        return try await database.read { executor in
            try await executor.query(
                "SELECT \(columns) FROM secrets WHERE org_id = $1 AND \(condition) AND name IN (\(placeholders))",
                [.text(orgID)] + sorted.map { .text($0) }
            )
        }
    }
}
