public import CaravanCore
public import CaravanStorage

/// The identity tables, as numbered migrations (composed with the other targets' in the server's `Schema`):
/// organizations (and the default one), users, memberships, invitations, sessions and refresh tokens, MFA
/// recovery codes, API keys, rate-limit counters, sign-in backoff. Append new ones; never edit one that has shipped.
public enum IdentitySchema {
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
            version: 3,
            name: "users, memberships, sessions, API keys, rate limits",
            statements: [
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
        ),
        Migration(
            version: 5,
            name: "sign-in backoff per address",
            statements: [
                """
                CREATE TABLE login_source_failures (
                    email TEXT NOT NULL,
                    source TEXT NOT NULL,
                    failures BIGINT NOT NULL,
                    last_failure_at BIGINT NOT NULL,
                    PRIMARY KEY (email, source)
                )
                """
            ]
        ),
    ]
}
