import CaravanCore
import CaravanWorkflow
import Testing

@testable import CaravanEngine

private let configuration: EngineConfiguration = {
    var configuration = EngineConfiguration()
    configuration.nodeID = "node_a"
    configuration.leaseDuration = .seconds(30)
    configuration.leaseRenewInterval = .seconds(10)
    configuration.holdWindow = .seconds(2)
    return configuration
}()

/// A run claimed from the database (no launches committed yet), as the engine's driver would make it.
private func claimed(_ workflow: WorkflowDefinition, instant: Set<String> = []) -> RunExecution {
    RunExecution(
        run: newRun(workflow),
        fence: 7,
        launches: [],
        wakeSeq: 3,
        definition: workflow,
        configuration: configuration,
        instantKinds: instant
    )
}

/// One planning pass with nothing read (no cancel asked for, no signals, no children).
private func plan(_ execution: inout RunExecution, now: Int64, cancelRequested: Bool? = nil) -> RunExecution.Next {
    let readCancel = execution.beginPlanning(now: now)
    #expect(readCancel == (cancelRequested != nil), "whether the cancel flag must be read")
    let requests = execution.advance(cancelRequested: cancelRequested, signals: [], children: [:])
    #expect(requests.isEmpty)
    return execution.finishPlanning(children: [])
}

private func commitOf(_ next: RunExecution.Next) -> RunAdvance? {
    if case .commit(let advance) = next { return advance }
    return nil
}

private func isStop(_ next: RunExecution.Next) -> Bool {
    if case .stop = next { return true }
    return false
}

private func restartsWaker(_ next: RunExecution.Next) -> Bool? {
    if case .proceed(let restart) = next { return restart }
    return nil
}

private func summary(_ work: [RunExecution.Work]) -> [String] {
    work.map {
        switch $0 {
        case .runInline(let launch): "inline \(launch.stepID)"
        case .launch(let launch, _): "launch \(launch.stepID)"
        case .readJournal: "journal"
        case .armWaker(let timeout):
            "waker \(timeout.components.seconds * 1_000 + timeout.components.attoseconds / 1_000_000_000_000_000)"
        }
    }
}

private func launch(_ work: [RunExecution.Work], _ stepID: String) -> StepLaunch? {
    for item in work {
        if case .launch(let launch, _) = item, launch.stepID == stepID { return launch }
        if case .runInline(let launch) = item, launch.stepID == stepID { return launch }
    }
    return nil
}

@Suite("Run execution")
struct RunExecutionTests {
    @Test("A claimed run is admitted by its first commit; its steps launch only after each commit, then it ends")
    func claimedRunToTheEnd() throws {
        let workflow = try definition(
            "steps:\n  - {id: a, template: A}\n  - {id: b, needs: [a], template: \"{{ steps.a.output }}B\"}\noutput: \"{{ steps.b.output }}\""
        )
        var execution = claimed(workflow)
        #expect(execution.needsPlanning)

        let planned1 = plan(&execution, now: 10, cancelRequested: false)
        let first = try #require(commitOf(planned1))
        #expect(first.admission?.organizationLimit == configuration.maxActiveRunsPerOrganization)
        #expect(first.parkedState?.status == .queued, "a run the limits do not admit stays as it was")
        #expect(first.update.run.status == .running)
        #expect(first.update.fence == 7 && first.update.seenWakeSeq == 3)
        #expect(first.update.newOwner == "node_a" && first.update.leaseExpiresAt == 30_010)
        #expect(first.events.map(\.type) == ["run.started", "step.started"])
        let answer1 = execution.committed(.advanced(true))
        #expect(restartsWaker(answer1) == false)

        let work = execution.takeWork(now: 10)
        #expect(summary(work) == ["launch a", "journal", "waker 10000"])
        execution.stepFinished(try #require(launch(work, "a")), outcome: .succeeded("A"), inline: false)

        let planned2 = plan(&execution, now: 20)
        let second = try #require(commitOf(planned2))
        #expect(second.admission == nil)
        #expect(second.events.map(\.type) == ["step.succeeded", "step.started"])
        let answer2 = execution.committed(.advanced(true))
        #expect(restartsWaker(answer2) == false)
        let next = execution.takeWork(now: 20)
        #expect(summary(next) == ["launch b"], "the journal reader and the waker are still in flight")
        execution.stepFinished(try #require(launch(next, "b")), outcome: .succeeded("AB"), inline: false)

        let planned3 = plan(&execution, now: 30)
        let last = try #require(commitOf(planned3))
        #expect(last.update.run.status == .succeeded)
        #expect(last.update.run.output == "AB")
        #expect(last.update.newOwner == nil && last.update.wakeAt == nil, "a finished run is released")
        let answer3 = execution.committed(.advanced(true))
        #expect(isStop(answer3))
    }

    @Test("A run the limits do not admit, or whose lease was lost, stops at its commit")
    func parkedOrLost() throws {
        let workflow = try definition("steps: [{id: a, template: A}]")
        for outcome in [CommitOutcome.parked, .advanced(false)] {
            var execution = claimed(workflow)
            let planned4 = plan(&execution, now: 10, cancelRequested: false)
            _ = try #require(commitOf(planned4))
            let answer4 = execution.committed(outcome)
            #expect(isStop(answer4))
        }
    }

    @Test("Instant steps run in line, and the next turn plans at once without arming the waker")
    func instantSteps() throws {
        let workflow = try definition(
            "steps:\n  - {id: a, template: A}\n  - {id: b, needs: [a], template: B}\noutput: \"{{ steps.b.output }}\""
        )
        var execution = claimed(workflow, instant: ["template"])
        let planned5 = plan(&execution, now: 10, cancelRequested: false)
        _ = try #require(commitOf(planned5))
        _ = execution.committed(.advanced(true))
        let work = execution.takeWork(now: 10)
        #expect(summary(work) == ["inline a"])
        execution.stepFinished(try #require(launch(work, "a")), outcome: .succeeded("A"), inline: true)
        #expect(execution.needsPlanning)
        let planned6 = plan(&execution, now: 11)
        _ = try #require(commitOf(planned6))
        _ = execution.committed(.advanced(true))
        let next = execution.takeWork(now: 11)
        #expect(summary(next) == ["inline b"])
        execution.stepFinished(try #require(launch(next, "b")), outcome: .succeeded("B"), inline: true)
        let planned7 = plan(&execution, now: 12)
        let last = try #require(commitOf(planned7))
        #expect(last.update.run.status == .succeeded)
        let answer5 = execution.committed(.advanced(true))
        #expect(isStop(answer5))
    }

    @Test("A journal write commits under the lease with its events, and the next turn does not plan")
    func journalWrite() throws {
        let workflow = try definition("steps: [{id: a, template: A}]")
        var execution = claimed(workflow)
        let planned8 = plan(&execution, now: 10, cancelRequested: false)
        _ = try #require(commitOf(planned8))
        _ = execution.committed(.advanced(true))
        _ = execution.takeWork(now: 10)
        let lastSeq = execution.run.lastSeq
        let write = StepJournal.Write(
            stepID: "a",
            key: "turn-1",
            value: ["text": "hi"],
            events: [(type: "llm.completed", data: [:]), (type: "tool.called", data: [:])],
            done: { _ in }
        )
        let read = execution.journalRead(write, now: 15)
        let advance = try #require(read)
        #expect(advance.events.map(\.seq) == [lastSeq + 1, lastSeq + 2])
        #expect(advance.events.allSatisfy { $0.step == "a" && $0.at == 15 })
        #expect(advance.journal.map(\.key) == ["turn-1"])
        #expect(advance.update.newOwner == "node_a" && advance.update.leaseExpiresAt == 30_015)
        #expect(!execution.needsPlanning)
        let answer6 = execution.takeWork(now: 15)
        #expect(summary(answer6) == ["journal"], "the reader waits for the next write")
        let none = execution.journalRead(nil, now: 16)
        #expect(none == nil)
    }

    @Test("A far timer releases the run; a near one keeps it, and a nearer one restarts the waker")
    func timers() throws {
        let far = try definition("steps: [{id: nap, sleep: 1m}]")
        var released = claimed(far)
        let planned9 = plan(&released, now: 1_000, cancelRequested: false)
        let release = try #require(commitOf(planned9))
        #expect(release.update.newOwner == nil)
        #expect(release.update.wakeAt == 61_000, "it sleeps until the timer, for any node to claim")
        let answer7 = released.committed(.advanced(true))
        #expect(isStop(answer7))

        let near = try definition("steps:\n  - {id: a, template: A}\n  - {id: nap, needs: [a], sleep: 1s}")
        var kept = claimed(near)
        let planned10 = plan(&kept, now: 1_000, cancelRequested: false)
        _ = try #require(commitOf(planned10))
        _ = kept.committed(.advanced(true))
        let work = kept.takeWork(now: 1_000)
        #expect(summary(work) == ["launch a", "journal", "waker 10000"])
        kept.stepFinished(try #require(launch(work, "a")), outcome: .succeeded("A"), inline: false)
        let planned11 = plan(&kept, now: 2_000)
        let hold = try #require(commitOf(planned11))
        #expect(hold.update.newOwner == "node_a", "the timer is within the hold window: the lease is kept")
        let answer8 = kept.committed(.advanced(true))
        #expect(restartsWaker(answer8) == true, "the timer is nearer than the waker's")
        let answer9 = kept.takeWork(now: 2_000)
        #expect(summary(answer9).isEmpty, "the waker in flight is restarting")
        kept.woke()
        let answer10 = kept.takeWork(now: 2_010)
        #expect(summary(answer10) == ["waker 990"])
        kept.woke()  // the timer: a poke, so the next pass reads the cancel flag
        let readsCancel = kept.beginPlanning(now: 3_000)
        #expect(readsCancel)
    }

    @Test("A cancel read after a poke cancels the run and ends the execution")
    func cancel() throws {
        let workflow = try definition("steps: [{id: hold, approval: {}}]")
        var execution = claimed(workflow)
        let planned12 = plan(&execution, now: 10, cancelRequested: false)
        let waiting = try #require(commitOf(planned12))
        #expect(waiting.update.run.steps.first?.status == .waiting)
        // Waiting for a signal with no timer: released, to be woken by the signal.
        let answer11 = execution.committed(.advanced(true))
        #expect(isStop(answer11))

        var poked = claimed(workflow)
        let planned13 = plan(&poked, now: 10, cancelRequested: true)
        _ = try #require(commitOf(planned13))
        #expect(poked.run.status == .cancelled)
        let answer12 = poked.committed(.advanced(true))
        #expect(isStop(answer12))
    }
}
