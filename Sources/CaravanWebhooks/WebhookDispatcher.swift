import AsyncHTTPClient
public import CaravanCore
public import CaravanEngine
public import CaravanOutbound
import CaravanWorkflow
import Foundation
public import Logging
import NIOCore
import NIOHTTP1
public import ServiceLifecycle
import Synchronization

/// How webhooks are delivered: the retry schedule and the limits of one attempt.
public struct WebhookSettings: Sendable {
    /// The wait before each retry of a failed delivery, in milliseconds (up to a tenth more, at random). After the
    /// last, the delivery has failed for good (re-sendable by hand). The default spans more than 24 hours: 5 s,
    /// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    public var retryDelays: [Int64] = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]
    /// How long a node holds a webhook before another may take it over (renewed every second while it lives).
    public var leaseDuration: Int64 = 15_000
    /// How long one attempt may take, connecting and reading the answer included.
    public var attemptTimeout: Int64 = 15_000
    /// How many of a webhook's runs are delivered for at once (each run's deliveries go one after another).
    public var concurrency = 64

    public init() {}
}

/// Sends the messages of `slack` and `email` webhooks (the organization's SMTP settings and the message formats
/// live with notifications); `messageID` is the same for every attempt of one delivery.
public typealias WebhookMessenger =
    @Sendable (
        _ orgID: String, _ target: WebhookTarget, _ messageID: String, _ title: String, _ text: String,
        _ data: JSONValue
    ) async throws -> Void

/// Delivers every enabled webhook's events, on every node: each webhook is leased to one node at a time, which
/// follows the organization's event feed from the webhook's position, queues the matching events as deliveries
/// (the outbox: the feed is committed with the events it holds, so an event committed is an event delivered),
/// and sends them: at least once, in order within a run (a run's next delivery waits for the one before to
/// succeed or to fail for good), runs side by side. A node that dies leaves its webhooks to another node when
/// their leases lapse; at shutdown it hands them back at once. Repeats carry the same `webhook-id`.
public final class WebhookDispatcher: Service, Sendable {
    private let store: WebhookStore
    private let engine: Engine
    private let http: EgressHTTPClient
    private let messenger: WebhookMessenger
    private let settings: WebhookSettings
    private let owner: String
    private let clock: WallClock
    private let logger: Logger
    private let ready: @Sendable () async -> Void
    private let onDisabled: @Sendable (Webhook, String) async -> Void
    private let working = Mutex(Set<String>())

    /// - Parameters:
    ///   - ready: returns once the schema is in place.
    ///   - onDisabled: told when a failure streak disabled a webhook, with the reason (to audit and notify).
    public init(
        store: WebhookStore,
        engine: Engine,
        http: EgressHTTPClient,
        messenger: @escaping WebhookMessenger,
        settings: WebhookSettings,
        clock: WallClock,
        logger: Logger,
        ready: @escaping @Sendable () async -> Void,
        onDisabled: @escaping @Sendable (Webhook, String) async -> Void
    ) {
        self.store = store
        self.engine = engine
        self.http = http
        self.messenger = messenger
        self.settings = settings
        self.owner = engine.configuration.nodeID
        self.clock = clock
        self.logger = logger
        self.ready = ready
        self.onDisabled = onDisabled
    }

    public func run() async throws {
        await ready()
        do { try await store.recoverLeases(owner: owner) } catch {
            logger.warning("Could not take back this node's webhooks", metadata: ["error.message": "\(error)"])
        }
        let (claimed, continuation) = AsyncStream.makeStream(of: Webhook.self)
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isShuttingDownGracefully && !Task.isCancelled {
                    for webhook in await self.claim() where self.working.withLock({ $0.insert(webhook.id).inserted }) {
                        continuation.yield(webhook)
                    }
                    try? await Task.sleep(for: .seconds(1))
                }
                continuation.finish()
            }
            for await webhook in claimed {
                group.addTask {
                    await self.deliver(webhook)
                    _ = self.working.withLock { $0.remove(webhook.id) }
                }
            }
        }
        do { try await store.release(owner: owner) } catch {
            logger.warning("Could not hand back webhooks on shutdown", metadata: ["error.message": "\(error)"])
        }
    }

    /// Takes the webhooks this node may deliver (and extends its leases on those it has).
    private func claim() async -> [Webhook] {
        let now = clock.nowMilliseconds()
        do {
            return try await store.claim(owner: owner, now: now, until: now + settings.leaseDuration, limit: 1_000)
        } catch {
            logger.warning("Could not claim webhooks", metadata: ["error.message": "\(error)"])
            return []
        }
    }

    /// Delivers one webhook's events while this node holds it: queue what the feed holds, send what is due, wait
    /// for new events or the next retry. A pass's outcomes are recorded while the next pass reads and queues
    /// (one recording at a time, in order); a pass that reads the pending deliveries waits for them first.
    private func deliver(_ claimed: Webhook) async {
        let subscription = engine.subscribe(to: "org:" + claimed.orgID)
        defer { subscription.cancel() }
        var logger = logger
        logger[metadataKey: "caravan.webhook_id"] = "\(claimed.id)"
        logger[metadataKey: "caravan.org_id"] = "\(claimed.orgID)"
        await withTaskGroup(of: Recording.self) { recordings in
            var filter: (text: String, parsed: CaravanWorkflow.Expression?)?
            /// Whether the last pass left nothing pending: then what this pass queues is all there is to send.
            /// The pending deliveries are still read at least once a second, for those queued again by hand.
            var nothingLeft = false
            var pendingReadAt = ContinuousClock.now
            var recording = false
            var disabled: (Webhook, String)?
            passes: while !Task.isShuttingDownGracefully && !Task.isCancelled {
                do {
                    guard
                        let (webhook, secrets, feed) = try await store.passStart(
                            id: claimed.id,
                            owner: owner,
                            limit: Self.feedBatch
                        )
                    else { break }
                    if let text = webhook.filter, filter?.text != text {
                        filter = (text, try? CaravanWorkflow.Expression(parsing: text))
                    } else if webhook.filter == nil {
                        filter = nil
                    }
                    guard let queued = try await queue(feed, of: webhook, filter: filter?.parsed) else {
                        break  // the lease went to another node
                    }
                    let pending: [WebhookDelivery]
                    if nothingLeft && ContinuousClock.now - pendingReadAt < .seconds(1) {
                        pending = queued
                    } else {
                        if recording, case .disabled(let reason) = await recordings.next() {
                            disabled = (webhook, reason)
                            break
                        }
                        recording = false
                        pendingReadAt = .now
                        pending = try await store.pending(webhookID: webhook.id, limit: Self.pendingLimit)
                    }
                    let pass = await send(webhook, pending: pending, secrets: secrets)
                    nothingLeft = pass.leftNothing && pending.count < Self.pendingLimit
                    if recording {
                        recording = false
                        switch await recordings.next() {
                        case .disabled(let reason):
                            disabled = (webhook, reason)
                            break passes
                        case .failed: nothingLeft = false
                        case .recorded, nil: break
                        }
                    }
                    if !pass.outcomes.isEmpty {
                        recording = true
                        recordings.addTask { [logger] in await self.record(pass.outcomes, of: webhook, logger: logger) }
                    }
                    if feed.count == Self.feedBatch { continue }
                    var wait = Duration.seconds(1)
                    if let due = pass.nextDue {
                        wait = min(wait, .milliseconds(max(0, due - clock.nowMilliseconds())))
                    }
                    if wait > .zero { await subscription.wait(timeout: wait) }
                } catch {
                    logger.warning("Webhook delivery pass failed", metadata: ["error.message": "\(error)"])
                    nothingLeft = false
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            if recording, case .disabled(let reason) = await recordings.next(), disabled == nil {
                disabled = (claimed, reason)
            }
            if let (webhook, reason) = disabled {
                logger.warning("Webhook disabled after a failure streak", metadata: ["error.message": "\(reason)"])
                await onDisabled(webhook, reason)
            }
        }
    }

    /// What became of recording a pass's outcomes.
    private enum Recording {
        case recorded
        /// The failure streak disabled the webhook, for this reason.
        case disabled(String)
        /// The outcomes could not be written: the deliveries stay pending and are sent again.
        case failed
    }

    private func record(_ outcomes: [AttemptOutcome], of webhook: Webhook, logger: Logger) async -> Recording {
        do {
            let reason = try await store.record(
                outcomes,
                webhookID: webhook.id,
                retryDelays: settings.retryDelays,
                now: clock.nowMilliseconds()
            )
            return reason.map(Recording.disabled) ?? .recorded
        } catch {
            logger.warning("Could not record deliveries", metadata: ["error.message": "\(error)"])
            return .failed
        }
    }

    /// The most events one pass reads from the feed.
    static var feedBatch: Int { 1_000 }
    /// The most pending deliveries one pass takes.
    static var pendingLimit: Int { 2_000 }

    /// Queues the webhook's matching events of `feed` (read after its feed position).
    /// - Returns: the deliveries queued; `nil` if the lease was lost.
    private func queue(
        _ feed: [FeedEvent],
        of webhook: Webhook,
        filter: CaravanWorkflow.Expression?
    ) async throws -> [WebhookDelivery]? {
        guard let last = feed.last else { return [] }
        var deliveries: [(event: FeedEvent, type: String, payload: String)] = []
        for item in feed {
            let types = DerivedEventType.types(of: item.event.type, data: item.event.data)
            guard let type = webhook.wantedType(among: types) else { continue }
            if let filter, !filter.evaluate(in: WebhookPayload.filterScope(for: item, type: type)).isTruthy {
                continue
            }
            deliveries.append((item, type, WebhookPayload.body(for: item, type: type).canonicalText))
        }
        return try await store.enqueue(
            webhookID: webhook.id,
            owner: owner,
            deliveries: deliveries,
            position: last.event.globalID,
            now: clock.nowMilliseconds()
        )
    }

    /// Sends what is due of `pending` (in queue order), each run's deliveries in order, runs side by side.
    /// - Returns: how the attempts went, when to look again (`nil`: when events come), and whether every delivery
    ///   was sent and succeeded (nothing left pending).
    private func send(
        _ webhook: Webhook,
        pending: [WebhookDelivery],
        secrets: [String]
    ) async -> (outcomes: [AttemptOutcome], nextDue: Int64?, leftNothing: Bool) {
        guard !pending.isEmpty else { return ([], nil, true) }
        let now = clock.nowMilliseconds()
        var chains: [String: [WebhookDelivery]] = [:]
        var order: [String] = []
        var nextDue: Int64?
        for delivery in pending {
            if chains[delivery.runID] == nil {
                // A run's first pending delivery decides: if it is not due, its later ones wait behind it.
                let due = delivery.nextAttemptAt ?? now
                if due > now {
                    nextDue = min(nextDue ?? due, due)
                    chains[delivery.runID] = []
                    continue
                }
                order.append(delivery.runID)
                chains[delivery.runID] = [delivery]
            } else if !(chains[delivery.runID]?.isEmpty ?? true) {
                chains[delivery.runID]?.append(delivery)
            }
        }
        guard !order.isEmpty else { return ([], nextDue, false) }
        var outcomes: [AttemptOutcome] = []
        await withTaskGroup(of: [AttemptOutcome].self) { group in
            var next = order.makeIterator()
            func startNext() {
                guard let runID = next.next(), let chain = chains[runID] else { return }
                group.addTask { await self.sendChain(chain, of: webhook, secrets: secrets) }
            }
            for _ in 0..<settings.concurrency { startNext() }
            for await results in group {
                outcomes += results
                startNext()
            }
        }
        let leftNothing = nextDue == nil && outcomes.count == pending.count && outcomes.allSatisfy(\.succeeded)
        // A chain sent whole may have more behind it: look again at once. Else wake for the earliest retry.
        if outcomes.contains(where: \.succeeded) { return (outcomes, clock.nowMilliseconds(), leftNothing) }
        for outcome in outcomes where outcome.attemptsBefore < Int64(settings.retryDelays.count) {
            let retry = outcome.at + settings.retryDelays[Int(outcome.attemptsBefore)]
            nextDue = min(nextDue ?? retry, retry)
        }
        return (outcomes, nextDue, false)
    }

    /// Sends one run's deliveries one after another, stopping at the first that fails.
    private func sendChain(_ chain: [WebhookDelivery], of webhook: Webhook, secrets: [String]) async -> [AttemptOutcome]
    {
        var outcomes: [AttemptOutcome] = []
        for delivery in chain {
            let outcome = await attempt(delivery, of: webhook, secrets: secrets)
            outcomes.append(outcome)
            if !outcome.succeeded { break }
        }
        return outcomes
    }

    /// One attempt of one delivery.
    private func attempt(_ delivery: WebhookDelivery, of webhook: Webhook, secrets: [String]) async -> AttemptOutcome {
        let started = ContinuousClock.now
        let at = clock.nowMilliseconds()
        var outcome = AttemptOutcome(
            deliveryID: delivery.id,
            attemptsBefore: delivery.attempts,
            succeeded: false,
            latencyMilliseconds: 0,
            at: at
        )
        do {
            switch webhook.target {
            case .standard(let url):
                let body = Array(delivery.payload.utf8)
                let timestamp = at / 1000
                var request = HTTPClientRequest(url: url.absoluteString)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.headers.add(name: "User-Agent", value: "Caravan-Webhooks/1")
                request.headers.add(name: "webhook-id", value: delivery.messageID)
                request.headers.add(name: "webhook-timestamp", value: String(timestamp))
                request.headers.add(
                    name: "webhook-signature",
                    value: try WebhookSigner.signature(
                        id: delivery.messageID,
                        timestamp: timestamp,
                        body: body,
                        secrets: secrets
                    )
                )
                request.body = .bytes(ByteBuffer(bytes: body))
                let response = try await EgressAttribution.$current.withValue(
                    EgressAttribution(orgID: webhook.orgID, runID: delivery.runID)
                ) {
                    try await http.execute(
                        request,
                        timeout: .milliseconds(settings.attemptTimeout),
                        maxBodyBytes: 1 << 20
                    )
                }
                outcome.responseStatus = Int64(response.status.code)
                outcome.responseExcerpt = String(decoding: response.body.readableBytesView.prefix(1_024), as: UTF8.self)
                outcome.succeeded = (200..<300).contains(response.status.code)
                if !outcome.succeeded { outcome.error = "The receiver answered \(response.status.code)." }
            case .slack, .email:
                let body = try JSONValue(parsing: Array(delivery.payload.utf8))
                let message = WebhookPayload.message(from: body)
                try await messenger(
                    webhook.orgID,
                    webhook.target,
                    delivery.messageID,
                    message.title,
                    message.text,
                    body
                )
                outcome.succeeded = true
            }
        } catch let failure as Failure {
            outcome.error = "\(failure.code): \(failure.message)"
        } catch {
            outcome.error = String(describing: error).prefix(500).description
        }
        outcome.latencyMilliseconds = Int64((ContinuousClock.now - started) / .milliseconds(1))
        return outcome
    }
}
