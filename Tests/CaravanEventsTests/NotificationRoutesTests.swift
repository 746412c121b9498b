import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// `/v1/notifications/smtp` and `/v1/notifications/test` over the API, on SQLite and PostgreSQL.
@Suite("Notification settings and tests", .timeLimit(.minutes(3)))
struct NotificationRoutesTests {
    @Test(arguments: TestBackend.available)
    func smtpSettingsAreStoredWithoutThePassword(backend: TestBackend) async throws {
        try await NotifyFixture.with(backend) { client, _, smtp in
            let missing = try await client.send(.get, "/v1/notifications/smtp")
            #expect(missing.status == .notFound)
            #expect(missing.json["code"] == "not_found")
            try await NotifyFixture.configureSMTP(client, smtp)
            let settings = try await client.send(.get, "/v1/notifications/smtp")
            #expect(settings.status == .ok)
            #expect(settings.json["host"] == "127.0.0.1")
            #expect(settings.json["port"] == .int(Int64(smtp.port)))
            #expect(settings.json["security"] == "starttls")
            #expect(settings.json["username"] == .string(NotifyFixture.username))
            #expect(settings.json["from"] == "Caravan Alerts <ops@example.com>")
            #expect(settings.json["insecure_skip_verify"] == true)
            #expect(settings.json["password"] == nil)
            #expect(!settings.json.canonicalText.contains(NotifyFixture.password))

            let replaced = try await client.send(
                .put,
                "/v1/notifications/smtp",
                json: #"{"host": "smtp.example.com", "port": 465, "security": "tls", "from": "ops@example.com"}"#
            )
            #expect(replaced.status == .ok)
            #expect(replaced.json["username"] == .null)
            #expect(replaced.json["insecure_skip_verify"] == false)

            // Invalid settings name their fields and change nothing.
            for (body, pointer) in [
                (#"{"host": "smtp.example.com", "port": 0, "security": "tls", "from": "ops@example.com"}"#, "/port"),
                (
                    #"{"host": "smtp.example.com", "port": 25, "security": "ssl", "from": "ops@example.com"}"#,
                    "/security"
                ),
                (#"{"host": "smtp.example.com", "port": 25, "security": "none", "from": "nobody"}"#, "/from"),
                (#"{"host": "smtp example\r\n.com", "port": 25, "security": "none", "from": "a@b.c"}"#, "/host"),
                (
                    #"{"host": "h.example.com", "port": 25, "security": "none", "from": "a@b.c", "password_secret": "X"}"#,
                    "/username"
                ),
                (
                    #"{"host": "h.example.com", "port": 25, "security": "none", "from": "a@b.c", "password": "p"}"#,
                    "/password"
                ),
                (
                    #"{"host": "h.example.com", "port": 25, "security": "none", "from": "Evil\r\nBcc: x@y.z <a@b.c>"}"#,
                    "/from"
                ),
            ] {
                let answer = try await client.send(.put, "/v1/notifications/smtp", json: body)
                #expect(answer.status == .unprocessableContent, "\(body)")
                let pointers = answer.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? []
                #expect(pointers.contains(pointer), "\(body): \(pointers)")
            }
            #expect(try await client.send(.get, "/v1/notifications/smtp").json["host"] == "smtp.example.com")

            #expect(try await client.send(.delete, "/v1/notifications/smtp").status == .noContent)
            #expect(try await client.send(.get, "/v1/notifications/smtp").status == .notFound)
            #expect(try await client.send(.delete, "/v1/notifications/smtp").status == .notFound)
        }
    }

    @Test(arguments: TestBackend.available)
    func testNotificationsAnswerWhatHappened(backend: TestBackend) async throws {
        try await NotifyFixture.with(backend) { client, receiver, smtp in
            let slack = try await client.send(
                .post,
                "/v1/notifications/test",
                json: #"{"target": {"slack": "\#(receiver.baseURL)/slack"}, "text": "hello"}"#
            )
            #expect(slack.status == .ok)
            #expect(slack.json == ["delivered": true, "target": "slack", "status": 200])
            #expect(receiver.requests("/slack").first?.body["text"] == "*Caravan test*\nhello")

            let bad = try await client.send(
                .post,
                "/v1/notifications/test",
                json: #"{"target": {"webhook": "\#(receiver.baseURL)/bad"}}"#
            )
            #expect(bad.status == .badGateway)
            #expect(bad.json["code"] == "notification_failed")

            let unconfigured = try await client.send(
                .post,
                "/v1/notifications/test",
                json: #"{"target": {"email": {"to": ["ops@example.com"]}}}"#
            )
            #expect(unconfigured.status == .unprocessableContent)
            #expect(unconfigured.json["code"] == "smtp_not_configured")

            try await NotifyFixture.configureSMTP(client, smtp)
            let mail = try await client.send(
                .post,
                "/v1/notifications/test",
                json: #"{"target": {"email": {"to": "ops@example.com"}}, "title": "Ping"}"#
            )
            #expect(mail.status == .ok, "\(mail.json)")
            #expect(mail.json == ["delivered": true, "target": "email", "status": 250])
            #expect(smtp.accepted.first?.header("Subject") == "Ping")
            #expect(smtp.accepted.first?.password == NotifyFixture.password)

            // An SMTP host on a private network the egress policy does not allow is never contacted.
            let before = smtp.connections
            let settings = try await client.send(
                .put,
                "/v1/notifications/smtp",
                json:
                    #"{"host": "10.20.30.40", "port": \#(smtp.port), "security": "starttls", "from": "ops@example.com"}"#
            )
            #expect(settings.status == .ok)
            let refused = try await client.send(
                .post,
                "/v1/notifications/test",
                json: #"{"target": {"email": {"to": ["ops@example.com"]}}}"#
            )
            #expect(refused.status == .unprocessableContent)
            #expect(refused.json["code"] == "egress_denied")
            #expect(smtp.connections == before)
            let webhook = try await client.send(
                .post,
                "/v1/notifications/test",
                json: #"{"target": {"webhook": "http://169.254.169.254/latest"}}"#
            )
            #expect(webhook.json["code"] == "egress_denied")

            // Bodies that name no target, or two, are refused with pointers.
            for (body, pointer) in [
                (#"{"target": {}}"#, "/target"),
                (#"{"target": {"slack": "ftp://x", "text": "t"}}"#, "/target/slack"),
                (#"{"target": {"email": {"to": ["a@b.c", "no"]}}}"#, "/target/email/to/1"),
                (#"{"text": "t"}"#, "/target"),
            ] {
                let answer = try await client.send(.post, "/v1/notifications/test", json: body)
                #expect(answer.status == .unprocessableContent, "\(body)")
                let pointers = answer.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? []
                #expect(pointers.contains(pointer), "\(body): \(pointers)")
            }
        }
    }

    @Test(arguments: TestBackend.available)
    func aServerWithoutStartTLSIsRefused(backend: TestBackend) async throws {
        var options = NotifyFixture.defaultSMTP
        options.offersStartTLS = false
        options.authInClear = true
        try await NotifyFixture.with(backend, smtp: options) { client, _, smtp in
            try await NotifyFixture.configureSMTP(client, smtp)
            let answer = try await client.send(
                .post,
                "/v1/notifications/test",
                json: #"{"target": {"email": {"to": ["ops@example.com"]}}}"#
            )
            #expect(answer.status == .badGateway)
            #expect(answer.json["code"] == "smtp_failed")
            #expect(answer.json["detail"]?.stringValue?.contains("STARTTLS") == true)
            // Nothing but the greeting was exchanged in clear: no credentials, no envelope.
            #expect(smtp.commands.map { $0.split(separator: " ").first.map(String.init) ?? "" } == ["EHLO"])
            #expect(smtp.messages.isEmpty)
        }
    }
}
