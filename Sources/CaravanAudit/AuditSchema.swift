public import CaravanStorage

/// The hash-chained audit log and its signed heads, as numbered migrations (composed with the other targets' in
/// the server's `Schema`). Append new ones; never edit one that has shipped.
public enum AuditSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 3,
            name: "audit log",
            sqlite: auditLog(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT"),
            postgres: auditLog(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        ),
        Migration(
            version: 5,
            name: "keyed audit chains, audit heads",
            statements: [
                // The id of the key whose HMAC links the entry; NULL for entries hashed with plain SHA-256 before.
                "ALTER TABLE audit_log ADD COLUMN hash_key TEXT",
                """
                CREATE TABLE audit_heads (
                    chain TEXT PRIMARY KEY,
                    seq BIGINT NOT NULL,
                    hash TEXT NOT NULL,
                    entries BIGINT NOT NULL,
                    hash_key TEXT NOT NULL,
                    mac TEXT NOT NULL,
                    updated_at BIGINT NOT NULL
                )
                """,
            ]
        ),
    ]

    private static func auditLog(autoincrement: String) -> [String] {
        [
            """
            CREATE TABLE audit_log (
                id \(autoincrement),
                chain TEXT NOT NULL,
                seq BIGINT NOT NULL,
                at BIGINT NOT NULL,
                org_id TEXT,
                actor_type TEXT NOT NULL,
                actor_id TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                outcome TEXT NOT NULL,
                source TEXT,
                request_id TEXT,
                details TEXT,
                previous_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                UNIQUE (chain, seq)
            )
            """,
            "CREATE INDEX audit_log_chain_id ON audit_log (chain, id)",
        ]
    }
}
