import CaravanCore
import CaravanOutbound
import CaravanStorage
import CaravanWorkflow
import Logging

extension Engine {
    /// How a child task of an execution ended.
    enum ExecutionEvent: Sendable {
        case step(StepLaunch, outcome: StepOutcome)
        case wake
        /// A journal write from a running step (`nil`: no more will come).
        case journal(StepJournal.Write?)
    }

    /// Drives one run while this node holds its lease: plan, commit, launch, wait; until the run ends, waits for
    /// long, or the lease is lost.
    func execute(_ claimed: ClaimedExecution) async {
        let run = claimed.run
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
        var execution = RunExecution(
            run: run,
            fence: claimed.fence,
            launches: claimed.launches,
            wakeSeq: claimed.wakeSeq,
            definition: definition,
            configuration: configuration,
            instantKinds: instantKinds
        )
        await withTaskGroup(of: ExecutionEvent.self) { group in
            defer { group.cancelAll() }
            while true {
                if execution.needsPlanning {
                    var next = await plan(&execution)
                    if case .commit(let advance) = next {
                        guard let outcome = await commitProgress(advance, logger: sharedLogger) else { return }
                        next = execution.committed(outcome)
                    }
                    switch next {
                    case .stop: return
                    case .proceed(let restartWaker): if restartWaker { flag.signal() }
                    case .commit: break  // `committed` never asks for another
                    }
                }
                var ranInline = false
                for work in execution.takeWork(now: clock.nowMilliseconds()) {
                    switch work {
                    case .runInline(let launch):
                        let outcome = await runStep(
                            launch,
                            run: execution.run,
                            timeout: .seconds(30),
                            logger: sharedLogger
                        )
                        execution.stepFinished(launch, outcome: outcome, inline: true)
                        ranInline = true
                    case .launch(let launch, let timeout):
                        let snapshot = execution.run
                        group.addTask {
                            let outcome = await self.runStep(
                                launch,
                                run: snapshot,
                                timeout: timeout,
                                logger: sharedLogger,
                                journal: journalSink
                            )
                            return .step(launch, outcome: outcome)
                        }
                    case .readJournal:
                        group.addTask {
                            for await write in journalWrites { return .journal(write) }
                            return .journal(nil)
                        }
                    case .armWaker(let timeout):
                        group.addTask {
                            await flag.wait(timeout: timeout)
                            return .wake
                        }
                    }
                }
                if ranInline { continue }
                guard let event = await group.next() else { return }
                switch event {
                case .step(let launch, let outcome):
                    execution.stepFinished(launch, outcome: outcome, inline: false)
                case .journal(let write):
                    guard let advance = execution.journalRead(write, now: clock.nowMilliseconds()), let write else {
                        continue
                    }
                    guard await commitJournal(write, advance, logger: sharedLogger) else { return }
                case .wake:
                    execution.woke()
                }
            }
        }
    }

    /// A planning pass of `execution`, with the reads it needs between its phases.
    private func plan(_ execution: inout RunExecution) async -> RunExecution.Next {
        let readCancel = execution.beginPlanning(now: clock.nowMilliseconds())
        let run = execution.run
        let cancelRequested = readCancel ? ((try? await isCancelRequested(run.id)) ?? false) : nil
        let requests = execution.advance(
            cancelRequested: cancelRequested,
            signals: await pendingSignals(for: run, definition: execution.definition),
            children: await childOutcomes(for: run)
        )
        var children: [(stepID: String, made: Result<(NewRun, RunEvent), Failure>)] = []
        for request in requests {
            children.append((request.stepID, await makeChild(request, parent: execution.run)))
        }
        return execution.finishPlanning(children: children)
    }

    /// Commits a planning pass's progress and tells who waits for it.
    /// - Returns: the outcome, or `nil` when the commit failed (the lease lapses and the run resumes elsewhere).
    private func commitProgress(_ advance: RunAdvance, logger: Logger) async -> CommitOutcome? {
        let run = advance.update.run
        let outcome: CommitOutcome
        do {
            outcome = try await commits.submit(.advance(advance))
        } catch {
            if !(error is CancellationError) {
                logger.warning(
                    "Committing the run's progress failed; its lease will lapse and it resumes",
                    metadata: ["error.message": "\(error)"]
                )
            }
            return nil
        }
        switch outcome {
        case .advanced(true):
            notifier.changed(run.id)
            notifier.changed("org:" + run.orgID)
            if !advance.children.isEmpty || advance.freedSlot != nil { pokeClaims() }
            if let parent = advance.wakeParent, !notifier.poke(runID: parent) { pokeClaims() }
        case .parked:
            notifier.changed(run.id)
        default:
            logger.info("Lost the run's lease to another node; stopping here")
        }
        return outcome
    }

    /// Commits a journal entry of a running step with its events, under the lease; tells the step whether it
    /// landed. Returns `false` when the lease is lost (the execution must stop).
    private func commitJournal(_ write: StepJournal.Write, _ advance: RunAdvance, logger: Logger) async -> Bool {
        let run = advance.update.run
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

    private func isCancelRequested(_ runID: String) async throws -> Bool {
        try await database.read { try await self.store.isCancelRequested(id: runID, in: $0) }
    }

    private func pendingSignals(for run: RunRecord, definition: WorkflowDefinition) async -> [PendingSignal] {
        let waitsForSignal = run.steps.contains { step in
            guard step.status == .waiting, let kind = definition.step(step.id)?.kind else { return false }
            return kind == ApprovalStepKind.name || kind == ReceiveStepKind.name
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
            return .failure(request.kind.missing(request.name))
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
        context.runs = RunControl(engine: self, orgID: run.orgID, runID: run.id, stepID: launch.stepID)
        if type(of: executor).readsRunScope { context.scope = RunPlanner.scope(of: run) }
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
                for (index, item) in items.enumerated() {
                    let config = try render(item)
                    // Each item is a call of its own for services that deduplicate (and for the catalog's meter).
                    var itemContext = context
                    itemContext.idempotencyKey += ":\(index)"
                    outputs.append(
                        try await Self.withTimeout(timeout) { [itemContext] () async throws(Failure) -> JSONValue in
                            try await executor.execute(config, context: itemContext)
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
        let value: JSONValue?
        do {
            value = try await CaravanCore.withTimeout(timeout.duration) { try await body() }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(code: .cancelled, message: "The step was cancelled.", retryable: false)
        }
        guard let value else {
            throw Failure(code: .timeout, message: "The step took longer than \(timeout).", retryable: true)
        }
        return value
    }
}
