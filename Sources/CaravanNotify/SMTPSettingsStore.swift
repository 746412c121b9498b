public import CaravanCore
public import CaravanStorage

/// An organization's SMTP server: where notifications by email leave. The password is never here: only the name of
/// a vault secret that holds it, read when a message is sent.
public struct SMTPSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var security: SMTPSecurity
    public var username: String?
    /// The name of the secret (`/v1/secrets/{name}`) that holds the password.
    public var passwordSecret: String?
    /// The sender: `ops@example.com` or `Caravan <ops@example.com>`.
    public var from: String
    /// Skips certificate verification: only for test servers and self-signed certificates.
    public var insecureSkipVerify: Bool
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(
        host: String,
        port: Int,
        security: SMTPSecurity,
        username: String? = nil,
        passwordSecret: String? = nil,
        from: String,
        insecureSkipVerify: Bool = false,
        createdAt: Int64 = 0,
        updatedAt: Int64 = 0
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.passwordSecret = passwordSecret
        self.from = from
        self.insecureSkipVerify = insecureSkipVerify
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// The settings as the API shows them: the secret's name, never a password.
    public var json: JSONValue {
        [
            "host": .string(host), "port": .int(Int64(port)), "security": .string(security.rawValue),
            "username": username.map(JSONValue.string) ?? .null,
            "password_secret": passwordSecret.map(JSONValue.string) ?? .null, "from": .string(from),
            "insecure_skip_verify": .bool(insecureSkipVerify), "created_at": .string(Clock.rfc3339(createdAt)),
            "updated_at": .string(Clock.rfc3339(updatedAt)),
        ]
    }

    /// The problems with these settings, as field errors: a host name or address, a port, a valid sender, a
    /// username and secret name without line breaks.
    public func problems() -> [CaravanError.FieldError] {
        var errors: [CaravanError.FieldError] = []
        let hostBytes = Array(host.utf8)
        let validHost =
            !hostBytes.isEmpty && hostBytes.count <= 253
            && hostBytes.allSatisfy { byte in
                (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                    || byte == 0x2D || byte == 0x2E || byte == 0x3A || byte == 0x5B || byte == 0x5D
            }
        if !validHost { errors.append(.init(pointer: "/host", detail: "must be a host name or an IP address")) }
        if !(1...65_535).contains(port) { errors.append(.init(pointer: "/port", detail: "must be from 1 to 65535")) }
        if EmailAddress.bare(from) == nil || from.utf8.count > 320 {
            errors.append(.init(pointer: "/from", detail: "must be an address such as ops@example.com"))
        }
        if let username,
            username.isEmpty || username.utf8.count > 256
                || username.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
        {
            errors.append(.init(pointer: "/username", detail: "must be 1 to 256 bytes on one line"))
        }
        if let passwordSecret {
            let bytes = Array(passwordSecret.utf8)
            let valid =
                !bytes.isEmpty && bytes.count <= 64
                && bytes.enumerated().allSatisfy { index, byte in
                    let letter = (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F
                    return letter || (index > 0 && byte >= 0x30 && byte <= 0x39)
                }
            if !valid { errors.append(.init(pointer: "/password_secret", detail: "must name a secret")) }
            if username == nil {
                errors.append(.init(pointer: "/username", detail: "is required with password_secret"))
            }
        }
        return errors
    }
}

/// The table of `SMTPSettings`, as numbered migrations (composed with the other targets' in the server's `Schema`).
public enum NotifySchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 7,
            name: "organizations' SMTP settings",
            statements: [
                """
                CREATE TABLE notify_smtp_settings (
                    org_id TEXT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
                    host TEXT NOT NULL,
                    port BIGINT NOT NULL,
                    security TEXT NOT NULL,
                    username TEXT,
                    password_secret TEXT,
                    from_address TEXT NOT NULL,
                    insecure_skip_verify BIGINT NOT NULL,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL
                )
                """
            ]
        )
    ]
}

/// Each organization's SMTP settings: one row per organization, every call scoped by it.
public struct SMTPSettingsStore: Sendable {
    let database: any Database
    let clock: WallClock

    public init(database: any Database, clock: WallClock = .system) {
        self.database = database
        self.clock = clock
    }

    /// Creates or replaces the organization's settings.
    /// - Returns: the settings as stored, and whether they are new.
    /// - Throws: `validation_failed` with every field at fault; `StorageError`.
    public func put(orgID: String, _ settings: SMTPSettings) async throws -> (settings: SMTPSettings, created: Bool) {
        let problems = settings.problems()
        if let first = problems.first {
            throw CaravanError(.validationFailed, first.detail, fieldErrors: problems)
        }
        let now = clock.nowMilliseconds()
        let row = try await database.withTransaction { executor in
            try await executor.queryFirst(
                """
                INSERT INTO notify_smtp_settings (org_id, host, port, security, username, password_secret, from_address,
                    insecure_skip_verify, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                ON CONFLICT (org_id) DO UPDATE SET host = excluded.host, port = excluded.port,
                    security = excluded.security, username = excluded.username,
                    password_secret = excluded.password_secret, from_address = excluded.from_address,
                    insecure_skip_verify = excluded.insecure_skip_verify, updated_at = excluded.updated_at
                RETURNING *
                """,
                [
                    .text(orgID), .text(settings.host), .int(settings.port), .text(settings.security.rawValue),
                    .text(settings.username), .text(settings.passwordSecret), .text(settings.from),
                    .bool(settings.insecureSkipVerify), .int(now),
                ]
            )
        }
        guard let row else { throw CaravanError(.internal, "The SMTP settings were not stored.") }
        let stored = try Self.settings(row)
        return (stored, stored.createdAt == now && stored.updatedAt == now)
    }

    /// The organization's settings, if it has any.
    public func get(orgID: String) async throws -> SMTPSettings? {
        try await database.read { executor in
            try await executor.queryFirst("SELECT * FROM notify_smtp_settings WHERE org_id = $1", [.text(orgID)])
        }.map(Self.settings)
    }

    /// Removes the organization's settings.
    /// - Returns: whether there were any.
    public func delete(orgID: String) async throws -> Bool {
        try await database.withTransaction { executor in
            try await executor.query(
                "DELETE FROM notify_smtp_settings WHERE org_id = $1 RETURNING org_id",
                [.text(orgID)]
            )
        }.isEmpty == false
    }

    static func settings(_ row: SQLRow) throws -> SMTPSettings {
        SMTPSettings(
            host: try row.string("host"),
            port: Int(try row.int("port")),
            security: SMTPSecurity(rawValue: try row.string("security")) ?? .starttls,
            username: try row.optionalString("username"),
            passwordSecret: try row.optionalString("password_secret"),
            from: try row.string("from_address"),
            insecureSkipVerify: try row.int("insecure_skip_verify") != 0,
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
    }
}
