public import CaravanCore
public import CaravanOutbound
import CaravanWorkflow
import Foundation

extension WebhookDefinition {
    /// The fields of a definition.
    public static let fields: Set<String> = ["url", "format", "to", "events", "filter", "enabled", "disable_after"]

    /// Reads a `PUT /v1/webhooks/{name}` body. Every refusal names the field.
    /// - Parameter egress: URLs it refuses outright (an internal address written as such) are refused here.
    public init(parsing body: JSONValue, egress: EgressPolicy) throws(CaravanError) {
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        for field in object.keys.sorted() where !Self.fields.contains(field) {
            throw CaravanError.validation("/" + field, "\(field) is not a field of a webhook")
        }
        let format = try Self.string(object, "format") ?? "standard"
        switch format {
        case "standard", "slack":
            guard object["to"] == nil || object["to"] == .null else {
                throw CaravanError.validation("/to", "to is for email webhooks; this one posts to its url")
            }
            guard let text = try Self.string(object, "url") else {
                throw CaravanError.validation("/url", "url is required")
            }
            let url = try Self.url(text, egress: egress)
            target = format == "slack" ? .slack(url) : .standard(url)
        case "email":
            guard object["url"] == nil || object["url"] == .null else {
                throw CaravanError.validation("/url", "an email webhook has no url; it sends to the addresses in to")
            }
            guard let list = object["to"]?.arrayValue, !list.isEmpty, list.count <= 20 else {
                throw CaravanError.validation("/to", "to must be an array of 1 to 20 email addresses")
            }
            var addresses: [String] = []
            for (index, entry) in list.enumerated() {
                guard let address = entry.stringValue, Self.isEmailAddress(address) else {
                    throw CaravanError.validation("/to/\(index)", "must be an email address such as ops@example.com")
                }
                addresses.append(address)
            }
            target = .email(addresses)
        default:
            throw CaravanError.validation("/format", "format must be one of standard, slack, email")
        }
        guard let types = object["events"]?.arrayValue, !types.isEmpty, types.count <= 32 else {
            throw CaravanError.validation(
                "/events",
                "events must be an array of 1 to 32 event types, such as run.failed or run.*"
            )
        }
        var patterns: [EventPattern] = []
        for (index, type) in types.enumerated() {
            guard let text = type.stringValue else {
                throw CaravanError.validation("/events/\(index)", "an event type is a string")
            }
            patterns.append(try EventPattern(parsing: text, at: "/events/\(index)"))
        }
        events = patterns
        filter = try Self.string(object, "filter")
        if let filter {
            guard filter.utf8.count <= CaravanWorkflow.Expression.maxLength else {
                throw CaravanError.validation(
                    "/filter",
                    "filter is longer than \(CaravanWorkflow.Expression.maxLength) bytes"
                )
            }
            do throws(CaravanError) { _ = try CaravanWorkflow.Expression(parsing: filter) } catch {
                throw CaravanError.validation("/filter", error.detail)
            }
        }
        switch object["enabled"] {
        case nil, .null?: enabled = true
        case .bool(let value)?: enabled = value
        default: throw CaravanError.validation("/enabled", "enabled must be true or false")
        }
        if let text = try Self.string(object, "disable_after") {
            guard let duration = CaravanDuration(parsing: text), duration.milliseconds >= 1_000,
                duration.milliseconds <= 90 * 24 * 3_600_000
            else {
                throw CaravanError.validation(
                    "/disable_after",
                    "disable_after must be a duration from 1s to 90d, such as 5d"
                )
            }
            disableAfter = duration.milliseconds
        } else {
            disableAfter = Webhook.defaultDisableAfter
        }
    }

    private static func string(_ object: [String: JSONValue], _ name: String) throws(CaravanError) -> String? {
        switch object[name] {
        case nil, .null?: return nil
        case .string(let text)?:
            guard text.utf8.count <= 2_048 else {
                throw CaravanError.validation("/" + name, "\(name) is longer than 2048 bytes")
            }
            return text
        default: throw CaravanError.validation("/" + name, "\(name) must be a string")
        }
    }

    private static func url(_ text: String, egress: EgressPolicy) throws(CaravanError) -> URL {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
            url.host?.isEmpty == false, url.user == nil, url.password == nil
        else {
            throw CaravanError.validation("/url", "url must be an http or https URL with a host and no credentials")
        }
        if let refusal = egress.refusalWithoutLookup(url) {
            throw CaravanError(
                .egressDenied,
                "The egress policy refuses this url: \(refusal.message)",
                fieldErrors: [.init(pointer: "/url", detail: refusal.message)]
            )
        }
        return url
    }

    /// A plain check of an address's shape (`local@domain.tld`, no spaces or line breaks); the mail server decides
    /// the rest.
    static func isEmailAddress(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard text.utf8.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
            !parts[1].hasPrefix("."), !parts[1].hasSuffix(".")
        else { return false }
        return !text.unicodeScalars.contains { $0.value <= 32 || $0 == "<" || $0 == ">" || $0 == "," || $0 == ";" }
    }
}
