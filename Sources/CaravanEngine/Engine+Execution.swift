import CaravanCore
import CaravanOutbound
import CaravanStorage
import CaravanWorkflow
import Logging

extension Engine {
    /// How a child task of an execution ended.
    enum ExecutionEvent: Sendable {
        case step(stepID: String, attempt: Int, outcome: StepOutcome)
        case wake
        /// A journal write from a running step (`nil`: no more will come).
        case journal(StepJournal.Write?)
    }

    /// Drives one run while this node holds its lease: plan, commit, launch, wait; until the run ends, waits for
    /// long, or the lease is lost.
    func execute(_ claimed: ClaimedExecution) async {
        var run = claimed.run
        let fence = claimed.fence
        let flag = notifier.register(runID: run.id)
        var logger = self.logger
        logger[metadataKey: "caravan.run_id"] = .string(run.id)
        logger[metadataKey: "caravan.org_id"] = .string(run.orgID)
        defer {
            notifier.unregister(runID: run.id)
            _ = removeActive(run.id)
        }
        guard
            let definition = try? await workflows.definition(
                orgID: run.orgID,
                name: run.workflow,
                version: run.workflowVersion
            )
        else {
            logger.error(
                "The run's workflow version is missing; the run stays as it is",
                metadata: ["caravan.workflow": "\(run.workflow)"]
            )
            return
        }
        let sharedLogger = logger
        let (journalWrites, journalSink) = AsyncStream.makeStream(of: StepJournal.Write.self)
        defer { journalSink.finish() }
        await withTaskGroup(of: ExecutionEvent.self) { group in
            var journalReaderInFlight = false
            var launches = claimed.launches
            var inFlight = 0
            var wakerInFlight = false
            var wakerDeadline = Int64.max  // when the waker in flight returns by itself
            var restartingWaker = false  // its next return is our own doing, not a poke
            var results: [(String, Int, StepOutcome)] = []
            var checkCancel = run.cancelRequested == false && claimed.launches.isEmpty
            var planned = !claimed.launches.isEmpty
            var resumed = claimed.launches.isEmpty  // claimed from the database: relaunch what was in flight

            while true {
                if !planned {
                    let now = clock.nowMilliseconds()
                    var planner = RunPlanner(
                        definition: definition,
                        now: now,
                        maxOutputBytes: configuration.maxPayloadBytes
                    )
                    let before = run
                    for (stepID, attempt, outcome) in results {
                        planner.apply(outcome, step: stepID, attempt: attempt, to: &run)
                    }
                    results = []
                    if checkCancel, !run.cancelRequested {
                        run.cancelRequested = (try? await isCancelRequested(run.id)) ?? false
                    }
                    checkCancel = false
                    var admission: Admission?
                    if run.status == .queued {
                        planner.start(&run)
                        admission = Admission(
                            workflowLimit: definition.concurrency,
                            organizationLimit: configuration.maxActiveRunsPerOrganization
                        )
                    }
                    if resumed {
                        planner.resumeInFlight(&run)
                        resumed = false
                    }
                    let signals = await pendingSignals(for: run, definition: definition)
                    let children = await childOutcomes(for: run)
                    planner.advance(&run, signals: signals, children: children)
                    // Child runs asked for: a workflow or agent that does not exist (any more), or a chain of runs
                    // too deep, fails its step now instead of leaving it waiting for a run that never comes.
                    var newChildren: [(stepID: String, child: NewRun, event: RunEvent)] = []
                    for request in planner.childRuns {
                        switch await makeChild(request, parent: run) {
                        case .success(let (child, event)): newChildren.append((request.stepID, child, event))
                        case .failure(let failure): planner.failWaiting(&run, step: request.stepID, failure)
                        }
                    }
                    if run.status.isTerminal { newChildren = [] }

                    let stillRunning = inFlight + planner.launches.count > 0 && !run.status.isTerminal
                    var newOwner: String? = configuration.nodeID
                    var wakeAt: Int64? = leaseUntilNow
                    let nextWake = RunPlanner.nextWake(of: run)
                    if run.status.isTerminal {
                        newOwner = nil
                        wakeAt = nil
                    } else if !stillRunning {
                        if let nextWake, nextWake - now <= configuration.holdWindow.milliseconds {
                            // Keep it: the timer is near.
                        } else {
                            newOwner = nil
                            wakeAt = nextWake
                        }
                    }
                    let releasing = newOwner == nil
                    if planner.hasChanges || releasing || admission != nil {
                        var advance = RunAdvance(
                            update: RunUpdate(
                                run: run,
                                owner: configuration.nodeID,
                                fence: fence,
                                newOwner: newOwner,
                                leaseExpiresAt: newOwner == nil ? nil : leaseUntilNow,
                                wakeAt: wakeAt,
                                seenWakeSeq: claimed.wakeSeq
                            ),
                            events: planner.events
                        )
                        advance.consumedSignals = planner.consumedSignals
                        advance.admission = admission
                        advance.parkedState = admission == nil ? nil : before
                        if run.status.isTerminal {
                            advance.wakeParent = run.parentRunID
                            if definition.concurrency != nil { advance.freedSlot = (run.orgID, run.workflow) }
                        }
                        var childIDs: [String: String] = [:]
                        for (stepID, child, childEvent) in newChildren {
                            childIDs[stepID] = child.run.id
                            advance.children.append(child)
                            advance.childEvents.append(childEvent)
                        }
                        if !childIDs.isEmpty {
                            for index in run.steps.indices {
                                if let id = childIDs[run.steps[index].id] { run.steps[index].childRunID = id }
                            }
                            advance.update.run = run
                        }
                        let outcome: CommitOutcome
                        do {
                            outcome = try await commits.submit(.advance(advance))
                        } catch {
                            if !(error is CancellationError) {
                                sharedLogger.warning(
                                    "Committing the run's progress failed; its lease will lapse and it resumes",
                                    metadata: ["error.message": "\(error)"]
                                )
                            }
                            group.cancelAll()
                            return
                        }
                        switch outcome {
                        case .advanced(true):
                            break
                        case .parked:
                            notifier.changed(run.id)
                            group.cancelAll()
                            return
                        default:
                            sharedLogger.info("Lost the run's lease to another node; stopping here")
                            group.cancelAll()
                            return
                        }
                        notifier.changed(run.id)
                        notifier.changed("org:" + run.orgID)
                        if !advance.children.isEmpty { pokeClaims() }
                        if let parent = advance.wakeParent {
                            if !notifier.poke(runID: parent) { pokeClaims() }
                        }
                        if let slot = advance.freedSlot {
                            _ = slot
                            pokeClaims()
                        }
                    }
                    if run.status.isTerminal || releasing {
                        group.cancelAll()
                        return
                    }
                    launches += planner.launches
                    if wakerInFlight, !restartingWaker, Self.wakerDeadline(for: run, now: now) < wakerDeadline {
                        restartingWaker = true
                        flag.signal()  // a timer came closer than the waker's: restart it
                    }
                }
                planned = false

                var ranInline = false
                for launch in launches {
                    // Instant steps (templates) run right here: no task, no timer.
                    if isInstant(launch) {
                        results.append(
                            (
                                launch.stepID, launch.attempt,
                                await runStep(launch, run: run, timeout: .seconds(30), logger: sharedLogger)
                            )
                        )
                        ranInline = true
                        continue
                    }
                    let snapshot = run
                    let stepDefinition = definition.step(launch.stepID)
                    let timeout = stepDefinition.map { definition.timeout(for: $0) } ?? .seconds(30)
                    group.addTask {
                        let outcome = await self.runStep(
                            launch,
                            run: snapshot,
                            timeout: timeout,
                            logger: sharedLogger,
                            journal: journalSink
                        )
                        return .step(stepID: launch.stepID, attempt: launch.attempt, outcome: outcome)
                    }
                    inFlight += 1
                }
                launches = []
                if ranInline { continue }

                if !journalReaderInFlight, inFlight > 0 {
                    journalReaderInFlight = true
                    group.addTask {
                        for await write in journalWrites { return .journal(write) }
                        return .journal(nil)
                    }
                }
                if !wakerInFlight {
                    let now = clock.nowMilliseconds()
                    wakerDeadline = min(
                        Self.wakerDeadline(for: run, now: now),
                        now + configuration.leaseRenewInterval.milliseconds
                    )
                    wakerInFlight = true
                    let timeout = Duration.milliseconds(max(0, wakerDeadline - now))
                    group.addTask {
                        await flag.wait(timeout: timeout)
                        return .wake
                    }
                }
                guard let event = await group.next() else { return }
                switch event {
                case .step(let stepID, let attempt, let outcome):
                    inFlight -= 1
                    results.append((stepID, attempt, outcome))
                case .journal(let write):
                    journalReaderInFlight = false
                    guard let write else { continue }
                    if await !commitJournal(
                        write,
                        run: &run,
                        fence: fence,
                        wakeSeq: claimed.wakeSeq,
                        logger: sharedLogger
                    ) {
                        group.cancelAll()
                        return
                    }
                    planned = true  // nothing to plan: the steps are as they were
                case .wake:
                    wakerInFlight = false
                    if restartingWaker {
                        restartingWaker = false
                    } else {
                        checkCancel = true  // a poke: a cancel, a signal, a lost lease, or a timer
                    }
                }
            }
        }
    }

    /// Commits a journal entry of a running step with its events, under the lease; tells the step whether it
    /// landed. Returns `false` when the lease is lost (the execution must stop).
    private func commitJournal(
        _ write: StepJournal.Write,
        run: inout RunRecord,
        fence: Int64,
        wakeSeq: Int64,
        logger: Logger
    ) async -> Bool {
        let now = clock.nowMilliseconds()
        var events: [RunEvent] = []
        for event in write.events {
            run.lastSeq += 1
            events.append(
                RunEvent(
                    runID: run.id,
                    seq: run.lastSeq,
                    type: event.type,
                    step: write.stepID,
                    at: now,
                    data: event.data
                )
            )
        }
        run.updatedAt = now
        var advance = RunAdvance(
            update: RunUpdate(
                run: run,
                owner: configuration.nodeID,
                fence: fence,
                newOwner: configuration.nodeID,
                leaseExpiresAt: leaseUntilNow,
                wakeAt: leaseUntilNow,
                seenWakeSeq: wakeSeq
            ),
            events: events
        )
        advance.journal = [JournalEntry(runID: run.id, step: write.stepID, key: write.key, value: write.value, at: now)]
        do {
            if case .advanced(true) = try await commits.submit(.advance(advance)) {
                write.done(true)
                notifier.changed(run.id)
                notifier.changed("org:" + run.orgID)
                return true
            }
            logger.info("Lost the run's lease to another node; stopping here")
        } catch {
            logger.warning(
                "Committing a journal entry failed; the run resumes when its lease lapses",
                metadata: ["error.message": "\(error)"]
            )
        }
        write.done(false)
        return false
    }

    /// When a run's waker should return by itself: its next timer, or in a second while it waits for signals
    /// or children (which may arrive from another node).
    static func wakerDeadline(for run: RunRecord, now: Int64) -> Int64 {
        var deadline = RunPlanner.nextWake(of: run) ?? Int64.max
        if run.steps.contains(where: { $0.status == .waiting && $0.wakeAt == nil }) {
            deadline = min(deadline, now + 1_000)
        }
        return deadline
    }

    private var leaseUntilNow: Int64 { clock.nowMilliseconds() + configuration.leaseDuration.milliseconds }

    private func isCancelRequested(_ runID: String) async throws -> Bool {
        try await database.read { try await self.store.isCancelRequested(id: runID, in: $0) }
    }

    private func pendingSignals(for run: RunRecord, definition: WorkflowDefinition) async -> [PendingSignal] {
        let waitsForSignal = run.steps.contains { step in
            step.status == .waiting && definition.step(step.id)?.kind == ApprovalStepKind.name
        }
        guard waitsForSignal else { return [] }
        return
            (try? await database.read { executor in
                try await self.store.pendingSignals(runID: run.id, in: executor)
            }.map { PendingSignal(id: $0.id, name: $0.name, data: $0.data, sender: $0.sender) }) ?? []
    }

    private func childOutcomes(for run: RunRecord) async -> [String: ChildOutcome] {
        let childIDs = run.steps.compactMap { $0.status == .waiting ? $0.childRunID : nil }
        guard !childIDs.isEmpty else { return [:] }
        var outcomes: [String: ChildOutcome] = [:]
        for id in childIDs {
            if let child = try? await database.read({ executor in try await self.store.get(id: id, in: executor) }) {
                outcomes[id] = ChildOutcome(status: child.status, output: child.output, error: child.error)
            }
        }
        return outcomes
    }

    /// A child run for a `workflow` or `agent` step, queued for any node to claim; or why there is none.
    private func makeChild(_ request: ChildRunRequest, parent: RunRecord) async -> Result<(NewRun, RunEvent), Failure> {
        let stored: StoredWorkflow?
        let depth: Int
        do {
            stored = try await workflows.get(orgID: parent.orgID, name: request.workflow)
            depth = try await database.read {
                try await self.store.depth(of: parent.id, limit: self.configuration.maxRunDepth, in: $0)
            }
        } catch {
            return .failure(
                Failure(code: "unavailable", message: "The child run could not be prepared.", retryable: true)
            )
        }
        guard let workflow = stored, workflow.archivedAt == nil else {
            let agent = AgentStepKind.agentName(ofWorkflow: request.workflow)
            return .failure(
                Failure(
                    code: agent == nil ? "workflow_not_found" : "agent_not_found",
                    message: agent.map { "The agent '\($0)' does not exist." }
                        ?? "The workflow '\(request.workflow)' does not exist.",
                    retryable: false
                )
            )
        }
        guard depth + 1 <= configuration.maxRunDepth else {
            return .failure(
                Failure(
                    code: "max_depth_exceeded",
                    message: Self.depthMessage(configuration.maxRunDepth),
                    retryable: false
                )
            )
        }
        let now = clock.nowMilliseconds()
        var child = Self.newRun(orgID: parent.orgID, workflow: workflow, input: request.input, now: now)
        child.parentRunID = parent.id
        child.parentStep = request.stepID
        child.idempotencyKey = "child:\(parent.id):\(request.stepID)"
        let event = RunEvent(
            runID: child.id,
            seq: 1,
            type: "run.queued",
            at: now,
            data: ["parent_run_id": .string(parent.id)]
        )
        return .success((NewRun(run: child, leaseOwner: nil, leaseExpiresAt: nil, wakeAt: now), event))
    }

    /// A new, queued run of `workflow`.
    static func newRun(orgID: String, workflow: StoredWorkflow, input: JSONValue, now: Int64) -> RunRecord {
        RunRecord(
            id: Identifier.make("run", milliseconds: now),
            orgID: orgID,
            kind: AgentStepKind.agentName(ofWorkflow: workflow.name) == nil ? "workflow" : "agent",
            workflow: workflow.name,
            workflowVersion: workflow.version,
            status: .queued,
            input: input,
            output: nil,
            error: nil,
            steps: workflow.definition.steps.map { StepState(id: $0.id) },
            idempotencyKey: nil,
            requestHash: nil,
            parentRunID: nil,
            parentStep: nil,
            createdAt: now,
            startedAt: nil,
            finishedAt: nil,
            updatedAt: now,
            lastSeq: 1,
            cancelRequested: false
        )
    }

    /// Runs one step attempt with its timeout; for `for_each`, one attempt of the kind per item.
    func runStep(
        _ launch: StepLaunch,
        run: RunRecord,
        timeout: CaravanDuration,
        logger: Logger,
        journal: AsyncStream<StepJournal.Write>.Continuation? = nil
    ) async -> StepOutcome {
        guard let executor = executors[launch.kind] else {
            return .failed(Failure(code: "unknown_kind", message: "No executor for \(launch.kind).", retryable: false))
        }
        var stepLogger = logger
        stepLogger[metadataKey: "caravan.step"] = .string(launch.stepID)
        var context = StepContext(
            orgID: run.orgID,
            runID: run.id,
            workflow: run.workflow,
            input: run.input,
            stepID: launch.stepID,
            attempt: launch.attempt,
            idempotencyKey: "\(run.id):\(launch.stepID)",
            timeout: timeout,
            maxOutputBytes: configuration.maxPayloadBytes,
            logger: stepLogger
        )
        if type(of: executor).keepsJournal, let journal {
            let entries: [String: JSONValue]
            do {
                entries = try await database.read { executor in
                    try await self.store.journal(runID: run.id, step: launch.stepID, in: executor)
                }
            } catch {
                return .failed(
                    Failure(
                        code: "journal_unavailable",
                        message: "The step's journal could not be read.",
                        retryable: true
                    )
                )
            }
            let runID = run.id
            let stepID = launch.stepID
            context.journal = StepJournal(stepID: stepID, entries: entries, writes: journal) { [live] type, data in
                live.publish(
                    RunEvent(
                        runID: runID,
                        seq: 0,
                        type: type,
                        step: stepID,
                        at: self.clock.nowMilliseconds(),
                        data: data
                    )
                )
                self.notifier.changed(runID)
            }
        }
        let needsRendering = launch.kind == HTTPStepKind.name || launch.items != nil
        // Secrets join the scope only here, at execution; outputs and errors are scrubbed of their values.
        var secretValues: [String: String] = [:]
        var secretHosts: [String: [String]] = [:]
        if type(of: executor).acceptsSecrets, let names = try? Template.referencedSecrets(in: launch.config),
            !names.isEmpty
        {
            do {
                secretValues = try await secrets?.resolve(names: names, for: context) ?? [:]
                secretHosts = try await secrets?.allowedHosts(names: names, orgID: run.orgID) ?? [:]
            } catch {
                return .failed(
                    Failure(
                        code: "secret_unavailable",
                        message: "The secrets of this step could not be read.",
                        retryable: true
                    )
                )
            }
            if let missing = names.subtracting(secretValues.keys).sorted().first {
                return .failed(
                    Failure(
                        code: "secret_not_found",
                        message: "The secret '\(missing)' does not exist in this organization.",
                        retryable: false
                    )
                )
            }
            context.redactor = SecretRedactor(values: Array(secretValues.values))
        }
        let secretScope = JSONValue.object(secretValues.mapValues(JSONValue.string))
        /// A request may carry a secret only to the hosts the secret allows.
        func checkHosts(_ rendered: JSONValue) throws(CaravanError) -> JSONValue {
            for field in type(of: executor).urlFields {
                if let url = rendered[field]?.stringValue,
                    let name = SecretHostRule.violation(url: url, restrictions: secretHosts)
                {
                    throw CaravanError(
                        .secretHostNotAllowed,
                        "The secret '\(name)' may not be sent to this host (see its allowed_hosts)."
                    )
                }
            }
            return rendered
        }
        func render(_ item: JSONValue?) throws(Failure) -> JSONValue {
            guard needsRendering else { return launch.config }
            do {
                var scope = RunPlanner.scope(of: run, item: item)
                if case .object(var object) = scope {
                    object["secrets"] = secretScope
                    scope = .object(object)
                }
                let rendered = try Template.render(
                    launch.config,
                    scope: scope,
                    limit: configuration.maxPayloadBytes,
                    urlFields: type(of: executor).urlFields
                )
                return try checkHosts(rendered)
            } catch {
                throw Failure(code: RunPlanner.failureCode(error), message: error.detail, retryable: false)
            }
        }
        // Whatever the step sends through the egress client is attributed to this run: a refusal is audited there,
        // with the step's secrets masked.
        let redactor = context.redactor
        let attribution = EgressAttribution(orgID: run.orgID, runID: run.id, redact: { redactor.redact($0) })
        let outcome = await EgressAttribution.$current.withValue(attribution) {
            await execute(executor, launch: launch, context: context, timeout: timeout, render: render)
        }
        guard !secretValues.isEmpty else { return outcome }
        switch outcome {
        case .succeeded(let output): return .succeeded(redactor.redact(output))
        case .failed(var failure):
            failure.message = redactor.redact(failure.message)
            return .failed(failure)
        }
    }

    private func execute(
        _ executor: any StepExecutor,
        launch: StepLaunch,
        context: StepContext,
        timeout: CaravanDuration,
        render: (JSONValue?) throws(Failure) -> JSONValue
    ) async -> StepOutcome {
        do throws(Failure) {
            if type(of: executor).isInstant && launch.items == nil {
                return .succeeded(try await executor.execute(try render(nil), context: context))
            }
            if let items = launch.items {
                var outputs: [JSONValue] = []
                outputs.reserveCapacity(items.count)
                for item in items {
                    let config = try render(item)
                    outputs.append(
                        try await Self.withTimeout(timeout) { () async throws(Failure) -> JSONValue in
                            try await executor.execute(config, context: context)
                        }
                    )
                }
                return .succeeded(.array(outputs))
            }
            let config = try render(nil)
            return .succeeded(
                try await Self.withTimeout(timeout) { () async throws(Failure) -> JSONValue in
                    try await executor.execute(config, context: context)
                }
            )
        } catch {
            return .failed(error)
        }
    }

    /// Runs `body`, failing with a retryable `timeout` when it takes longer than `timeout`.
    static func withTimeout(
        _ timeout: CaravanDuration,
        _ body: @escaping @Sendable () async throws(Failure) -> JSONValue
    ) async throws(Failure) -> JSONValue {
        let result: Result<JSONValue, Failure> = await withTaskGroup(of: Result<JSONValue, Failure>?.self) { group in
            group.addTask {
                do throws(Failure) { return .success(try await body()) } catch { return .failure(error) }
            }
            group.addTask {
                do { try await Task.sleep(for: timeout.duration) } catch { return nil }
                return .failure(
                    Failure(code: .timeout, message: "The step took longer than \(timeout).", retryable: true)
                )
            }
            var outcome: Result<JSONValue, Failure>?
            while outcome == nil, let next = await group.next() { outcome = next }
            group.cancelAll()
            return outcome ?? .failure(Failure(code: .cancelled, message: "The step was cancelled.", retryable: false))
        }
        return try result.get()
    }
}
