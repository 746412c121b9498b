import CaravanCore
import CaravanNotify
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// The `notify` step kind over real loopback HTTP and SMTP, on SQLite and PostgreSQL.
@Suite("Notify steps", .timeLimit(.minutes(3)))
struct NotifyStepTests {
    @Test(arguments: TestBackend.available)
    func deliversToSlackWebhookAndEmail(backend: TestBackend) async throws {
        try await NotifyFixture.with(backend) { client, receiver, smtp in
            try await NotifyFixture.configureSMTP(client, smtp)
            let yaml = """
                name: notify-all
                steps:
                  - id: slack
                    notify: {slack: "\(receiver.baseURL)/slack", title: "Run {{ input.n }} done",
                             text: "Deployed <!channel> & {{ input.who }}"}
                  - id: hook
                    notify: {webhook: "\(receiver.baseURL)/hook", title: "Plain", text: "for {{ input.who }}",
                             data: {n: "{{ input.n }}", who: "{{ input.who }}"}}
                  - id: mail
                    notify:
                      email: {to: [alice@example.com, bob@example.org], subject: "Résumé for {{ input.who }}"}
                      text: "Line one\\n.dot line\\nnaïve café = costs"
                      data: {n: "{{ input.n }}"}
                """
            let put = try await NotifyFixture.putWorkflow(client, "notify-all", yaml)
            #expect(put.status == .created, "\(put.json)")
            let run = try await NotifyFixture.run(client, "notify-all", input: #"{"n": 7, "who": "Zoë"}"#)
            #expect(run["status"] == "succeeded", "\(run)")
            #expect(
                NotifyFixture.step(run, "slack")?["output"] == ["delivered": true, "target": "slack", "status": 200]
            )
            #expect(
                NotifyFixture.step(run, "hook")?["output"] == ["delivered": true, "target": "webhook", "status": 200]
            )
            #expect(
                NotifyFixture.step(run, "mail")?["output"] == ["delivered": true, "target": "email", "status": 250]
            )

            // Slack: text and one mrkdwn section, with Slack's three characters escaped.
            let slack = try #require(receiver.requests("/slack").first)
            let expected = "*Run 7 done*\nDeployed &lt;!channel&gt; &amp; Zoë"
            #expect(slack.body["text"] == .string(expected))
            #expect(slack.body["blocks"]?.arrayValue?.first?["type"] == "section")
            #expect(slack.body["blocks"]?.arrayValue?.first?["text"] == ["type": "mrkdwn", "text": .string(expected)])
            #expect(slack.contentType == "application/json")
            // The generic webhook: title, text, data.
            let hook = try #require(receiver.requests("/hook").first)
            #expect(hook.body == ["title": "Plain", "text": "for Zoë", "data": ["n": 7, "who": "Zoë"]])
            #expect(hook.idempotencyKey?.hasSuffix(":hook") == true)

            // Email: envelope, TLS, authentication with the vault's password, headers and body.
            let mail = try #require(smtp.accepted.first)
            #expect(smtp.accepted.count == 1)
            #expect(mail.mailFrom == "ops@example.com")
            #expect(mail.recipients == ["alice@example.com", "bob@example.org"])
            #expect(mail.encrypted)
            #expect(mail.authenticatedAs == NotifyFixture.username)
            #expect(mail.password == NotifyFixture.password)
            #expect(mail.mechanism == "PLAIN")
            #expect(smtp.commands.contains("STARTTLS"))
            #expect(smtp.commands.firstIndex(of: "STARTTLS")! < smtp.commands.firstIndex(of: "AUTH ***")!)
            #expect(mail.header("From") == "\"Caravan Alerts\" <ops@example.com>")
            #expect(mail.header("To") == "<alice@example.com>, <bob@example.org>")
            let subject = try #require(mail.header("Subject"))
            #expect(subject.hasPrefix("=?utf-8?B?"))
            #expect(NotifyFixture.decodeEncodedWords(subject) == "Résumé for Zoë")
            #expect(mail.header("MIME-Version") == "1.0")
            #expect(mail.header("Content-Type") == "text/plain; charset=utf-8")
            #expect(mail.header("Content-Transfer-Encoding") == "quoted-printable")
            #expect(mail.header("Message-ID")?.hasSuffix("@example.com>") == true)
            #expect(mail.header("Date")?.hasSuffix("+0000") == true)
            #expect(mail.data.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 78 })
            #expect(!mail.data.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
            let body = NotifyFixture.decodeQuotedPrintable(mail.body)
            #expect(body == "Line one\r\n.dot line\r\nnaïve café = costs\r\n\r\n{\"n\":7}\r\n")

            // The password is in no answer: not in the settings, not in the run, not in its events.
            let settings = try await client.send(.get, "/v1/notifications/smtp")
            #expect(settings.status == .ok)
            #expect(settings.json["password_secret"] == .string(NotifyFixture.secretName))
            let id = try #require(run["id"]?.stringValue)
            let events = try await client.send(.get, "/v1/runs/\(id)/events")
            for text in [settings.json.canonicalText, run.canonicalText, events.json.canonicalText] {
                #expect(!text.contains(NotifyFixture.password))
            }
            #expect(events.json["items"]?.arrayValue?.isEmpty == false)
        }
    }

    @Test(arguments: TestBackend.available)
    func transientFailuresAreRetriedAndDeliveredOnce(backend: TestBackend) async throws {
        var options = NotifyFixture.defaultSMTP
        options.temporaryFailures = 1
        try await NotifyFixture.with(backend, smtp: options) { client, receiver, smtp in
            try await NotifyFixture.configureSMTP(client, smtp)
            let yaml = """
                name: notify-retry
                steps:
                  - {id: hook, notify: {webhook: "\(receiver.baseURL)/flaky", text: "try again"},
                     retry: {max_attempts: 3, initial_interval: 10ms, max_interval: 20ms}}
                  - {id: mail, notify: {email: {to: ops@example.net}, text: "try again"},
                     retry: {max_attempts: 3, initial_interval: 10ms, max_interval: 20ms}}
                """
            #expect(try await NotifyFixture.putWorkflow(client, "notify-retry", yaml).status == .created)
            let run = try await NotifyFixture.run(client, "notify-retry")
            #expect(run["status"] == "succeeded", "\(run)")
            #expect(NotifyFixture.step(run, "hook")?["attempts"] == 2)
            #expect(NotifyFixture.step(run, "mail")?["attempts"] == 2)
            // The receiver saw the 500 and then one delivery, both with the same Idempotency-Key.
            let calls = receiver.requests("/flaky")
            #expect(calls.count == 2)
            #expect(Set(calls.map(\.idempotencyKey)).count == 1)
            // The SMTP server answered 451 once, then accepted the message once.
            #expect(smtp.messages.count == 2)
            #expect(smtp.accepted.count == 1)
            #expect(smtp.accepted.first?.recipients == ["ops@example.net"])
            #expect(smtp.accepted.first?.header("Subject") == "Caravan: notify-retry")
        }
    }

    @Test(arguments: TestBackend.available)
    func permanentFailuresFailTheStepWithAClearCode(backend: TestBackend) async throws {
        try await NotifyFixture.with(backend) { client, receiver, _ in
            let yaml = """
                name: notify-bad
                steps:
                  - {id: hook, notify: {slack: "\(receiver.baseURL)/bad", text: "x"},
                     retry: {max_attempts: 3, initial_interval: 10ms}}
                """
            #expect(try await NotifyFixture.putWorkflow(client, "notify-bad", yaml).status == .created)
            let run = try await NotifyFixture.run(client, "notify-bad")
            #expect(run["status"] == "failed")
            #expect(run["error"]?["code"] == "notification_failed")
            let message = run["error"]?["message"]?.stringValue ?? ""
            #expect(message.contains("400") && message.contains("invalid_payload"), "\(message)")
            #expect(NotifyFixture.step(run, "hook")?["attempts"] == 1)
            #expect(receiver.requests("/bad").count == 1)

            // Email without SMTP settings.
            let mail = """
                name: notify-mail
                steps:
                  - {id: mail, notify: {email: {to: [ops@example.com]}, text: "x"}, retry: {max_attempts: 3}}
                """
            #expect(try await NotifyFixture.putWorkflow(client, "notify-mail", mail).status == .created)
            let unconfigured = try await NotifyFixture.run(client, "notify-mail")
            #expect(unconfigured["status"] == "failed")
            #expect(unconfigured["error"]?["code"] == "smtp_not_configured")
            #expect(NotifyFixture.step(unconfigured, "mail")?["attempts"] == 1)

            // A private address the egress policy does not allow (only 127.0.0.1 is).
            let privateHost = """
                name: notify-private
                steps:
                  - {id: hook, notify: {webhook: "http://10.20.30.40:8080/hook", text: "x"}}
                """
            #expect(try await NotifyFixture.putWorkflow(client, "notify-private", privateHost).status == .created)
            let refused = try await NotifyFixture.run(client, "notify-private")
            #expect(refused["status"] == "failed")
            #expect(refused["error"]?["code"] == "egress_denied")
        }
    }

    @Test(arguments: TestBackend.available)
    func definitionsAreValidatedWithPointers(backend: TestBackend) async throws {
        try await NotifyFixture.with(backend) { client, _, _ in
            let yaml = """
                name: notify-invalid
                steps:
                  - {id: none, notify: {text: "no target"}}
                  - {id: two, notify: {slack: "https://hooks.example.com/a", webhook: "https://example.com/b", text: "x"}}
                  - {id: scheme, notify: {webhook: "ftp://example.com/b", text: "x"}}
                  - {id: address, notify: {email: {to: [ops@example.com, "not an address"]}, text: "x"}}
                  - {id: notext, notify: {slack: "https://hooks.example.com/a"}}
                  - {id: extra, notify: {slack: "https://hooks.example.com/a", text: "x", colour: red}}
                  - {id: text, notify: {email: {to: ops@example.com, cc: x@example.com}, text: [1]}}
                """
            let answer = try await NotifyFixture.putWorkflow(client, "notify-invalid", yaml)
            #expect(answer.status == .unprocessableContent)
            #expect(answer.json["code"] == "validation_failed")
            let pointers = Set(answer.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? [])
            for pointer in [
                "/steps/0/notify", "/steps/1/notify/webhook", "/steps/2/notify/webhook",
                "/steps/3/notify/email/to/1", "/steps/4/notify/text", "/steps/5/notify/colour",
                "/steps/6/notify/email/cc", "/steps/6/notify/text",
            ] {
                #expect(pointers.contains(pointer), "\(pointer) not in \(pointers.sorted())")
            }
            #expect(try await client.send(.get, "/v1/workflows/notify-invalid").status == .notFound)
        }
    }

    @Test(arguments: TestBackend.available)
    func hostileTextAndSubjectsAreContained(backend: TestBackend) async throws {
        try await NotifyFixture.with(backend) { client, receiver, smtp in
            try await NotifyFixture.configureSMTP(client, smtp)
            let yaml = """
                name: notify-hostile
                steps:
                  - {id: big, notify: {webhook: "\(receiver.baseURL)/hook", text: "{{ input.big }}"}}
                  - id: mail
                    notify:
                      email: {to: [ops@example.com], subject: "{{ input.subject }}"}
                      title: "{{ input.subject }}"
                      text: "{{ input.body }}"
                """
            #expect(try await NotifyFixture.putWorkflow(client, "notify-hostile", yaml).status == .created)
            let big = String(repeating: "x", count: 1_000_000)
            let subject = "Hello\\r\\nBcc: evil@example.com\\r\\n\\r\\nInjected body"
            let body = "first\\r\\n.\\r\\nMAIL FROM:<evil@example.com>\\r\\n"
            let run = try await NotifyFixture.run(
                client,
                "notify-hostile",
                input: #"{"big": "\#(big)", "subject": "\#(subject)", "body": "\#(body)"}"#
            )
            #expect(run["status"] == "succeeded", "\(run["error"] ?? .null)")
            #expect(NotifyFixture.step(run, "big")?["output"]?["truncated"] == true)
            let text = receiver.requests("/hook").first?.body["text"]?.stringValue ?? ""
            #expect(text.count == Notification.maxTextCharacters)
            #expect(text.hasSuffix("…"))

            // One message, one recipient, no header added; the lone dot did not end DATA early.
            #expect(smtp.accepted.count == 1)
            let mail = try #require(smtp.accepted.first)
            #expect(mail.recipients == ["ops@example.com"])
            #expect(mail.header("Bcc") == nil)
            #expect(mail.header("Subject") == "Hello  Bcc: evil@example.com    Injected body")
            #expect(mail.headers.map(\.name).filter { $0.lowercased() == "subject" }.count == 1)
            #expect(
                NotifyFixture.decodeQuotedPrintable(mail.body).hasPrefix("first\r\n.\r\nMAIL FROM:<evil@example.com>")
            )
            #expect(smtp.commands.filter { $0.hasPrefix("MAIL FROM") }.count == 1)
        }
    }
}
