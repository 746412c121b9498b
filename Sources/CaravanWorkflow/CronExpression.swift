public import CaravanCore
public import Foundation

/// A five-field cron expression (minute hour day-of-month month day-of-week) with `*`, lists, ranges, steps,
/// month and day names, and the macros `@hourly @daily @weekly @monthly @yearly`. When both day fields are
/// restricted, a day matches if either does (as in Vixie cron).
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    public let description: String
    let minutes: Set<Int>
    let hours: Set<Int>
    let daysOfMonth: Set<Int>
    let months: Set<Int>
    let daysOfWeek: Set<Int>
    let daysOfMonthRestricted: Bool
    let daysOfWeekRestricted: Bool

    /// Parses `text`.
    /// - Throws: `validation_failed` naming the bad field.
    public init(parsing text: String) throws(CaravanError) {
        let macros = [
            "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
            "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
        ]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let expanded = macros[trimmed.lowercased()] ?? trimmed
        let fields = expanded.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard fields.count == 5 else {
            throw CaravanError(.validationFailed, "A cron expression has five fields (minute hour day month weekday).")
        }
        let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        minutes = try Self.field(fields[0], name: "minute", range: 0...59)
        hours = try Self.field(fields[1], name: "hour", range: 0...23)
        daysOfMonth = try Self.field(fields[2], name: "day of month", range: 1...31)
        months = try Self.field(fields[3], name: "month", range: 1...12, names: monthNames, nameBase: 1)
        var weekdays = try Self.field(fields[4], name: "day of week", range: 0...7, names: dayNames, nameBase: 0)
        if weekdays.remove(7) != nil { weekdays.insert(0) }
        daysOfWeek = weekdays
        daysOfMonthRestricted = fields[2] != "*" && !fields[2].hasPrefix("*/")
        daysOfWeekRestricted = fields[4] != "*" && !fields[4].hasPrefix("*/")
        description = trimmed
    }

    private static func field(
        _ text: String,
        name: String,
        range: ClosedRange<Int>,
        names: [String] = [],
        nameBase: Int = 0
    ) throws(CaravanError) -> Set<Int> {
        func value(_ token: Substring) throws(CaravanError) -> Int {
            if let number = Int(token), range.contains(number) { return number }
            if let index = names.firstIndex(of: token.lowercased()) { return index + nameBase }
            throw CaravanError(
                .validationFailed,
                "'\(token)' is not a valid \(name) (\(range.lowerBound)-\(range.upperBound))."
            )
        }
        var result = Set<Int>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let stepParts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard stepParts.count <= 2, let base = stepParts.first, !base.isEmpty else {
                throw CaravanError(.validationFailed, "'\(item)' is not a valid \(name).")
            }
            var step = 1
            if stepParts.count == 2 {
                guard let parsed = Int(stepParts[1]), parsed > 0, parsed <= range.upperBound + 1 else {
                    throw CaravanError(.validationFailed, "'\(stepParts[1])' is not a valid step for the \(name).")
                }
                step = parsed
            }
            let low: Int
            let high: Int
            if base == "*" {
                low = range.lowerBound
                high = range.upperBound == 7 ? 6 : range.upperBound
            } else if let dash = base.firstIndex(of: "-") {
                low = try value(base[..<dash])
                high = try value(base[base.index(after: dash)...])
                guard low <= high else { throw CaravanError(.validationFailed, "'\(base)' is an empty \(name) range.") }
            } else {
                low = try value(base)
                high = stepParts.count == 2 ? (range.upperBound == 7 ? 6 : range.upperBound) : low
            }
            for number in stride(from: low, through: high, by: step) { result.insert(number) }
        }
        return result
    }

    /// The first matching minute strictly after `date`, as wall-clock time in `timeZone`; `nil` if none within
    /// eight years (e.g. `0 0 31 2 *`). Wall-clock times that do not exist (a spring-forward gap) are skipped;
    /// a repeated hour (fall-back) fires once.
    public func next(after date: Date, in timeZone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let start = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date.addingTimeInterval(60))
        guard var year = start.year, var month = start.month, var day = start.day, var hour = start.hour,
            var minute = start.minute
        else { return nil }
        let lastYear = year + 8
        while year <= lastYear {
            if !months.contains(month) {
                month += 1
                day = 1
                hour = 0
                minute = 0
                if month > 12 {
                    month = 1
                    year += 1
                }
                continue
            }
            if day > Self.daysIn(month: month, year: year) || !dayMatches(year: year, month: month, day: day) {
                day += 1
                hour = 0
                minute = 0
                if day > Self.daysIn(month: month, year: year) {
                    day = 1
                    month += 1
                    if month > 12 {
                        month = 1
                        year += 1
                    }
                }
                continue
            }
            if !hours.contains(hour) {
                hour += 1
                minute = 0
                if hour > 23 {
                    hour = 0
                    day += 1
                }
                continue
            }
            if !minutes.contains(minute) {
                minute += 1
                if minute > 59 {
                    minute = 0
                    hour += 1
                }
                continue
            }
            let components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute)
            if let candidate = calendar.date(from: components) {
                let back = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: candidate)
                if back.year == year, back.month == month, back.day == day, back.hour == hour, back.minute == minute,
                    candidate > date
                {
                    return candidate
                }
            }
            minute += 1
            if minute > 59 {
                minute = 0
                hour += 1
                if hour > 23 {
                    hour = 0
                    day += 1
                }
            }
        }
        return nil
    }

    private func dayMatches(year: Int, month: Int, day: Int) -> Bool {
        let domMatch = daysOfMonth.contains(day)
        let dowMatch = daysOfWeek.contains(Self.weekday(year: year, month: month, day: day))
        if daysOfMonthRestricted && daysOfWeekRestricted { return domMatch || dowMatch }
        return domMatch && dowMatch
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// 0 = Sunday (Sakamoto's method).
    static func weekday(year: Int, month: Int, day: Int) -> Int {
        let offsets = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4]
        let y = month < 3 ? year - 1 : year
        return (y + y / 4 - y / 100 + y / 400 + offsets[month - 1] + day) % 7
    }
}
