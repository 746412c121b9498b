import CaravanCore
import CaravanWorkflow

/// The decisions of one run's execution on the node that holds its lease, without I/O.
///
/// `Engine.execute` drives it: it feeds in what happened (a step finished, a journal write arrived, the waker
/// returned, a commit landed or not, and the reads a planning pass needs) and carries out what comes back
/// (commit, launch a step, read the journal, arm the waker, stop). A planning pass has three phases around the
/// driver's reads: `beginPlanning` (apply the results, start or resume the run), `advance` (over the cancel flag,
/// signals and child outcomes read for `run`), `finishPlanning` (over the child runs made for the requests), then
/// `committed` when it asked for a commit.
struct RunExecution {
    /// What to do next after a phase.
    enum Next {
        /// Commit this progress, then report the outcome to `committed`.
        case commit(RunAdvance)
        /// Go on to `takeWork`; when `restartWaker`, the waker in flight must return now (a timer came closer).
        case proceed(restartWaker: Bool)
        /// The execution ends here: the run finished, was released or parked, or its lease was lost.
        case stop
    }

    /// Work to start, from `takeWork`.
    enum Work {
        /// An instant step: run it now, in line, and report it to `stepFinished`.
        case runInline(StepLaunch)
        /// A step to run in a task of its own, within `timeout`.
        case launch(StepLaunch, timeout: CaravanDuration)
        /// Wait for the next journal write of the running steps.
        case readJournal
        /// Wait for a poke, or until `timeout` passes.
        case armWaker(timeout: Duration)
    }

    private(set) var run: RunRecord
    let definition: WorkflowDefinition
    let fence: Int64
    let wakeSeq: Int64
    private let configuration: EngineConfiguration
    private let instantKinds: Set<String>

    /// Whether the next turn begins with a planning pass.
    private(set) var needsPlanning: Bool
    private var launches: [StepLaunch]
    private var inFlight = 0
    private var results: [(stepID: String, attempt: Int, outcome: StepOutcome)] = []
    private var checkCancel: Bool
    /// Claimed from the database: relaunch what was in flight.
    private var resumed: Bool
    private var journalReaderInFlight = false
    private var wakerInFlight = false
    /// When the waker in flight returns by itself.
    private var wakerDeadline = Int64.max
    /// The waker's next return is our own doing, not a poke.
    private var restartingWaker = false
    private var pass: PlanningPass?

    /// A planning pass between its phases.
    private struct PlanningPass {
        var planner: RunPlanner
        var now: Int64
        /// The run as it was before the pass: what a queued run that cannot be admitted stays.
        var before: RunRecord
        var admission: Admission?
        var newChildren: [(stepID: String, child: NewRun, event: RunEvent)] = []
        /// The pass lets the run go: it finished, or nothing runs and no timer is near.
        var releasing = false
    }

    /// - Parameters:
    ///   - launches: steps the claim already committed as started (a run admitted at creation); without them the
    ///     run was claimed from the database and its first turn plans.
    ///   - instantKinds: the step kinds that run in line (`StepExecutor.isInstant`).
    init(
        run: RunRecord,
        fence: Int64,
        launches: [StepLaunch],
        wakeSeq: Int64,
        definition: WorkflowDefinition,
        configuration: EngineConfiguration,
        instantKinds: Set<String>
    ) {
        self.run = run
        self.fence = fence
        self.launches = launches
        self.wakeSeq = wakeSeq
        self.definition = definition
        self.configuration = configuration
        self.instantKinds = instantKinds
        needsPlanning = launches.isEmpty
        resumed = launches.isEmpty
        checkCancel = !run.cancelRequested && launches.isEmpty
    }

    // MARK: Planning

    /// Begins a planning pass at `now`: applies the step results received since the last pass, starts a queued
    /// run (to be admitted by the commit) and relaunches what was in flight when the run was claimed.
    /// - Returns: whether the driver must read the run's cancel flag (a poke came, or the run was just claimed).
    mutating func beginPlanning(now: Int64) -> Bool {
        var planner = RunPlanner(definition: definition, now: now, maxOutputBytes: configuration.maxPayloadBytes)
        let before = run
        for result in results { planner.apply(result.outcome, step: result.stepID, attempt: result.attempt, to: &run) }
        results = []
        let readCancel = checkCancel && !run.cancelRequested
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
        pass = PlanningPass(planner: planner, now: now, before: before, admission: admission)
        return readCancel
    }

    /// Advances the run over what the driver read for `run`.
    /// - Parameter cancelRequested: the run's cancel flag, when `beginPlanning` asked for it.
    /// - Returns: the child runs to make for `workflow` and `agent` steps.
    mutating func advance(
        cancelRequested: Bool?,
        signals: [PendingSignal],
        children: [String: ChildOutcome]
    ) -> [ChildRunRequest] {
        guard var pass else { return [] }
        if cancelRequested == true { run.cancelRequested = true }
        pass.planner.advance(&run, signals: signals, children: children)
        self.pass = pass
        return pass.planner.childRuns
    }

    /// Ends the planning pass over the child runs made for `advance`'s requests: a request that failed (a
    /// workflow or agent that does not exist, a chain of runs too deep) fails its step now instead of leaving it
    /// waiting for a run that never comes.
    mutating func finishPlanning(
        children: [(stepID: String, made: Result<(NewRun, RunEvent), Failure>)]
    ) -> Next {
        guard var pass else { return .proceed(restartWaker: false) }
        for (stepID, made) in children {
            switch made {
            case .success(let (child, event)): pass.newChildren.append((stepID, child, event))
            case .failure(let failure): pass.planner.failWaiting(&run, step: stepID, failure)
            }
        }
        if run.status.isTerminal { pass.newChildren = [] }

        let now = pass.now
        let leaseUntil = now + configuration.leaseDuration.milliseconds
        let stillRunning = inFlight + pass.planner.launches.count > 0 && !run.status.isTerminal
        var newOwner: String? = configuration.nodeID
        var wakeAt: Int64? = leaseUntil
        if run.status.isTerminal {
            newOwner = nil
            wakeAt = nil
        } else if !stillRunning {
            let nextWake = RunPlanner.nextWake(of: run)
            if let nextWake, nextWake - now <= configuration.holdWindow.milliseconds {
                // Keep it: the timer is near.
            } else {
                newOwner = nil
                wakeAt = nextWake
            }
        }
        pass.releasing = newOwner == nil
        self.pass = pass
        guard pass.planner.hasChanges || pass.releasing || pass.admission != nil else { return endPlanning() }

        var advance = RunAdvance(
            update: RunUpdate(
                run: run,
                owner: configuration.nodeID,
                fence: fence,
                newOwner: newOwner,
                leaseExpiresAt: newOwner == nil ? nil : leaseUntil,
                wakeAt: wakeAt,
                seenWakeSeq: wakeSeq
            ),
            events: pass.planner.events
        )
        advance.consumedSignals = pass.planner.consumedSignals
        advance.admission = pass.admission
        advance.parkedState = pass.admission == nil ? nil : pass.before
        if run.status.isTerminal {
            advance.wakeParent = run.parentRunID
            if definition.concurrency != nil { advance.freedSlot = (run.orgID, run.workflow) }
        }
        var childIDs: [String: String] = [:]
        for (stepID, child, childEvent) in pass.newChildren {
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
        return .commit(advance)
    }

    /// What became of the commit `finishPlanning` asked for.
    mutating func committed(_ outcome: CommitOutcome) -> Next {
        guard case .advanced(true) = outcome else {
            pass = nil
            return .stop  // parked until a slot frees, or the lease was lost
        }
        return endPlanning()
    }

    private mutating func endPlanning() -> Next {
        guard let pass else { return .proceed(restartWaker: false) }
        self.pass = nil
        if run.status.isTerminal || pass.releasing { return .stop }
        launches += pass.planner.launches
        var restart = false
        if wakerInFlight, !restartingWaker, Self.wakerDeadline(for: run, now: pass.now) < wakerDeadline {
            restartingWaker = true
            restart = true
        }
        return .proceed(restartWaker: restart)
    }

    // MARK: Work and events

    /// The work of this turn at `now`: the steps planned (instant ones in line), then, unless a step ran in line
    /// (the next turn plans at once), the journal reader and the waker when they are not in flight.
    mutating func takeWork(now: Int64) -> [Work] {
        needsPlanning = true
        var work: [Work] = []
        var inline = false
        for launch in launches {
            if launch.items == nil, instantKinds.contains(launch.kind) {
                work.append(.runInline(launch))
                inline = true
                continue
            }
            let step = definition.step(launch.stepID)
            work.append(.launch(launch, timeout: step.map { definition.timeout(for: $0) } ?? .seconds(30)))
            inFlight += 1
        }
        launches = []
        if inline { return work }
        if !journalReaderInFlight, inFlight > 0 {
            journalReaderInFlight = true
            work.append(.readJournal)
        }
        if !wakerInFlight {
            wakerDeadline = min(
                Self.wakerDeadline(for: run, now: now),
                now + configuration.leaseRenewInterval.milliseconds
            )
            wakerInFlight = true
            work.append(.armWaker(timeout: .milliseconds(max(0, wakerDeadline - now))))
        }
        return work
    }

    /// A step finished: in line (`runInline`) or in its task (`launch`).
    mutating func stepFinished(_ launch: StepLaunch, outcome: StepOutcome, inline: Bool) {
        if !inline { inFlight -= 1 }
        results.append((launch.stepID, launch.attempt, outcome))
    }

    /// The journal reader returned `write` (`nil`: the steps will write no more).
    /// - Returns: the progress to commit under the lease for the write, stamped `now`.
    mutating func journalRead(_ write: StepJournal.Write?, now: Int64) -> RunAdvance? {
        journalReaderInFlight = false
        guard let write else { return nil }
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
        let leaseUntil = now + configuration.leaseDuration.milliseconds
        var advance = RunAdvance(
            update: RunUpdate(
                run: run,
                owner: configuration.nodeID,
                fence: fence,
                newOwner: configuration.nodeID,
                leaseExpiresAt: leaseUntil,
                wakeAt: leaseUntil,
                seenWakeSeq: wakeSeq
            ),
            events: events
        )
        advance.journal = [JournalEntry(runID: run.id, step: write.stepID, key: write.key, value: write.value, at: now)]
        needsPlanning = false  // nothing to plan: the steps are as they were
        return advance
    }

    /// The waker returned: a poke (a cancel, a signal, a lost lease, a timer), unless it was restarted.
    mutating func woke() {
        wakerInFlight = false
        if restartingWaker {
            restartingWaker = false
        } else {
            checkCancel = true
        }
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
}
