import CaravanCore
import CaravanWorkflow
import Foundation

/// Cron arithmetic for workflow schedules.
enum Scheduler {
    /// The first tick of `schedule` strictly after `milliseconds`, in Unix milliseconds.
    static func nextFire(of schedule: WorkflowDefinition.Schedule, after milliseconds: Int64) -> Int64? {
        let zone = TimeZone(identifier: schedule.timeZone) ?? .gmt
        let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        return schedule.cron.next(after: date, in: zone).map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
    }
}
