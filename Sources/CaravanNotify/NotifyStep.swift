public import CaravanCore
public import CaravanEngine
import CaravanWorkflow
import Foundation

/// `notify: {slack: URL | webhook: URL | email: {to, subject?}, title?, text, data?}`: one notification to people.
///
/// The configuration is rendered over the run's scope like any step's. The output is `{delivered: true, target,
/// status}` (and `truncated: true` when the text was cut to `Notification.maxTextCharacters`). Transient failures
/// (a webhook's 408, 429 or 5xx, an SMTP 4xx, timeouts, refused connections) are retried per the step's retry
/// policy; permanent ones (another 4xx, an SMTP 5xx, no SMTP settings, a destination the egress policy refuses)
/// fail the step at once with the code `NotifyError` gives.
public struct NotifyStep: StepExecutor {
    public static let name = "notify"
    public static let urlFields: Set<String> = ["slack", "webhook"]
    static let targets = ["slack", "webhook", "email"]
    static let fields: Set<String> = ["slack", "webhook", "email", "title", "text", "data"]

    let notifier: Notifier

    public init(notifier: Notifier) {
        self.notifier = notifier
    }

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else {
            return [.init(pointer: pointer, detail: "must be an object with slack, webhook or email, and text")]
        }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys.sorted() where !fields.contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of a notify step"))
        }
        let present = targets.filter { object[$0] != nil }
        if present.count != 1 {
            errors.append(
                .init(
                    pointer: present.count > 1 ? pointer + "/" + present[1] : pointer,
                    detail: "must name exactly one target: slack, webhook or email"
                )
            )
        }
        for key in ["slack", "webhook"] {
            guard let value = object[key] else { continue }
            if let problem = urlProblem(value) { errors.append(.init(pointer: pointer + "/" + key, detail: problem)) }
        }
        if let email = object["email"] {
            errors += emailProblems(email, at: pointer + "/email", rendered: false)
        }
        if let text = object["text"] {
            if text.stringValue == nil {
                errors.append(.init(pointer: pointer + "/text", detail: "must be a string"))
            }
        } else {
            errors.append(.init(pointer: pointer + "/text", detail: "is required"))
        }
        if let title = object["title"], title.stringValue == nil {
            errors.append(.init(pointer: pointer + "/title", detail: "must be a string"))
        }
        return errors
    }

    /// Why `value` is not a webhook URL; `nil` when it is one (or a template that will render to one).
    static func urlProblem(_ value: JSONValue, rendered: Bool = false) -> String? {
        guard let url = value.stringValue, !url.isEmpty else { return "must be an http:// or https:// URL" }
        if !rendered && url.hasPrefix("{{") { return nil }
        let lower = url.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), let parsed = URL(string: url),
            parsed.host?.isEmpty == false
        else { return "must be an http:// or https:// URL" }
        return nil
    }

    /// The problems with an `email` target: `{to: address | [addresses], subject?}`. Before rendering, a value
    /// holding `{{ }}` is checked after rendering instead.
    static func emailProblems(_ email: JSONValue, at pointer: String, rendered: Bool) -> [CaravanError.FieldError] {
        guard let object = email.objectValue else {
            return [.init(pointer: pointer, detail: "must be an object with to (an address or a list) and subject")]
        }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys.sorted() where !["to", "subject"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of an email target"))
        }
        func check(_ value: JSONValue, _ at: String) {
            guard let address = value.stringValue else {
                errors.append(.init(pointer: at, detail: "must be an address such as ops@example.com"))
                return
            }
            if !rendered && address.contains("{{") { return }
            if !EmailAddress.isValid(address) {
                errors.append(.init(pointer: at, detail: "must be an address such as ops@example.com"))
            }
        }
        switch object["to"] {
        case nil:
            errors.append(.init(pointer: pointer + "/to", detail: "is required"))
        case .array(let list)?:
            if list.isEmpty || list.count > 50 {
                errors.append(.init(pointer: pointer + "/to", detail: "must list 1 to 50 addresses"))
            }
            for (index, item) in list.enumerated() { check(item, pointer + "/to/\(index)") }
        case let value?:
            check(value, pointer + "/to")
        }
        if let subject = object["subject"], subject.stringValue == nil {
            errors.append(.init(pointer: pointer + "/subject", detail: "must be a string"))
        }
        return errors
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        var target: NotificationTarget
        do {
            target = try NotificationTarget.parse(config, at: "", ignoring: ["title", "text", "data"])
        } catch {
            let field = error.fieldErrors.first
            throw Failure(
                code: "invalid_notification",
                message:
                    "The rendered notify step is not valid: \(field?.pointer ?? "") \(field?.detail ?? error.detail).",
                retryable: false
            )
        }
        func text(_ value: JSONValue?) -> String? {
            guard let value, !value.isNull else { return nil }
            return value.stringValue ?? value.canonicalText
        }
        let notification = Notification(
            title: text(config["title"]) ?? "",
            text: text(config["text"]) ?? "",
            data: config["data"] ?? .null
        )
        if case .email(let to, nil) = target {
            // Mail needs a subject: the title, else the workflow's name.
            let subject = notification.title.isEmpty ? "Caravan: \(context.workflow)" : notification.title
            target = .email(to: to, subject: subject)
        }
        do {
            let receipt = try await notifier.send(
                notification,
                to: target,
                orgID: context.orgID,
                timeout: context.timeout.duration,
                idempotencyKey: context.idempotencyKey
            )
            return receipt.json
        } catch {
            throw error.failure
        }
    }
}

extension NotificationTarget {
    /// The target a JSON object names — exactly one of `{slack: URL}`, `{webhook: URL}`, `{email: {to: address |
    /// [addresses], subject?}}` — as written, with nothing left to render.
    /// - Parameters:
    ///   - pointer: where the object is in the request, for the field errors.
    ///   - ignoring: other fields the object may hold (a notify step's `title`, `text`, `data`).
    /// - Throws: `validation_failed` with every field at fault.
    public static func parse(
        _ value: JSONValue,
        at pointer: String,
        ignoring: Set<String> = []
    ) throws(CaravanError) -> NotificationTarget {
        guard let object = value.objectValue else {
            throw CaravanError.validation(pointer, "must be an object with slack, webhook or email")
        }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys.sorted() where !NotifyStep.targets.contains(key) && !ignoring.contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a notification target"))
        }
        let present = NotifyStep.targets.filter { object[$0] != nil }
        if present.count != 1 {
            errors.append(.init(pointer: pointer, detail: "must name exactly one target: slack, webhook or email"))
        }
        for key in ["slack", "webhook"] {
            guard let value = object[key] else { continue }
            if let problem = NotifyStep.urlProblem(value, rendered: true) {
                errors.append(.init(pointer: pointer + "/" + key, detail: problem))
            }
        }
        if let email = object["email"] {
            errors += NotifyStep.emailProblems(email, at: pointer + "/email", rendered: true)
        }
        if let first = errors.first { throw CaravanError(.validationFailed, first.detail, fieldErrors: errors) }
        if let url = object["slack"]?.stringValue { return .slack(url: url) }
        if let url = object["webhook"]?.stringValue { return .json(url: url) }
        let email = object["email"] ?? .null
        let to = email["to"]?.arrayValue?.compactMap(\.stringValue) ?? [email["to"]?.stringValue ?? ""]
        return .email(to: to, subject: email["subject"]?.stringValue)
    }
}
