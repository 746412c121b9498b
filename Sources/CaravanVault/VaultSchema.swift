public import CaravanStorage

/// The sealed secrets, as numbered migrations (composed with the other targets' in the server's `Schema`). Append
/// new ones; never edit one that has shipped.
public enum VaultSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 3,
            name: "secrets",
            statements: [
                """
                CREATE TABLE secrets (
                    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    sealed TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL,
                    PRIMARY KEY (org_id, name)
                )
                """
            ]
        ),
        Migration(
            version: 6,
            name: "hosts each secret may be sent to",
            statements: [
                // A JSON array of host patterns; NULL: any host the egress policy allows.
                "ALTER TABLE secrets ADD COLUMN allowed_hosts TEXT"
            ]
        ),
    ]
}
