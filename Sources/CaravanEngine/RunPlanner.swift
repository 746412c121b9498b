import CaravanCore
import CaravanWorkflow

/// A step attempt to start after the next commit.
struct StepLaunch: Sendable {
    var stepID: String
    var kind: String
    /// The configuration rendered over the run's scope (without secrets).
    var config: JSONValue
    /// For `for_each` steps: the items, one attempt of the kind each.
    var items: [JSONValue]?
    var attempt: Int
}

/// A child run to create in the next commit, for a step of a child-run kind (`workflow`, `agent`).
struct ChildRunRequest: Sendable {
    var stepID: String
    /// What the step named, and why it fails when that does not exist.
    var name: String
    var kind: any ChildRunStepKind.Type
    var workflow: String
    var input: JSONValue
}

/// A signal sent to a run, not yet consumed.
struct PendingSignal: Sendable {
    var id: Int64
    var name: String
    var data: JSONValue
    var sender: String?
}

/// What a child run looks like to its parent.
struct ChildOutcome: Sendable {
    var status: RunStatus
    var output: JSONValue?
    var error: RunFailure?
}

/// How one step attempt ended.
enum StepOutcome: Sendable {
    case succeeded(JSONValue)
    case failed(Failure)
}

/// The pure heart of the engine: given a run, its definition and what happened, decide what changes, which
/// events to record and which steps to start. No I/O: everything it needs is passed in, so every transition is
/// unit-tested.
struct RunPlanner {
    let definition: WorkflowDefinition
    let now: Int64
    let maxOutputBytes: Int
    /// Events to append, numbered after the run's `lastSeq`.
    private(set) var events: [RunEvent] = []
    private(set) var launches: [StepLaunch] = []
    private(set) var childRuns: [ChildRunRequest] = []
    private(set) var consumedSignals: [Int64] = []
    /// Steps whose running tasks must be told to stop.
    private(set) var stoppedSteps: [String] = []
    var random: SystemRandomNumberGenerator = SystemRandomNumberGenerator()

    init(definition: WorkflowDefinition, now: Int64, maxOutputBytes: Int) {
        self.definition = definition
        self.now = now
        self.maxOutputBytes = maxOutputBytes
    }

    /// Hands over the launches planned so far, clearing them.
    mutating func takeLaunches() -> [StepLaunch] {
        defer { launches = [] }
        return launches
    }

    /// Whether this planning pass changed anything that must be committed.
    var hasChanges: Bool { !events.isEmpty || !childRuns.isEmpty }

    private mutating func record(_ run: inout RunRecord, _ type: String, step: String? = nil, data: JSONValue? = nil) {
        run.lastSeq += 1
        run.updatedAt = now
        events.append(RunEvent(runID: run.id, seq: run.lastSeq, type: type, step: step, at: now, data: data))
    }

    /// The interpolation scope of the run: `input`, `steps.<id>.output|status`, `run`.
    static func scope(of run: RunRecord, item: JSONValue? = nil) -> JSONValue {
        var steps: [String: JSONValue] = [:]
        for step in run.steps {
            steps[step.id] = ["output": step.output ?? .null, "status": .string(step.status.rawValue)]
        }
        var scope: [String: JSONValue] = [
            "input": run.input,
            "steps": .object(steps),
            "run": ["id": .string(run.id), "workflow": .string(run.workflow)],
        ]
        if let item { scope["item"] = item }
        return .object(scope)
    }

    // MARK: Starting a run

    /// Records the start of an admitted run.
    mutating func start(_ run: inout RunRecord) {
        guard run.status == .queued else { return }
        run.status = .running
        run.startedAt = now
        record(&run, "run.started")
    }

    // MARK: Advancing

    /// Moves the run forward as far as it can without running anything: cancels, timers, signals, finished
    /// children, skips, step starts, and the run's own end.
    mutating func advance(_ run: inout RunRecord, signals: [PendingSignal], children: [String: ChildOutcome]) {
        guard !run.status.isTerminal else { return }
        if run.cancelRequested {
            cancel(&run)
            return
        }
        var available = signals
        var progressed = true
        while progressed && !run.status.isTerminal {
            progressed = false
            for index in run.steps.indices {
                guard let definitionStep = definition.step(run.steps[index].id) else { continue }
                switch run.steps[index].status {
                case .pending:
                    if let wakeAt = run.steps[index].wakeAt {
                        if wakeAt <= now { progressed = startStep(&run, index, definitionStep) || progressed }
                    } else {
                        progressed = considerPending(&run, index, definitionStep) || progressed
                    }
                case .waiting:
                    progressed =
                        resolveWaiting(&run, index, definitionStep, signals: &available, children: children)
                        || progressed
                default:
                    continue
                }
            }
        }
        finishIfDone(&run)
    }

    /// A pending step whose needs are all done: skip it, or start it.
    private mutating func considerPending(_ run: inout RunRecord, _ index: Int, _ step: StepDefinition) -> Bool {
        var needsSkipped = false
        for need in step.needs {
            guard let state = run.step(need) else { continue }
            switch state.status {
            case .succeeded: continue
            case .skipped: needsSkipped = true
            default: return false
            }
        }
        if needsSkipped {
            skip(&run, index, reason: "a step it needs was skipped")
            return true
        }
        if let when = step.when, !when.evaluate(in: Self.scope(of: run)).isTruthy {
            skip(&run, index, reason: "its condition is false")
            return true
        }
        return startStep(&run, index, step)
    }

    private mutating func skip(_ run: inout RunRecord, _ index: Int, reason: String) {
        run.steps[index].status = .skipped
        run.steps[index].finishedAt = now
        record(&run, "step.skipped", step: run.steps[index].id, data: ["reason": .string(reason)])
    }

    /// Starts an attempt of a step whose needs are met.
    private mutating func startStep(_ run: inout RunRecord, _ index: Int, _ step: StepDefinition) -> Bool {
        let scope = Self.scope(of: run)
        var items: [JSONValue]?
        if let forEach = step.forEach {
            guard case .array(let values) = forEach.evaluate(in: scope) else {
                fail(
                    &run,
                    index,
                    Failure(code: "invalid_for_each", message: "for_each did not give an array", retryable: false)
                )
                return true
            }
            items = values
        }
        run.steps[index].attempts += 1
        run.steps[index].startedAt = run.steps[index].startedAt ?? now
        run.steps[index].wakeAt = nil
        run.steps[index].error = nil
        let stepID = run.steps[index].id
        record(&run, "step.started", step: stepID, data: ["attempt": .int(Int64(run.steps[index].attempts))])
        switch step.kind {
        case SleepStepKind.name:
            let duration = step.config.stringValue.flatMap(CaravanDuration.init(parsing:)) ?? .seconds(0)
            run.steps[index].status = .waiting
            run.steps[index].wakeAt = now + duration.milliseconds
            record(
                &run,
                "step.waiting",
                step: stepID,
                data: ["until": .string(Clock.rfc3339(now + duration.milliseconds))]
            )
        case ApprovalStepKind.name:
            run.steps[index].status = .waiting
            var data: [String: JSONValue] = ["signal": "approve"]
            if let message = step.config["message"] {
                data["message"] = (try? Template.render(message, scope: scope, limit: maxOutputBytes)) ?? message
            }
            if let timeout = step.config["timeout"]?.stringValue.flatMap(CaravanDuration.init(parsing:)) {
                run.steps[index].wakeAt = now + timeout.milliseconds
            }
            record(&run, "step.waiting", step: stepID, data: .object(data))
        case ReceiveStepKind.name:
            // Waits like an approval (released, woken by a signal) until enough signals came or the timeout passed.
            run.steps[index].status = .waiting
            if let timeout = step.config["timeout"]?.stringValue.flatMap(CaravanDuration.init(parsing:)) {
                run.steps[index].wakeAt = now + timeout.milliseconds
            }
            record(
                &run,
                "step.waiting",
                step: stepID,
                data: [
                    "signal": step.config["signal"] ?? .null,
                    "max": .int(Int64(ReceiveStepKind.count(step.config))),
                ]
            )
        case _ where StepKindRegistry.childRunKind(step.kind) != nil:
            run.steps[index].status = .waiting
            do throws(CaravanError) {
                childRuns.append(try Self.childRequest(for: step, scope: scope, limit: maxOutputBytes))
            } catch {
                fail(&run, index, Failure(code: Self.failureCode(error), message: error.detail, retryable: false))
                return true
            }
            record(&run, "step.waiting", step: stepID, data: [step.kind: step.config["name"] ?? .null])
        default:
            run.steps[index].status = .running
            do throws(CaravanError) {
                launches.append(
                    try Self.launch(
                        step,
                        attempt: run.steps[index].attempts,
                        items: items,
                        scope: scope,
                        limit: maxOutputBytes
                    )
                )
            } catch {
                fail(&run, index, Failure(code: Self.failureCode(error), message: error.detail, retryable: false))
                return true
            }
        }
        updateRunStatus(&run)
        return true
    }

    /// The step failure code of a template that could not be rendered.
    static func failureCode(_ error: CaravanError) -> Failure.Code {
        error.code == .outputTooLarge || error.code == .secretHostNotAllowed
            ? Failure.Code(rawValue: error.code.rawValue) : "template_error"
    }

    private static func launch(
        _ step: StepDefinition,
        attempt: Int,
        items: [JSONValue]?,
        scope: JSONValue,
        limit: Int
    ) throws(CaravanError)
        -> StepLaunch
    {
        // http configs are rendered at execution (secrets join the scope then), for_each configs once per item.
        let config =
            step.kind == HTTPStepKind.name || items != nil || !step.interpolatesConfig
            ? step.config : try Template.render(step.config, scope: scope, limit: limit)
        return StepLaunch(stepID: step.id, kind: step.kind, config: config, items: items, attempt: attempt)
    }

    /// The child run a `workflow` or `agent` step asks for.
    static func childRequest(
        for step: StepDefinition,
        scope: JSONValue,
        limit: Int
    ) throws(CaravanError) -> ChildRunRequest {
        let input = try Template.render(step.config["input"] ?? .object([:]), scope: scope, limit: limit)
        let name = step.config["name"]?.stringValue ?? ""
        let kind = StepKindRegistry.childRunKind(step.kind) ?? WorkflowStepKind.self
        let child = kind.childRun(name: name, input: input)
        return ChildRunRequest(stepID: step.id, name: name, kind: kind, workflow: child.workflow, input: child.input)
    }

    /// After a crash or a lost lease, the steps that were in flight run again: same attempt, same
    /// `Idempotency-Key`, nothing recorded (their start already is). A step that waits for a child run not yet
    /// created (a root step of a run admitted at creation, whose commit creates no children) asks for it again;
    /// the child's idempotency key makes a second request for one that exists harmless.
    mutating func resumeInFlight(_ run: inout RunRecord) {
        guard !run.status.isTerminal else { return }
        let scope = Self.scope(of: run)
        for index in run.steps.indices where run.steps[index].status == .waiting && run.steps[index].childRunID == nil {
            guard let step = definition.step(run.steps[index].id), StepKindRegistry.childRunKind(step.kind) != nil
            else { continue }
            do throws(CaravanError) {
                childRuns.append(try Self.childRequest(for: step, scope: scope, limit: maxOutputBytes))
            } catch {
                fail(&run, index, Failure(code: Self.failureCode(error), message: error.detail, retryable: false))
            }
        }
        for index in run.steps.indices where run.steps[index].status == .running {
            guard let step = definition.step(run.steps[index].id) else { continue }
            var items: [JSONValue]?
            if let forEach = step.forEach, case .array(let values) = forEach.evaluate(in: scope) { items = values }
            do throws(CaravanError) {
                launches.append(
                    try Self.launch(
                        step,
                        attempt: run.steps[index].attempts,
                        items: items,
                        scope: scope,
                        limit: maxOutputBytes
                    )
                )
            } catch {
                fail(&run, index, Failure(code: Self.failureCode(error), message: error.detail, retryable: false))
            }
        }
    }

    /// A waiting step: a timer that fired, a signal that arrived, a child that finished.
    private mutating func resolveWaiting(
        _ run: inout RunRecord,
        _ index: Int,
        _ step: StepDefinition,
        signals: inout [PendingSignal],
        children: [String: ChildOutcome]
    ) -> Bool {
        let state = run.steps[index]
        switch step.kind {
        case SleepStepKind.name:
            guard let wakeAt = state.wakeAt, wakeAt <= now else { return false }
            succeed(&run, index, output: .null)
            return true
        case ApprovalStepKind.name:
            if let position = signals.firstIndex(where: { $0.name == "approve" }) {
                let signal = signals.remove(at: position)
                consumedSignals.append(signal.id)
                record(
                    &run,
                    "signal.received",
                    step: state.id,
                    data: [
                        "name": .string(signal.name), "data": signal.data,
                        "by": signal.sender.map(JSONValue.string) ?? .null,
                    ]
                )
                let approved = signal.data["approved"] == .bool(true)
                let output: JSONValue = [
                    "approved": .bool(approved),
                    "by": signal.sender.map(JSONValue.string) ?? .null,
                    "data": signal.data["data"] ?? .null,
                ]
                if approved {
                    succeed(&run, index, output: output)
                } else {
                    run.steps[index].output = output
                    fail(
                        &run,
                        index,
                        Failure(code: "rejected", message: "The approval was rejected.", retryable: false)
                    )
                }
                return true
            }
            if let wakeAt = state.wakeAt, wakeAt <= now {
                fail(
                    &run,
                    index,
                    Failure(code: "approval_timeout", message: "No approval arrived in time.", retryable: false)
                )
                return true
            }
            return false
        case ReceiveStepKind.name:
            return receive(&run, index, step, signals: &signals)
        case _ where StepKindRegistry.childRunKind(step.kind) != nil:
            guard let childID = state.childRunID, let child = children[childID], child.status.isTerminal else {
                return false
            }
            switch child.status {
            case .succeeded: succeed(&run, index, output: child.output ?? .null)
            default:
                let message =
                    child.error.map { "The child run \(childID) \(child.status.rawValue): \($0.message)" }
                    ?? "The child run \(childID) \(child.status.rawValue)."
                fail(&run, index, Failure(code: "child_\(child.status.rawValue)", message: message, retryable: false))
            }
            return true
        default:
            return false
        }
    }

    /// A `receive` step: done once `max` signals of its name are pending (it takes the oldest `max`), or at its
    /// timeout with those that came. Until then the signals stay pending, so nothing is consumed by a step that
    /// goes on waiting.
    private mutating func receive(
        _ run: inout RunRecord,
        _ index: Int,
        _ step: StepDefinition,
        signals: inout [PendingSignal]
    ) -> Bool {
        let state = run.steps[index]
        let name = step.config["signal"]?.stringValue ?? ""
        let wanted = ReceiveStepKind.count(step.config)
        let positions = Array(signals.indices.filter { signals[$0].name == name }.prefix(wanted))
        let timedOut = state.wakeAt.map { $0 <= now } ?? false
        guard positions.count >= wanted || timedOut else { return false }
        let taken = positions.map { signals[$0] }
        for position in positions.reversed() { signals.remove(at: position) }
        for signal in taken {
            consumedSignals.append(signal.id)
            record(
                &run,
                "signal.received",
                step: state.id,
                data: [
                    "name": .string(signal.name), "data": signal.data,
                    "by": signal.sender.map(JSONValue.string) ?? .null,
                ]
            )
        }
        let output = JSONValue.array(taken.map(\.data))
        let size = output.canonicalText.utf8.count
        guard size <= maxOutputBytes else {
            fail(
                &run,
                index,
                Failure(
                    code: "output_too_large",
                    message: "The signals received are \(size) bytes; the limit is \(maxOutputBytes).",
                    retryable: false
                )
            )
            return true
        }
        succeed(&run, index, output: output)
        return true
    }

    // MARK: Results

    /// Applies how an attempt ended: success, a retry after a backoff, or the step's (and the run's) failure.
    mutating func apply(_ outcome: StepOutcome, step stepID: String, attempt: Int, to run: inout RunRecord) {
        guard !run.status.isTerminal, let index = run.steps.firstIndex(where: { $0.id == stepID }),
            run.steps[index].status == .running, run.steps[index].attempts == attempt,
            let step = definition.step(stepID)
        else { return }
        switch outcome {
        case .succeeded(let output):
            let size = output.canonicalText.utf8.count
            if size > maxOutputBytes {
                fail(
                    &run,
                    index,
                    Failure(
                        code: "output_too_large",
                        message: "The output is \(size) bytes; the limit is \(maxOutputBytes).",
                        retryable: false
                    )
                )
            } else {
                succeed(&run, index, output: output)
            }
        case .failed(let failure):
            let policy = definition.retry(for: step)
            if failure.retryable && run.steps[index].attempts < policy.maxAttempts {
                let delay = policy.delay(afterAttempt: run.steps[index].attempts, random: &random)
                run.steps[index].status = .pending
                run.steps[index].wakeAt = now + delay.milliseconds
                run.steps[index].error = RunFailure(code: failure.code.rawValue, message: failure.message, step: stepID)
                record(
                    &run,
                    "step.retrying",
                    step: stepID,
                    data: [
                        "attempt": .int(Int64(run.steps[index].attempts)),
                        "error": ["code": .string(failure.code.rawValue), "message": .string(failure.message)],
                        "retry_at": .string(Clock.rfc3339(now + delay.milliseconds)),
                    ]
                )
                updateRunStatus(&run)
            } else {
                fail(&run, index, failure)
            }
        }
    }

    private mutating func succeed(_ run: inout RunRecord, _ index: Int, output: JSONValue) {
        run.steps[index].status = .succeeded
        run.steps[index].output = output
        run.steps[index].error = nil
        run.steps[index].wakeAt = nil
        run.steps[index].finishedAt = now
        record(&run, "step.succeeded", step: run.steps[index].id, data: ["output": output])
        updateRunStatus(&run)
    }

    /// Fails a step that waits for a child run that cannot be started.
    mutating func failWaiting(_ run: inout RunRecord, step stepID: String, _ failure: Failure) {
        guard !run.status.isTerminal, let index = run.steps.firstIndex(where: { $0.id == stepID }),
            run.steps[index].status == .waiting
        else { return }
        childRuns.removeAll { $0.stepID == stepID }
        fail(&run, index, failure)
    }

    /// A step failed for good: the run fails, and every step not yet done is cancelled.
    private mutating func fail(_ run: inout RunRecord, _ index: Int, _ failure: Failure) {
        let stepID = run.steps[index].id
        let error = RunFailure(code: failure.code.rawValue, message: failure.message, step: stepID)
        run.steps[index].status = .failed
        run.steps[index].error = error
        run.steps[index].wakeAt = nil
        run.steps[index].finishedAt = now
        record(&run, "step.failed", step: stepID, data: ["error": error.json])
        stopRemaining(&run)
        run.status = .failed
        run.error = error
        run.finishedAt = now
        record(&run, "run.failed", data: ["error": error.json])
    }

    /// Cancels the run: steps not done are cancelled, running ones are told to stop.
    mutating func cancel(_ run: inout RunRecord) {
        guard !run.status.isTerminal else { return }
        stopRemaining(&run)
        run.status = .cancelled
        run.error = RunFailure(code: "cancelled", message: "The run was cancelled.")
        run.finishedAt = now
        record(&run, "run.cancelled")
    }

    private mutating func stopRemaining(_ run: inout RunRecord) {
        for index in run.steps.indices where !run.steps[index].status.isTerminal {
            let stepID = run.steps[index].id
            if run.steps[index].status == .running { stoppedSteps.append(stepID) }
            // A step started earlier in this pass has not been handed out yet: it must not be.
            launches.removeAll { $0.stepID == stepID }
            childRuns.removeAll { $0.stepID == stepID }
            run.steps[index].status = .cancelled
            run.steps[index].wakeAt = nil
            run.steps[index].finishedAt = now
        }
    }

    /// Succeeds the run once every step is done, rendering its output.
    private mutating func finishIfDone(_ run: inout RunRecord) {
        guard !run.status.isTerminal, run.steps.allSatisfy({ $0.status == .succeeded || $0.status == .skipped }) else {
            return
        }
        do throws(CaravanError) {
            var output: JSONValue = .null
            if let template = definition.output {
                output = try Template.render(template, scope: Self.scope(of: run), limit: maxOutputBytes)
            }
            run.status = .succeeded
            run.output = output
            run.finishedAt = now
            record(&run, "run.succeeded", data: ["output": output])
        } catch {
            run.status = .failed
            run.error = RunFailure(code: Self.failureCode(error).rawValue, message: error.detail)
            run.finishedAt = now
            record(&run, "run.failed", data: ["error": run.error?.json ?? .null])
        }
    }

    /// `running` while a step runs; `waiting` while the run waits only on timers, signals or children.
    private func updateRunStatus(_ run: inout RunRecord) {
        guard !run.status.isTerminal, run.status != .queued else { return }
        run.status =
            run.steps.contains { $0.status == .running }
            ? .running
            : run.steps.contains { $0.status == .waiting || ($0.status == .pending && $0.wakeAt != nil) }
                ? .waiting
                : .running
    }

    /// The earliest time a step of the run needs attention (a timer, a retry), if any.
    static func nextWake(of run: RunRecord) -> Int64? {
        run.steps.compactMap { $0.status == .pending || $0.status == .waiting ? $0.wakeAt : nil }.min()
    }
}
