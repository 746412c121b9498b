import Foundation

/// Stored times are Unix milliseconds (read from an injected `WallClock`); the API writes RFC 3339 UTC.
public enum Clock {
    /// `milliseconds` as an RFC 3339 UTC string with millisecond precision, e.g. `2026-11-23T01:02:03.456Z`.
    /// Computed with integers (the civil calendar from a day count): through a floating-point `Date`, a
    /// millisecond such as `.123` is `.12299…` and was written as `.122`.
    public static func rfc3339(_ milliseconds: Int64) -> String {
        func floorDivision(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
            let quotient = value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor)
            return (quotient, value - quotient * divisor)
        }
        let (seconds, millisecond) = floorDivision(milliseconds, 1000)
        let (days, secondOfDay) = floorDivision(seconds, 86_400)
        // Days since 1970-01-01 to year, month, day (proleptic Gregorian), after H. Hinnant's `civil_from_days`.
        let shifted = days + 719_468
        let era = floorDivision(shifted, 146_097).quotient
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func padded(_ value: Int64, _ width: Int) -> String {
            let digits = String(value)
            return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        }
        return padded(year, 4) + "-" + padded(month, 2) + "-" + padded(day, 2) + "T"
            + padded(secondOfDay / 3_600, 2) + ":" + padded(secondOfDay % 3_600 / 60, 2) + ":"
            + padded(secondOfDay % 60, 2) + "." + padded(millisecond, 3) + "Z"
    }

    /// Parses an RFC 3339 string into Unix milliseconds, or `nil`.
    public static func parseRFC3339(_ text: String) -> Int64? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) {
            return Int64((date.timeIntervalSince1970 * 1000).rounded())
        }
        if let date = try? Date.ISO8601FormatStyle().parse(text) {
            return Int64((date.timeIntervalSince1970 * 1000).rounded())
        }
        return nil
    }
}
