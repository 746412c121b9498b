public import CaravanCore
public import CaravanStorage

/// Stores finished runs straight through the run store, in batches, without executing them: for benchmarks of a
/// database that has grown (`caravan-bench --workload seeded`). The rows and events are those the engine writes
/// for a workflow of sequential steps that each succeeded once (or, for the failed ones, whose second step
/// failed), so that the tables, indexes and row sizes match a real history.
public enum RunSeeder {
    /// Inserts `count` finished runs of `workflow` (its version `version`, steps `stepIDs` in sequence, each step's
    /// output the previous one's plus its id) in organization `orgID`, `batchSize` runs and their events per
    /// transaction. Every `failedEvery`-th run failed at its second step (with one step, its first); the others
    /// succeeded. Creation times are 10 ms apart and the last run finished just before `finishedBefore`.
    /// - Parameters:
    ///   - progress: called after each batch with the number of runs stored so far.
    /// - Returns: up to `sampleSize` of the ids stored, spread evenly over them.
    /// - Throws: what the database throws; runs of earlier batches stay stored.
    public static func storeFinishedRuns(
        _ count: Int,
        orgID: String,
        workflow: String,
        version: Int,
        stepIDs: [String],
        failedEvery: Int = 10,
        finishedBefore: Int64 = WallClock.system.nowMilliseconds(),
        batchSize: Int = 2_000,
        sampleSize: Int = 1_000,
        in database: any Database,
        progress: @Sendable (Int) -> Void = { _ in }
    ) async throws -> [String] {
        precondition(
            !stepIDs.isEmpty && batchSize > 0 && failedEvery > 0,
            "seeding needs steps, batches and a failure rate"
        )
        let store = RunStore()
        let sampleEvery = max(1, count / max(1, sampleSize))
        var sample: [String] = []
        var stored = 0
        while stored < count {
            var runs: [NewRun] = []
            var events: [RunEvent] = []
            var orgs: [String: String] = [:]
            for index in stored..<min(count, stored + batchSize) {
                let createdAt = finishedBefore - Int64(count - index) * 10
                let (run, runEvents) = finishedRun(
                    orgID: orgID,
                    workflow: workflow,
                    version: version,
                    stepIDs: stepIDs,
                    failed: index % failedEvery == failedEvery - 1,
                    createdAt: createdAt
                )
                runs.append(NewRun(run: run))
                events += runEvents
                orgs[run.id] = orgID
                if index % sampleEvery == 0, sample.count < sampleSize { sample.append(run.id) }
            }
            try await database.withTransaction { [runs, events, orgs] executor in
                _ = try await store.insert(runs, in: executor)
                try await store.append(events, orgs: orgs, in: executor)
            }
            stored += runs.count
            progress(stored)
        }
        return sample
    }

    /// One finished run and its events: queued, started, then each step started and succeeded (1 ms apart)
    /// until the failed one, then the run's end.
    static func finishedRun(
        orgID: String,
        workflow: String,
        version: Int,
        stepIDs: [String],
        failed: Bool,
        createdAt: Int64
    ) -> (RunRecord, [RunEvent]) {
        let id = Identifier.make("run", milliseconds: createdAt)
        var at = createdAt
        var seq: Int64 = 0
        var events: [RunEvent] = []
        func record(_ type: String, step: String? = nil, data: JSONValue? = nil) {
            seq += 1
            events.append(RunEvent(runID: id, seq: seq, type: type, step: step, at: at, data: data))
        }
        record("run.queued")
        record("run.started")
        let failAt = failed ? min(1, stepIDs.count - 1) : stepIDs.count
        var steps: [StepState] = []
        var output = ""
        var failure: RunFailure?
        for (index, stepID) in stepIDs.enumerated() {
            var step = StepState(id: stepID)
            guard index <= failAt else {
                step.status = .skipped
                steps.append(step)
                continue
            }
            at += 1
            step.attempts = 1
            step.startedAt = at
            record("step.started", step: stepID, data: ["attempt": 1])
            at += 1
            step.finishedAt = at
            if index == failAt {
                let error = RunFailure(
                    code: "template_failed",
                    message: "The template could not be rendered.",
                    step: stepID
                )
                step.status = .failed
                step.error = error
                failure = error
                record("step.failed", step: stepID, data: ["error": error.json])
            } else {
                output += stepID
                step.status = .succeeded
                step.output = .string(output)
                record("step.succeeded", step: stepID, data: ["output": .string(output)])
            }
            steps.append(step)
        }
        if let failure {
            record("run.failed", data: ["error": failure.json])
        } else {
            record("run.succeeded", data: ["output": .string(output)])
        }
        let run = RunRecord(
            id: id,
            orgID: orgID,
            kind: "workflow",
            workflow: workflow,
            workflowVersion: version,
            status: failure == nil ? .succeeded : .failed,
            input: [:],
            output: failure == nil ? .string(output) : nil,
            error: failure,
            steps: steps,
            idempotencyKey: nil,
            requestHash: nil,
            parentRunID: nil,
            parentStep: nil,
            createdAt: createdAt,
            startedAt: createdAt,
            finishedAt: at,
            updatedAt: at,
            lastSeq: seq,
            cancelRequested: false
        )
        return (run, events)
    }
}
