import CaravanCore
import CaravanWorkflow
import Foundation
import Testing

private func date(_ text: String) -> Date {
    Date(timeIntervalSince1970: Double(Clock.parseRFC3339(text) ?? 0) / 1000)
}

private func next(_ cron: String, after: String, zone: String = "UTC") throws -> String? {
    try CronExpression(parsing: cron).next(after: date(after), in: TimeZone(identifier: zone)!)
        .map { Clock.rfc3339(Int64($0.timeIntervalSince1970 * 1000)) }
}

@Suite("Cron schedules")
struct CronTests {
    @Test(
        "Next tick",
        arguments: [
            ("*/5 * * * *", "2026-01-01T10:02:30Z", "2026-01-01T10:05:00.000Z"),
            ("*/5 * * * *", "2026-01-01T10:05:00Z", "2026-01-01T10:10:00.000Z"),
            ("0 9 * * MON-FRI", "2026-11-21T12:00:00Z", "2026-11-23T09:00:00.000Z"),  // Saturday → Monday
            ("30 2 1 * *", "2026-01-31T00:00:00Z", "2026-02-01T02:30:00.000Z"),
            ("0 0 31 * *", "2026-02-01T00:00:00Z", "2026-03-31T00:00:00.000Z"),
            ("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00.000Z"),
            ("0 12 13 * FRI", "2026-11-01T00:00:00Z", "2026-11-06T12:00:00.000Z"),  // day-of-month OR day-of-week
            ("@hourly", "2026-01-01T10:59:59Z", "2026-01-01T11:00:00.000Z"),
            ("0 0 * JAN,jul 0", "2026-06-01T00:00:00Z", "2026-07-05T00:00:00.000Z"),
            ("15 10 * * 7", "2026-11-23T00:00:00Z", "2026-11-29T10:15:00.000Z"),
        ]
    )
    func nextTick(cron: String, after: String, expected: String) throws {
        #expect(try next(cron, after: after) == expected)
    }

    @Test("Time zones and daylight saving")
    func timeZones() throws {
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        #expect(
            try next("0 9 * * *", after: "2026-01-10T00:00:00Z", zone: "Europe/Berlin") == "2026-01-10T08:00:00.000Z"
        )
        #expect(
            try next("0 9 * * *", after: "2026-07-10T00:00:00Z", zone: "Europe/Berlin") == "2026-07-10T07:00:00.000Z"
        )
        // 02:30 does not exist on 2026-03-08 in New York (spring forward): that day is skipped.
        #expect(
            try next("30 2 * * *", after: "2026-03-08T00:00:00Z", zone: "America/New_York")
                == "2026-03-09T06:30:00.000Z"
        )
        // 01:30 happens twice on 2026-11-01 in New York (fall back): it fires once, at the first.
        let first = try next("30 1 * * *", after: "2026-11-01T04:00:00Z", zone: "America/New_York")
        #expect(first == "2026-11-01T05:30:00.000Z")
        #expect(try next("30 1 * * *", after: first!, zone: "America/New_York") == "2026-11-02T06:30:00.000Z")
    }

    @Test(
        "Malformed expressions are refused",
        arguments: [
            "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *", "5-1 * * * *", "x * * * *",
        ]
    )
    func refused(cron: String) {
        #expect(throws: CaravanError.self) { try CronExpression(parsing: cron) }
    }

    @Test("An impossible date has no next tick")
    func impossible() throws {
        #expect(try next("0 0 31 2 *", after: "2026-01-01T00:00:00Z") == nil)
    }
}
