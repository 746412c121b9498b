public import CaravanCore
public import CaravanEngine
public import CaravanStorage
public import CaravanVault
import Foundation

/// What a `PUT /v1/webhooks/{name}` asks for, validated.
public struct WebhookDefinition: Sendable, Hashable {
    public var target: WebhookTarget
    public var events: [EventPattern]
    public var filter: String?
    public var enabled: Bool
    public var disableAfter: Int64

    public init(target: WebhookTarget, events: [EventPattern], filter: String?, enabled: Bool, disableAfter: Int64) {
        self.target = target
        self.events = events
        self.filter = filter
        self.enabled = enabled
        self.disableAfter = disableAfter
    }
}

/// One event queued for one webhook, with its attempts so far.
public struct WebhookDelivery: Sendable, Hashable {
    public enum Status: String, Sendable {
        /// Not delivered yet: due at `nextAttemptAt`.
        case pending
        /// The receiver answered 2xx.
        case delivered
        /// Every attempt of the retry schedule failed; it can be re-sent by hand.
        case failed
    }

    public var id: Int64
    public var webhookID: String
    /// The event's position in the organization's feed.
    public var eventID: Int64
    public var runID: String
    public var eventType: String
    /// The JSON body, built when the event was queued.
    public var payload: String
    public var status: Status
    public var attempts: Int64
    public var nextAttemptAt: Int64?
    public var responseStatus: Int64?
    public var latencyMilliseconds: Int64?
    public var responseExcerpt: String?
    public var error: String?
    public var createdAt: Int64
    public var lastAttemptAt: Int64?
    public var deliveredAt: Int64?

    /// The `webhook-id` of every attempt: the same each time, so a receiver can drop a duplicate. It names the
    /// webhook and the event, not the queue row, so that it stays the same whatever queues the event.
    public var messageID: String { "msg_\(webhookID.dropFirst(4))_\(eventID)" }
}

/// How one attempt went.
struct AttemptOutcome: Sendable {
    var deliveryID: Int64
    /// The delivery's attempts before this one.
    var attemptsBefore: Int64
    var succeeded: Bool
    var responseStatus: Int64?
    var latencyMilliseconds: Int64
    var responseExcerpt: String?
    var error: String?
    var at: Int64
}

/// Webhooks and their deliveries in the database. The signing secrets are sealed with the master key.
public final class WebhookStore: Sendable {
    private let database: any Database
    private let box: SecretBox
    private let engine: Engine
    private let clock: WallClock

    /// How long a previous secret stays valid after a rotation, by default.
    public static let defaultRotationGrace: Int64 = 24 * 3_600_000

    /// The column of sealed secrets, for master key rotation.
    public static let sealedColumn = SealedColumn(table: "webhooks", keyColumns: ["id"], column: "secrets") {
        context(webhookID: $0[0])
    }

    static func context(webhookID: String) -> String { "webhook:\(webhookID)" }

    public init(database: any Database, box: SecretBox, engine: Engine, clock: WallClock) {
        self.database = database
        self.box = box
        self.engine = engine
        self.clock = clock
    }

    // MARK: Subscriptions

    /// Creates the webhook (with a new secret, following events from now on) or changes it (keeping its secret,
    /// its position and its queued deliveries; enabling a disabled webhook clears its failure streak).
    /// - Returns: the webhook, and its secret when it was created.
    public func put(
        orgID: String,
        name: String,
        definition: WebhookDefinition
    ) async throws -> (webhook: Webhook, secret: String?) {
        let now = clock.nowMilliseconds()
        return try await database.withTransaction { [engine, box] executor in
            let existing = try await executor.queryFirst(
                "SELECT id, enabled FROM webhooks WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(name)]
            )
            let columns: [SQLValue] = [
                .text(definition.target.format), .text(definition.target.url?.absoluteString),
                Self.emails(definition.target), .json(.array(definition.events.map { .string($0.text) })),
                .text(definition.filter), .bool(definition.enabled), .int(definition.disableAfter), .int(now),
            ]
            if let existing {
                let id = try existing.string("id")
                let wasEnabled = try existing.bool("enabled")
                let reEnabled = definition.enabled && !wasEnabled
                try await executor.execute(
                    """
                    UPDATE webhooks SET format = $2, url = $3, email_to = $4, events = $5, filter = $6, enabled = $7,
                        disable_after = $8, updated_at = $9,
                        disabled_reason = CASE WHEN $7 = 1 THEN NULL ELSE COALESCE(disabled_reason, 'disabled by hand') END,
                        failing_since = CASE WHEN $10 = 1 THEN NULL ELSE failing_since END,
                        lease_owner = CASE WHEN $7 = 1 THEN lease_owner ELSE NULL END
                    WHERE id = $1
                    """,
                    [.text(id)] + columns + [.bool(reEnabled)]
                )
                return (try await Self.webhook(id: id, in: executor)!, nil)
            }
            let id = Identifier.make("whk", milliseconds: now)
            let secret = WebhookSigner.makeSecret()
            let sealed = box.seal(
                Array(JSONValue.array([["secret": .string(secret)]]).canonicalText.utf8),
                context: Self.context(webhookID: id)
            )
            let position = try await engine.latestEventID(orgID: orgID, in: executor)
            try await executor.execute(
                """
                INSERT INTO webhooks (format, url, email_to, events, filter, enabled, disable_after, updated_at,
                    id, org_id, name, secrets, feed_position, created_at, disabled_reason)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $8,
                    CASE WHEN $6 = 1 THEN NULL ELSE 'disabled by hand' END)
                """,
                columns + [.text(id), .text(orgID), .text(name), .text(sealed), .int(position)]
            )
            return (try await Self.webhook(id: id, in: executor)!, secret)
        }
    }

    public func get(orgID: String, name: String) async throws -> Webhook? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM webhooks WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(name)]
            ).map(Self.webhook)
        }
    }

    /// A page of the organization's webhooks by name, after `after`.
    public func list(orgID: String, after: String?, limit: Int) async throws -> [Webhook] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM webhooks WHERE org_id = $1 AND name > $2 ORDER BY name LIMIT $3",
                [.text(orgID), .text(after ?? ""), .int(Int64(limit))]
            ).map(Self.webhook)
        }
    }

    /// Deletes the webhook and its deliveries. - Returns: whether it existed.
    public func delete(orgID: String, name: String) async throws -> Bool {
        try await database.withTransaction { executor in
            !(try await executor.query(
                "DELETE FROM webhooks WHERE org_id = $1 AND name = $2 RETURNING id",
                [.text(orgID), .text(name)]
            )).isEmpty
        }
    }

    /// Makes a new signing secret; the previous one stays valid for `grace` (both sign every delivery meanwhile),
    /// then is dropped. Secrets older than that are dropped now. - Returns: the new secret, or `nil` if no webhook.
    public func rotateSecret(orgID: String, name: String, grace: Int64) async throws -> String? {
        let now = clock.nowMilliseconds()
        return try await database.withTransaction { [box] executor in
            guard
                let row = try await executor.queryFirst(
                    "SELECT id, secrets FROM webhooks WHERE org_id = $1 AND name = $2",
                    [.text(orgID), .text(name)]
                )
            else { return nil }
            let id = try row.string("id")
            let secret = WebhookSigner.makeSecret()
            let current = try Self.secrets(sealed: try row.string("secrets"), id: id, box: box, now: now)
            var kept: [JSONValue] = [["secret": .string(secret)]]
            if let previous = current.first, grace > 0 {
                kept.append(["secret": .string(previous), "expires_at": .int(now + grace)])
            }
            let sealed = box.seal(Array(JSONValue.array(kept).canonicalText.utf8), context: Self.context(webhookID: id))
            try await executor.execute(
                "UPDATE webhooks SET secrets = $2, updated_at = $3 WHERE id = $1",
                [.text(id), .text(sealed), .int(now)]
            )
            return secret
        }
    }

    private static func secrets(sealed: String, id: String, box: SecretBox, now: Int64) throws -> [String] {
        let list = try JSONValue(parsing: try box.open(sealed, context: context(webhookID: id)))
        return (list.arrayValue ?? []).compactMap { entry in
            if let expires = entry["expires_at"]?.numberValue, Int64(expires) <= now { return nil }
            return entry["secret"]?.stringValue
        }
    }

    // MARK: Deliveries as the API shows them

    /// A page of a webhook's deliveries, newest first, before delivery `before`; only those of `status` if given.
    public func deliveries(
        webhookID: String,
        before: Int64?,
        status: WebhookDelivery.Status?,
        limit: Int
    ) async throws -> [WebhookDelivery] {
        try await database.read { executor in
            try await executor.query(
                """
                SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 AND ($3 = '' OR status = $3)
                ORDER BY id DESC LIMIT $4
                """,
                [.text(webhookID), .int(before ?? Int64.max), .text(status?.rawValue ?? ""), .int(Int64(limit))]
            ).map(Self.delivery)
        }
    }

    public func delivery(webhookID: String, id: Int64) async throws -> WebhookDelivery? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2",
                [.text(webhookID), .int(id)]
            ).map(Self.delivery)
        }
    }

    /// Queues a delivery again, now, with a fresh retry schedule (whatever became of it before).
    /// - Returns: the delivery as queued, or `nil` if the webhook has no such delivery.
    public func resend(webhookID: String, id: Int64) async throws -> WebhookDelivery? {
        let now = clock.nowMilliseconds()
        return try await database.withTransaction { executor in
            try await executor.queryFirst(
                """
                UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3
                WHERE webhook_id = $1 AND id = $2 RETURNING *
                """,
                [.text(webhookID), .int(id), .int(now)]
            ).map(Self.delivery)
        }
    }

    // MARK: The dispatcher's side

    /// Takes the lease of up to `limit` enabled webhooks that no live node delivers for, and extends the leases
    /// `owner` holds. - Returns: the webhooks `owner` now holds.
    func claim(owner: String, now: Int64, until: Int64, limit: Int) async throws -> [Webhook] {
        try await database.withTransaction { executor in
            let skipLocked = executor.dialect == .postgres ? "FOR UPDATE SKIP LOCKED" : ""
            try await executor.execute(
                """
                UPDATE webhooks SET lease_owner = $1, lease_expires_at = $3
                WHERE id IN (
                    SELECT id FROM webhooks
                    WHERE enabled = 1 AND (lease_owner = $1 OR lease_owner IS NULL OR lease_expires_at < $2)
                    ORDER BY id LIMIT $4 \(skipLocked)
                )
                """,
                [.text(owner), .int(now), .int(until), .int(Int64(limit))]
            )
            return try await executor.query(
                "SELECT * FROM webhooks WHERE lease_owner = $1 AND enabled = 1",
                [.text(owner)]
            ).map(Self.webhook)
        }
    }

    /// Takes back, at start, the webhooks a previous life of this node held: on SQLite every lease (one process
    /// holds the data directory), on PostgreSQL those under this node's id.
    func recoverLeases(owner: String) async throws {
        try await database.withTransaction { executor in
            let mine = executor.dialect == .sqlite ? "" : "WHERE lease_owner = $1"
            try await executor.execute(
                "UPDATE webhooks SET lease_owner = NULL, lease_expires_at = NULL \(mine)",
                executor.dialect == .sqlite ? [] : [.text(owner)]
            )
        }
    }

    /// Lets go of every lease `owner` holds, so another node takes over at once (at shutdown).
    func release(owner: String) async throws {
        try await database.withTransaction { executor in
            try await executor.execute(
                "UPDATE webhooks SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1",
                [.text(owner)]
            )
        }
    }

    /// What a delivery pass starts from, read together: the webhook as it stands, if `owner` still holds its lease
    /// and it is enabled; the secrets that sign its deliveries now (the current one first, then any still in its
    /// grace); and up to `limit` of the organization's events after its feed position.
    func passStart(
        id: String,
        owner: String,
        limit: Int
    ) async throws -> (
        webhook: Webhook, secrets: [String], feed: [FeedEvent]
    )? {
        let now = clock.nowMilliseconds()
        return try await database.read { [engine, box] executor in
            guard
                let row = try await executor.queryFirst(
                    "SELECT * FROM webhooks WHERE id = $1 AND lease_owner = $2 AND enabled = 1",
                    [.text(id), .text(owner)]
                )
            else { return nil }
            let webhook = try Self.webhook(row)
            let secrets: [String]
            if case .standard = webhook.target, let sealed = try row.optionalString("secrets") {
                secrets = try Self.secrets(sealed: sealed, id: webhook.id, box: box, now: now)
            } else {
                secrets = []
            }
            let feed = try await engine.feed(
                orgID: webhook.orgID,
                after: webhook.feedPosition,
                limit: limit,
                in: executor
            )
            return (webhook, secrets, feed)
        }
    }

    /// Queues deliveries of events up to feed position `position`, if `owner` still holds the webhook's lease.
    /// An event already queued (by an owner that lost the lease meanwhile) is not queued twice.
    /// - Returns: the deliveries queued, in queue order, or `nil` if the lease was lost.
    func enqueue(
        webhookID: String,
        owner: String,
        deliveries: [(event: FeedEvent, type: String, payload: String)],
        position: Int64,
        now: Int64
    ) async throws -> [WebhookDelivery]? {
        try await database.withTransaction { executor in
            let moved = try await executor.query(
                "UPDATE webhooks SET feed_position = $3 WHERE id = $1 AND lease_owner = $2 AND feed_position < $3 RETURNING id",
                [.text(webhookID), .text(owner), .int(position)]
            )
            guard !moved.isEmpty else { return nil }
            var queued: [WebhookDelivery] = []
            for chunk in stride(from: 0, to: deliveries.count, by: 500) {
                let slice = deliveries[chunk..<min(chunk + 500, deliveries.count)]
                var sql = """
                    INSERT INTO webhook_deliveries (webhook_id, event_id, run_id, event_type, payload, status, attempts,
                        next_attempt_at, created_at) VALUES
                    """
                var binds: [SQLValue] = [.text(webhookID), .int(now)]
                for (index, delivery) in slice.enumerated() {
                    let base = 3 + index * 4
                    sql +=
                        (index == 0 ? " " : ", ")
                        + "($1, $\(base), $\(base + 1), $\(base + 2), $\(base + 3), 'pending', 0, $2, $2)"
                    binds += [
                        .int(delivery.event.event.globalID), .text(delivery.event.event.runID), .text(delivery.type),
                        .text(delivery.payload),
                    ]
                }
                sql += " ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING *"
                queued += try await executor.query(sql, binds).map(Self.delivery)
            }
            return queued.sorted { $0.id < $1.id }
        }
    }

    /// The pending deliveries of a webhook in queue order (the oldest `limit`), due or not: a run's later
    /// deliveries wait behind its first.
    func pending(webhookID: String, limit: Int) async throws -> [WebhookDelivery] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending' ORDER BY id LIMIT $2",
                [.text(webhookID), .int(Int64(limit))]
            ).map(Self.delivery)
        }
    }

    /// Records how attempts went, in one transaction, and keeps the webhook's failure streak: a success ends it;
    /// a failure starts it or, once it has lasted `disable_after`, disables the webhook.
    /// - Parameter retryDelays: the wait before each retry; a delivery that failed more often has failed for good.
    /// - Returns: the reason the webhook was disabled, if this disabled it.
    func record(
        _ outcomes: [AttemptOutcome],
        webhookID: String,
        retryDelays: [Int64],
        now: Int64
    ) async throws -> String? {
        guard !outcomes.isEmpty else { return nil }
        return try await database.withTransaction { executor in
            // One multi-row UPDATE per 500 attempts (VALUES columns are column1…column10 in both dialects; the
            // casts give PostgreSQL the types of NULLs).
            for chunk in stride(from: 0, to: outcomes.count, by: 500) {
                var values: [String] = []
                var binds: [SQLValue] = []
                for outcome in outcomes[chunk..<min(chunk + 500, outcomes.count)] {
                    let base = binds.count
                    values.append("(" + (1...10).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
                    let retry = outcome.attemptsBefore < Int64(retryDelays.count)
                    let status = outcome.succeeded ? "delivered" : retry ? "pending" : "failed"
                    let next =
                        outcome.succeeded || !retry
                        ? nil : outcome.at + Self.jittered(retryDelays[Int(outcome.attemptsBefore)])
                    binds += [
                        .int(outcome.deliveryID), .text(status), .int(outcome.attemptsBefore + 1), .int(next),
                        .int(outcome.responseStatus), .int(outcome.latencyMilliseconds), .text(outcome.responseExcerpt),
                        .text(outcome.error), .int(outcome.at), .int(outcome.succeeded ? outcome.at : nil),
                    ]
                }
                try await executor.execute(
                    """
                    UPDATE webhook_deliveries SET status = v.column2, attempts = CAST(v.column3 AS BIGINT),
                        next_attempt_at = CAST(v.column4 AS BIGINT), response_status = CAST(v.column5 AS BIGINT),
                        latency_ms = CAST(v.column6 AS BIGINT), response_excerpt = CAST(v.column7 AS TEXT),
                        error = CAST(v.column8 AS TEXT), last_attempt_at = CAST(v.column9 AS BIGINT),
                        delivered_at = CAST(v.column10 AS BIGINT)
                    FROM (VALUES \(values.joined(separator: ", "))) AS v
                    WHERE webhook_deliveries.id = CAST(v.column1 AS BIGINT)
                    """,
                    binds
                )
            }
            let lastSuccess = outcomes.lastIndex(where: \.succeeded)
            let failuresAfter = outcomes[(lastSuccess.map { $0 + 1 } ?? 0)...]
            if let first = failuresAfter.first {
                // A streak: from the first failure after the last success (or from where it began before).
                let since = lastSuccess == nil ? "COALESCE(failing_since, $2)" : "$2"
                try await executor.execute(
                    "UPDATE webhooks SET failing_since = \(since) WHERE id = $1",
                    [.text(webhookID), .int(first.at)]
                )
                let reason = "Every delivery failed for longer than its disable_after; the last: \(first.error ?? "")"
                let disabled = try await executor.query(
                    """
                    UPDATE webhooks SET enabled = 0, disabled_reason = $3, lease_owner = NULL, lease_expires_at = NULL
                    WHERE id = $1 AND enabled = 1 AND failing_since IS NOT NULL AND $2 - failing_since >= disable_after
                    RETURNING id
                    """,
                    [.text(webhookID), .int(now), .text(String(reason.prefix(500)))]
                )
                return disabled.isEmpty ? nil : reason
            }
            try await executor.execute(
                "UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
                [.text(webhookID)]
            )
            return nil
        }
    }

    /// A retry delay with up to a tenth added at random, so that deliveries failed together do not all retry in
    /// the same instant.
    static func jittered(_ delay: Int64) -> Int64 {
        delay + (delay >= 10 ? Int64.random(in: 0...(delay / 10)) : 0)
    }

    // MARK: Rows

    private static func emails(_ target: WebhookTarget) -> SQLValue {
        guard case .email(let to) = target else { return .null }
        return .json(.array(to.map(JSONValue.string)))
    }

    static func webhook(id: String, in executor: any SQLExecutor) async throws -> Webhook? {
        try await executor.queryFirst("SELECT * FROM webhooks WHERE id = $1", [.text(id)]).map(webhook)
    }

    static func webhook(_ row: SQLRow) throws -> Webhook {
        let format = try row.string("format")
        let target: WebhookTarget
        switch format {
        case "email":
            target = .email((try row.json("email_to")?.arrayValue ?? []).compactMap(\.stringValue))
        default:
            guard let url = URL(string: try row.optionalString("url") ?? "") else {
                throw CaravanError(.internal, "A stored webhook has no valid URL.")
            }
            target = format == "slack" ? .slack(url) : .standard(url)
        }
        return Webhook(
            id: try row.string("id"),
            orgID: try row.string("org_id"),
            name: try row.string("name"),
            target: target,
            events: try (try row.json("events")?.arrayValue ?? []).compactMap(\.stringValue).map {
                try EventPattern(parsing: $0, at: "/events")
            },
            filter: try row.optionalString("filter"),
            enabled: try row.bool("enabled"),
            disabledReason: try row.optionalString("disabled_reason"),
            disableAfter: try row.int("disable_after"),
            failingSince: try row.optionalInt("failing_since"),
            feedPosition: try row.int("feed_position"),
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
    }

    static func delivery(_ row: SQLRow) throws -> WebhookDelivery {
        WebhookDelivery(
            id: try row.int("id"),
            webhookID: try row.string("webhook_id"),
            eventID: try row.int("event_id"),
            runID: try row.string("run_id"),
            eventType: try row.string("event_type"),
            payload: try row.string("payload"),
            status: WebhookDelivery.Status(rawValue: try row.string("status")) ?? .pending,
            attempts: try row.int("attempts"),
            nextAttemptAt: try row.optionalInt("next_attempt_at"),
            responseStatus: try row.optionalInt("response_status"),
            latencyMilliseconds: try row.optionalInt("latency_ms"),
            responseExcerpt: try row.optionalString("response_excerpt"),
            error: try row.optionalString("error"),
            createdAt: try row.int("created_at"),
            lastAttemptAt: try row.optionalInt("last_attempt_at"),
            deliveredAt: try row.optionalInt("delivered_at")
        )
    }
}
