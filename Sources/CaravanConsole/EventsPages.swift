import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Events: the organization's outbound webhooks and inbound triggers (the navigation's "Events", lists every member
/// reads and developers change), and the notification settings among the settings. Each page is a client of the
/// API like every other: `/v1/webhooks`, `/v1/triggers` and `/v1/notifications`.
struct EventsPages: Sendable {
    let console: Console

    /// The sections of the events pages.
    static let sections: [(href: String, label: String)] = [
        ("/webhooks", "Webhooks"),
        ("/triggers", "Triggers"),
    ]

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/events") { request, context in
            await console.page(request, context) { _ in .redirect("/webhooks") }
        }
        WebhookPages(console: console).register(in: router)
        TriggerPages(console: console).register(in: router)
        NotificationPages(console: console).register(in: router)
    }

    /// The data every events list has: the sub-navigation with the current section, and the flash of `?done=`
    /// (only the texts of `flashes`, never text from the address).
    static func frame(current: String, request: Request?, flashes: [String: String]) -> [String: Any] {
        let done = request?.uri.queryParameters.get("done").map { String($0) }
        return [
            "sections": sections.map { section -> [String: Any] in
                ["href": section.href, "label": section.label, "current": section.href == current]
            },
            "flash": done.flatMap { flashes[$0] } ?? false,
            "problem": false,
        ]
    }

    static let templates: [String: String] =
        [
            "events-nav": """
            <h1>Events</h1>
            <nav aria-label="Events sections" class="actions">{{#sections}}<a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{#current}}<strong>{{label}}</strong>{{/current}}{{^current}}{{label}}{{/current}}</a>{{/sections}}</nav>
            {{#flash}}<p class="flash" role="status">{{flash}}</p>{{/flash}}
            """
        ]
        .merging(WebhookPages.templates) { first, _ in first }
        .merging(TriggerPages.templates) { first, _ in first }
        .merging(NotificationPages.templates) { first, _ in first }
}

/// What the events forms share: lists typed with commas, numbers typed as text, the problem of a field shown beside
/// it, and absolute addresses.
enum EventsForm {
    /// The items of a list typed with commas or line breaks, without blanks.
    static func list(_ text: String?) -> [String] {
        (text ?? "").split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// A number typed into a form: an integer when it reads as one, else the text, for the API to refuse with the
    /// field's pointer.
    static func number(_ text: String) -> JSONValue {
        Int64(text).map(JSONValue.int) ?? .string(text)
    }

    /// A name of a webhook or a trigger (`[a-z0-9-]{1,64}`), checked before it goes into an API path.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
    }

    /// `values` with `<field>Error` set for every field of `fields`: the detail of the problem's first error whose
    /// pointer `field(pointer)` names that field, else `false` (set, so that a section never finds an outer value).
    static func withErrors(
        _ values: [String: Any],
        _ problem: ConsoleProblem?,
        fields: [String],
        field: (String) -> String?
    ) -> [String: Any] {
        var values = values
        for name in fields { values[name + "Error"] = false }
        var errors = problem?.errors ?? []
        if let problem, errors.isEmpty, let pointer = problem.pointer { errors = [(pointer, problem.detail)] }
        for error in errors {
            guard let name = field(error.pointer), fields.contains(name), values[name + "Error"] as? Bool == false
            else { continue }
            values[name + "Error"] = error.detail
        }
        return values
    }

    /// The form field a pointer names by its first segment (`/events/2` is `events`).
    static func firstSegment(_ pointer: String) -> String? {
        pointer.split(separator: "/").first.map(String.init)
    }

    /// A time of the API as a `<time>` element, or `false` when there is none.
    static func time(_ value: JSONValue?) -> Any {
        guard let value, value.stringValue != nil else { return false }
        return ConsoleTime.element(value)
    }

    /// The origin the browser used (`https://caravan.example.com`), from the request's host, or `nil` when the
    /// host is missing or not a plain host name, address and port.
    static func origin(_ request: Request) -> String? {
        guard let host = request.head.authority ?? request.headers[.host], !host.isEmpty, host.utf8.count <= 255,
            host.unicodeScalars.allSatisfy({
                CharacterSet.alphanumerics.contains($0) && $0.isASCII || ".-:[]".unicodeScalars.contains($0)
            })
        else { return nil }
        return (ConsoleCookie.isSecure(request) ? "https" : "http") + "://" + host
    }
}

extension HTTPField.Name {
    static let host = HTTPField.Name("Host")!  // a valid token, cannot fail
}
