public import CaravanCore
import Foundation

/// A message for people: what happened, in a few words, with the data behind it.
public struct Notification: Sendable, Equatable {
    /// The longest text sent, in characters: Slack's limit for a message's text. A longer text is cut there (with
    /// an ellipsis), the same for every target, so a run's data cannot make a message that a receiver refuses.
    public static let maxTextCharacters = 40_000
    /// The longest title, in characters.
    public static let maxTitleCharacters = 256

    public var title: String
    public var text: String
    public var data: JSONValue

    public init(title: String, text: String, data: JSONValue = .null) {
        self.title = title
        self.text = text
        self.data = data
    }

    /// Whether the title or the text is longer than what is sent.
    public var isTruncated: Bool {
        title.count > Self.maxTitleCharacters || text.count > Self.maxTextCharacters
    }

    /// This notification with its title and text cut to the limits.
    public var truncated: Notification {
        Notification(
            title: Self.cut(title, to: Self.maxTitleCharacters),
            text: Self.cut(text, to: Self.maxTextCharacters),
            data: data
        )
    }

    static func cut(_ text: String, to characters: Int) -> String {
        text.count <= characters ? text : String(text.prefix(characters - 1)) + "…"
    }
}

/// Where a notification goes.
public enum NotificationTarget: Sendable, Equatable {
    /// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): `{"text", "blocks"}`.
    case slack(url: String)
    /// A generic JSON webhook: `{"title", "text", "data"}`.
    case json(url: String)
    /// Email through the organization's SMTP settings; `subject` defaults to the notification's title.
    case email(to: [String], subject: String?)

    /// The name of the target's kind, as step outputs and API answers report it: `slack`, `webhook`, `email`.
    public var kind: String {
        switch self {
        case .slack: "slack"
        case .json: "webhook"
        case .email: "email"
        }
    }
}

/// Why a notification was not delivered: a stable code, a message for people, whether trying again later may
/// succeed, and what the receiver said.
///
/// Codes: `smtp_not_configured` (the organization has no SMTP settings, or their password secret is missing),
/// `smtp_failed` (the SMTP server refused, or TLS could not be set up; `reply` holds the server's reply),
/// `notification_failed` (the webhook answered other than 2xx; `status` and an excerpt of its body), and the
/// egress client's codes unchanged: `egress_denied`, `dns_error`, `network_error`, `timeout`, `response_too_large`.
public struct NotifyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Failure.Code
    public var message: String
    public var retryable: Bool
    /// The HTTP status, or the SMTP reply code.
    public var status: Int?
    /// The start of what the receiver answered (an HTTP body, an SMTP reply), for people to read.
    public var reply: String?

    public init(code: Failure.Code, message: String, retryable: Bool, status: Int? = nil, reply: String? = nil) {
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status
        self.reply = reply
    }

    public static let smtpNotConfigured: Failure.Code = "smtp_not_configured"
    public static let smtpFailed: Failure.Code = "smtp_failed"
    public static let notificationFailed: Failure.Code = "notification_failed"

    /// The same failure as a step or an outbound request reports it.
    public var failure: Failure { Failure(code: code, message: message, retryable: retryable) }

    /// A failure of the egress client, kept as it is.
    public init(_ failure: Failure) {
        self.init(code: failure.code, message: failure.message, retryable: failure.retryable)
    }

    public var description: String { "\(code): \(message)" }

    /// The first `limit` characters of `text`, on one line, for a message.
    static func excerpt(_ text: String, limit: Int = 200) -> String {
        let line = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) })
        return Notification.cut(line.trimmingCharacters(in: .whitespaces), to: limit)
    }
}
