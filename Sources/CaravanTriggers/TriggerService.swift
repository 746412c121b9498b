public import CaravanCore
public import CaravanEngine
public import CaravanStorage
public import Logging
public import ServiceLifecycle

/// Inbound triggers: their definitions (`PUT/GET/DELETE /v1/triggers/{name}`), their delivery records, and, as a
/// `Service` on every node, the loop that starts the runs of buffered batches and writes counted refusals.
public final class TriggerService: Service, Sendable {
    /// Receives deliveries to hooks.
    public let receiver: HookReceiver
    let store: TriggerStore
    let database: any Database
    let engine: Engine
    let logger: Logger
    let flusher: BatchFlusher
    private let ready = WakeFlag()
    /// How long delivery records (and so the protection against replays of buffered and routed deliveries) last.
    public static let deliveryRetention = CaravanDuration.seconds(7 * 86_400)

    /// - Parameters:
    ///   - targets: how runs of workflows and agents are started.
    ///   - secret: the value of an organization's vault secret, or `nil` when there is none.
    ///   - rateLimit: takes one delivery from a trigger's budget (`nil` when admitted, else seconds to wait).
    public init(
        database: any Database,
        engine: Engine,
        targets: TriggerTargets,
        signals: ClusterSignals?,
        secret: @escaping @Sendable (String, String) async throws -> String?,
        rateLimit: @escaping @Sendable (String, Int) -> Int?,
        logger: Logger
    ) {
        self.database = database
        self.engine = engine
        self.logger = logger
        let store = TriggerStore(database: database)
        self.store = store
        let receiver = HookReceiver(
            store: store,
            log: DeliveryLog(database: database),
            engine: engine,
            targets: targets,
            signals: signals,
            secret: secret,
            rateLimit: rateLimit
        )
        self.receiver = receiver
        self.flusher = BatchFlusher(database: database, receiver: receiver, logger: logger)
    }

    /// Lets the loops start: the tables exist.
    public func schemaIsReady() { ready.signal() }

    public func run() async throws {
        await ready.wait(timeout: nil)
        if Task.isCancelled { return }
        await withDiscardingTaskGroup { outer in
            outer.addTask { await self.receiver.log.queue.run() }
            // The loop stops at a graceful shutdown; what was counted is written before the committer closes.
            try? await cancelWhenGracefulShutdown { await self.flushLoop() }
            try? await receiver.log.flushCounted(now: engine.clock.nowMilliseconds())
            receiver.log.queue.close()
        }
    }

    /// Every 200 ms: the due batches; every second, counted refusals; every ten minutes, old delivery records.
    private func flushLoop() async {
        var tick = 0
        while !Task.isCancelled {
            do {
                try await flusher.flushDue()
            } catch {
                logger.warning("Starting the runs of buffered batches failed", metadata: ["error.message": "\(error)"])
            }
            if tick % 5 == 0 {
                do {
                    try await receiver.log.flushCounted(now: engine.clock.nowMilliseconds())
                } catch {
                    logger.warning("Writing counted refusals failed", metadata: ["error.message": "\(error)"])
                }
            }
            if tick % 3_000 == 0 {
                let cutoff = engine.clock.nowMilliseconds() - Self.deliveryRetention.milliseconds
                _ = try? await store.pruneDeliveries(before: cutoff, limit: 5_000)
            }
            tick += 1
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    // MARK: Definitions

    /// Creates or replaces the trigger `name`, after checking that what it starts and the secret it verifies
    /// with exist.
    /// - Parameter maxBodyBytes: the server's body limit, which the trigger's may not pass.
    /// - Returns: the trigger and whether it was created.
    /// - Throws: `validation_failed` with a pointer for every field at fault.
    public func put(
        orgID: String,
        name: String,
        body: JSONValue,
        maxBodyBytes: Int,
        secretExists: @Sendable (String) async throws -> Bool
    ) async throws -> (trigger: Trigger, created: Bool) {
        guard DefinitionNames.isValid(name) else {
            throw CaravanError.validation("/name", "trigger names are 1 to 64 of a-z, 0-9 and -")
        }
        let definition = try TriggerDefinition.parse(body, maxBodyBytes: maxBodyBytes)
        var errors: [CaravanError.FieldError] = []
        if try await !receiver.targets.exists(orgID, definition.target) {
            switch definition.target {
            case .workflow(let workflow):
                errors.append(.init(pointer: "/workflow", detail: "the workflow '\(workflow)' does not exist"))
            case .agent(let agent):
                errors.append(.init(pointer: "/agent", detail: "the agent '\(agent)' does not exist"))
            }
        }
        if let secret = definition.verification.secret, try await !secretExists(secret) {
            errors.append(.init(pointer: "/verify/secret", detail: "the secret '\(secret)' is not in the vault"))
        }
        guard errors.isEmpty else {
            throw CaravanError(.validationFailed, "The trigger is not valid.", fieldErrors: errors)
        }
        let now = engine.clock.nowMilliseconds()
        let store = self.store
        return try await receiver.triggers.change(in: database) { executor in
            try await store.put(orgID: orgID, name: name, definition: definition, now: now, in: executor)
        }
    }

    /// The trigger `name` of the organization, or `nil`.
    public func get(orgID: String, name: String) async throws -> Trigger? {
        try await store.get(orgID: orgID, name: name)
    }

    /// A page of the organization's triggers by name; `after` is the last name of the previous page.
    public func list(orgID: String, after: String?, limit: Int) async throws -> [Trigger] {
        try await store.list(orgID: orgID, after: after, limit: limit)
    }

    /// Deletes the trigger `name`, its delivery records, buffered events and routes.
    /// - Returns: whether it existed.
    public func delete(orgID: String, name: String) async throws -> Bool {
        let store = self.store
        return try await receiver.triggers.change(in: database) { executor in
            try await store.delete(orgID: orgID, name: name, in: executor)
        } != nil
    }

    /// A page of the trigger's deliveries, newest first.
    /// - Throws: `not_found` for an unknown trigger.
    public func deliveries(orgID: String, name: String, before: Int64?, limit: Int) async throws -> [DeliveryRecord] {
        guard let trigger = try await store.get(orgID: orgID, name: name) else {
            throw CaravanError.notFound("The trigger '\(name)'")
        }
        return try await store.deliveries(triggerID: trigger.id, before: before, limit: limit)
    }
}

/// The names triggers may take: those of workflows.
enum DefinitionNames {
    static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }
}
