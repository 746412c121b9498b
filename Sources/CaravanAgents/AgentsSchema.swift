public import CaravanStorage

/// The tables of the gateway and agents, as numbered migrations (composed with the other targets' in the server's
/// `Schema`): model providers; conversation threads and their messages; the usage of every model call (the request
/// log); monthly model budgets. Append new ones; never edit one that has shipped.
public enum AgentsSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 4,
            name: "models and agents",
            sqlite: tables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT", real: "REAL"),
            postgres: tables(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", real: "DOUBLE PRECISION")
        ),
        Migration(
            version: 9,
            name: "default provider",
            statements: ["ALTER TABLE providers ADD COLUMN is_default BIGINT NOT NULL DEFAULT 0"]
        ),
        Migration(
            version: 10,
            name: "spend and limits by API key",
            sqlite: keyLimits(real: "REAL"),
            postgres: keyLimits(real: "DOUBLE PRECISION")
        ),
        Migration(
            version: 11,
            name: "responses",
            statements: [
                """
                CREATE TABLE model_responses (
                    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                    id TEXT NOT NULL,
                    previous_id TEXT,
                    messages TEXT NOT NULL,
                    response TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    PRIMARY KEY (org_id, id)
                )
                """
            ]
        ),
        Migration(
            version: 12,
            name: "model routes",
            statements: [
                """
                CREATE TABLE model_routes (
                    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    definition TEXT NOT NULL,
                    updated_at BIGINT NOT NULL,
                    PRIMARY KEY (org_id, name)
                )
                """
            ]
        ),
        Migration(
            version: 13,
            name: "model request log",
            statements: [
                "ALTER TABLE model_usage ADD COLUMN request_id TEXT",
                "ALTER TABLE model_usage ADD COLUMN endpoint TEXT",
                "CREATE INDEX model_usage_org_id ON model_usage (org_id, id)",
                """
                CREATE TABLE model_request_log_settings (
                    org_id TEXT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
                    log_bodies BIGINT NOT NULL,
                    body_retention_days BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE model_request_bodies (
                    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                    request_id TEXT NOT NULL,
                    at BIGINT NOT NULL,
                    request TEXT NOT NULL,
                    response TEXT NOT NULL,
                    expires_at BIGINT NOT NULL,
                    PRIMARY KEY (org_id, request_id)
                )
                """,
                "CREATE INDEX model_request_bodies_expiry ON model_request_bodies (expires_at)",
            ]
        ),
    ]

    private static func keyLimits(real: String) -> [String] {
        [
            "ALTER TABLE model_usage ADD COLUMN key_id TEXT",
            "CREATE INDEX model_usage_key ON model_usage (org_id, key_id, at) WHERE key_id IS NOT NULL",
            """
            CREATE TABLE model_key_limits (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                key_id TEXT NOT NULL,
                models TEXT,
                monthly_cost_usd \(real),
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, key_id)
            )
            """,
        ]
    }

    private static func tables(autoincrement: String, real: String) -> [String] {
        [
            """
            CREATE TABLE providers (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                base_url TEXT NOT NULL,
                api_key_secret TEXT,
                models TEXT NOT NULL,
                timeout_ms BIGINT NOT NULL,
                max_retries BIGINT NOT NULL,
                prices TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, name)
            )
            """,
            """
            CREATE TABLE threads (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                metadata TEXT NOT NULL,
                active_run_id TEXT,
                message_count BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX threads_org ON threads (org_id, id)",
            """
            CREATE TABLE thread_messages (
                thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
                seq BIGINT NOT NULL,
                run_id TEXT,
                message TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (thread_id, seq)
            )
            """,
            """
            CREATE TABLE model_usage (
                id \(autoincrement),
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                at BIGINT NOT NULL,
                run_id TEXT,
                agent TEXT,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cost_usd \(real) NOT NULL,
                latency_ms BIGINT NOT NULL,
                outcome TEXT NOT NULL
            )
            """,
            "CREATE INDEX model_usage_org_at ON model_usage (org_id, at)",
            "CREATE INDEX model_usage_run ON model_usage (run_id) WHERE run_id IS NOT NULL",
            """
            CREATE TABLE model_budgets (
                org_id TEXT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
                monthly_cost_usd \(real),
                monthly_tokens BIGINT,
                updated_at BIGINT NOT NULL
            )
            """,
        ]
    }
}
