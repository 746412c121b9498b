import Foundation

/// Stored times are Unix milliseconds (read from an injected `WallClock`); the API writes RFC 3339 UTC.
public enum Clock {
    /// `milliseconds` as an RFC 3339 UTC string with millisecond precision, e.g. `2026-11-23T01:02:03.456Z`.
    public static func rfc3339(_ milliseconds: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        return date.formatted(
            Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
        )
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
