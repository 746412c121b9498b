import CaravanCore

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
        ),
        Migration(
            version: 2,
            name: "workflows and runs",
            sqlite: engineTables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT"),
            postgres: engineTables(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        ),
        Migration(
            version: 3,
            name: "identity, secrets and audit",
            sqlite: identityTables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT"),
            postgres: identityTables(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        ),
        Migration(
            version: 4,
            name: "models and agents",
            sqlite: modelTables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT", real: "REAL"),
            postgres: modelTables(
                autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                real: "DOUBLE PRECISION"
            )
        ),
        Migration(
            version: 5,
            name: "keyed audit chains, audit heads, sign-in backoff per address",
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
                """
                CREATE TABLE login_source_failures (
                    email TEXT NOT NULL,
                    source TEXT NOT NULL,
                    failures BIGINT NOT NULL,
                    last_failure_at BIGINT NOT NULL,
                    PRIMARY KEY (email, source)
                )
                """,
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

    /// Model providers; the journal of steps that record progress inside one attempt (agent turns and tool
    /// calls); conversation threads; the usage of every model call; monthly model budgets.
    private static func modelTables(autoincrement: String, real: String) -> [String] {
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
            CREATE TABLE run_journal (
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                step TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (run_id, step, key)
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

    /// Users and their memberships, invitations, sessions and refresh tokens, MFA recovery codes; API keys;
    /// sealed secrets; the hash-chained audit log; rate-limit counters.
    private static func identityTables(autoincrement: String) -> [String] {
        [
            "ALTER TABLE organizations ADD COLUMN rate_limit_per_minute BIGINT",
            """
            CREATE TABLE users (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL UNIQUE,
                password_hash TEXT NOT NULL,
                totp_secret TEXT,
                totp_enabled BIGINT NOT NULL DEFAULT 0,
                totp_last_step BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE memberships (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                role TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, user_id)
            )
            """,
            "CREATE INDEX memberships_user ON memberships (user_id)",
            """
            CREATE TABLE invitations (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                email TEXT NOT NULL,
                role TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                invited_by TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                accepted_at BIGINT
            )
            """,
            """
            CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT
            )
            """,
            "CREATE INDEX sessions_user ON sessions (user_id)",
            """
            CREATE TABLE refresh_tokens (
                token_hash TEXT PRIMARY KEY,
                session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
                created_at BIGINT NOT NULL,
                used_at BIGINT
            )
            """,
            "CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id)",
            """
            CREATE TABLE recovery_codes (
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                code_hash TEXT NOT NULL,
                used_at BIGINT,
                PRIMARY KEY (user_id, code_hash)
            )
            """,
            """
            CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                key_hash TEXT NOT NULL UNIQUE,
                prefix TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT,
                last_used_at BIGINT,
                revoked_at BIGINT
            )
            """,
            "CREATE INDEX api_keys_org ON api_keys (org_id, id)",
            """
            CREATE TABLE secrets (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                sealed TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, name)
            )
            """,
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
            """
            CREATE TABLE rate_windows (
                bucket TEXT PRIMARY KEY,
                window_start BIGINT NOT NULL,
                count BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE login_failures (
                email TEXT PRIMARY KEY,
                failures BIGINT NOT NULL,
                last_failure_at BIGINT NOT NULL
            )
            """,
        ]
    }

    /// Workflow definitions and their versions; runs (the projection of their events, steps inline as JSON);
    /// the append-only event log; signals.
    private static func engineTables(autoincrement: String) -> [String] {
        [
            """
            CREATE TABLE workflows (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                latest_version BIGINT NOT NULL,
                archived_at BIGINT,
                schedule TEXT,
                next_fire_at BIGINT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, name)
            )
            """,
            "CREATE INDEX workflows_next_fire ON workflows (next_fire_at) WHERE next_fire_at IS NOT NULL",
            """
            CREATE TABLE workflow_versions (
                org_id TEXT NOT NULL,
                name TEXT NOT NULL,
                version BIGINT NOT NULL,
                definition TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, name, version),
                FOREIGN KEY (org_id, name) REFERENCES workflows (org_id, name) ON DELETE CASCADE
            )
            """,
            """
            CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                workflow TEXT NOT NULL,
                workflow_version BIGINT NOT NULL,
                status TEXT NOT NULL,
                input TEXT NOT NULL,
                output TEXT,
                error TEXT,
                steps TEXT NOT NULL,
                idempotency_key TEXT,
                request_hash TEXT,
                parent_run_id TEXT,
                parent_step TEXT,
                created_at BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT,
                updated_at BIGINT NOT NULL,
                last_seq BIGINT NOT NULL,
                wake_at BIGINT,
                lease_owner TEXT,
                lease_expires_at BIGINT,
                fence BIGINT NOT NULL,
                wake_seq BIGINT NOT NULL DEFAULT 0,
                cancel_requested BIGINT NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX runs_org_id ON runs (org_id, id)",
            "CREATE INDEX runs_org_workflow ON runs (org_id, workflow, id)",
            "CREATE INDEX runs_org_status ON runs (org_id, status, id)",
            "CREATE UNIQUE INDEX runs_idempotency ON runs (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
            "CREATE INDEX runs_wake ON runs (wake_at) WHERE wake_at IS NOT NULL",
            "CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL",
            "CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL",
            "CREATE INDEX runs_queued ON runs (org_id, workflow, created_at) WHERE status = 'queued'",
            """
            CREATE TABLE run_events (
                id \(autoincrement),
                org_id TEXT NOT NULL,
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                seq BIGINT NOT NULL,
                type TEXT NOT NULL,
                step TEXT,
                at BIGINT NOT NULL,
                data TEXT,
                UNIQUE (run_id, seq)
            )
            """,
            "CREATE INDEX run_events_org ON run_events (org_id, id)",
            """
            CREATE TABLE run_signals (
                id \(autoincrement),
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                data TEXT NOT NULL,
                sender TEXT,
                created_at BIGINT NOT NULL,
                consumed_at BIGINT
            )
            """,
            "CREATE INDEX run_signals_run ON run_signals (run_id, id)",
        ]
    }
}
