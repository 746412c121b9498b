import CaravanCore
import CaravanWorkflow
import Testing

@testable import CaravanEngine

@Suite("Run planner")
struct RunPlannerTests {
    @Test("Steps start when their needs succeeded, and the run ends with its output")
    func sequence() throws {
        let workflow = try definition(
            "steps:\n  - {id: a, template: A}\n  - {id: b, needs: [a], template: \"{{ steps.a.output }}B\"}\noutput: \"{{ steps.b.output }}\""
        )
        var run = newRun(workflow)
        var planner = RunPlanner(definition: workflow, now: 10, maxOutputBytes: 1000)
        planner.start(&run)
        planner.advance(&run, signals: [], children: [:])
        #expect(planner.launches.map(\.stepID) == ["a"])
        #expect(planner.events.map(\.type) == ["run.started", "step.started"])
        #expect(planner.events.map(\.seq) == [2, 3])

        var second = RunPlanner(definition: workflow, now: 20, maxOutputBytes: 1000)
        second.apply(.succeeded("A"), step: "a", attempt: 1, to: &run)
        second.advance(&run, signals: [], children: [:])
        #expect(second.launches.map(\.stepID) == ["b"])
        #expect(second.launches.first?.config == "AB")

        var third = RunPlanner(definition: workflow, now: 30, maxOutputBytes: 1000)
        third.apply(.succeeded("AB"), step: "b", attempt: 1, to: &run)
        third.advance(&run, signals: [], children: [:])
        #expect(run.status == .succeeded)
        #expect(run.output == "AB")
        #expect(third.events.last?.type == "run.succeeded")
    }

    @Test("A retryable failure waits for its backoff, then starts a new attempt; the last one fails the run")
    func retries() throws {
        let workflow = try definition(
            "steps:\n  - {id: a, template: x, retry: {max_attempts: 2, initial_interval: 1s}}\n  - {id: b, needs: [a], template: y}"
        )
        var run = newRun(workflow)
        var planner = RunPlanner(definition: workflow, now: 0, maxOutputBytes: 1000)
        planner.start(&run)
        planner.advance(&run, signals: [], children: [:])
        var failing = RunPlanner(definition: workflow, now: 100, maxOutputBytes: 1000)
        failing.apply(
            .failed(Failure(code: "http_503", message: "busy", retryable: true)),
            step: "a",
            attempt: 1,
            to: &run
        )
        #expect(run.steps[0].status == .pending)
        #expect(run.status == .waiting)
        let wake = try #require(RunPlanner.nextWake(of: run))
        #expect((600...1100).contains(wake))
        // Not yet due: nothing starts.
        var early = RunPlanner(definition: workflow, now: wake - 1, maxOutputBytes: 1000)
        early.advance(&run, signals: [], children: [:])
        #expect(early.launches.isEmpty)
        var due = RunPlanner(definition: workflow, now: wake, maxOutputBytes: 1000)
        due.advance(&run, signals: [], children: [:])
        #expect(due.launches.map(\.attempt) == [2])
        var last = RunPlanner(definition: workflow, now: wake + 10, maxOutputBytes: 1000)
        last.apply(
            .failed(Failure(code: "http_503", message: "busy", retryable: true)),
            step: "a",
            attempt: 2,
            to: &run
        )
        #expect(run.status == .failed)
        #expect(run.error?.code == "http_503")
        #expect(run.steps[1].status == .cancelled)
    }

    @Test("A result for an attempt that is no longer current is ignored")
    func staleResult() throws {
        let workflow = try definition("steps:\n  - {id: a, template: x}")
        var run = newRun(workflow)
        var planner = RunPlanner(definition: workflow, now: 0, maxOutputBytes: 1000)
        planner.start(&run)
        planner.advance(&run, signals: [], children: [:])
        var stale = RunPlanner(definition: workflow, now: 5, maxOutputBytes: 1000)
        stale.apply(.succeeded("late"), step: "a", attempt: 7, to: &run)
        #expect(!stale.hasChanges)
        #expect(run.steps[0].status == .running)
    }

    @Test("Outputs over the limit fail the step")
    func outputCap() throws {
        let workflow = try definition("steps:\n  - {id: a, template: x}")
        var run = newRun(workflow)
        var planner = RunPlanner(definition: workflow, now: 0, maxOutputBytes: 10)
        planner.start(&run)
        planner.advance(&run, signals: [], children: [:])
        planner.apply(.succeeded(.string(String(repeating: "x", count: 100))), step: "a", attempt: 1, to: &run)
        #expect(run.status == .failed)
        #expect(run.error?.code == "output_too_large")
    }

    @Test("Approvals consume the approve signal; cancel stops everything")
    func approvalAndCancel() throws {
        let workflow = try definition("steps:\n  - {id: ask, approval: {}}\n  - {id: after, needs: [ask], template: x}")
        var run = newRun(workflow)
        var planner = RunPlanner(definition: workflow, now: 0, maxOutputBytes: 1000)
        planner.start(&run)
        planner.advance(&run, signals: [PendingSignal(id: 1, name: "other", data: [:], sender: nil)], children: [:])
        #expect(run.status == .waiting)
        #expect(planner.consumedSignals.isEmpty)
        var approved = run
        var approving = RunPlanner(definition: workflow, now: 5, maxOutputBytes: 1000)
        approving.advance(
            &approved,
            signals: [PendingSignal(id: 2, name: "approve", data: ["approved": true], sender: "usr_1")],
            children: [:]
        )
        #expect(approving.consumedSignals == [2])
        #expect(approved.steps[0].output?["by"] == "usr_1")
        #expect(approving.launches.map(\.stepID) == ["after"])

        run.cancelRequested = true
        var cancelling = RunPlanner(definition: workflow, now: 6, maxOutputBytes: 1000)
        cancelling.advance(&run, signals: [], children: [:])
        #expect(run.status == .cancelled)
        #expect(run.steps.allSatisfy { $0.status == .cancelled })
        #expect(cancelling.events.map(\.type) == ["run.cancelled"])
    }

    @Test("In-flight steps of a resumed run launch again with the same attempt")
    func resume() throws {
        let workflow = try definition("steps:\n  - {id: a, template: \"{{ input.x }}\"}")
        var run = newRun(workflow, input: ["x": 7])
        var planner = RunPlanner(definition: workflow, now: 0, maxOutputBytes: 1000)
        planner.start(&run)
        planner.advance(&run, signals: [], children: [:])
        var resumed = RunPlanner(definition: workflow, now: 50, maxOutputBytes: 1000)
        resumed.resumeInFlight(&run)
        #expect(resumed.launches.map(\.attempt) == [1])
        #expect(resumed.launches.first?.config == 7)
        #expect(!resumed.hasChanges)
    }
}
