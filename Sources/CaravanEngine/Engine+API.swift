public import CaravanAudit
public import CaravanCore
import CaravanStorage
import CaravanWorkflow
import Logging

extension Engine {
    // MARK: Starting runs

    /// Starts a run of the latest version of `workflow`.
    /// - Parameters:
    ///   - idempotencyKey: a repeated key with the same `requestHash` answers the same run; with another hash it
    ///     is an `idempotency_conflict`.
    ///   - audit: the audit entry of the request, committed in the run's own transaction (its target becomes
    ///     `run:<id>`) when the run is created; not written when the key answers an existing run.
    ///   - companion: rows of another module written in the run's own transaction, likewise only when it is created.
    /// - Returns: the run and whether it was created now (and so its audit entry written).
    /// - Throws: `not_found`, `payload_too_large`, `validation_failed`, `idempotency_conflict`.
    public func startRun(
        orgID: String,
        workflow name: String,
        input: JSONValue,
        idempotencyKey: String?,
        requestHash: String?,
        parent: (runID: String, step: String)? = nil,
        audit: AuditRecord? = nil,
        companion: RunCompanion? = nil
    ) async throws -> (run: RunRecord, created: Bool) {
        if let idempotencyKey,
            let existing = try await database.read({
                try await self.store.get(orgID: orgID, idempotencyKey: idempotencyKey, in: $0)
            })
        {
            return (try sameRequest(existing, requestHash: requestHash), false)
        }
        guard let workflow = try await workflows.get(orgID: orgID, name: name), workflow.archivedAt == nil else {
            throw CaravanError.notFound("The workflow '\(name)'")
        }
        let size = input.canonicalText.utf8.count
        guard size <= configuration.maxPayloadBytes else {
            throw CaravanError(
                .payloadTooLarge,
                "The run input is \(size) bytes; the limit is \(configuration.maxPayloadBytes)."
            )
        }
        if let schema = workflow.definition.inputSchema {
            let problems = JSONSchemaCheck.problems(of: input, against: schema, at: "/input")
            if !problems.isEmpty {
                throw CaravanError(
                    .validationFailed,
                    "The input does not match the workflow's input schema.",
                    fieldErrors: problems
                )
            }
        }
        if let parent {
            let depth = try await database.read {
                try await self.store.depth(of: parent.runID, limit: self.configuration.maxRunDepth, in: $0)
            }
            if depth + 1 > configuration.maxRunDepth {
                throw CaravanError(.conflict, Self.depthMessage(configuration.maxRunDepth))
            }
        }
        let now = clock.nowMilliseconds()
        var run = Self.newRun(orgID: orgID, workflow: workflow, input: input, now: now)
        run.idempotencyKey = idempotencyKey
        run.requestHash = requestHash
        run.parentRunID = parent?.runID
        run.parentStep = parent?.step
        let queued = RunEvent(runID: run.id, seq: 1, type: "run.queued", at: now)
        let start = await plannedStart(of: run, definition: workflow.definition, now: now)
        let outcome = try await commits.submit(
            .create(NewRun(run: run, wakeAt: nil), events: [queued], start: start, audit: audit, companion: companion)
        )
        guard case .created(let inserted, let admitted) = outcome else {
            throw CaravanError(.internal, "The run could not be created.")
        }
        guard inserted else {
            // Another request with the same key won the race.
            guard let idempotencyKey,
                let existing = try await database.read({
                    try await self.store.get(orgID: orgID, idempotencyKey: idempotencyKey, in: $0)
                })
            else { throw CaravanError(.conflict, "The run could not be created.") }
            return (try sameRequest(existing, requestHash: requestHash), false)
        }
        notifier.changed("org:" + orgID)
        if let admitted {
            if admitted.run.status.isTerminal {
                notifier.changed(run.id)
            } else {
                dispatchLocally(ClaimedExecution(run: admitted.run, fence: admitted.fence, launches: admitted.launches))
            }
            return (admitted.run, true)
        }
        return (run, true)
    }

    /// Plans the start of a new run, for the commit to apply if the limits admit it: starts it, plans its root
    /// steps and runs the instant ones (templates) here, outside any transaction.
    private func plannedStart(of queued: RunRecord, definition: WorkflowDefinition, now: Int64) async -> PlannedStart {
        var run = queued
        var planner = RunPlanner(definition: definition, now: now, maxOutputBytes: configuration.maxPayloadBytes)
        planner.start(&run)
        planner.advance(&run, signals: [], children: [:])
        var launches: [StepLaunch] = []
        var ranInstant = false
        for launch in planner.takeLaunches() {
            guard isInstant(launch) else {
                launches.append(launch)
                continue
            }
            let outcome = await runStep(launch, run: run, timeout: .seconds(30), logger: logger)
            planner.apply(outcome, step: launch.stepID, attempt: launch.attempt, to: &run)
            ranInstant = true
        }
        if ranInstant { planner.advance(&run, signals: [], children: [:]) }
        launches += planner.takeLaunches()
        return PlannedStart(
            admission: Admission(
                workflowLimit: definition.concurrency,
                organizationLimit: configuration.maxActiveRunsPerOrganization
            ),
            run: run,
            events: planner.events,
            launches: launches,
            owner: configuration.nodeID,
            leaseUntil: now + configuration.leaseDuration.milliseconds
        )
    }

    /// Whether `launch` runs at once, without a task or a timer: a single call of an instant kind (templates).
    func isInstant(_ launch: StepLaunch) -> Bool {
        launch.items == nil && instantKinds.contains(launch.kind)
    }

    static func depthMessage(_ limit: Int) -> String {
        "Runs may start runs at most \(limit) levels deep (--max-run-depth); this one would be deeper."
    }

    private func sameRequest(_ existing: RunRecord, requestHash: String?) throws -> RunRecord {
        guard existing.requestHash == requestHash else {
            throw CaravanError(.idempotencyConflict, "This Idempotency-Key was used with another request body.")
        }
        return existing
    }

    // MARK: Reading runs

    /// The run `id` of `orgID`, or `nil` (also for another organization's run).
    public func run(orgID: String, id: String) async throws -> RunRecord? {
        try await database.read { try await self.store.get(orgID: orgID, id: id, in: $0) }
    }

    /// A page of runs, newest first; `cursor` is the last id of the previous page.
    public func runs(
        orgID: String,
        workflow: String?,
        status: RunStatus?,
        created: CreatedRange = CreatedRange(),
        cursor: String?,
        limit: Int
    ) async throws -> [RunRecord] {
        try await database.read {
            try await self.store.list(
                orgID: orgID,
                workflow: workflow,
                status: status,
                created: created,
                before: cursor,
                limit: limit,
                in: $0
            )
        }
    }

    /// A run's events after `seq`.
    public func events(runID: String, after seq: Int64, limit: Int) async throws -> [RunEvent] {
        try await database.read { try await self.store.events(runID: runID, after: seq, limit: limit, in: $0) }
    }

    /// The organization's events after the global position `after`.
    public func events(orgID: String, after: Int64, limit: Int) async throws -> [RunEvent] {
        try await database.read { try await self.store.events(orgID: orgID, after: after, limit: limit, in: $0) }
    }

    /// The newest global event position of the organization: where a live stream starts.
    public func latestEventID(orgID: String) async throws -> Int64 {
        try await database.read { try await self.store.latestEventID(orgID: orgID, in: $0) }
    }

    /// Subscribes to changes of run `id` (or, with `org:` before an organization id, of any of its runs). On
    /// several nodes a change made elsewhere is not announced here: wait in short slices and read again.
    public func subscribe(to key: String) -> ChangeSubscription {
        notifier.subscribe(key)
    }

    /// Waits until the run has finished or `timeout` has passed.
    /// - Returns: the run as it then stands.
    public func waitForRun(orgID: String, id: String, timeout: Duration) async throws -> RunRecord? {
        let deadline = ContinuousClock.now + timeout
        let subscription = notifier.subscribe(id)
        defer { subscription.cancel() }
        while true {
            guard let run = try await run(orgID: orgID, id: id) else { return nil }
            let remaining = deadline - ContinuousClock.now
            if run.status.isTerminal || remaining <= .zero { return run }
            await subscription.wait(timeout: min(remaining, .milliseconds(250)))
        }
    }

    // MARK: Controlling runs

    /// Asks a run to stop: running steps are told, nothing new starts.
    /// - Throws: `not_found`; `conflict` when the run has already finished.
    public func cancel(orgID: String, id: String) async throws -> RunRecord {
        let now = clock.nowMilliseconds()
        let (updated, descendants) = try await database.withTransaction { executor in
            let updated = try await self.store.requestCancel(id: id, orgID: orgID, now: now, in: executor)
            // The runs it started (and theirs) are cancelled with it.
            let descendants = updated ? try await self.store.cancelDescendants(of: id, at: now, in: executor) : []
            if updated { try await self.announce([id] + descendants, in: executor) }
            return (updated, descendants)
        }
        guard let run = try await run(orgID: orgID, id: id) else { throw CaravanError.notFound("The run") }
        if !updated { throw CaravanError(.conflict, "The run has already finished (\(run.status.rawValue)).") }
        var pokedAll = true
        for runID in [id] + descendants { pokedAll = notifier.poke(runID: runID) && pokedAll }
        if !pokedAll { pokeClaims() }
        return run
    }

    /// Sends a signal (e.g. `approve`) to a run.
    /// - Throws: `not_found`; `conflict` when the run has finished.
    public func signal(orgID: String, id: String, name: String, data: JSONValue, sender: String?) async throws {
        let now = clock.nowMilliseconds()
        try await database.withTransaction { executor in
            guard let run = try await self.store.get(orgID: orgID, id: id, in: executor) else {
                throw CaravanError.notFound("The run")
            }
            guard !run.status.isTerminal else {
                throw CaravanError(.conflict, "The run has already finished (\(run.status.rawValue)).")
            }
            try await self.store.addSignal(runID: id, name: name, data: data, sender: sender, at: now, in: executor)
            try await self.store.wake(runID: id, at: now, in: executor)
            try await self.announce([id], in: executor)
        }
        if !notifier.poke(runID: id) { pokeClaims() }
    }

    /// Takes the oldest signal `name` of the run that `matches`, marking it consumed; for steps that wait for a
    /// signal inside an attempt (an agent's tool that needs approval).
    /// - Returns: the signal's data and sender, or `nil` when none has arrived.
    public func takeSignal(
        runID: String,
        name: String,
        where matches: @escaping @Sendable (JSONValue) -> Bool
    ) async throws -> (data: JSONValue, sender: String?)? {
        let now = clock.nowMilliseconds()
        return try await database.withTransaction { executor in
            for signal in try await self.store.pendingSignals(runID: runID, in: executor)
            where signal.name == name && matches(signal.data) {
                try await self.store.consumeSignals([signal.id], at: now, in: executor)
                return (signal.data, signal.sender)
            }
            return nil
        }
    }

    /// Re-runs a failed or cancelled run from the steps that did not succeed, keeping what succeeded.
    /// - Throws: `not_found`; `conflict` unless the run failed or was cancelled.
    public func retry(orgID: String, id: String) async throws -> RunRecord {
        let now = clock.nowMilliseconds()
        let run = try await database.withTransaction { executor -> RunRecord in
            guard var run = try await self.store.get(orgID: orgID, id: id, in: executor) else {
                throw CaravanError.notFound("The run")
            }
            guard run.status == .failed || run.status == .cancelled else {
                throw CaravanError(
                    .conflict,
                    "Only a failed or cancelled run can be retried; this one is \(run.status.rawValue)."
                )
            }
            for index in run.steps.indices where run.steps[index].status != .succeeded {
                var step = StepState(id: run.steps[index].id)
                step.attempts = 0
                run.steps[index] = step
            }
            run.status = .queued
            run.error = nil
            run.output = nil
            run.finishedAt = nil
            run.cancelRequested = false
            run.lastSeq += 1
            run.updatedAt = now
            guard try await self.store.requeue(run, now: now, in: executor) else {
                throw CaravanError(.conflict, "The run changed meanwhile; try again.")
            }
            try await self.announce([id], in: executor)
            try await self.store.append(
                [RunEvent(runID: id, seq: run.lastSeq, type: "run.queued", at: now, data: ["retry": true])],
                orgs: [id: orgID],
                in: executor
            )
            return run
        }
        notifier.changed(id)
        pokeClaims()
        return run
    }
}

extension Engine {
    /// A run's status, whatever its organization (for streams that already checked access).
    public func runStatus(id: String) async throws -> RunStatus? {
        try await database.read { try await self.store.status(id: id, in: $0) }
    }
}
