public import CaravanStorage

/// The catalog's tables: listings and their immutable versions, the installs of other organizations, ratings, and
/// the double-entry ledger that meters installed listings.
public enum CatalogSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 15,
            name: "catalog and ledger",
            sqlite: tables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT"),
            postgres: tables(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        ),
        // The terms each install ran under, so that a run is charged by the version installed when it started, even
        // once the install was upgraded or removed; and each listing's counts of uses.
        Migration(
            version: 17,
            name: "catalog install terms and listing counts",
            statements: [
                """
                CREATE TABLE catalog_install_terms (
                    install_id TEXT NOT NULL,
                    org_id TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    name TEXT NOT NULL,
                    target TEXT NOT NULL,
                    listing_id TEXT NOT NULL,
                    version BIGINT NOT NULL,
                    from_at BIGINT NOT NULL,
                    until_at BIGINT,
                    PRIMARY KEY (install_id, from_at)
                )
                """,
                "CREATE INDEX catalog_install_terms_target ON catalog_install_terms (org_id, target, from_at)",
                """
                INSERT INTO catalog_install_terms (install_id, org_id, kind, name, target, listing_id, version, from_at)
                SELECT id, org_id, kind, name, target, listing_id, version, installed_at FROM catalog_installs
                """,
                // A listing's uses and successes, counted as the ledger records them (a page of listings reads one
                // row each, not the ledger).
                """
                CREATE TABLE catalog_listing_stats (
                    listing_id TEXT PRIMARY KEY,
                    uses BIGINT NOT NULL,
                    succeeded BIGINT NOT NULL
                )
                """,
                """
                INSERT INTO catalog_listing_stats (listing_id, uses, succeeded)
                SELECT listing_id, COUNT(*), SUM(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END)
                FROM ledger_transactions GROUP BY listing_id
                """,
            ]
        ),
    ]

    private static func tables(autoincrement: String) -> [String] {
        [
            """
            CREATE TABLE catalog_listings (
                id TEXT PRIMARY KEY,
                publisher_org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                description TEXT NOT NULL,
                tags TEXT NOT NULL,
                search TEXT NOT NULL,
                latest_version BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (publisher_org_id, name)
            )
            """,
            """
            CREATE TABLE catalog_listing_versions (
                listing_id TEXT NOT NULL REFERENCES catalog_listings (id) ON DELETE CASCADE,
                version BIGINT NOT NULL,
                source_version BIGINT NOT NULL,
                definition TEXT NOT NULL,
                modules TEXT NOT NULL,
                price_micros BIGINT NOT NULL,
                requires TEXT NOT NULL,
                deprecated_at BIGINT,
                published_at BIGINT NOT NULL,
                PRIMARY KEY (listing_id, version)
            )
            """,
            """
            CREATE TABLE catalog_installs (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                listing_id TEXT NOT NULL REFERENCES catalog_listings (id) ON DELETE CASCADE,
                version BIGINT NOT NULL,
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                target TEXT NOT NULL,
                installed_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (org_id, kind, name),
                UNIQUE (org_id, listing_id)
            )
            """,
            "CREATE INDEX catalog_installs_target ON catalog_installs (org_id, target)",
            """
            CREATE TABLE catalog_ratings (
                listing_id TEXT NOT NULL REFERENCES catalog_listings (id) ON DELETE CASCADE,
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                stars BIGINT NOT NULL,
                review TEXT,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (listing_id, org_id)
            )
            """,
            """
            CREATE TABLE ledger_transactions (
                id TEXT PRIMARY KEY,
                key TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                listing_id TEXT NOT NULL,
                version BIGINT NOT NULL,
                install_id TEXT NOT NULL,
                installer_org_id TEXT NOT NULL,
                publisher_org_id TEXT NOT NULL,
                run_id TEXT,
                outcome TEXT NOT NULL,
                duration_ms BIGINT NOT NULL,
                at BIGINT NOT NULL,
                month TEXT NOT NULL
            )
            """,
            "CREATE INDEX ledger_transactions_listing ON ledger_transactions (listing_id, at)",
            """
            CREATE TABLE ledger_entries (
                id \(autoincrement),
                transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id) ON DELETE CASCADE,
                org_id TEXT,
                account TEXT NOT NULL,
                amount_micros BIGINT NOT NULL,
                listing_id TEXT NOT NULL,
                at BIGINT NOT NULL,
                month TEXT NOT NULL
            )
            """,
            "CREATE INDEX ledger_entries_org ON ledger_entries (org_id, month, id)",
            "CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id)",
            """
            CREATE TABLE catalog_meter (
                id BIGINT PRIMARY KEY,
                finished_through BIGINT NOT NULL
            )
            """,
        ]
    }
}
