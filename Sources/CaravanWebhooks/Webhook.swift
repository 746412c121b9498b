public import CaravanCore
public import Foundation

/// An outbound webhook: a subscription of an organization to its run events, delivered to a URL (signed, the
/// Standard Webhooks way), to a Slack-compatible incoming webhook, or by email.
public struct Webhook: Sendable, Hashable {
    public var id: String
    public var orgID: String
    public var name: String
    public var target: WebhookTarget
    /// The event types it wants, with wildcards (`run.*`, `*`).
    public var events: [EventPattern]
    /// An expression over `{type, event, run}` that a matching event must also satisfy (the language of `when`).
    public var filter: String?
    public var enabled: Bool
    /// Why the webhook was disabled (by hand, or after a failure streak).
    public var disabledReason: String?
    /// How long deliveries may fail without a success in between before the webhook is disabled.
    public var disableAfter: Int64
    /// When the current streak of failed attempts began; `nil` after a success.
    public var failingSince: Int64?
    /// The position in the organization's event feed up to which events have been queued for delivery.
    public var feedPosition: Int64
    public var createdAt: Int64
    public var updatedAt: Int64

    /// The default of `disableAfter`: five days of failures without a single success.
    public static let defaultDisableAfter: Int64 = 5 * 24 * 3_600_000

    /// The type an event of these types (its aliases, then its own) is delivered as, if the webhook wants it.
    func wantedType(among types: [String]) -> String? {
        types.first { type in events.contains { $0.matches(type) } }
    }
}

/// Where a webhook's deliveries go, and in which form.
public enum WebhookTarget: Sendable, Hashable {
    /// A JSON body signed with the webhook's secret (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    case standard(URL)
    /// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): a short message per event.
    case slack(URL)
    /// An email per event to these addresses, through the organization's SMTP settings.
    case email([String])

    public var format: String {
        switch self {
        case .standard: "standard"
        case .slack: "slack"
        case .email: "email"
        }
    }

    public var url: URL? {
        switch self {
        case .standard(let url), .slack(let url): url
        case .email: nil
        }
    }
}

/// An event type a webhook subscribes to: exact (`run.failed`), a family (`run.*`), or everything (`*`).
public struct EventPattern: Sendable, Hashable, CustomStringConvertible {
    public let text: String

    /// - Throws: `validation_failed` for anything but dot-separated lowercase names with an optional final `*`.
    public init(parsing text: String, at pointer: String) throws(CaravanError) {
        let segments = text.split(separator: ".", omittingEmptySubsequences: false)
        let valid =
            !text.isEmpty && text.utf8.count <= 64
            && segments.enumerated().allSatisfy { index, segment in
                segment == "*"
                    ? index == segments.count - 1
                    : !segment.isEmpty && segment.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || $0 == 95 }
            }
        guard valid else {
            throw CaravanError.validation(
                pointer,
                "an event type is dot-separated lowercase names (run.failed), optionally ending in * (run.*, *)"
            )
        }
        self.text = text
    }

    public func matches(_ type: String) -> Bool {
        if text == "*" { return true }
        if text.hasSuffix(".*") { return type.hasPrefix(text.dropLast()) }
        return text == type
    }

    public var description: String { text }
}

/// The event types a webhook can name that are not a run event's own type but derived from one.
enum DerivedEventType {
    /// The types an event is delivered as: its aliases first (`approval.requested` for an approval's wait,
    /// `budget.exceeded` for a failure whose code says so), then its own.
    static func types(of type: String, data: JSONValue?) -> [String] {
        var types: [String] = []
        switch type {
        case "step.waiting" where data?["signal"]?.stringValue == "approve", "tool.approval_requested":
            types.append("approval.requested")
        case "step.failed", "run.failed":
            if data?["error"]?["code"]?.stringValue == "budget_exceeded" { types.append("budget.exceeded") }
        default:
            break
        }
        types.append(type)
        return types
    }

    /// The types documented for subscribers (with the engine's own), for validation messages and the API.
    static let known: [String] = [
        "run.queued", "run.started", "run.succeeded", "run.failed", "run.cancelled", "step.started",
        "step.succeeded", "step.failed", "step.retrying", "step.skipped", "step.waiting", "signal.received",
        "approval.requested", "budget.exceeded", "llm.request", "llm.response", "tool.call", "tool.result",
        "tool.approval_requested",
    ]
}
