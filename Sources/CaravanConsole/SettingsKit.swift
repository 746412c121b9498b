import CaravanCore
import Foundation
import HTTPTypes

/// What the settings, usage and audit pages share: reading the API as the signed-in user, telling a problem to
/// show beside a form from one that ends the page, and rendering a page with the status of its answer.
struct SettingsKit: Sendable {
    let console: Console

    /// The most items a page reads of one list by following its cursors.
    static let maxListItems = 1000

    /// Reads a JSON resource of the API. - Throws: the API's problem.
    func read(_ path: String, _ visit: ConsoleVisit) async throws -> JSONValue {
        let answer = try await console.api.call(.get, path, as: visit.credentials)
        if let problem = answer.problem { throw problem }
        return answer.json
    }

    /// Every item of a paged list (`{items, next_cursor}`), page by page, up to `maxListItems`.
    func readAll(_ path: String, _ visit: ConsoleVisit) async throws -> [JSONValue] {
        var items: [JSONValue] = []
        var cursor: String?
        let separator = path.contains("?") ? "&" : "?"
        repeat {
            let page = try await read(
                path + separator + "limit=100" + (cursor.map { "&cursor=\(ConsoleMarkup.query($0))" } ?? ""),
                visit
            )
            items += page["items"]?.arrayValue ?? []
            cursor = page["next_cursor"]?.stringValue
        } while cursor != nil && items.count < Self.maxListItems
        return items
    }

    /// Calls the API to change something.
    /// - Returns: the answer when it succeeded, or the problem to show beside the form that was sent.
    /// - Throws: a problem that is not about what the form said (not signed in, not allowed, not found), which
    ///   ends the page with the error page.
    func change(
        _ method: HTTPRequest.Method,
        _ path: String,
        body: JSONValue?,
        _ visit: ConsoleVisit
    ) async throws -> Result<JSONValue, ConsoleProblem> {
        let answer = try await console.api.call(method, path, as: visit.credentials, body: body)
        guard let problem = answer.problem else { return .success(answer.json) }
        if [401, 403, 404].contains(problem.status) { throw problem }
        return .failure(problem)
    }

    /// A signed-in page: `template` inside the layout, answered with `status` (the API's, when a form was refused).
    func page(
        _ template: String,
        title: String,
        visit: ConsoleVisit,
        _ data: [String: Any],
        status: Int = 200
    ) -> ConsoleAnswer {
        var data = data
        data["csrf"] = visit.csrf
        return .html(
            console.views.document(title: title, visit: visit, body: console.views.render(template, data)),
            status: HTTPResponse.Status(code: status)
        )
    }

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
