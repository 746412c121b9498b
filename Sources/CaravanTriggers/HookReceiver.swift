public import CaravanCore
public import CaravanEngine
import CaravanStorage
import CaravanWorkflow
import Foundation
import Synchronization

/// A request to a hook, as the HTTP layer hands it over: the raw body (already read under the trigger's limit),
/// its headers and query.
public struct HookRequest: Sendable {
    public var body: [UInt8]
    /// Header names in lowercase; a repeated header's values joined with ", ".
    public var headers: [String: String]
    public var query: [String: String]

    public init(body: [UInt8], headers: [String: String], query: [String: String]) {
        self.body = body
        self.headers = headers
        self.query = query
    }
}

/// What became of a delivery, and how its sender is answered.
public struct HookAnswer: Sendable {
    public var outcome: DeliveryRecord.Outcome
    /// `started`, `buffered`, `signalled`, `duplicate` or `filtered`.
    public var action: String
    public var deliveryID: String
    public var runID: String?
    /// The HTTP status: 202 for what was accepted or filtered now, 200 for a replay.
    public var status: Int

    /// The answer's body.
    public var json: JSONValue {
        [
            "status": .string(action), "delivery_id": .string(deliveryID),
            "run_id": runID.map(JSONValue.string) ?? .null,
        ]
    }
}

/// How triggers reach what they start, for the kinds of runs the engine alone does not know (agents).
public struct TriggerTargets: Sendable {
    /// Whether the workflow or agent exists (and is not archived).
    public var exists: @Sendable (_ orgID: String, _ target: TriggerTarget) async throws -> Bool
    /// Starts a run with `input` under the idempotency key; answers the existing run for a key used before.
    /// `companion`, when given, is written in the new run's own transaction if the target can (`written`), and
    /// not at all when the key answers an existing run.
    public var start:
        @Sendable (
            _ orgID: String, _ target: TriggerTarget, _ input: JSONValue, _ key: String, _ companion: RunCompanion?
        ) async throws -> (runID: String, created: Bool, written: Bool)

    public init(
        exists: @escaping @Sendable (String, TriggerTarget) async throws -> Bool,
        start:
            @escaping @Sendable (String, TriggerTarget, JSONValue, String, RunCompanion?) async throws -> (
                runID: String, created: Bool, written: Bool
            )
    ) {
        self.exists = exists
        self.start = start
    }
}

/// Receives deliveries to hooks: verifies them against their trigger's scheme, records each one, and starts runs
/// (one per delivery), buffers them (batch mode) or routes them to the run of their key (route mode). A replayed
/// delivery (the same delivery id) starts nothing again and is answered with the run it started.
public final class HookReceiver: Sendable {
    let store: TriggerStore
    let log: DeliveryLog
    let engine: Engine
    let targets: TriggerTargets
    let clock: WallClock
    /// Takes one delivery from a trigger's budget: `nil` when admitted, else the seconds to wait.
    let rateLimit: @Sendable (_ key: String, _ perMinute: Int) -> Int?
    private let secretValue: @Sendable (_ orgID: String, _ name: String) async throws -> String?
    private let secrets = Mutex<[String: (value: String?, at: ContinuousClock.Instant)]>([:])
    let triggers: ClusterCache<Trigger>
    /// How long a secret's value is kept in memory: a changed secret holds on hooks after at most this long.
    static let secretLifetime = Duration.seconds(5)
    /// The topic that empties every node's cache of triggers.
    static let triggersChanged = "triggers"

    init(
        store: TriggerStore,
        log: DeliveryLog,
        engine: Engine,
        targets: TriggerTargets,
        signals: ClusterSignals?,
        secret: @escaping @Sendable (String, String) async throws -> String?,
        rateLimit: @escaping @Sendable (String, Int) -> Int?
    ) {
        self.store = store
        self.log = log
        self.engine = engine
        self.targets = targets
        self.clock = engine.clock
        self.secretValue = secret
        self.rateLimit = rateLimit
        self.triggers = ClusterCache(signals: signals, topic: Self.triggersChanged, maxAge: .seconds(10))
    }

    /// The value of an organization's secret, kept for a few seconds.
    func secret(orgID: String, name: String) async throws -> String? {
        let key = orgID + "/" + name
        let now = ContinuousClock.now
        if let cached = secrets.withLock({ $0[key] }), now - cached.at < Self.secretLifetime { return cached.value }
        let value = try await secretValue(orgID, name)
        secrets.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[key] = (value, now)
        }
        return value
    }

    /// The enabled trigger with the hook id `id`.
    /// - Throws: `not_found` for an unknown or disabled trigger alike, so ids cannot be probed.
    public func trigger(hookID id: String) async throws -> Trigger {
        guard id.hasPrefix("trg_"), id.utf8.count <= 64,
            let trigger = try await triggers.value(id, load: { try await self.store.get(id: id) }),
            trigger.definition.enabled
        else { throw CaravanError.notFound("The hook") }
        return trigger
    }

    /// Records that a delivery was refused before it reached `receive` (its body was too large).
    public func refused(_ trigger: Trigger, error: CaravanError, bodyBytes: Int) async {
        let record = DeliveryRecord(
            deliveryID: Identifier.make("dlv"),
            receivedAt: clock.nowMilliseconds(),
            outcome: .refused,
            reason: error.code.rawValue,
            runID: nil,
            status: error.code.status,
            bodyBytes: bodyBytes
        )
        try? await log.refuse(triggerID: trigger.id, record: record)
    }

    /// Handles a delivery to `trigger`'s hook.
    /// - Returns: the answer, once the delivery's record (and the run it started, or its buffered event) committed.
    /// - Throws: `rate_limited` (with the seconds to wait), the verification's errors, `invalid_json` for a body
    ///   that does not parse, `validation_failed`/`output_too_large` for an input that cannot be rendered; each
    ///   refusal is recorded first.
    public func receive(_ trigger: Trigger, _ request: HookRequest) async throws -> HookAnswer {
        let now = clock.nowMilliseconds()
        let definition = trigger.definition
        if let perMinute = definition.ratePerMinute, let wait = rateLimit("trigger:" + trigger.id, perMinute) {
            log.count(triggerID: trigger.id, reason: "rate_limited", status: 429, at: now)
            throw CaravanError.rateLimited("This trigger has taken its deliveries for now.", retryAfter: wait)
        }
        var presentedID = request.headers["idempotency-key"]
        do {
            var secret: String?
            if definition.verification.scheme != .none, let name = definition.verification.secret {
                secret = try await self.secret(orgID: trigger.orgID, name: name)
                guard secret != nil else {
                    throw CaravanError(
                        .unavailable,
                        "The trigger's secret '\(name)' is not in the vault; the trigger cannot verify deliveries."
                    )
                }
            }
            let verified = try SignatureVerifier.verify(
                definition.verification,
                secret: secret,
                header: { request.headers[$0] },
                body: request.body,
                now: now
            )
            let body = try Self.parseBody(request.body, contentType: request.headers["content-type"])
            var deliveryID = verified.deliveryID
            if deliveryID == nil, definition.verification.scheme == .stripe { deliveryID = body["id"]?.stringValue }
            if deliveryID == nil { deliveryID = presentedID }
            if deliveryID == nil, definition.verification.scheme.signs {
                let header = ["stripe-signature", "x-hub-signature-256", "webhook-signature"].lazy.compactMap {
                    request.headers[$0]
                }.first
                deliveryID = header.map(SignatureVerifier.derived)
            }
            let id = deliveryID ?? Identifier.make("dlv")
            presentedID = id
            guard !id.isEmpty, id.utf8.count <= 200, id.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) else {
                presentedID = nil
                throw CaravanError(
                    .invalidRequest,
                    "The delivery id must be 1 to 200 visible ASCII characters."
                )
            }
            let scope = Self.scope(trigger: trigger, deliveryID: id, body: body, request: request)
            if let filter = definition.filter, !filter.evaluate(in: scope).isTruthy {
                let answer = HookAnswer(outcome: .filtered, action: "filtered", deliveryID: id, runID: nil, status: 202)
                try await record(trigger, answer, reason: "filter", bytes: request.body.count, at: now)
                return answer
            }
            let limit = engine.configuration.maxPayloadBytes
            switch definition.mode {
            case .direct:
                return try await startOne(trigger, id: id, scope: scope, bytes: request.body.count, now: now)
            case .batch(_, _, let split):
                let events = try Self.batchEvents(definition.input, split: split, scope: scope, limit: limit - 1_024)
                let inserted = try await log.write(
                    DeliveryLog.Entry(
                        triggerID: trigger.id,
                        record: DeliveryRecord(
                            deliveryID: id,
                            receivedAt: now,
                            outcome: .accepted,
                            reason: "buffered",
                            runID: nil,
                            status: 202,
                            bodyBytes: request.body.count
                        ),
                        buffered: events
                    )
                )
                if inserted {
                    return HookAnswer(outcome: .accepted, action: "buffered", deliveryID: id, runID: nil, status: 202)
                }
                return try await duplicate(trigger, id: id, runID: nil, bytes: request.body.count, now: now)
            case .route(let keyTemplate, let signal):
                if let earlier = try await store.acceptedDelivery(triggerID: trigger.id, deliveryID: id) {
                    return try await duplicate(
                        trigger,
                        id: id,
                        runID: earlier.runID,
                        bytes: request.body.count,
                        now: now
                    )
                }
                let key = try Self.routeKey(keyTemplate, scope: scope)
                let event = try Template.render(definition.input, scope: scope, limit: limit - 1_024)
                let (runID, action) = try await route(trigger, key: key, event: event, signal: signal, now: now)
                let answer = HookAnswer(outcome: .accepted, action: action, deliveryID: id, runID: runID, status: 202)
                if try await !record(trigger, answer, reason: action, bytes: request.body.count, at: now) {
                    // A concurrent replay of the same delivery recorded it first.
                    return try await duplicate(trigger, id: id, runID: runID, bytes: request.body.count, now: now)
                }
                return answer
            }
        } catch let error as CaravanError {
            let record = DeliveryRecord(
                deliveryID: presentedID.flatMap { $0.utf8.count <= 200 ? $0 : nil } ?? Identifier.make("dlv"),
                receivedAt: now,
                outcome: .refused,
                reason: error.code.rawValue,
                runID: nil,
                status: error.code.status,
                bodyBytes: request.body.count
            )
            try? await log.refuse(triggerID: trigger.id, record: record)
            throw error
        }
    }

    /// The events a batching trigger's delivery adds: its input rendered over the scope, or, with `split`, one
    /// per item of the array at that path, rendered with `item` in the scope.
    /// - Throws: `validation_failed` when the split path holds no array, or more than `maxBatchEvents` items.
    static func batchEvents(
        _ input: JSONValue,
        split: CaravanWorkflow.Expression?,
        scope: JSONValue,
        limit: Int
    ) throws(CaravanError) -> [(event: String, bytes: Int)] {
        guard let split else {
            let text = try Template.render(input, scope: scope, limit: limit).canonicalText
            return [(text, text.utf8.count)]
        }
        guard let items = split.evaluate(in: scope).arrayValue else {
            throw CaravanError.validation("/mode/batch/split", "The delivery holds no array at the split path.")
        }
        guard items.count <= TriggerDefinition.maxBatchEvents else {
            throw CaravanError.validation(
                "/mode/batch/split",
                "A delivery splits into at most \(TriggerDefinition.maxBatchEvents) events."
            )
        }
        guard case .object(var itemScope) = scope else { return [] }
        var events: [(event: String, bytes: Int)] = []
        events.reserveCapacity(items.count)
        for item in items {
            itemScope["item"] = item
            let text = try Template.render(input, scope: .object(itemScope), limit: limit).canonicalText
            events.append((text, text.utf8.count))
        }
        return events
    }

    /// One run per delivery, keyed by the delivery: a replay answers the run the first delivery started.
    private func startOne(
        _ trigger: Trigger,
        id: String,
        scope: JSONValue,
        bytes: Int,
        now: Int64
    ) async throws -> HookAnswer {
        let input = try Template.render(
            trigger.definition.input,
            scope: scope,
            limit: engine.configuration.maxPayloadBytes
        )
        // The delivery's record commits with its run, in the run's own transaction (where the target allows).
        let accepted = DeliveryRecord(
            deliveryID: id,
            receivedAt: now,
            outcome: .accepted,
            reason: "started",
            runID: nil,
            status: 202,
            bodyBytes: bytes
        )
        let companion = RunCompanion(AcceptedDelivery(triggerID: trigger.id, record: accepted)) { rows, executor in
            let records = rows.map { runID, delivery in
                var record = delivery.record
                record.runID = runID
                return (delivery.triggerID, record)
            }
            _ = try await DeliveryLog.insert(records, in: executor)
        }
        let (runID, created, written) = try await targets.start(
            trigger.orgID,
            trigger.definition.target,
            input,
            "trigger:\(trigger.id):\(id)",
            companion
        )
        guard created else { return try await duplicate(trigger, id: id, runID: runID, bytes: bytes, now: now) }
        let answer = HookAnswer(outcome: .accepted, action: "started", deliveryID: id, runID: runID, status: 202)
        if !written, try await !record(trigger, answer, reason: "started", bytes: bytes, at: now) {
            return try await duplicate(trigger, id: id, runID: runID, bytes: bytes, now: now)
        }
        return answer
    }

    /// Sends `event` to the run of `key`, or starts the key's next run: the first event of a key (or the first
    /// after its run finished) starts generation `n + 1` under the idempotency key `route:<trigger>:<key>:<n+1>`,
    /// so two deliveries racing for it start one run; the one that did not start it sends its event to it.
    private func route(
        _ trigger: Trigger,
        key: String,
        event: JSONValue,
        signal: String,
        now: Int64
    ) async throws -> (runID: String, action: String) {
        var known = try await store.route(triggerID: trigger.id, key: key)
        for _ in 0..<5 {
            if let current = known, let status = try await engine.runStatus(id: current.runID), !status.isTerminal {
                do {
                    try await engine.signal(
                        orgID: trigger.orgID,
                        id: current.runID,
                        name: signal,
                        data: event,
                        sender: "trigger:" + trigger.name
                    )
                    return (current.runID, "signalled")
                } catch let error as CaravanError where error.code == .conflict || error.code == .notFound {
                    // It finished meanwhile: the key's next run starts below.
                }
            }
            let generation = (known?.generation ?? 0) + 1
            let (runID, created, _) = try await targets.start(
                trigger.orgID,
                trigger.definition.target,
                ["key": .string(key), "event": event],
                "route:\(trigger.id):\(key):\(generation)",
                nil
            )
            try await store.setRoute(triggerID: trigger.id, key: key, generation: generation, runID: runID, now: now)
            if created { return (runID, "started") }
            known = (generation, runID)
        }
        throw CaravanError(.unavailable, "The key's run kept finishing while the event was routed; send it again.")
    }

    /// Answers a replay: recorded as a duplicate, with the run the first delivery started.
    private func duplicate(
        _ trigger: Trigger,
        id: String,
        runID: String?,
        bytes: Int,
        now: Int64
    ) async throws -> HookAnswer {
        var runID = runID
        if runID == nil { runID = try await store.acceptedDelivery(triggerID: trigger.id, deliveryID: id)?.runID }
        let answer = HookAnswer(outcome: .duplicate, action: "duplicate", deliveryID: id, runID: runID, status: 200)
        try await record(trigger, answer, reason: "replayed", bytes: bytes, at: now)
        return answer
    }

    @discardableResult
    private func record(
        _ trigger: Trigger,
        _ answer: HookAnswer,
        reason: String,
        bytes: Int,
        at now: Int64
    ) async throws -> Bool {
        try await log.write(
            DeliveryLog.Entry(
                triggerID: trigger.id,
                record: DeliveryRecord(
                    deliveryID: answer.deliveryID,
                    receivedAt: now,
                    outcome: answer.outcome,
                    reason: reason,
                    runID: answer.runID,
                    status: answer.status,
                    bodyBytes: bytes
                )
            )
        )
    }

    // MARK: The delivery's scope

    /// Headers that carry credentials never reach templates (whose output is stored as the run's input).
    static let hiddenHeaders: Set<String> = ["authorization", "proxy-authorization", "cookie"]

    /// `{body, headers, query, trigger: {name, id}, delivery: {id}}`.
    static func scope(trigger: Trigger, deliveryID: String, body: JSONValue, request: HookRequest) -> JSONValue {
        var headers: [String: JSONValue] = [:]
        for (name, value) in request.headers where !hiddenHeaders.contains(name) { headers[name] = .string(value) }
        return [
            "body": body,
            "headers": .object(headers),
            "query": .object(request.query.mapValues(JSONValue.string)),
            "trigger": ["name": .string(trigger.name), "id": .string(trigger.id)],
            "delivery": ["id": .string(deliveryID)],
        ]
    }

    /// The body as the scope holds it: JSON (when declared so, or undeclared) parsed, a form as an object of its
    /// fields, any other type as text; an empty body is `null`.
    /// - Throws: `invalid_json` when a JSON body does not parse.
    static func parseBody(_ bytes: [UInt8], contentType: String?) throws(CaravanError) -> JSONValue {
        guard !bytes.isEmpty else { return .null }
        let type = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        if type.isEmpty || type == "application/json" || type.hasSuffix("+json") {
            do throws(CaravanError) {
                return try JSONValue(parsing: bytes)
            } catch {
                throw CaravanError(.invalidJSON, "The delivery's body is not valid JSON: \(error.detail)")
            }
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if type == "application/x-www-form-urlencoded" {
            var fields: [String: JSONValue] = [:]
            for pair in text.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map {
                    String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
                }
                if let name = parts.first { fields[name] = .string(parts.count > 1 ? parts[1] : "") }
            }
            return .object(fields)
        }
        return .string(text)
    }

    /// A route key rendered over the scope: a string as it is, another value as its JSON text.
    /// - Throws: `validation_failed` for an empty key or one longer than the limit.
    static func routeKey(_ template: JSONValue, scope: JSONValue) throws(CaravanError) -> String {
        let value = try Template.render(template, scope: scope, limit: 4_096)
        let key: String
        switch value {
        case .string(let text): key = text
        case .null: key = ""
        default: key = value.canonicalText
        }
        guard !key.isEmpty else {
            throw CaravanError.validation("/mode/route/key", "The delivery gives no route key (it rendered empty).")
        }
        guard key.utf8.count <= TriggerDefinition.maxRouteKeyBytes else {
            throw CaravanError.validation(
                "/mode/route/key",
                "The route key is longer than \(TriggerDefinition.maxRouteKeyBytes) bytes."
            )
        }
        return key
    }
}

/// A direct delivery's record, written with the run it starts.
private struct AcceptedDelivery: Sendable {
    var triggerID: String
    var record: DeliveryRecord
}
