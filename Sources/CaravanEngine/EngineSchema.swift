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
        Migration(
            version: 21,
            name: "runs write",
            sqlite: [],
            postgres: [writeRuns]
        ),
    ]

    /// A PostgreSQL commit batch's runs: the fenced updates of `updateStatement` and the inserts of
    /// `insertStatement`, taking each column as an array. A function's statements are planned once per connection
    /// and their plans kept, where a statement sent with its rows as values is parsed and planned every time (a
    /// third of PostgreSQL's time for a batch of W1).
    static let writeRuns = """
        CREATE FUNCTION caravan_write_runs(
            u_id TEXT[], u_owner TEXT[], u_fence BIGINT[], u_status TEXT[], u_output TEXT[], u_error TEXT[],
            u_steps TEXT[], u_started_at BIGINT[], u_finished_at BIGINT[], u_updated_at BIGINT[], u_last_seq BIGINT[],
            u_wake_at BIGINT[], u_new_owner TEXT[], u_lease_expires_at BIGINT[], u_cancel BIGINT[],
            u_seen_wake_seq BIGINT[],
            n_id TEXT[], n_org_id TEXT[], n_kind TEXT[], n_workflow TEXT[], n_workflow_version BIGINT[],
            n_status TEXT[], n_input TEXT[], n_output TEXT[], n_error TEXT[], n_steps TEXT[], n_idempotency_key TEXT[],
            n_request_hash TEXT[], n_parent_run_id TEXT[], n_parent_step TEXT[], n_created_at BIGINT[],
            n_started_at BIGINT[], n_finished_at BIGINT[], n_updated_at BIGINT[], n_last_seq BIGINT[],
            n_wake_at BIGINT[], n_lease_owner TEXT[], n_lease_expires_at BIGINT[], n_fence BIGINT[])
        RETURNS TABLE (out_kind TEXT, out_id TEXT)
        LANGUAGE plpgsql VOLATILE AS $write$
        BEGIN
            RETURN QUERY WITH written AS (
                UPDATE runs SET
                    status = v.status,
                    output = v.output,
                    error = v.error,
                    steps = v.steps,
                    started_at = v.started_at,
                    finished_at = v.finished_at,
                    updated_at = v.updated_at,
                    last_seq = v.last_seq,
                    wake_at = CASE
                        WHEN v.new_owner IS NULL AND v.seen_wake_seq >= 0 AND runs.wake_seq <> v.seen_wake_seq
                        THEN v.updated_at
                        ELSE v.wake_at END,
                    lease_owner = v.new_owner,
                    lease_expires_at = v.lease_expires_at,
                    cancel_requested = CASE WHEN runs.cancel_requested = 1 THEN 1 ELSE v.cancel END
                FROM unnest(u_id, u_owner, u_fence, u_status, u_output, u_error, u_steps, u_started_at,
                    u_finished_at, u_updated_at, u_last_seq, u_wake_at, u_new_owner, u_lease_expires_at, u_cancel,
                    u_seen_wake_seq)
                    AS v(id, owner, fence, status, output, error, steps, started_at, finished_at, updated_at,
                        last_seq, wake_at, new_owner, lease_expires_at, cancel, seen_wake_seq)
                WHERE runs.id = v.id AND runs.lease_owner = v.owner AND runs.fence = v.fence
                RETURNING runs.id
            )
            SELECT 'written'::TEXT, written.id FROM written;
            RETURN QUERY WITH inserted AS (
                INSERT INTO runs (id, org_id, kind, workflow, workflow_version, status, input, output, error, steps,
                    idempotency_key, request_hash, parent_run_id, parent_step, created_at, started_at, finished_at,
                    updated_at, last_seq, wake_at, lease_owner, lease_expires_at, fence)
                SELECT * FROM unnest(n_id, n_org_id, n_kind, n_workflow, n_workflow_version, n_status, n_input,
                    n_output, n_error, n_steps, n_idempotency_key, n_request_hash, n_parent_run_id, n_parent_step,
                    n_created_at, n_started_at, n_finished_at, n_updated_at, n_last_seq, n_wake_at, n_lease_owner,
                    n_lease_expires_at, n_fence)
                ON CONFLICT DO NOTHING
                RETURNING runs.id
            )
            SELECT 'inserted'::TEXT, inserted.id FROM inserted;
        END
        $write$
        """

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
