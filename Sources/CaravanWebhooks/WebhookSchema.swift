public import CaravanStorage

/// The outbound webhooks' tables: the subscriptions (with the position in the organization's event feed up to
/// which each has queued its deliveries, and the node delivering for it) and the deliveries (the outbox: each row
/// one event for one webhook, with its attempts).
public enum WebhookSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 7,
            name: "outbound webhooks",
            sqlite: tables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT"),
            postgres: tables(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        )
    ]

    private static func tables(autoincrement: String) -> [String] {
        [
            """
            CREATE TABLE webhooks (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                format TEXT NOT NULL,
                url TEXT,
                email_to TEXT,
                events TEXT NOT NULL,
                filter TEXT,
                secrets TEXT NOT NULL,
                enabled BIGINT NOT NULL,
                disabled_reason TEXT,
                disable_after BIGINT NOT NULL,
                failing_since BIGINT,
                feed_position BIGINT NOT NULL,
                lease_owner TEXT,
                lease_expires_at BIGINT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (org_id, name)
            )
            """,
            "CREATE INDEX webhooks_enabled ON webhooks (enabled, lease_expires_at)",
            """
            CREATE TABLE webhook_deliveries (
                id \(autoincrement),
                webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
                event_id BIGINT NOT NULL,
                run_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                payload TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts BIGINT NOT NULL,
                next_attempt_at BIGINT,
                response_status BIGINT,
                latency_ms BIGINT,
                response_excerpt TEXT,
                error TEXT,
                created_at BIGINT NOT NULL,
                last_attempt_at BIGINT,
                delivered_at BIGINT,
                UNIQUE (webhook_id, event_id)
            )
            """,
            // A webhook's pending deliveries in queue order (and its list filtered by status): one index range,
            // however many delivered ones it has.
            "CREATE INDEX webhook_deliveries_status ON webhook_deliveries (webhook_id, status, id)",
            "CREATE INDEX webhook_deliveries_list ON webhook_deliveries (webhook_id, id)",
        ]
    }
}
