import CaravanCore
import CaravanEngine
import CaravanServer
import CaravanTestSupport
import CaravanWebhooks
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Runs a webhook check on `backend` with a receiver on loopback and short retry delays.
private func withWebhooks(
    _ backend: TestBackend,
    retryDelays: [Int64] = [100, 100, 100, 100, 100],
    _ body: @escaping @Sendable (any TestClientProtocol, WebhookReceiver, CaravanApplication) async throws -> Void
) async throws {
    try await WebhookReceiver.with { receiver in
        try await withTestApplication(
            backend,
            configure: { configuration in
                configuration.egressAllow = "127.0.0.1"
                configuration.engine.pollInterval = .init(milliseconds: 50)
                configuration.webhooks.retryDelays = retryDelays
                configuration.openSignup = true
            }
        ) { client, application in
            try await body(client, receiver, application)
        }
    }
}

enum Hooks {
    static func putWorkflow(_ client: any TestClientProtocol, _ name: String, _ yaml: String) async throws {
        let answer = try await client.send(.put, "/v1/workflows/\(name)", json: yaml, contentType: "application/yaml")
        #expect(answer.status == .created || answer.status == .ok, "\(answer.json)")
    }

    static let greet = """
        name: greet
        steps:
          - id: hello
            template: "Hello {{ input.name }}"
          - id: bye
            needs: [hello]
            template: "Bye"
        output: "{{ steps.bye.output }}"
        """

    @discardableResult
    static func start(
        _ client: any TestClientProtocol,
        _ workflow: String,
        input: JSONValue = ["name": "Ada"]
    )
        async throws -> String
    {
        let started = try await client.send(
            .post,
            "/v1/workflows/\(workflow)/runs?wait=20s",
            json: JSONValue.object(["input": input]).canonicalText
        )
        #expect(started.status == .created || started.status == .ok, "\(started.json)")
        return started.json["id"]?.stringValue ?? ""
    }

    static func putWebhook(
        _ client: any TestClientProtocol,
        _ name: String,
        _ body: JSONValue
    ) async throws
        -> (status: HTTPResponse.Status, json: JSONValue)
    {
        let answer = try await client.send(.put, "/v1/webhooks/\(name)", json: body.canonicalText)
        return (answer.status, answer.json)
    }

    static func deliveries(_ client: any TestClientProtocol, _ name: String) async throws -> [JSONValue] {
        try await client.send(.get, "/v1/webhooks/\(name)/deliveries?limit=500").json["items"]?.arrayValue ?? []
    }

    /// The deliveries once all are recorded as delivered (a receiver answers before the dispatcher records the
    /// outcome), or as they are after 10 s.
    static func delivered(_ client: any TestClientProtocol, _ name: String) async throws -> [JSONValue] {
        var deliveries: [JSONValue] = []
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            deliveries = try await Self.deliveries(client, name)
            if !deliveries.isEmpty, deliveries.allSatisfy({ $0["status"] == "delivered" }) { break }
            try await Task.sleep(for: .milliseconds(50))
        } while ContinuousClock.now < deadline
        return deliveries
    }
}

@Suite("Outbound webhooks", .timeLimit(.minutes(3)))
struct WebhookTests {
    @Test func signaturesMatchTheStandardWebhooksTestVector() throws {
        // From the specification's reference implementations.
        let signature = try WebhookSigner.signature(
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: 1_614_265_330,
            body: Array(#"{"test": 2432232314}"#.utf8),
            secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
        )
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test func eventPatternsMatchWholeSegments() throws {
        let family = try EventPattern(parsing: "run.*", at: "/events/0")
        #expect(family.matches("run.failed") && family.matches("run.succeeded") && !family.matches("step.failed"))
        #expect(!family.matches("runner.x"))
        #expect(try EventPattern(parsing: "*", at: "").matches("approval.requested"))
        for bad in ["run.**", "*.failed", "Run.failed", "run..failed", "", "run.fail ed"] {
            #expect(throws: CaravanError.self) { try EventPattern(parsing: bad, at: "/events/0") }
        }
    }

    /// Every event a webhook wants reaches it, signed, each run's events in order, each delivery under its own id.
    @Test(arguments: TestBackend.available) func deliversSignedEventsInOrderPerRun(backend: TestBackend) async throws {
        try await withWebhooks(backend) { client, receiver, _ in
            try await Hooks.putWorkflow(client, "greet", Hooks.greet)
            let created = try await Hooks.putWebhook(
                client,
                "all",
                ["url": .string(receiver.url), "events": ["run.*", "step.succeeded"]]
            )
            #expect(created.status == .created, "\(created.json)")
            let secret = try #require(created.json["secret"]?.stringValue)
            #expect(secret.hasPrefix("whsec_"))
            let again = try await Hooks.putWebhook(
                client,
                "all",
                ["url": .string(receiver.url), "events": ["run.*", "step.succeeded"]]
            )
            #expect(again.status == .ok && again.json["secret"] == nil, "a change does not show the secret again")

            var runs: [String] = []
            for index in 0..<6 {
                runs.append(try await Hooks.start(client, "greet", input: ["name": .int(Int64(index))]))
            }
            // Each run: run.queued, run.started, step.succeeded ×2, run.succeeded.
            try await receiver.wait("5 events of each of 6 runs") { $0.count >= 30 }
            try await Task.sleep(for: .milliseconds(200))
            let received = receiver.received
            #expect(received.count == 30)
            #expect(Set(received.map(\.messageID)).count == 30, "every delivery has its own webhook-id")
            for delivery in received {
                #expect(
                    StandardWebhooksCheck.verify(
                        secret: secret,
                        id: delivery.messageID,
                        timestamp: delivery.timestamp,
                        body: delivery.body,
                        header: delivery.signature
                    ),
                    "signature \(delivery.signature)"
                )
                let age = Date().timeIntervalSince1970 - (Double(delivery.timestamp) ?? 0)
                #expect(age >= -5 && age < 60, "the timestamp is now")
            }
            for run in runs {
                let mine = received.filter { $0.json["data"]?["run_id"]?.stringValue == run }
                let seqs = mine.compactMap { $0.json["data"]?["event"]?["seq"]?.numberValue }
                #expect(seqs.count == 5 && seqs == seqs.sorted(), "run \(run) in order: \(seqs)")
                #expect(mine.first?.json["type"]?.stringValue == "run.queued")
                #expect(mine.last?.json["type"]?.stringValue == "run.succeeded")
                #expect(mine.allSatisfy { $0.json["data"]?["workflow"]?.stringValue == "greet" })
            }
            let deliveries = try await Hooks.delivered(client, "all")
            #expect(deliveries.count == 30)
            #expect(deliveries.allSatisfy { $0["status"] == "delivered" && $0["response_status"] == 200 })
            #expect(deliveries.allSatisfy { $0["latency_ms"]?.numberValue != nil && $0["attempts"] == 1 })
            // One delivery in full: the body it sent.
            let one = try #require(deliveries.first?["id"]?.stringValue)
            let detail = try await client.send(.get, "/v1/webhooks/all/deliveries/\(one)")
            #expect(detail.json["payload"]?["data"]?["run_id"]?.stringValue != nil, "\(detail.json)")
        }
    }

    /// A receiver that fails gets the same message again, with backoff, until it takes it; a run's later events
    /// wait for the earlier one.
    @Test(arguments: TestBackend.available) func retriesUntilTheReceiverRecoversKeepingRunOrder(
        backend: TestBackend
    )
        async throws
    {
        try await withWebhooks(backend) { client, receiver, _ in
            try await Hooks.putWorkflow(client, "greet", Hooks.greet)
            receiver.plan(.failFirst(times: 2, status: 503))
            _ = try await Hooks.putWebhook(client, "flaky", ["url": .string(receiver.url), "events": ["*"]])
            let run = try await Hooks.start(client, "greet")
            try await receiver.wait("every event of the run accepted") { received in
                received.filter { (200..<300).contains($0.answered) }.contains { $0.json["type"] == "run.succeeded" }
            }
            let received = receiver.received.filter { $0.json["data"]?["run_id"]?.stringValue == run }
            // Per message: two 503s then a success, all under one webhook-id, and never a later seq before an
            // earlier one was accepted.
            var acceptedSeq: Double = 0
            for delivery in received {
                let seq = delivery.json["data"]?["event"]?["seq"]?.numberValue ?? -1
                #expect(seq >= acceptedSeq, "seq \(seq) sent after \(acceptedSeq) was accepted")
                #expect(seq <= acceptedSeq + 1 || acceptedSeq == 0 || seq == acceptedSeq, "no event overtakes")
                if (200..<300).contains(delivery.answered) { acceptedSeq = seq }
            }
            let byMessage = Dictionary(grouping: received, by: \.messageID)
            #expect(byMessage.values.allSatisfy { $0.count == 3 && $0.map(\.answered) == [503, 503, 204] })
            let deliveries = try await Hooks.delivered(client, "flaky")
            #expect(deliveries.allSatisfy { $0["status"] == "delivered" && $0["attempts"] == 3 }, "\(deliveries)")
        }
    }

    /// A webhook whose receiver keeps failing is disabled, audited; enabled again, a failed delivery can be re-sent.
    @Test(arguments: TestBackend.available) func aFailureStreakDisablesTheWebhook(backend: TestBackend) async throws {
        try await withWebhooks(backend, retryDelays: [200, 200, 200, 200, 200, 200, 200, 200]) {
            client,
            receiver,
            _ in
            try await Hooks.putWorkflow(client, "greet", Hooks.greet)
            receiver.plan(.answer(500))
            _ = try await Hooks.putWebhook(
                client,
                "broken",
                ["url": .string(receiver.url), "events": ["run.succeeded"], "disable_after": "1s"]
            )
            try await Hooks.start(client, "greet")
            let deadline = ContinuousClock.now + .seconds(20)
            var webhook = JSONValue.null
            while ContinuousClock.now < deadline {
                webhook = try await client.send(.get, "/v1/webhooks/broken").json
                if webhook["enabled"] == false { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(webhook["enabled"] == false, "\(webhook)")
            #expect(webhook["disabled_reason"]?.stringValue?.contains("500") == true, "\(webhook)")
            var audit = JSONValue.null
            for _ in 0..<50 where audit["items"]?.arrayValue?.isEmpty ?? true {
                audit = try await client.send(.get, "/v1/audit?action=webhook.disabled").json
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(audit["items"]?.arrayValue?.first?["target"] == "webhook:broken", "\(audit)")
            // Disabled: nothing more is attempted.
            let attempts = receiver.received.count
            try await Task.sleep(for: .milliseconds(600))
            #expect(receiver.received.count == attempts)

            // Mended and enabled again, the pending delivery goes out.
            receiver.plan(.succeed)
            let enabled = try await Hooks.putWebhook(
                client,
                "broken",
                ["url": .string(receiver.url), "events": ["run.succeeded"], "disable_after": "1s", "enabled": true]
            )
            #expect(enabled.json["enabled"] == true && enabled.json["failing_since"] == .null, "\(enabled.json)")
            try await receiver.wait("the pending delivery after enabling") { $0.contains { $0.answered == 200 } }
            // Re-sent by hand: the same message again, under the same webhook-id.
            let delivery = try #require(try await Hooks.delivered(client, "broken").first)
            #expect(delivery["status"] == "delivered", "\(delivery)")
            let id = try #require(delivery["id"]?.stringValue)
            let resent = try await client.send(.post, "/v1/webhooks/broken/deliveries/\(id)/resend")
            #expect(resent.status == .accepted, "\(resent.json)")
            try await receiver.wait("the re-sent delivery") { $0.filter { $0.answered == 200 }.count == 2 }
            let accepted = receiver.accepted
            #expect(accepted[0].messageID == accepted[1].messageID)
            let unknown = try await client.send(.post, "/v1/webhooks/broken/deliveries/999999/resend")
            #expect(unknown.status == .notFound)
        }
    }

    /// While a secret is rotated, deliveries carry a signature by each of the two.
    @Test(arguments: TestBackend.available) func rotatedSecretsSignTogether(backend: TestBackend) async throws {
        try await withWebhooks(backend) { client, receiver, _ in
            try await Hooks.putWorkflow(client, "greet", Hooks.greet)
            let created = try await Hooks.putWebhook(
                client,
                "r",
                ["url": .string(receiver.url), "events": ["run.succeeded"]]
            )
            let old = try #require(created.json["secret"]?.stringValue)
            let rotated = try await client.send(.post, "/v1/webhooks/r/rotate-secret", json: #"{"grace": "1h"}"#)
            #expect(rotated.status == .ok, "\(rotated.json)")
            let new = try #require(rotated.json["secret"]?.stringValue)
            #expect(new != old)
            try await Hooks.start(client, "greet")
            try await receiver.wait("one delivery") { $0.count == 1 }
            let delivery = try #require(receiver.received.first)
            #expect(delivery.signature.split(separator: " ").count == 2)
            for secret in [old, new] {
                #expect(
                    StandardWebhooksCheck.verify(
                        secret: secret,
                        id: delivery.messageID,
                        timestamp: delivery.timestamp,
                        body: delivery.body,
                        header: delivery.signature
                    )
                )
            }
            // Without grace, the old secret stops at once.
            let hard = try await client.send(.post, "/v1/webhooks/r/rotate-secret", json: #"{"grace": "0s"}"#)
            let newest = try #require(hard.json["secret"]?.stringValue)
            try await Hooks.start(client, "greet")
            try await receiver.wait("a second delivery") { $0.count == 2 }
            let second = receiver.received[1]
            #expect(second.signature.split(separator: " ").count == 1)
            #expect(
                StandardWebhooksCheck.verify(
                    secret: newest,
                    id: second.messageID,
                    timestamp: second.timestamp,
                    body: second.body,
                    header: second.signature
                )
            )
        }
    }

    /// Wildcards, aliases and filters choose what is sent.
    @Test(arguments: TestBackend.available) func filtersAndAliasesChooseTheEvents(backend: TestBackend) async throws {
        try await withWebhooks(backend) { client, receiver, _ in
            try await Hooks.putWorkflow(client, "greet", Hooks.greet)
            try await Hooks.putWorkflow(
                client,
                "careful",
                """
                name: careful
                steps:
                  - id: ok
                    approval: {message: "Ship it?"}
                """
            )
            let put = try await Hooks.putWebhook(
                client,
                "picky",
                [
                    "url": .string(receiver.url), "events": ["approval.requested", "run.succeeded"],
                    "filter": "run.workflow == \"careful\" || type == \"approval.requested\"",
                ]
            )
            #expect(put.status == .created, "\(put.json)")
            try await Hooks.start(client, "greet")  // run.succeeded of greet: filtered out
            let careful = try await client.send(.post, "/v1/workflows/careful/runs", json: #"{"input": {}}"#)
            let run = try #require(careful.json["id"]?.stringValue)
            try await receiver.wait("the approval request") { $0.count == 1 }
            let approval = receiver.received[0].json
            #expect(approval["type"] == "approval.requested", "\(approval)")
            #expect(approval["data"]?["event"]?["data"]?["message"] == "Ship it?")
            #expect(approval["data"]?["event"]?["type"] == "step.waiting")
            let answer = try await client.send(
                .post,
                "/v1/runs/\(run)/signals/approve",
                json: #"{"approved": true}"#
            )
            #expect(answer.status.code < 300, "\(answer.json)")
            try await receiver.wait("the careful run's success") { $0.count == 2 }
            try await Task.sleep(for: .milliseconds(300))
            #expect(
                receiver.received.map { $0.json["type"]?.stringValue ?? "" } == ["approval.requested", "run.succeeded"]
            )
            #expect(receiver.received.allSatisfy { $0.json["data"]?["workflow"] == "careful" })
        }
    }

    /// Bad definitions are refused with the field named; internal addresses by the egress policy; another
    /// organization sees none of it.
    @Test(arguments: TestBackend.available) func badDefinitionsAndOtherOrganizations(backend: TestBackend) async throws
    {
        try await withWebhooks(backend) { client, receiver, _ in
            let cases: [(JSONValue, String, String)] = [
                (["url": "http://10.1.2.3/x", "events": ["run.failed"]], "egress_denied", "/url"),
                (["url": "http://169.254.169.254/latest", "events": ["run.failed"]], "egress_denied", "/url"),
                (["url": "http://[::1]:9/x", "events": ["run.failed"]], "egress_denied", "/url"),
                (["url": "ftp://example.com/x", "events": ["run.failed"]], "validation_failed", "/url"),
                (["url": "https://user:pw@example.com/x", "events": ["run.failed"]], "validation_failed", "/url"),
                (["url": "https://example.com/x", "events": []], "validation_failed", "/events"),
                (["url": "https://example.com/x", "events": ["run.**"]], "validation_failed", "/events/0"),
                (
                    ["url": "https://example.com/x", "events": ["run.failed"], "filter": "run.("], "validation_failed",
                    "/filter"
                ),
                (["url": "https://example.com/x", "events": ["run.failed"], "nope": 1], "validation_failed", "/nope"),
                (["format": "email", "events": ["run.failed"]], "validation_failed", "/to"),
                (
                    ["format": "email", "to": ["not an address"], "events": ["run.failed"]], "validation_failed",
                    "/to/0"
                ),
                (
                    ["format": "email", "to": ["a@b.co\r\nBcc: x@y.z"], "events": ["run.failed"]], "validation_failed",
                    "/to/0"
                ),
                (
                    ["format": "pager", "url": "https://example.com", "events": ["run.failed"]], "validation_failed",
                    "/format"
                ),
                (
                    ["url": "https://example.com/x", "events": ["run.failed"], "disable_after": "1ms"],
                    "validation_failed", "/disable_after"
                ),
            ]
            for (body, code, pointer) in cases {
                let answer = try await Hooks.putWebhook(client, "bad", body)
                #expect(answer.json["code"]?.stringValue == code, "\(body) → \(answer.json)")
                let pointers = answer.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? []
                #expect(pointers.contains(pointer), "\(body) → \(answer.json)")
            }
            let badName = try await client.send(
                .put,
                "/v1/webhooks/Bad_Name",
                json: #"{"url": "https://example.com", "events": ["*"]}"#
            )
            #expect(badName.status.code == 422)
            let huge = try await client.send(
                .put,
                "/v1/webhooks/huge",
                json: #"{"url": "https://example.com", "events": ["*"], "filter": ""#
                    + String(repeating: "x", count: 2_000_000) + #""}"#
            )
            #expect(huge.status == .contentTooLarge || huge.status.code == 422, "\(huge.status)")
            #expect(try await client.send(.get, "/v1/webhooks/bad").status == .notFound, "nothing was stored")

            // Another organization: its own webhook receives nothing of ours, and ours is invisible to it.
            _ = try await Hooks.putWebhook(client, "mine", ["url": .string(receiver.url), "events": ["*"]])
            let client = try #require(client as? AuthenticatedClient)
            let signup = try await client.anonymous.send(
                .post,
                "/v1/auth/signup",
                json:
                    #"{"email": "other@example.com", "password": "\#(AuthenticatedClient.ownerPassword)", "organization": "Other"}"#
            )
            let token = try #require(signup.json["access_token"]?.stringValue)
            let other: HTTPFields = [.authorization: "Bearer \(token)"]
            #expect(try await client.anonymous.send(.get, "/v1/webhooks/mine", headers: other).status == .notFound)
            #expect(
                try await client.anonymous.send(.get, "/v1/webhooks/mine/deliveries", headers: other).status
                    == .notFound
            )
            let theirs = try await client.anonymous.send(.get, "/v1/webhooks", headers: other)
            #expect(theirs.json["items"]?.arrayValue?.isEmpty == true, "\(theirs.json)")
            let workflow = try await client.anonymous.send(
                .put,
                "/v1/workflows/greet",
                json: Hooks.greet,
                contentType: "application/yaml",
                headers: other
            )
            #expect(workflow.status == .created)
            let run = try await client.anonymous.send(
                .post,
                "/v1/workflows/greet/runs?wait=20s",
                json: #"{"input": {"name": "Eve"}}"#,
                headers: other
            )
            #expect(run.json["status"] == "succeeded")
            try await Task.sleep(for: .milliseconds(500))
            #expect(receiver.received.isEmpty, "another organization's events are not ours")
            #expect(try await client.send(.delete, "/v1/webhooks/mine").status == .noContent)
            #expect(try await client.send(.get, "/v1/webhooks/mine").status == .notFound)
        }
    }
}
