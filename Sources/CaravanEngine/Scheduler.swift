import CaravanCore
import CaravanStorage
import CaravanWorkflow
import Foundation
import Logging

/// Cron arithmetic for workflow schedules.
enum Scheduler {
    /// The first tick of `schedule` strictly after `milliseconds`, in Unix milliseconds.
    static func nextFire(of schedule: WorkflowDefinition.Schedule, after milliseconds: Int64) -> Int64? {
        let zone = TimeZone(identifier: schedule.timeZone) ?? .gmt
        let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        return schedule.cron.next(after: date, in: zone).map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
    }
}

extension Engine {
    /// Starts scheduled runs when their tick comes, exactly once per tick across nodes: the tick is the run's
    /// idempotency key, and the workflow row is locked while it is handled.
    func scheduleLoop() async {
        while !Task.isCancelled {
            do {
                try await fireDueSchedules()
            } catch {
                logger.warning("Starting scheduled runs failed", metadata: ["error.message": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Starts the runs of every due tick (at most 100 a pass) and moves each workflow's schedule to its next tick,
    /// all in one transaction.
    func fireDueSchedules() async throws {
        let now = clock.nowMilliseconds()
        let due = try await database.withTransaction { executor -> Int in
            var created: [NewRun] = []
            var events: [RunEvent] = []
            for tick in try await self.workflows.dueTicks(now: now, limit: 100, in: executor) {
                guard
                    let workflow = try await self.workflows.load(
                        orgID: tick.orgID,
                        name: tick.name,
                        version: nil,
                        in: executor
                    ),
                    let schedule = workflow.definition.schedule
                else { continue }
                // A tick missed while every node was down starts one run on recovery, unless told to skip.
                let missed = now - tick.fireAt > 60_000
                if !missed || schedule.catchUp {
                    var run = Self.newRun(orgID: tick.orgID, workflow: workflow, input: schedule.input, now: now)
                    run.idempotencyKey = "schedule:\(tick.fireAt)"
                    created.append(NewRun(run: run, wakeAt: now))
                    events.append(
                        RunEvent(
                            runID: run.id,
                            seq: 1,
                            type: "run.queued",
                            at: now,
                            data: ["scheduled_for": .string(Clock.rfc3339(tick.fireAt))]
                        )
                    )
                }
                let next = Scheduler.nextFire(of: schedule, after: now)
                try await self.workflows.setNextFire(orgID: tick.orgID, name: tick.name, at: next, in: executor)
            }
            let inserted = try await self.store.insert(created, in: executor)
            if !inserted.isEmpty { try await self.announce([], in: executor) }
            try await self.store.append(
                events.filter { inserted.contains($0.runID) },
                orgs: Dictionary(created.map { ($0.run.id, $0.run.orgID) }, uniquingKeysWith: { first, _ in first }),
                in: executor
            )
            return inserted.count
        }
        if due > 0 { pokeClaims() }
    }
}
