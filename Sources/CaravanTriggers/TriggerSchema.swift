public import CaravanStorage

/// The tables of inbound triggers, as numbered migrations (composed with the other targets' in the server's
/// `Schema`): the triggers; the record of every delivery (never its body); the buffer of batched events; the runs
/// of routed keys. Append new ones; never edit one that has shipped.
public enum TriggerSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 7,
            name: "inbound triggers",
            sqlite: tables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT"),
            postgres: tables(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        ),
        // Every delivery is recorded and a split one buffers up to 10,000 events, and PostgreSQL checked each
        // row's trigger by a lookup of its own: the costliest statements of receiving. The rows go with their
        // trigger by the delete that removes it (`TriggerStore.delete`); a row written by a delivery that raced
        // that delete is dropped by the flusher (buffered events) or by retention (records), and is never seen:
        // a trigger made again has a new id.
        Migration(
            version: 8,
            name: "trigger deliveries and buffer without foreign keys",
            sqlite: [],
            postgres: [
                "ALTER TABLE trigger_deliveries DROP CONSTRAINT IF EXISTS trigger_deliveries_trigger_id_fkey",
                "ALTER TABLE trigger_batch_events DROP CONSTRAINT IF EXISTS trigger_batch_events_trigger_id_fkey",
            ]
        ),
    ]

    private static func tables(autoincrement: String) -> [String] {
        [
            """
            CREATE TABLE triggers (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                definition TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (org_id, name)
            )
            """,
            // One row per delivery; `bucket` names the rows that count many (refusals by rate limit, one a minute),
            // `count` how many they stand for.
            """
            CREATE TABLE trigger_deliveries (
                id \(autoincrement),
                trigger_id TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
                delivery_id TEXT NOT NULL,
                received_at BIGINT NOT NULL,
                outcome TEXT NOT NULL,
                reason TEXT,
                run_id TEXT,
                status BIGINT NOT NULL,
                body_bytes BIGINT NOT NULL,
                count BIGINT NOT NULL DEFAULT 1,
                bucket TEXT
            )
            """,
            "CREATE INDEX trigger_deliveries_trigger ON trigger_deliveries (trigger_id, id)",
            "CREATE INDEX trigger_deliveries_received ON trigger_deliveries (received_at)",
            // A delivery id is accepted once per trigger: a replay finds it and starts nothing.
            """
            CREATE UNIQUE INDEX trigger_deliveries_accepted ON trigger_deliveries (trigger_id, delivery_id)
            WHERE outcome = 'accepted'
            """,
            "CREATE UNIQUE INDEX trigger_deliveries_bucket ON trigger_deliveries (trigger_id, bucket) WHERE bucket IS NOT NULL",
            """
            CREATE TABLE trigger_batch_events (
                id \(autoincrement),
                trigger_id TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
                received_at BIGINT NOT NULL,
                event TEXT NOT NULL,
                bytes BIGINT NOT NULL,
                batch_key TEXT,
                claimed_at BIGINT
            )
            """,
            "CREATE INDEX trigger_batch_events_trigger ON trigger_batch_events (trigger_id, id)",
            "CREATE INDEX trigger_batch_events_claimed ON trigger_batch_events (batch_key) WHERE batch_key IS NOT NULL",
            """
            CREATE TABLE trigger_routes (
                trigger_id TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
                route_key TEXT NOT NULL,
                generation BIGINT NOT NULL,
                run_id TEXT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (trigger_id, route_key)
            )
            """,
        ]
    }
}
