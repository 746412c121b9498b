import CaravanCore
import CaravanEngine
import CaravanServer
import CaravanTestSupport
import CaravanTriggers
import Crypto
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Signatures computed here with swift-crypto, independently of the server's verifier.
enum Sign {
    static func hmac(_ key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// Standard Webhooks: `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`, the key from `whsec_<base64>`.
    static func standardWebhooks(secret: String, id: String, timestamp: Int64, body: String) -> String {
        let key = Array(Data(base64Encoded: String(secret.dropFirst("whsec_".count)))!)
        return "v1," + Data(hmac(key, "\(id).\(timestamp).\(body)")).base64EncodedString()
    }

    static func github(secret: String, body: String) -> String {
        "sha256=" + hex(hmac(Array(secret.utf8), body))
    }

    static func stripe(secret: String, timestamp: Int64, body: String) -> String {
        "t=\(timestamp),v1=" + hex(hmac(Array(secret.utf8), "\(timestamp).\(body)"))
    }
}

/// A live server with a secret and a workflow that echoes its input.
func withTriggerServer(
    _ backend: TestBackend,
    configure: @escaping @Sendable (inout ServerConfiguration) -> Void = { _ in },
    _ body: @escaping @Sendable (AuthenticatedClient) async throws -> Void
) async throws {
    try await withTestApplication(
        backend,
        mode: .live,
        configure: { configuration in
            configuration.engine.pollInterval = .init(milliseconds: 50)
            configure(&configuration)
        }
    ) { client, _ in
        let client = try #require(client as? AuthenticatedClient)
        let echo = """
            steps:
              - {id: a, template: "{{ input }}"}
            output: "{{ steps.a.output }}"
            """
        #expect(
            try await client.send(.put, "/v1/workflows/echo", json: echo, contentType: "application/yaml").status
                == .created
        )
        try await body(client)
    }
}

extension AuthenticatedClient {
    /// Creates (or replaces) a trigger and returns its hook path.
    func putTrigger(_ name: String, _ json: String) async throws -> String {
        let answer = try await send(.put, "/v1/triggers/\(name)", json: json)
        #expect(answer.status == .created || answer.status == .ok, "\(answer.json)")
        return try #require(answer.json["url"]?.stringValue)
    }

    func putSecret(_ name: String, _ value: String) async throws {
        let json = JSONValue.object(["value": .string(value)]).canonicalText
        #expect(try await send(.put, "/v1/secrets/\(name)", json: json).status == .created)
    }

    /// Posts to a hook without any credential of the API.
    func deliver(
        _ path: String,
        _ body: String,
        headers: HTTPFields = [:],
        contentType: String = "application/json"
    ) async throws -> (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields) {
        try await anonymous.send(.post, path, json: body, contentType: contentType, headers: headers)
    }

    func runOutput(_ id: String) async throws -> JSONValue {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let run = try await send(.get, "/v1/runs/\(id)").json
            if run["status"] == "succeeded" || run["status"] == "failed" || ContinuousClock.now > deadline {
                #expect(run["status"] == "succeeded", "\(run)")
                return run["output"] ?? .null
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func deliveries(_ trigger: String) async throws -> [JSONValue] {
        try await send(.get, "/v1/triggers/\(trigger)/deliveries").json["items"]?.arrayValue ?? []
    }

    func runs(of workflow: String) async throws -> [JSONValue] {
        try await send(.get, "/v1/runs?workflow=\(workflow)&limit=100").json["items"]?.arrayValue ?? []
    }
}

func header(_ name: String) -> HTTPField.Name { HTTPField.Name(name)! }

@Suite("Inbound triggers", .timeLimit(.minutes(3)))
struct TriggerTests {
    static let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    /// The test vector of the Standard Webhooks specification, checked by this file's signer and by the verifier.
    @Test func standardWebhooksTestVector() throws {
        let body = #"{"test": 2432232314}"#
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        #expect(
            Sign.standardWebhooks(
                secret: Self.whsec,
                id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                timestamp: 1_614_265_330,
                body: body
            )
                == expected
        )
        let headers = [
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,bm90IGl0 " + expected,
        ]
        let verified = try SignatureVerifier.verify(
            TriggerVerification(scheme: .standardWebhooks, secret: Self.whsec),
            secret: Self.whsec,
            header: { headers[$0] },
            body: Array(body.utf8),
            now: 1_614_265_330_000 + 60_000
        )
        #expect(verified.deliveryID == "msg_p5jXN8AQM9LWM0D4loKWxJek")
        // Five minutes and one second later (or earlier) it has expired.
        for skew in [301_000, -301_000] as [Int64] {
            #expect(throws: CaravanError.self) {
                try SignatureVerifier.verify(
                    TriggerVerification(scheme: .standardWebhooks, secret: Self.whsec),
                    secret: Self.whsec,
                    header: { headers[$0] },
                    body: Array(body.utf8),
                    now: 1_614_265_330_000 + skew
                )
            }
        }
    }

    @Test(arguments: TestBackend.available) func standardWebhooks(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            try await client.putSecret("hook_key", Self.whsec)
            let hook = try await client.putTrigger(
                "sw",
                #"{"workflow": "echo", "input": {"n": "{{ body.n }}", "id": "{{ delivery.id }}"}, "verify": {"scheme": "standard_webhooks", "secret": "hook_key"}}"#
            )
            #expect(hook.hasPrefix("/v1/hooks/trg_") && hook.count == "/v1/hooks/trg_".count + 26)
            let body = #"{"n": 7}"#
            let now = Int64(Date().timeIntervalSince1970)
            func signed(_ id: String, _ timestamp: Int64, _ signature: String? = nil) -> HTTPFields {
                [
                    header("webhook-id"): id, header("webhook-timestamp"): String(timestamp),
                    header("webhook-signature"): signature
                        ?? Sign.standardWebhooks(secret: Self.whsec, id: id, timestamp: timestamp, body: body),
                ]
            }
            let first = try await client.deliver(hook, body, headers: signed("msg_1", now))
            #expect(first.status == .accepted, "\(first.json)")
            #expect(first.json["status"] == "started")
            let runID = try #require(first.json["run_id"]?.stringValue)
            #expect(try await client.runOutput(runID) == ["n": 7, "id": "msg_1"])
            // The same delivery again: no second run, the same run id.
            let replay = try await client.deliver(hook, body, headers: signed("msg_1", now))
            #expect(replay.status == .ok)
            #expect(replay.json["status"] == "duplicate")
            #expect(replay.json["run_id"]?.stringValue == runID)
            #expect(try await client.runs(of: "echo").count == 1)

            let wrong = try await client.deliver(
                hook,
                body,
                headers: signed("msg_2", now, "v1,AAAA" + String(repeating: "A", count: 40))
            )
            #expect(wrong.status == .unauthorized)
            #expect(wrong.json["code"] == "signature_invalid")
            let tampered = try await client.deliver(hook, #"{"n": 8}"#, headers: signed("msg_3", now))
            #expect(tampered.json["code"] == "signature_invalid")
            let expired = try await client.deliver(hook, body, headers: signed("msg_4", now - 600))
            #expect(expired.status == .unauthorized)
            #expect(expired.json["code"] == "signature_expired")
            let future = try await client.deliver(hook, body, headers: signed("msg_5", now + 600))
            #expect(future.json["code"] == "signature_expired")
            let missing = try await client.deliver(hook, body)
            #expect(missing.status == .unauthorized)
            #expect(missing.json["code"] == "signature_missing")
            #expect(try await client.runs(of: "echo").count == 1)
        }
    }

    @Test(arguments: TestBackend.available) func github(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            try await client.putSecret("gh", "It's a Secret to Everybody")
            let hook = try await client.putTrigger(
                "gh",
                #"{"workflow": "echo", "input": "{{ body.action }}", "verify": {"scheme": "github", "secret": "gh"}}"#
            )
            let body = #"{"action": "opened"}"#
            let headers: HTTPFields = [
                header("X-Hub-Signature-256"): Sign.github(secret: "It's a Secret to Everybody", body: body),
                header("X-GitHub-Delivery"): "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            ]
            let first = try await client.deliver(hook, body, headers: headers)
            #expect(first.status == .accepted, "\(first.json)")
            #expect(first.json["delivery_id"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            let runID = try #require(first.json["run_id"]?.stringValue)
            #expect(try await client.runOutput(runID) == "opened")
            let replay = try await client.deliver(hook, body, headers: headers)
            #expect(replay.status == .ok)
            #expect(replay.json["run_id"]?.stringValue == runID)
            var wrong = headers
            wrong[header("X-Hub-Signature-256")] = Sign.github(secret: "another secret", body: body)
            let refused = try await client.deliver(hook, body, headers: wrong)
            #expect(refused.status == .unauthorized)
            #expect(refused.json["code"] == "signature_invalid")
            var malformed = headers
            malformed[header("X-Hub-Signature-256")] = "sha1=abc"
            #expect(try await client.deliver(hook, body, headers: malformed).json["code"] == "signature_invalid")
            #expect(try await client.runs(of: "echo").count == 1)
        }
    }

    @Test(arguments: TestBackend.available) func stripe(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            try await client.putSecret("stripe", "whsec_stripe_test")
            let hook = try await client.putTrigger(
                "pay",
                #"{"workflow": "echo", "input": "{{ body.type }}", "verify": {"scheme": "stripe", "secret": "stripe", "tolerance": "2m"}}"#
            )
            let body = #"{"id": "evt_123", "type": "charge.succeeded"}"#
            let now = Int64(Date().timeIntervalSince1970)
            let signature = Sign.stripe(secret: "whsec_stripe_test", timestamp: now, body: body)
            let first = try await client.deliver(hook, body, headers: [header("Stripe-Signature"): signature])
            #expect(first.status == .accepted, "\(first.json)")
            #expect(first.json["delivery_id"] == "evt_123")
            let runID = try #require(first.json["run_id"]?.stringValue)
            #expect(try await client.runOutput(runID) == "charge.succeeded")
            // Stripe retries the same event with a new signature: still the same event id, the same run.
            let resent = Sign.stripe(secret: "whsec_stripe_test", timestamp: now + 1, body: body)
            let replay = try await client.deliver(hook, body, headers: [header("Stripe-Signature"): resent])
            #expect(replay.status == .ok)
            #expect(replay.json["run_id"]?.stringValue == runID)
            // Several v1 signatures: one matching is enough.
            let rolled = "t=\(now),v1=\(String(repeating: "0", count: 64)),v1=" + signature.split(separator: "=").last!
            #expect(try await client.deliver(hook, body, headers: [header("Stripe-Signature"): rolled]).status == .ok)
            let old = Sign.stripe(secret: "whsec_stripe_test", timestamp: now - 180, body: body)
            let expired = try await client.deliver(hook, body, headers: [header("Stripe-Signature"): old])
            #expect(expired.json["code"] == "signature_expired")
            let wrong = Sign.stripe(secret: "not it", timestamp: now, body: body)
            #expect(
                try await client.deliver(hook, body, headers: [header("Stripe-Signature"): wrong]).json["code"]
                    == "signature_invalid"
            )
            #expect(
                try await client.deliver(hook, body, headers: [header("Stripe-Signature"): "garbage"]).status
                    == .unauthorized
            )
            #expect(try await client.runs(of: "echo").count == 1)
        }
    }

    @Test(arguments: TestBackend.available) func bearerAndNone(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            try await client.putSecret("token", "s3cret-token")
            let bearer = try await client.putTrigger(
                "bearer",
                #"{"workflow": "echo", "verify": {"scheme": "bearer", "secret": "token"}}"#
            )
            let right = try await client.deliver(
                bearer,
                #"{"ok": 1}"#,
                headers: [.authorization: "Bearer s3cret-token"]
            )
            #expect(right.status == .accepted, "\(right.json)")
            #expect(try await client.runOutput(try #require(right.json["run_id"]?.stringValue)) == ["ok": 1])
            let wrong = try await client.deliver(
                bearer,
                #"{"ok": 1}"#,
                headers: [.authorization: "Bearer s3cret-tokem"]
            )
            #expect(wrong.status == .unauthorized)
            #expect(wrong.json["code"] == "signature_invalid")
            #expect(try await client.deliver(bearer, "{}").json["code"] == "signature_missing")
            // An Idempotency-Key names the delivery of an unsigned scheme.
            let keyed: HTTPFields = [.authorization: "Bearer s3cret-token", header("Idempotency-Key"): "order-9"]
            let once = try await client.deliver(bearer, #"{"ok": 2}"#, headers: keyed)
            let twice = try await client.deliver(bearer, #"{"ok": 2}"#, headers: keyed)
            #expect(once.status == .accepted && twice.status == .ok)
            #expect(once.json["run_id"] == twice.json["run_id"])

            // `none` is accepted only when said explicitly.
            let implicit = try await client.send(.put, "/v1/triggers/open", json: #"{"workflow": "echo"}"#)
            #expect(implicit.status == .unprocessableContent)
            #expect(implicit.json["errors"]?.arrayValue?.first?["pointer"] == "/verify")
            let open = try await client.putTrigger("open", #"{"workflow": "echo", "verify": {"scheme": "none"}}"#)
            let anyone = try await client.deliver(open, #"{"x": true}"#)
            #expect(anyone.status == .accepted)
            // Credentials never reach the run's input.
            let withAuth = try await client.putTrigger(
                "headers",
                #"{"workflow": "echo", "input": "{{ headers }}", "verify": {"scheme": "bearer", "secret": "token"}}"#
            )
            let answer = try await client.deliver(withAuth, "{}", headers: [.authorization: "Bearer s3cret-token"])
            let output = try await client.runOutput(try #require(answer.json["run_id"]?.stringValue))
            #expect(output["authorization"] == nil)
            #expect(!output.canonicalText.contains("s3cret-token"))
        }
    }

    @Test(arguments: TestBackend.available) func filterAndDeliveries(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            try await client.putSecret("gh", "filter-secret")
            let hook = try await client.putTrigger(
                "pushes",
                #"{"workflow": "echo", "filter": "body.type == 'push'", "verify": {"scheme": "github", "secret": "gh"}}"#
            )
            func signed(_ body: String) -> HTTPFields {
                [header("X-Hub-Signature-256"): Sign.github(secret: "filter-secret", body: body)]
            }
            let push = #"{"type": "push"}"#
            let ping = #"{"type": "ping"}"#
            let accepted = try await client.deliver(hook, push, headers: signed(push))
            #expect(accepted.status == .accepted)
            let filtered = try await client.deliver(hook, ping, headers: signed(ping))
            #expect(filtered.status == .accepted)
            #expect(filtered.json["status"] == "filtered")
            #expect(filtered.json["run_id"] == .null)
            let refused = try await client.deliver(hook, push, headers: signed(ping))
            #expect(refused.status == .unauthorized)
            #expect(try await client.runs(of: "echo").count == 1)

            let items = try await client.deliveries("pushes")
            #expect(items.map { $0["outcome"] } == ["refused", "filtered", "accepted"], "\(items)")
            #expect(items[0]["reason"] == "signature_invalid")
            #expect(items[0]["status"] == 401)
            #expect(items[1]["reason"] == "filter")
            #expect(items[2]["run_id"] == accepted.json["run_id"])
            #expect(items[2]["body_bytes"] == .int(Int64(push.utf8.count)))
            // Paged like other lists.
            let page = try await client.send(.get, "/v1/triggers/pushes/deliveries?limit=2").json
            #expect(page["items"]?.arrayValue?.count == 2)
            let cursor = try #require(page["next_cursor"]?.stringValue)
            let rest = try await client.send(.get, "/v1/triggers/pushes/deliveries?limit=2&cursor=\(cursor)").json
            #expect(rest["items"]?.arrayValue?.map { $0["outcome"] } == ["accepted"])
        }
    }

    /// Deliveries that arrive together commit in one batch, their records written together: each record names its
    /// own run, and a delivery sent twice at once starts one run.
    @Test(arguments: TestBackend.available) func simultaneousDeliveriesEachRecordTheirRun(
        backend: TestBackend
    )
        async throws
    {
        try await withTriggerServer(backend) { client in
            let hook = try await client.putTrigger("burst", #"{"workflow": "echo", "verify": {"scheme": "none"}}"#)
            let keys = (0..<40).map { "burst-\($0 % 30)" }  // ten keys sent twice
            let answers = try await withThrowingTaskGroup(of: (String, HTTPResponse.Status, JSONValue).self) { group in
                for key in keys {
                    group.addTask {
                        let body = JSONValue.object(["key": .string(key)])
                        let answer = try await client.deliver(
                            hook,
                            body.canonicalText,
                            headers: [header("Idempotency-Key"): key]
                        )
                        return (key, answer.status, answer.json)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let byKey = Dictionary(grouping: answers, by: \.0)
            #expect(byKey.count == 30)
            for (key, copies) in byKey {
                let runs = Set(copies.compactMap { $0.2["run_id"]?.stringValue })
                #expect(runs.count == 1, "\(key): one run for every copy, \(copies)")
                #expect(copies.filter { $0.1 == .accepted }.count == 1, "\(key): \(copies.map(\.1))")
            }
            let records =
                try await client.send(.get, "/v1/triggers/burst/deliveries?limit=100").json["items"]?
                .arrayValue ?? []
            let accepted = records.filter { $0["outcome"] == "accepted" }
            #expect(accepted.count == 30, "\(records)")
            for record in accepted {
                let key = try #require(record["delivery_id"]?.stringValue)
                let run = try #require(record["run_id"]?.stringValue)
                #expect(byKey[key]?.first?.2["run_id"]?.stringValue == run, "\(record)")
                #expect(try await client.runOutput(run)["key"]?.stringValue == key)
            }
            #expect(try await client.runs(of: "echo").count == 30)
        }
    }

    @Test(arguments: TestBackend.available) func definitionsAreValidated(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            let bad = try await client.send(
                .put,
                "/v1/triggers/bad",
                json: #"""
                    {"workflow": "nope", "input": "{{ secrets.x }}", "filter": "body.a ==", "verify": {"scheme": "github", "secret": "missing"},
                     "mode": {"batch": {"max_events": 0, "window": "forever"}}, "rate_limit": {"per_minute": -1},
                     "max_body_bytes": 99999999999, "extra": 1}
                    """#
            )
            #expect(bad.status == .unprocessableContent)
            #expect(bad.json["code"] == "validation_failed")
            let pointers = Set(bad.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? [])
            #expect(
                pointers == [
                    "/extra", "/input", "/filter", "/mode/batch/max_events", "/mode/batch/window",
                    "/rate_limit/per_minute", "/max_body_bytes",
                ],
                "\(bad.json)"
            )
            // Once the shape is right, what it names must exist.
            let missing = try await client.send(
                .put,
                "/v1/triggers/bad",
                json: #"{"agent": "nobody", "verify": {"scheme": "github", "secret": "missing"}}"#
            )
            let named = Set(missing.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? [])
            #expect(named == ["/agent", "/verify/secret"], "\(missing.json)")
            #expect(
                try await client.send(
                    .put,
                    "/v1/triggers/Bad_Name",
                    json: #"{"workflow": "echo", "verify": {"scheme": "none"}}"#
                ).status == .unprocessableContent
            )

            // Read back, listed, replaced (same id), deleted.
            let hook = try await client.putTrigger("ok", #"{"workflow": "echo", "verify": {"scheme": "none"}}"#)
            let read = try await client.send(.get, "/v1/triggers/ok").json
            #expect(read["url"]?.stringValue == hook)
            #expect(read["input"] == "{{ body }}")
            #expect(
                try await client.putTrigger(
                    "ok",
                    #"{"workflow": "echo", "verify": {"scheme": "none"}, "enabled": false}"#
                ) == hook
            )
            #expect(try await client.send(.get, "/v1/triggers").json["items"]?.arrayValue?.count == 1)
            // Disabled, deleted and unknown hooks answer alike.
            let disabled = try await client.deliver(hook, "{}")
            #expect(disabled.status == .notFound)
            #expect(try await client.send(.delete, "/v1/triggers/ok").status == .noContent)
            let deleted = try await client.deliver(hook, "{}")
            let unknown = try await client.deliver("/v1/hooks/trg_00000000000000000000000000", "{}")
            #expect(deleted.status == .notFound && unknown.status == .notFound)
            #expect(
                deleted.json["detail"] == unknown.json["detail"] && disabled.json["detail"] == unknown.json["detail"]
            )
        }
    }

    @Test(arguments: TestBackend.available) func anotherOrganizationSeesNothing(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            _ = try await client.putTrigger("mine", #"{"workflow": "echo", "verify": {"scheme": "none"}}"#)
            let created = try await client.send(
                .post,
                "/v1/organizations",
                json: #"{"name": "Beta"}"#,
                headers: [.authorization: "Bearer \(client.accessToken)"]
            )
            let other = try #require(created.json["id"]?.stringValue, "\(created.json)")
            let asOther: HTTPFields = [
                .authorization: "Bearer \(client.accessToken)", header("Caravan-Organization"): other,
            ]
            for (method, path) in [
                (HTTPRequest.Method.get, "/v1/triggers/mine"), (.delete, "/v1/triggers/mine"),
                (.get, "/v1/triggers/mine/deliveries"),
            ] {
                #expect(try await client.send(method, path, headers: asOther).status == .notFound, "\(path)")
            }
            let list = try await client.send(.get, "/v1/triggers", headers: asOther)
            #expect(list.json["items"] == [])
            #expect(try await client.send(.get, "/v1/triggers/mine").status == .ok)
        }
    }

    @Test(arguments: TestBackend.available) func hostileRequests(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            try await client.putSecret("gh", "hostile-secret")
            let hook = try await client.putTrigger(
                "hostile",
                #"{"workflow": "echo", "input": {"a": "{{ body.a }}"}, "verify": {"scheme": "github", "secret": "gh"}, "max_body_bytes": 1000, "rate_limit": {"per_minute": 8}}"#
            )
            let big = "{\"a\": \"" + String(repeating: "x", count: 2_000) + "\"}"
            let tooLarge = try await client.deliver(
                hook,
                big,
                headers: [header("X-Hub-Signature-256"): Sign.github(secret: "hostile-secret", body: big)]
            )
            #expect(tooLarge.status == .contentTooLarge)
            #expect(tooLarge.json["code"] == "payload_too_large")

            // A signature header of 1 MB: refused, and the server goes on.
            let port = try #require(client.port)
            let connection = try RawHTTPConnection(port: port)
            let huge = "sha256=" + String(repeating: "a", count: 1 << 20)
            _ = connection.send(
                "POST \(hook) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Hub-Signature-256: \(huge)\r\nContent-Length: 2\r\n\r\n{}"
            )
            // The HTTP parser refuses a head that large before any handler runs; the connection gets a 4xx or is
            // left to its idle timeout, never a 5xx, and the server goes on serving others.
            let answer = try await connection.receive(timeout: .seconds(2))
            #expect(answer.text.isEmpty || answer.text.hasPrefix("HTTP/1.1 4"), "\(answer.text.prefix(200))")
            #expect(!answer.text.hasPrefix("HTTP/1.1 5"))
            // Just over 8 KiB is refused by the hook itself, before any HMAC.
            let long = "sha256=" + String(repeating: "a", count: 9_000)
            let refused = try await client.deliver(hook, "{}", headers: [header("X-Hub-Signature-256"): long])
            #expect(refused.status == .badRequest)
            #expect(refused.json["code"] == "signature_header_too_large")

            // A body that does not parse, signed: a clear invalid_json.
            let broken = #"{"a": "#
            let malformed = try await client.deliver(
                hook,
                broken,
                headers: [header("X-Hub-Signature-256"): Sign.github(secret: "hostile-secret", body: broken)]
            )
            #expect(malformed.status == .badRequest)
            #expect(malformed.json["code"] == "invalid_json")

            // 8 a minute: the bucket empties, then 429 with Retry-After.
            var limited: (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields)?
            for index in 0..<12 {
                let body = #"{"a": \#(index)}"#
                let sent = try await client.deliver(
                    hook,
                    body,
                    headers: [header("X-Hub-Signature-256"): Sign.github(secret: "hostile-secret", body: body)]
                )
                if sent.status == .tooManyRequests {
                    limited = sent
                    break
                }
            }
            let refusal = try #require(limited)
            #expect(refusal.json["code"] == "rate_limited")
            #expect(refusal.headers[.retryAfter].flatMap(Int.init).map { $0 >= 1 } == true)
            // Counted in one row a minute, written within a second or so.
            var counted: JSONValue?
            for _ in 0..<40 where counted == nil {
                counted = try await client.deliveries("hostile").first { $0["reason"] == "rate_limited" }
                if counted == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(counted?["count"] == 1)
            #expect(counted?["status"] == 429)
            let reasons = Set(try await client.deliveries("hostile").compactMap { $0["reason"]?.stringValue })
            #expect(
                reasons.isSuperset(of: ["payload_too_large", "signature_header_too_large", "invalid_json", "started"])
            )
            // Still serving.
            #expect(try await client.send(.get, "/v1/triggers/hostile").status == .ok)
        }
    }
}
