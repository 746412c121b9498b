public import CaravanStorage

/// The engine's tables, as numbered migrations (composed with the other targets' in the server's `Schema`):
/// workflow definitions and their versions; runs (the projection of their events, steps inline as JSON); the
/// append-only event log; signals; the journal of steps that record progress inside one attempt. Append new ones;
/// never edit one that has shipped.
public enum EngineSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 2,
            name: "workflows and runs",
            sqlite: tables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT"),
            postgres: tables(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        ),
        Migration(
            version: 4,
            name: "step journal",
            statements: [
                """
                CREATE TABLE run_journal (
                    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                    step TEXT NOT NULL,
                    key TEXT NOT NULL,
                    value TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    PRIMARY KEY (run_id, step, key)
                )
                """
            ]
        ),
        Migration(
            version: 20,
            name: "commit prelude",
            sqlite: [],
            postgres: [commitPrelude]
        ),
    ]

    /// What a PostgreSQL commit batch does before its writes, in one round trip: take the organizations' advisory
    /// locks (admission, then event order), count the executing runs of each organization and workflow it admits
    /// to, and lock and read the tails of the audit chains it appends to (the way `AuditLog.lockedTail` does: the
    /// chain's head row `FOR UPDATE`; without a head, an advisory lock for the chain, then the head again, then
    /// the head and last entry unlocked). In a function each query sees a snapshot taken when it starts, so the
    /// counts and tails see every transaction that committed while the locks were awaited, as separate statements
    /// after the locks would.
    static let commitPrelude = """
        CREATE FUNCTION caravan_commit_prelude(admission_orgs TEXT[], event_orgs TEXT[], count_orgs TEXT[],
            count_workflows TEXT[], audit_chains TEXT[])
        RETURNS TABLE (kind TEXT, org_id TEXT, workflow TEXT, total BIGINT, of_workflow BIGINT, head_seq BIGINT,
            head_hash TEXT, tail_seq BIGINT, tail_hash TEXT)
        LANGUAGE plpgsql VOLATILE AS $prelude$
        DECLARE
            item TEXT;
            i INTEGER;
        BEGIN
            FOREACH item IN ARRAY admission_orgs LOOP PERFORM pg_advisory_xact_lock(hashtext(item)); END LOOP;
            FOREACH item IN ARRAY event_orgs LOOP PERFORM pg_advisory_xact_lock(1, hashtext(item)); END LOOP;
            FOR i IN 1 .. coalesce(array_length(count_orgs, 1), 0) LOOP
                RETURN QUERY SELECT 'count'::TEXT, count_orgs[i], count_workflows[i], COUNT(*),
                    coalesce(SUM(CASE WHEN r.workflow = count_workflows[i] THEN 1 ELSE 0 END), 0)::BIGINT,
                    NULL::BIGINT, NULL::TEXT, NULL::BIGINT, NULL::TEXT
                FROM runs r WHERE r.org_id = count_orgs[i] AND r.status IN ('running', 'waiting');
            END LOOP;
            FOREACH item IN ARRAY audit_chains LOOP
                FOR i IN 1 .. 2 LOOP
                    RETURN QUERY SELECT 'audit'::TEXT, item, NULL::TEXT, NULL::BIGINT, NULL::BIGINT, h.seq, h.hash,
                        (SELECT l.seq FROM audit_log l WHERE l.chain = item ORDER BY l.seq DESC LIMIT 1),
                        (SELECT l.hash FROM audit_log l WHERE l.chain = item ORDER BY l.seq DESC LIMIT 1)
                    FROM audit_heads h WHERE h.chain = item FOR UPDATE OF h;
                    EXIT WHEN FOUND;
                    IF i = 1 THEN
                        PERFORM pg_advisory_xact_lock(hashtext('audit:' || item));
                    ELSE
                        RETURN QUERY SELECT 'audit'::TEXT, item, NULL::TEXT, NULL::BIGINT, NULL::BIGINT,
                            (SELECT h.seq FROM audit_heads h WHERE h.chain = item),
                            (SELECT h.hash FROM audit_heads h WHERE h.chain = item),
                            (SELECT l.seq FROM audit_log l WHERE l.chain = item ORDER BY l.seq DESC LIMIT 1),
                            (SELECT l.hash FROM audit_log l WHERE l.chain = item ORDER BY l.seq DESC LIMIT 1);
                    END IF;
                END LOOP;
            END LOOP;
        END
        $prelude$
        """

    private static func tables(autoincrement: String) -> [String] {
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
