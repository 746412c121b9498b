import CaravanCore
import CaravanTestSupport
import CaravanWorkflow
import PropertyBased
import Testing

@testable import CaravanEngine

/// Property tests of `RunPlanner`: random workflows (a DAG of steps with needs, conditions, retry policies,
/// approvals, sleeps, child workflows and `for_each`) driven by random events the way `Engine.execute` drives them
/// (results of launched and stale attempts, signals, cancels, timers, child outcomes, lease loss and resume), with
/// the planner's invariants checked after every planning pass.
///
/// `CARAVAN_PROPERTY_COUNT` sets how many cases each property runs (default 200), e.g. from a chaos script.
@Suite("Run planner properties")
struct RunPlannerPropertyTests {
    static let count = PropertyTestBudget.count(default: 200)

    @Test("Random workflows under random events keep the planner's invariants")
    func invariantsHold() async {
        var cases = 0
        var passes = 0
        var ends: [String: Int] = [:]
        var handled: [String: Int] = [:]
        var recorded: [String: Int] = [:]
        defer {
            print(
                "run planner properties: \(cases) cases, \(passes) planning passes; events \(handled.sorted { $0.key < $1.key }); ends \(ends.sorted { $0.key < $1.key }); recorded \(recorded.sorted { $0.key < $1.key })"
            )
        }
        await propertyCheck(
            count: Self.count,
            input: Gen.int(in: 0...Int.max),
            Gen.int(in: 0...999).array(of: 0...60)
        ) { seed, events in
            await Task.yield()  // between cases, let the tests beside this one run (two cooperative threads here)
            var harness = PlannerHarness(seed: UInt64(seed))
            for event in events {
                harness.handle(event)
                if !harness.violations.isEmpty { break }
            }
            let statusAfterEvents = harness.run.status
            if harness.violations.isEmpty { harness.driveToEnd() }
            cases += 1
            passes += harness.passes
            ends[
                "\(statusAfterEvents.isTerminal ? "ended in events" : "ended in drive"): \(harness.run.status)",
                default: 0
            ] += 1
            for (kind, count) in harness.handled { handled[kind, default: 0] += count }
            for (type, count) in harness.recorded { recorded[type, default: 0] += count }
            #expect(
                harness.violations.isEmpty,
                "\(harness.violations.prefix(3).joined(separator: "\n"))\nworkflow: \(harness.source)"
            )
        }
    }

    @Test("Random workflows with only successes run to success")
    func successfulRunsSucceed() async {
        await propertyCheck(count: Self.count, input: Gen.int(in: 0...Int.max)) { seed in
            await Task.yield()
            var harness = PlannerHarness(seed: UInt64(seed), itemsAlwaysArray: true, failChildCreation: false)
            harness.driveToEnd()
            #expect(
                harness.violations.isEmpty,
                "\(harness.violations.prefix(3).joined(separator: "\n"))\nworkflow: \(harness.source)"
            )
            // Every condition is true or false, every result a success: the run succeeds unless an output is over
            // the limit (never, here) or a for_each or template fails (never, here).
            #expect(
                harness.run.status == .succeeded,
                "status \(harness.run.status), error \(String(describing: harness.run.error))\nworkflow: \(harness.source)"
            )
        }
    }

    @Test("A pass that fails the run hands back no launch of the steps it cancelled")
    func launchesOfAFailedPass() throws {
        // `a` starts, then `b`'s for_each is not an array: the run fails and `a` is cancelled in the same pass.
        let workflow = try DefinitionParser.parse(
            Array(
                #"{"steps":[{"id":"a","template":"x"},{"id":"b","for_each":"input.items","template":"{{ item }}"}]}"#
                    .utf8
            ),
            format: .json,
            nameFromPath: "w"
        )
        var run = newRun(workflow, input: ["items": "not an array"])
        var planner = RunPlanner(definition: workflow, now: 0, maxOutputBytes: 1_000)
        planner.start(&run)
        planner.advance(&run, signals: [], children: [:])
        #expect(run.status == .failed)
        #expect(run.step("a")?.status == .cancelled)
        #expect(planner.launches.isEmpty, "launches: \(planner.launches.map(\.stepID))")
    }
}

/// How many cases a property runs: `CARAVAN_PROPERTY_COUNT` when set, else `default`.
enum PropertyTestBudget {
    static func count(default value: Int) -> Int {
        guard let text = ProcessEnvironment.value("CARAVAN_PROPERTY_COUNT"), let number = Int(text), number > 0 else {
            return value
        }
        return number
    }
}

/// Reads the environment without Foundation.
enum ProcessEnvironment {
    static func value(_ name: String) -> String? {
        guard let pointer = getenv(name) else { return nil }
        return String(cString: pointer)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Choices the harness makes from its seeded generator.
extension SplitMix64 {
    mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &self) < percent }
    mutating func pick<T>(_ values: [T]) -> T { values[Int.random(in: 0..<values.count, using: &self)] }
}

/// A random, valid workflow definition, made as JSON and put through `DefinitionParser`.
enum RandomWorkflow {
    static func make(_ rng: inout SplitMix64) -> (JSONValue, WorkflowDefinition) {
        let count = Int.random(in: 1...7, using: &rng)
        var steps: [JSONValue] = []
        for index in 0..<count {
            var step: [String: JSONValue] = ["id": .string("s\(index)")]
            let needs = (0..<index).filter { _ in rng.chance(35) }
            if !needs.isEmpty { step["needs"] = .array(needs.map { .string("s\($0)") }) }
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4:
                step["template"] =
                    needs.first.map { .string("v\(index)-{{ steps.s\($0).output }}") } ?? .string("v\(index)")
            case 4:
                step["template"] = .string("{{ item }}")
                step["for_each"] = .string(rng.pick(["input.items", "[1, 2, 3]", "[]"]))
            case 5:
                step["sleep"] = .string(rng.pick(["0s", "500ms", "2s", "1m"]))
            case 6:
                step["approval"] = rng.pick([
                    .object([:]), ["timeout": "5s"], ["message": "ok {{ input.x }}"],
                    ["timeout": "1h", "message": "m"],
                ])
            case 7:
                step["workflow"] = ["name": "child-wf", "input": ["from": .string("s\(index)")]]
            case 8:
                step["agent"] = ["name": "helper", "input": "hello"]
            default:
                step["template"] = ["n": "{{ input.n }}", "x": "{{ input.x }}"]
            }
            if rng.chance(30) {
                var conditions = ["input.flag", "!input.flag", "input.n > 2", "input.n <= 2", "len(input.items) == 2"]
                if let need = needs.last {
                    conditions += ["steps.s\(need).output != null", "steps.s\(need).status == 'succeeded'"]
                }
                step["when"] = .string(rng.pick(conditions))
            }
            if rng.chance(50) {
                step["retry"] = [
                    "max_attempts": .int(Int64.random(in: 1...4, using: &rng)),
                    "initial_interval": .string(rng.pick(["100ms", "1s", "10s"])),
                    "backoff": .int(Int64.random(in: 1...3, using: &rng)),
                ]
            }
            steps.append(.object(step))
        }
        var document: [String: JSONValue] = ["name": "w", "steps": .array(steps)]
        if rng.chance(40) { document["defaults"] = ["retry": ["max_attempts": 2, "initial_interval": "200ms"]] }
        if rng.chance(50) {
            document["output"] = [
                "first": "{{ steps.s0.output }}", "last": .string("{{ steps.s\(count - 1).status }}"),
            ]
        }
        let source = JSONValue.object(document)
        do {
            let definition = try DefinitionParser.parse(source.canonicalBytes, format: .json, nameFromPath: "w")
            return (source, definition)
        } catch {
            Issue.record("The generated workflow does not validate: \(error)\n\(source.canonicalText)")
            let fallback = try! DefinitionParser.parse(
                Array(#"{"steps":[{"id":"a","template":"x"}]}"#.utf8),
                format: .json,
                nameFromPath: "w"
            )  // a constant that validates
            return (source, fallback)
        }
    }
}

/// Plays the engine around a `RunPlanner`: keeps the committed run, the launches in flight, the signals not yet
/// consumed, the child runs, and the clock; checks the invariants after every planning pass.
struct PlannerHarness {
    var rng: SplitMix64
    let definition: WorkflowDefinition
    let source: String
    var run: RunRecord
    var now: Int64 = 1_000
    /// Launches in flight: step id → attempt.
    var inFlight: [String: Int] = [:]
    /// Attempts that are no longer current (stopped, superseded, or lost with a lease): their results are stale.
    var stale: [(String, Int)] = []
    var signals: [PendingSignal] = []
    var nextSignalID: Int64 = 1
    var children: [String: ChildOutcome] = [:]
    var childOfStep: [String: String] = [:]
    var failChildCreation: Bool
    var violations: [String] = []
    /// Per step: how many `step.started` events were recorded.
    var startedEvents: [String: Int] = [:]
    var passes = 0
    /// How many events of each kind were applied (not counting those that fell back to a clock advance).
    var handled: [String: Int] = [:]
    /// How many events of each type the planner recorded.
    var recorded: [String: Int] = [:]

    static let maxOutputBytes = 1_000

    init(seed: UInt64, itemsAlwaysArray: Bool = false, failChildCreation: Bool = true) {
        self.failChildCreation = failChildCreation
        rng = SplitMix64(seed: seed)
        let (document, definition) = RandomWorkflow.make(&rng)
        self.definition = definition
        source = document.canonicalText
        let itemsArray = rng.chance(85) || itemsAlwaysArray
        let input: JSONValue = [
            "flag": .bool(rng.chance(50)), "n": .int(Int64.random(in: 0...5, using: &rng)), "x": "hi",
            "items": itemsArray ? [1, 2] : "not an array",
        ]
        run = newRun(definition, input: input, id: "run_p", now: now)
        pass(results: [], resumed: false)  // admission: the run starts and its root steps with it
    }

    // MARK: Events

    /// Applies one random event, `code` choosing what happens (`code % 12`) and with which parameter (`code / 12`).
    mutating func handle(_ code: Int) {
        let parameter = code / 12
        switch code % 12 {
        case 0, 1, 2:  // a launched attempt succeeds
            guard let (step, attempt) = pickInFlight(parameter) else { return nudge(parameter) }
            inFlight[step] = nil
            handled["success", default: 0] += 1
            let output: JSONValue =
                parameter % 23 == 0 ? .string(String(repeating: "o", count: 1_500)) : .string("out-\(step)")
            pass(results: [(step, attempt, .succeeded(output))], resumed: false)
        case 3, 4:  // a launched attempt fails, retryably or not
            guard let (step, attempt) = pickInFlight(parameter) else { return nudge(parameter) }
            inFlight[step] = nil
            let retryable = code % 12 == 3 || parameter % 3 != 0
            handled[retryable ? "retryable failure" : "failure", default: 0] += 1
            pass(
                results: [(step, attempt, .failed(Failure(code: "boom", message: "failed", retryable: retryable)))],
                resumed: false
            )
        case 5:  // a stale result: an attempt no longer current, or one that never was
            let (step, attempt) =
                stale.isEmpty || parameter % 2 == 0
                ? (definition.steps[parameter % definition.steps.count].id, parameter % 5)
                : stale[parameter % stale.count]
            let outcome: StepOutcome =
                parameter % 3 == 0
                ? .failed(Failure(code: "late", message: "late", retryable: true)) : .succeeded("late")
            let state = run.step(step)
            handled["stale result", default: 0] += 1
            if state?.status != .running || state?.attempts != attempt {
                // Stale indeed: applying it alone changes nothing and records nothing.
                let snapshot = run
                var planner = RunPlanner(definition: definition, now: now, maxOutputBytes: Self.maxOutputBytes)
                planner.apply(outcome, step: step, attempt: attempt, to: &run)
                if planner.hasChanges || !planner.launches.isEmpty || run.steps != snapshot.steps
                    || run.status != snapshot.status
                    || run.lastSeq != snapshot.lastSeq
                {
                    violation("the stale result \(step)#\(attempt) changed the run")
                }
                pass(results: [], resumed: false)
            } else {
                pass(results: [(step, attempt, outcome)], resumed: false)
            }
        case 6:  // a signal arrives
            let signal: PendingSignal
            switch parameter % 4 {
            case 0, 1:
                signal = PendingSignal(
                    id: nextSignalID,
                    name: "approve",
                    data: ["approved": true, "data": "ok"],
                    sender: "usr_1"
                )
            case 2: signal = PendingSignal(id: nextSignalID, name: "approve", data: ["approved": false], sender: nil)
            default: signal = PendingSignal(id: nextSignalID, name: "other", data: .null, sender: nil)
            }
            nextSignalID += 1
            handled["signal", default: 0] += 1
            signals.append(signal)
            pass(results: [], resumed: false)
        case 7:  // a cancel is requested
            guard parameter % 3 == 0 else { return advanceClock(parameter) }
            run.cancelRequested = true
            handled["cancel", default: 0] += 1
            pass(results: [], resumed: false)
        case 8:  // a child run ends
            let open = children.filter { !$0.value.status.isTerminal }.keys.sorted()
            guard !open.isEmpty else { return advanceClock(parameter) }
            let id = open[parameter % open.count]
            handled["child ends", default: 0] += 1
            switch parameter % 5 {
            case 0:
                children[id] = ChildOutcome(
                    status: .failed,
                    output: nil,
                    error: RunFailure(code: "x", message: "child failed")
                )
            case 1: children[id] = ChildOutcome(status: .cancelled, output: nil, error: nil)
            default: children[id] = ChildOutcome(status: .succeeded, output: ["child": .string(id)], error: nil)
            }
            pass(results: [], resumed: false)
        case 9:  // the lease is lost: another planner picks the stored record up and resumes
            loseLease()
        default:
            advanceClock(parameter)
        }
    }

    mutating func pickInFlight(_ parameter: Int) -> (String, Int)? {
        let keys = inFlight.keys.sorted()
        guard !keys.isEmpty else { return nil }
        let step = keys[parameter % keys.count]
        return (step, inFlight[step]!)  // the key comes from the dictionary itself
    }

    /// What happens when an event finds nothing to act on: a child ends, an approval comes, or the clock moves.
    mutating func nudge(_ parameter: Int) {
        if children.contains(where: { !$0.value.status.isTerminal }) {
            handle(8 + 12 * parameter)
        } else if run.steps.contains(where: {
            $0.status == .waiting && definition.step($0.id)?.kind == ApprovalStepKind.name
        }) {
            handle(6 + 12 * parameter)
        } else {
            advanceClock(parameter)
        }
    }

    /// Moves the clock: a little, or to the next timer.
    mutating func advanceClock(_ parameter: Int) {
        handled["clock", default: 0] += 1
        if parameter % 2 == 0, let wake = RunPlanner.nextWake(of: run), wake > now {
            now = wake
        } else {
            now += Int64([1, 150, 700, 2_500, 20_000][parameter % 5])
        }
        pass(results: [], resumed: false)
    }

    /// The node loses the lease: what was in flight is lost (its results fenced out), the record is read back from
    /// storage and a fresh planner resumes it.
    mutating func loseLease() {
        handled["lease lost", default: 0] += 1
        for (step, attempt) in inFlight { stale.append((step, attempt)) }
        inFlight = [:]
        do {
            run.steps = try StepList.decode(StepList.encode(run.steps))
        } catch {
            violations.append("the steps do not read back from their JSON: \(error)")
        }
        pass(results: [], resumed: true)
    }

    /// Drives everything to its end: results succeed, children succeed, approvals come, timers fire.
    mutating func driveToEnd() {
        for _ in 0..<400 {
            guard violations.isEmpty, !run.status.isTerminal else { return }
            if let (step, attempt) = pickInFlight(0) {
                inFlight[step] = nil
                pass(results: [(step, attempt, .succeeded(.string("done-\(step)")))], resumed: false)
            } else if let id = children.first(where: { !$0.value.status.isTerminal })?.key {
                children[id] = ChildOutcome(status: .succeeded, output: "child-done", error: nil)
                pass(results: [], resumed: false)
            } else if run.steps.contains(where: {
                $0.status == .waiting && definition.step($0.id)?.kind == ApprovalStepKind.name
            }),
                !signals.contains(where: { $0.name == "approve" })
            {
                signals.append(
                    PendingSignal(id: nextSignalID, name: "approve", data: ["approved": true], sender: "usr_2")
                )
                nextSignalID += 1
                pass(results: [], resumed: false)
            } else if let wake = RunPlanner.nextWake(of: run) {
                now = max(now, wake)
                pass(results: [], resumed: false)
            } else {
                violations.append(
                    "the run is stuck in \(run.status): \(run.steps.map { "\($0.id)=\($0.status.rawValue)" })"
                )
                return
            }
        }
        if !run.status.isTerminal { violations.append("the run did not end after 400 passes: \(run.status)") }
    }

    // MARK: One planning pass, as `Engine.execute` makes it

    mutating func pass(results: [(String, Int, StepOutcome)], resumed: Bool) {
        passes += 1
        let before = run
        var planner = RunPlanner(definition: definition, now: now, maxOutputBytes: Self.maxOutputBytes)
        for (step, attempt, outcome) in results { planner.apply(outcome, step: step, attempt: attempt, to: &run) }
        if run.status == .queued { planner.start(&run) }
        if resumed { planner.resumeInFlight(&run) }
        planner.advance(&run, signals: signals, children: children)
        for request in planner.childRuns {
            if let existing = childOfStep[request.stepID] {
                if run.steps.first(where: { $0.id == request.stepID })?.status == .waiting {
                    setChild(existing, of: request.stepID)
                }
            } else if failChildCreation && rng.chance(5) {
                planner.failWaiting(
                    &run,
                    step: request.stepID,
                    Failure(code: "not_found", message: "no such workflow", retryable: false)
                )
            } else if !run.status.isTerminal {
                let id = "child_\(childOfStep.count + 1)"
                childOfStep[request.stepID] = id
                children[id] = ChildOutcome(status: .running, output: nil, error: nil)
                setChild(id, of: request.stepID)
            }
        }
        check(before: before, planner: planner, resumed: resumed)
        for event in planner.events { recorded[event.type, default: 0] += 1 }
        signals.removeAll { planner.consumedSignals.contains($0.id) }
        for step in planner.stoppedSteps {
            if let attempt = inFlight.removeValue(forKey: step) { stale.append((step, attempt)) }
        }
        for launch in planner.launches where !run.status.isTerminal {
            if let previous = inFlight[launch.stepID], previous != launch.attempt {
                stale.append((launch.stepID, previous))
            }
            inFlight[launch.stepID] = launch.attempt
        }
        checkAfterLaunches()
    }

    mutating func setChild(_ id: String, of step: String) {
        if let index = run.steps.firstIndex(where: { $0.id == step }) { run.steps[index].childRunID = id }
    }

    // MARK: Invariants

    mutating func violation(_ text: String) {
        violations.append("pass \(passes) at \(now): \(text)")
    }

    mutating func check(before: RunRecord, planner: RunPlanner, resumed: Bool) {
        // Events are numbered one by one after the run's last.
        let seqs = planner.events.map(\.seq)
        if seqs != Array((before.lastSeq + 1)..<(before.lastSeq + 1 + Int64(seqs.count))) {
            violation("event seqs \(seqs) do not follow \(before.lastSeq)")
        }
        if run.lastSeq != before.lastSeq + Int64(seqs.count) {
            violation("lastSeq \(run.lastSeq) after \(seqs.count) events from \(before.lastSeq)")
        }
        if planner.events.contains(where: { $0.runID != run.id }) { violation("an event names another run") }

        // A terminal run stays as it is.
        if before.status.isTerminal {
            if run.status != before.status || run.output != before.output || run.error != before.error
                || run.finishedAt != before.finishedAt
            {
                violation(
                    "terminal run changed: \(before.status) → \(run.status), \(String(describing: before.output)) → \(String(describing: run.output))"
                )
            }
            if !planner.events.isEmpty { violation("a terminal run recorded \(planner.events.map(\.type))") }
            if !planner.launches.isEmpty { violation("a terminal run launched \(planner.launches.map(\.stepID))") }
            if !planner.childRuns.isEmpty { violation("a terminal run asked for children") }
            if run.steps != before.steps { violation("a terminal run's steps changed") }
        }
        if run.status.isTerminal {
            if run.finishedAt == nil { violation("a terminal run has no finishedAt") }
            for step in run.steps where !step.status.isTerminal {
                violation("step \(step.id) is \(step.status) in a \(run.status) run")
            }
            if run.status == .succeeded, run.steps.contains(where: { $0.status != .succeeded && $0.status != .skipped })
            {
                violation("a succeeded run has steps that neither succeeded nor were skipped")
            }
            if run.status != .succeeded, run.error == nil { violation("a \(run.status) run has no error") }
        }
        let terminalEvents = planner.events.filter {
            ["run.succeeded", "run.failed", "run.cancelled"].contains($0.type)
        }
        if terminalEvents.count > 1
            || (terminalEvents.count == 1) != (!before.status.isTerminal && run.status.isTerminal)
        {
            violation("run end events \(terminalEvents.map(\.type)) for \(before.status) → \(run.status)")
        }

        for (index, step) in run.steps.enumerated() {
            let old = before.steps[index]
            guard let definitionStep = definition.step(step.id) else {
                violation("unknown step \(step.id)")
                continue
            }
            // A step that succeeded never runs again and keeps its output.
            if old.status == .succeeded {
                if step.status != .succeeded || step.attempts != old.attempts || step.output != old.output {
                    violation(
                        "succeeded step \(step.id) changed: \(step.status), attempts \(old.attempts) → \(step.attempts)"
                    )
                }
                if planner.launches.contains(where: { $0.stepID == step.id }) {
                    violation("succeeded step \(step.id) launched again")
                }
                if planner.events.contains(where: { $0.type == "step.started" && $0.step == step.id }) {
                    violation("succeeded step \(step.id) started again")
                }
            }
            // Other terminal step states are final too.
            if old.status.isTerminal, step.status != old.status {
                violation("step \(step.id) left \(old.status) for \(step.status)")
            }
            if step.attempts < old.attempts { violation("step \(step.id) lost attempts") }
            // Attempts: never more than the policy allows, each recorded by one step.started event.
            let started = planner.events.filter { $0.type == "step.started" && $0.step == step.id }.count
            startedEvents[step.id, default: 0] += started
            if step.attempts - old.attempts != started {
                violation("step \(step.id) attempts \(old.attempts) → \(step.attempts) with \(started) starts")
            }
            if step.attempts > definition.retry(for: definitionStep).maxAttempts {
                violation(
                    "step \(step.id) made \(step.attempts) attempts, more than \(definition.retry(for: definitionStep).maxAttempts)"
                )
            }
            // A step never starts before all its needs succeeded.
            if step.attempts > 0 {
                for need in definitionStep.needs where run.step(need)?.status != .succeeded {
                    violation(
                        "step \(step.id) started while its need \(need) is \(String(describing: run.step(need)?.status))"
                    )
                }
            }
            if step.status == .skipped, step.attempts != 0 { violation("skipped step \(step.id) has attempts") }
            if step.status == .succeeded, step.output == nil { violation("succeeded step \(step.id) has no output") }
        }
        // Launches name running steps at their current attempt. A pass that ends the run may still hand back
        // launches of steps it cancelled (see `launchesOfAFailedPass`); the engine starts none of them then.
        for launch in planner.launches where !run.status.isTerminal {
            guard let state = run.step(launch.stepID) else {
                violation("launch of unknown step \(launch.stepID)")
                continue
            }
            if run.status.isTerminal { violation("launch \(launch.stepID) in a terminal run") }
            if state.status != .running || state.attempts != launch.attempt {
                violation(
                    "launch \(launch.stepID)#\(launch.attempt) of a step \(state.status) at attempt \(state.attempts)"
                )
            }
            if !resumed, inFlight[launch.stepID] == launch.attempt {
                violation("launch \(launch.stepID)#\(launch.attempt) while that attempt is in flight")
            }
        }
        // The run's status follows its steps.
        if !run.status.isTerminal {
            if run.steps.contains(where: { $0.status == .running }), run.status != .running {
                violation("a step runs but the run is \(run.status)")
            }
            if run.status == .queued { violation("the run is still queued after a pass") }
        }
    }

    /// Every started step ends: each running step has its attempt in flight, each waiting step something to wait
    /// for, and a run that is not over has something that will move it.
    mutating func checkAfterLaunches() {
        guard !run.status.isTerminal else { return }
        for step in run.steps {
            guard let kind = definition.step(step.id)?.kind else { continue }
            switch step.status {
            case .running:
                if inFlight[step.id] != step.attempts {
                    violation("step \(step.id) runs attempt \(step.attempts) but none is in flight")
                }
            case .waiting:
                switch kind {
                case SleepStepKind.name:
                    if step.wakeAt == nil { violation("sleep \(step.id) waits with no timer") }
                case WorkflowStepKind.name, AgentStepKind.name:
                    if step.childRunID == nil {
                        violation("step \(step.id) waits for a child run that was never asked for")
                    }
                case ApprovalStepKind.name:
                    break  // a signal will come
                default:
                    violation("a \(kind) step waits")
                }
            case .pending:
                break
            default:
                break
            }
        }
        let moving = run.steps.contains {
            $0.status == .running || $0.status == .waiting || ($0.status == .pending && $0.wakeAt != nil)
        }
        if !moving {
            violation(
                "the run is \(run.status) with nothing running, waiting or due: \(run.steps.map { "\($0.id)=\($0.status.rawValue)" })"
            )
        }
    }
}
