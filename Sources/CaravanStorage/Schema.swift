/// Caravan's schema, as numbered migrations. Append new ones; never edit one that has shipped.
public enum Schema {
    /// Every migration, in order.
    public static let migrations: [Migration] = [
        Migration(
            version: 1,
            name: "organizations",
            statements: [
                """
                CREATE TABLE organizations (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL
                )
                """,
                """
                INSERT INTO organizations (id, name, created_at, updated_at)
                VALUES ('\(Organization.defaultID)', 'default', 0, 0)
                """,
            ]
        )
    ]
}
