import CaravanCore
import CaravanStorage

/// The tables the storage tests use: the storage contract is tested on its own, without the schema of the targets
/// above it.
enum StorageTestSchema {
    static let migrations: [Migration] = [
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
        ),
        Migration(
            version: 2,
            name: "marks",
            statements: [
                "CREATE TABLE storage_marks (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES organizations (id))"
            ]
        ),
    ]
}
