import AsyncHTTPClient
public import CaravanCore
public import CaravanOutbound
import Foundation
import NIOCore
import NIOHTTP1

/// What a delivered notification left behind.
public struct NotificationReceipt: Sendable, Equatable {
    /// `slack`, `webhook` or `email`.
    public var target: String
    /// The receiver's HTTP status, or the SMTP server's reply code to the message.
    public var status: Int
    /// Whether the title or the text was cut to `Notification`'s limits.
    public var truncated: Bool

    /// The receipt as step outputs and API answers show it.
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "delivered": true, "target": .string(target), "status": .int(Int64(status)),
        ]
        if truncated { object["truncated"] = true }
        return .object(object)
    }
}

/// Sends notifications: webhooks through `EgressHTTPClient` (the egress policy checked; a 2xx is success), email
/// through the organization's SMTP settings with the password read from the vault at the moment of sending (the SMTP
/// host checked against the same policy).
public struct Notifier: Sendable {
    /// Reads the value of a vault secret (`orgID`, `name`), `nil` when it does not exist.
    public typealias SecretLookup = @Sendable (_ orgID: String, _ name: String) async throws -> String?
    /// The hosts a vault secret may be sent to (`nil`: any the egress policy allows).
    public typealias SecretHostsLookup = @Sendable (_ orgID: String, _ name: String) async throws -> [String]?

    let http: EgressHTTPClient
    let settings: SMTPSettingsStore
    let secret: SecretLookup
    let secretHosts: SecretHostsLookup
    let smtp: SMTPClient
    let clock: WallClock
    /// The longest answer body read from a webhook.
    static let maxResponseBytes = 256 * 1024

    public init(
        http: EgressHTTPClient,
        settings: SMTPSettingsStore,
        smtp: SMTPClient = SMTPClient(),
        clock: WallClock = .system,
        secret: @escaping SecretLookup,
        secretHosts: @escaping SecretHostsLookup = { _, _ in nil }
    ) {
        self.http = http
        self.settings = settings
        self.smtp = smtp
        self.clock = clock
        self.secret = secret
        self.secretHosts = secretHosts
    }

    /// Sends `notification` to `target` for the organization `orgID`.
    /// - Parameters:
    ///   - timeout: for the whole delivery of a webhook; each SMTP reply has its own (`SMTPClient`).
    ///   - idempotencyKey: sent as `Idempotency-Key` to webhooks, the same for every attempt of one delivery.
    /// - Throws: `NotifyError` (see its codes).
    @discardableResult
    public func send(
        _ notification: Notification,
        to target: NotificationTarget,
        orgID: String,
        timeout: Duration = .seconds(30),
        idempotencyKey: String? = nil
    ) async throws(NotifyError) -> NotificationReceipt {
        switch target {
        case .slack(let url):
            let status = try await post(
                NotificationFormats.slack(notification),
                to: url,
                kind: target.kind,
                timeout: timeout,
                idempotencyKey: idempotencyKey
            )
            return NotificationReceipt(target: target.kind, status: status, truncated: notification.isTruncated)
        case .json(let url):
            let status = try await post(
                NotificationFormats.json(notification),
                to: url,
                kind: target.kind,
                timeout: timeout,
                idempotencyKey: idempotencyKey
            )
            return NotificationReceipt(target: target.kind, status: status, truncated: notification.isTruncated)
        case .email(let recipients, let subject):
            let receipt = try await mail(notification, to: recipients, subject: subject, orgID: orgID)
            return NotificationReceipt(target: target.kind, status: receipt.code, truncated: notification.isTruncated)
        }
    }

    private func post(
        _ payload: JSONValue,
        to url: String,
        kind: String,
        timeout: Duration,
        idempotencyKey: String?
    ) async throws(NotifyError) -> Int {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "Caravan")
        if let idempotencyKey { request.headers.add(name: "Idempotency-Key", value: idempotencyKey) }
        request.body = .bytes(ByteBuffer(string: payload.canonicalText))
        let response: (status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer)
        do {
            response = try await http.execute(
                request,
                timeout: TimeAmount(timeout),
                maxBodyBytes: Self.maxResponseBytes
            )
        } catch {
            throw NotifyError(error)
        }
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            let excerpt = NotifyError.excerpt(String(buffer: response.body))
            throw NotifyError(
                code: NotifyError.notificationFailed,
                message: "The \(kind) receiver answered \(status)" + (excerpt.isEmpty ? "." : ": \(excerpt)"),
                retryable: status == 408 || status == 429 || status >= 500,
                status: status,
                reply: excerpt
            )
        }
        return status
    }

    private func mail(
        _ notification: Notification,
        to recipients: [String],
        subject: String?,
        orgID: String
    ) async throws(NotifyError) -> SMTPReceipt {
        let configured: SMTPSettings?
        do { configured = try await settings.get(orgID: orgID) } catch {
            throw NotifyError(
                code: NotifyError.smtpNotConfigured,
                message: "The SMTP settings could not be read.",
                retryable: true
            )
        }
        guard let configured else {
            throw NotifyError(
                code: NotifyError.smtpNotConfigured,
                message: "This organization has no SMTP settings (PUT /v1/notifications/smtp).",
                retryable: false
            )
        }
        guard !recipients.isEmpty, recipients.count <= 50, recipients.allSatisfy(EmailAddress.isValid) else {
            throw NotifyError(
                code: NotifyError.smtpFailed,
                message: "The recipients must be 1 to 50 addresses such as ops@example.com.",
                retryable: false
            )
        }
        var password: String?
        if let name = configured.passwordSecret {
            do {
                password = try await secret(orgID, name)
                if let hosts = try await secretHosts(orgID, name),
                    !SecretHostRule.permits(host: configured.host, patterns: hosts)
                {
                    throw NotifyError(
                        code: NotifyError.smtpNotConfigured,
                        message: "The secret '\(name)' may not be sent to \(configured.host) (see its allowed_hosts).",
                        retryable: false
                    )
                }
            } catch let error as NotifyError {
                throw error
            } catch {
                throw NotifyError(
                    code: NotifyError.smtpNotConfigured,
                    message: "The secret '\(name)' could not be read.",
                    retryable: true
                )
            }
            guard password != nil else {
                throw NotifyError(
                    code: NotifyError.smtpNotConfigured,
                    message: "The SMTP password secret '\(name)' does not exist in this organization.",
                    retryable: false
                )
            }
        }
        let addresses: [SocketAddress]
        do {
            addresses = try await http.policy.connectableAddresses(host: configured.host, port: configured.port)
        } catch {
            throw NotifyError(error)
        }
        let note = notification.truncated
        let message = EmailMessage(
            from: configured.from,
            to: recipients,
            subject: subject ?? note.title,
            body: NotificationFormats.emailBody(note),
            date: clock.nowMilliseconds()
        )
        let server = SMTPServer(
            host: configured.host,
            addresses: addresses,
            security: configured.security,
            insecureSkipVerify: configured.insecureSkipVerify,
            username: configured.username,
            password: password
        )
        let receipt = try await smtp.send(
            message,
            from: EmailAddress.bare(configured.from) ?? configured.from,
            to: recipients,
            via: server
        )
        return receipt
    }
}
