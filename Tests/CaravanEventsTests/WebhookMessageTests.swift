import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Webhooks in the notification formats: a Slack-compatible message and an email when a run needs approval.
@Suite("Webhooks as messages", .timeLimit(.minutes(3)))
struct WebhookMessageTests {
    @Test(arguments: TestBackend.available) func anApprovalReachesSlackAndEmail(backend: TestBackend) async throws {
        try await NotifyFixture.with(backend) { client, receiver, smtp in
            try await NotifyFixture.configureSMTP(client, smtp)
            let slack = try await client.send(
                .put,
                "/v1/webhooks/chat",
                json: #"{"format": "slack", "url": "\#(receiver.baseURL)/slack", "events": ["approval.requested"]}"#
            )
            #expect(slack.status == .created && slack.json["format"] == "slack", "\(slack.json)")
            let mail = try await client.send(
                .put,
                "/v1/webhooks/mail",
                json:
                    #"{"format": "email", "to": ["oncall@example.com"], "events": ["approval.requested", "run.succeeded"]}"#
            )
            #expect(mail.status == .created && mail.json["to"] == ["oncall@example.com"], "\(mail.json)")
            let workflow = try await NotifyFixture.putWorkflow(
                client,
                "refund",
                """
                name: refund
                steps:
                  - id: check
                    approval: {message: "Refund 120 EUR to order 77?"}
                """
            )
            #expect(workflow.status == .created)
            let started = try await client.send(.post, "/v1/workflows/refund/runs", json: #"{"input": {}}"#)
            let run = try #require(started.json["id"]?.stringValue)

            let deadline = ContinuousClock.now + .seconds(20)
            while receiver.requests("/slack").isEmpty || smtp.accepted.isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            let message = try #require(receiver.requests("/slack").first)
            let text = message.body["text"]?.stringValue ?? ""
            #expect(text.contains("Approval needed: workflow refund"), "\(message.body)")
            #expect(text.contains("Refund 120 EUR to order 77?") && text.contains(run), "\(message.body)")
            #expect(message.idempotencyKey?.hasPrefix("msg_") == true)
            let email = try #require(smtp.accepted.first)
            #expect(email.recipients == ["oncall@example.com"])
            #expect(email.encrypted, "sent after STARTTLS")
            #expect(email.data.contains("Approval needed: workflow refund"), "\(email.data)")
            #expect(email.body.contains("Refund 120 EUR to order 77?"), "\(email.body)")

            // Approved, the run succeeds: the mail webhook wants that too; Slack's does not.
            let approved = try await client.send(.post, "/v1/runs/\(run)/signals/approve", json: #"{"approved": true}"#)
            #expect(approved.status.code < 300)
            while smtp.accepted.count < 2, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(smtp.accepted.count == 2)
            #expect(smtp.accepted.last?.data.contains("Run succeeded: workflow refund") == true)
            #expect(receiver.requests("/slack").count == 1)
            // The SMTP server accepts a message before the dispatcher records the outcome.
            let deliveries = try await Hooks.delivered(client, "mail")
            #expect(deliveries.count == 2 && deliveries.allSatisfy { $0["status"] == "delivered" }, "\(deliveries)")
        }
    }

    @Test(arguments: TestBackend.available) func anEmailWebhookWithoutSMTPRetriesAndSaysWhy(
        backend: TestBackend
    )
        async throws
    {
        try await NotifyFixture.with(backend) { client, _, _ in
            _ = try await client.send(
                .put,
                "/v1/webhooks/mail",
                json: #"{"format": "email", "to": ["oncall@example.com"], "events": ["run.succeeded"]}"#
            )
            _ = try await NotifyFixture.putWorkflow(client, "noop", "name: noop\nsteps:\n  - {id: a, template: x}\n")
            _ = try await client.send(.post, "/v1/workflows/noop/runs?wait=10s", json: #"{"input": {}}"#)
            var delivery = JSONValue.null
            let deadline = ContinuousClock.now + .seconds(10)
            while delivery["attempts"] == nil || delivery["attempts"] == 0, ContinuousClock.now < deadline {
                delivery =
                    try await client.send(.get, "/v1/webhooks/mail/deliveries").json["items"]?.arrayValue?.first
                    ?? .null
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(delivery["status"] == "pending", "\(delivery)")
            #expect(delivery["error"]?.stringValue?.hasPrefix("smtp_not_configured") == true, "\(delivery)")
            #expect(delivery["next_attempt_at"]?.stringValue != nil)
        }
    }
}
