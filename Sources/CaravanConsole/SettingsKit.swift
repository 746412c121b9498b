import CaravanCore
import Foundation
import HTTPTypes

/// What the settings, usage and audit pages share: problems found before calling the API, the roles a form may
/// offer, and how times, counts and costs are written.
enum SettingsKit {
    /// A validation problem found by the console before calling the API, shown like one of the API's.
    static func invalid(_ pointer: String, _ detail: String) -> ConsoleProblem {
        ConsoleProblem(
            status: 422,
            code: "validation_failed",
            detail: "Check the form: \(detail).",
            pointer: pointer,
            errors: [(pointer, detail)]
        )
    }

    /// The roles `visit` may give (an API key's, an invitation's, a member's): none above its own.
    static func roles(upTo visit: ConsoleVisit, selected: String) -> [[String: Any]] {
        ["viewer", "developer", "admin", "owner"].filter { visit.can($0) }.map { role in
            ["value": role, "selected": role == selected]
        }
    }

    /// A time typed into a form as RFC 3339: a `date` (`2030-01-31`, read as the end of that day, UTC), a
    /// `datetime-local` value (read as UTC), or RFC 3339 as it is; `nil` for an empty field.
    static func time(_ text: String?, endOfDay: Bool) -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        if text.count == 10 { return text + (endOfDay ? "T23:59:59Z" : "T00:00:00Z") }
        if text.count == 16 { return text + ":00Z" }
        return text
    }

    /// A whole number with thin groups (`12 345 678`), the same in every locale.
    static func grouped(_ number: Int64) -> String {
        let digits = String(number.magnitude)
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out += "\u{202F}" }
            out.append(character)
        }
        return (number < 0 ? "-" : "") + out
    }

    /// US dollars as the console shows costs: cents for sums of a dollar or more, else four decimals.
    static func dollars(_ amount: Double) -> String {
        amount >= 1 ? String(format: "$%.2f", amount) : String(format: "$%.4f", amount)
    }
}
