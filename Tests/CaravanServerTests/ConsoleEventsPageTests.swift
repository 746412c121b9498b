import CaravanCore
import CaravanEngine
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// The console's events pages as a browser meets them: webhooks created through the form with their secret shown
/// once, their deliveries after a run and re-sent, secrets rotated, triggers with their public URL and their
/// delivery records, the SMTP settings and a test email; refused definitions shown beside their fields with what
/// was typed, viewers kept from the forms, and another organization's webhooks and triggers out of reach.
@Suite(.tags(.integration, .security), .timeLimit(.minutes(2)))
struct ConsoleEventsPageTests {
    static let password = "correct horse battery staple"
    static let hostile = "\"><img src=x onerror=alert(1)><script>alert(2)</script>"
    /// Nothing listens on the discard port of loopback: every delivery there fails at once.
    static let deadURL = "http://127.0.0.1:9/"

    static let greet = """
        name: greet
        steps:
          - id: hello
            template: "Hello {{ input.name }}"
        output: "{{ steps.hello.output }}"
        """

    /// Runs `body` on `backend` with loopback allowed as an egress target.
    static func withEvents(
        _ backend: TestBackend,
        _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        try await withTestApplication(
            backend,
            signUp: false,
            configure: { configuration in
                configuration.egressAllow = "127.0.0.1"
                configuration.engine.pollInterval = .init(milliseconds: 50)
                configuration.openSignup = true
            }
        ) { client, _ in try await body(client) }
    }

    /// Signs a user up through the console with an organization of their own, and their API token.
    static func signUp(
        _ client: any TestClientProtocol,
        email: String = "owner@example.com",
        organization: String = "Acme"
    ) async throws -> (browser: ConsoleTestBrowser, token: String) {
        let browser = ConsoleTestBrowser(client)
        let page = try await browser.signUp(email: email, password: password, organization: organization)
        #expect(page.path == "/runs")
        let login = try await client.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "\#(email)", "password": "\#(password)"}"#
        )
        return (browser, try #require(login.json["access_token"]?.stringValue))
    }

    static func api(
        _ client: any TestClientProtocol,
        _ method: HTTPRequest.Method,
        _ path: String,
        token: String,
        json: String? = nil,
        contentType: String = "application/json"
    ) async throws -> (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields) {
        try await client.send(
            method,
            path,
            json: json,
            contentType: contentType,
            headers: [.authorization: "Bearer \(token)"]
        )
    }

    static func putGreet(_ client: any TestClientProtocol, token: String) async throws {
        let stored = try await api(
            client,
            .put,
            "/v1/workflows/greet",
            token: token,
            json: greet,
            contentType: "application/yaml"
        )
        #expect(stored.status == .created)
    }

    /// The text of the first element `<… class="secret" id="id">…</…>` of a page.
    static func secret(in html: String, id: String) -> String? {
        guard let start = html.range(of: "class=\"secret\" id=\"\(id)\">") else { return nil }
        let rest = html[start.upperBound...]
        guard let end = rest.range(of: "</") else { return nil }
        return String(rest[..<end.lowerBound])
    }

    /// The text of the element whose id is `id` (up to its first closing tag).
    static func element(in html: String, id: String) -> String? {
        guard let start = html.range(of: "id=\"\(id)\">") else { return nil }
        let rest = html[start.upperBound...]
        guard let end = rest.range(of: "</") else { return nil }
        return String(rest[..<end.lowerBound])
    }

    static func occurrences(of needle: String, in haystack: String) -> Int {
        haystack.components(separatedBy: needle).count - 1
    }

    /// Polls a webhook's deliveries through the API until `done` holds for them. - Throws: after five seconds.
    static func deliveries(
        _ client: any TestClientProtocol,
        token: String,
        webhook: String,
        until done: ([JSONValue]) -> Bool
    ) async throws -> [JSONValue] {
        for _ in 0..<250 {
            let answer = try await api(client, .get, "/v1/webhooks/\(webhook)/deliveries", token: token)
            let items = answer.json["items"]?.arrayValue ?? []
            if done(items) { return items }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestSetupError.failed("the deliveries of \(webhook) never reached the state waited for")
    }

    // MARK: Webhooks

    @Test(arguments: TestBackend.available)
    func aWebhookCreatedThroughTheFormShowsItsSecretOnce(_ backend: TestBackend) async throws {
        try await Self.withEvents(backend) { client in
            let (browser, token) = try await Self.signUp(client)
            let empty = try await browser.get("/webhooks")
            #expect(empty.status == .ok)
            #expect(empty.html.contains("No webhooks yet"))
            #expect(empty.html.contains("href=\"/events\" aria-current=\"page\""))

            let created = try await browser.post(
                "/webhooks",
                [
                    ("name", "alerts"), ("format", "standard"), ("url", Self.deadURL),
                    ("events", "run.succeeded, run.failed"), ("filter", ""), ("disable_after", "2d"),
                    ("enabled", "true"),
                ]
            )
            #expect(created.status == .ok)
            #expect(created.path == "/webhooks")
            let secret = try #require(Self.secret(in: created.html, id: "webhook-secret"))
            #expect(secret.hasPrefix("whsec_"))
            #expect(Self.occurrences(of: secret, in: created.html) == 1)
            #expect(created.html.contains("It will not be shown again"))
            #expect(created.headers[.cacheControl] == "no-store")

            let list = try await browser.get("/webhooks")
            #expect(list.html.contains("href=\"/webhooks/alerts\""))
            #expect(list.html.contains("run.succeeded, run.failed"))
            #expect(list.html.contains(Self.deadURL))
            #expect(list.html.contains(">enabled</span>"))
            #expect(!list.html.contains(secret))
            let page = try await browser.get("/webhooks/alerts")
            #expect(!page.html.contains(secret))
            #expect(page.html.contains("2d"))

            let stored = try await Self.api(client, .get, "/v1/webhooks/alerts", token: token)
            #expect(stored.json["events"] == ["run.succeeded", "run.failed"])
            #expect(stored.json["url"]?.stringValue == Self.deadURL)
            #expect(stored.json["secret"] == nil)

            // An email webhook: its recipients from the comma-separated field.
            let email = try await browser.post(
                "/webhooks",
                [
                    ("name", "mail"), ("format", "email"), ("url", ""), ("to", "ops@example.com, oncall@example.com"),
                    ("events", "run.failed"), ("enabled", "true"),
                ]
            )
            #expect(email.status == .ok)
            let mail = try await Self.api(client, .get, "/v1/webhooks/mail", token: token)
            #expect(mail.json["to"] == ["ops@example.com", "oncall@example.com"])
            #expect(try await browser.get("/webhooks").html.contains("ops@example.com, oncall@example.com"))
        }
    }

    @Test(arguments: TestBackend.available)
    func aWebhooksPageListsItsDeliveriesAndResendsOne(_ backend: TestBackend) async throws {
        try await Self.withEvents(backend) { client in
            let (browser, token) = try await Self.signUp(client)
            try await Self.putGreet(client, token: token)
            let put = try await Self.api(
                client,
                .put,
                "/v1/webhooks/alerts",
                token: token,
                json: #"{"url": "\#(Self.deadURL)", "events": ["run.succeeded"]}"#
            )
            #expect(put.status == .created)
            let started = try await Self.api(
                client,
                .post,
                "/v1/workflows/greet/runs?wait=10s",
                token: token,
                json: #"{"input": {"name": "Ada"}}"#
            )
            let runID = try #require(started.json["id"]?.stringValue)
            // Nothing listens at the URL: the first attempt fails, and the delivery waits for its retry.
            let tried = try await Self.deliveries(client, token: token, webhook: "alerts") { items in
                items.first?["attempts"] == 1 && items.first?["error"]?.stringValue != nil
            }
            let delivery = try #require(tried.first)
            let id = try #require(delivery["id"]?.stringValue)
            let firstAttempt = try #require(delivery["last_attempt_at"]?.stringValue)

            let page = try await browser.get("/webhooks/alerts")
            #expect(page.status == .ok)
            #expect(page.html.contains("href=\"/runs/\(runID)\""))
            #expect(page.html.contains("<code>run.succeeded</code>"))
            #expect(page.html.contains("badge status-pending\">pending</span>"))
            #expect(page.html.contains("<td>1</td>"))
            #expect(page.html.contains("class=\"status-failed\">"))
            #expect(page.html.contains("last tried <time"))
            #expect(page.html.contains("/webhooks/alerts/deliveries/\(id)/resend"))
            let delivered = try await browser.get("/webhooks/alerts?status=delivered")
            #expect(delivered.html.contains("No deliveries in this state"))
            #expect(!delivered.html.contains("href=\"/runs/\(runID)\""))
            #expect(delivered.html.contains("<option value=\"delivered\" selected>"))
            let pending = try await browser.get("/webhooks/alerts?status=pending")
            #expect(pending.html.contains("href=\"/runs/\(runID)\""))
            let bad = try await browser.get("/webhooks/alerts?status=lost")
            #expect(bad.status == .unprocessableContent)
            #expect(bad.html.contains("class=\"problem\""))

            let resent = try await browser.post("/webhooks/alerts/deliveries/\(id)/resend", [])
            #expect(resent.path == "/webhooks/alerts?done=delivery-resent")
            #expect(resent.html.contains("The delivery was queued to be sent again now."))
            let audit = try await Self.api(client, .get, "/v1/audit?action=resendWebhookDelivery", token: token)
            #expect(audit.json["items"]?.arrayValue?.count == 1)
            _ = try await Self.deliveries(client, token: token, webhook: "alerts") { items in
                guard let last = items.first?["last_attempt_at"]?.stringValue else { return false }
                return last > firstAttempt
            }
            #expect(try await browser.post("/webhooks/alerts/deliveries/999999/resend", []).status == .notFound)
            #expect(try await browser.post("/webhooks/alerts/deliveries/nope/resend", []).status == .notFound)

            // Cursor paging: a page that starts before the newest delivery holds only the older one.
            let second = try await Self.api(
                client,
                .post,
                "/v1/workflows/greet/runs?wait=10s",
                token: token,
                json: #"{"input": {"name": "Grace"}}"#
            )
            let secondRun = try #require(second.json["id"]?.stringValue)
            _ = try await Self.deliveries(client, token: token, webhook: "alerts") { $0.count == 2 }
            let newest = try await browser.get("/webhooks/alerts")
            #expect(newest.html.contains("href=\"/runs/\(secondRun)\""))
            // The API's cursors name the last delivery shown: the one after the second run's is the first run's.
            let cursor = Data(String(try #require(Int(id)) + 1).utf8).base64EncodedString()
            let older = try await browser.get("/webhooks/alerts?cursor=\(cursor)")
            #expect(older.html.contains("href=\"/runs/\(runID)\""))
            #expect(!older.html.contains("href=\"/runs/\(secondRun)\""))
            #expect(older.html.contains("Newest deliveries"))
            let garbled = try await browser.get("/webhooks/alerts?cursor=%3Cscript%3E")
            #expect(garbled.status == .unprocessableContent)
            #expect(garbled.html.contains("cursor is not one this server gave out"))
        }
    }

    @Test(arguments: TestBackend.available)
    func aWebhooksSecretRotatesItIsEnabledAgainAndDeleted(_ backend: TestBackend) async throws {
        try await Self.withEvents(backend) { client in
            let (browser, token) = try await Self.signUp(client)
            _ = try await browser.post(
                "/webhooks",
                [("name", "alerts"), ("format", "slack"), ("url", Self.deadURL), ("events", "run.*")]
            )
            // Saved without "enabled": the webhook is disabled, and its page offers to enable it.
            let disabled = try await browser.get("/webhooks/alerts")
            #expect(disabled.html.contains("<strong>Disabled"))
            #expect(disabled.html.contains("action=\"/webhooks/alerts/enable\""))
            let enabled = try await browser.post("/webhooks/alerts/enable", [])
            #expect(enabled.path == "/webhooks/alerts?done=webhook-enabled")
            #expect(!enabled.html.contains("action=\"/webhooks/alerts/enable\""))
            let stored = try await Self.api(client, .get, "/v1/webhooks/alerts", token: token)
            #expect(stored.json["enabled"] == true)
            #expect(stored.json["format"] == "slack")
            #expect(stored.json["events"] == ["run.*"])

            let refused = try await browser.post("/webhooks/alerts/rotate-secret", [("grace", "forever")])
            #expect(refused.status == .unprocessableContent)
            #expect(Self.element(in: refused.html, id: "rotate-grace-error")?.contains("grace") == true)
            #expect(refused.html.contains("value=\"forever\""))
            let rotated = try await browser.post("/webhooks/alerts/rotate-secret", [("grace", "1h")])
            #expect(rotated.status == .ok)
            let secret = try #require(Self.secret(in: rotated.html, id: "webhook-secret"))
            #expect(secret.hasPrefix("whsec_"))
            #expect(Self.occurrences(of: secret, in: rotated.html) == 1)
            #expect(rotated.html.contains("The previous secret stays valid for 1h"))
            #expect(!(try await browser.get("/webhooks/alerts")).html.contains(secret))

            let page = try await browser.get("/webhooks/alerts")
            #expect(page.html.contains("<details><summary>Delete this webhook</summary>"))
            let deleted = try await browser.post("/webhooks/alerts/delete", [])
            #expect(deleted.path == "/webhooks?done=webhook-deleted")
            #expect(deleted.html.contains("No webhooks yet"))
            #expect(try await Self.api(client, .get, "/v1/webhooks/alerts", token: token).status == .notFound)
            #expect(try await browser.get("/webhooks/alerts").status == .notFound)
        }
    }

    @Test(arguments: TestBackend.available)
    func aRefusedWebhookShowsTheProblemBesideTheFieldAndKeepsTheForm(_ backend: TestBackend) async throws {
        try await Self.withEvents(backend) { client in
            let (browser, token) = try await Self.signUp(client)
            let badURL = try await browser.post(
                "/webhooks",
                [
                    ("name", "alerts"), ("format", "standard"), ("url", "javascript:alert(1)"),
                    ("events", "run.failed"), ("filter", Self.hostile), ("enabled", "true"),
                ]
            )
            #expect(badURL.status == .unprocessableContent)
            #expect(Self.element(in: badURL.html, id: "webhook-url-error")?.contains("http or https") == true)
            #expect(badURL.html.contains("aria-describedby=\"webhook-url-error\""))
            #expect(badURL.html.contains("value=\"javascript:alert(1)\""))
            #expect(badURL.html.contains("value=\"run.failed\""))
            #expect(badURL.html.contains("value=\"alerts\""))
            #expect(!badURL.html.contains("<script>alert(2)"))
            #expect(!badURL.html.contains("href=\"javascript:"))

            let badEvents = try await browser.post(
                "/webhooks",
                [("name", "alerts"), ("format", "standard"), ("url", Self.deadURL), ("events", " , ")]
            )
            #expect(badEvents.status == .unprocessableContent)
            #expect(Self.element(in: badEvents.html, id: "webhook-events-error") != nil)
            #expect(badEvents.html.contains("value=\"\(Self.deadURL)\""))

            let badFilter = try await browser.post(
                "/webhooks",
                [("name", "alerts"), ("url", Self.deadURL), ("events", "run.failed"), ("filter", "((( nope")]
            )
            #expect(badFilter.status == .unprocessableContent)
            #expect(Self.element(in: badFilter.html, id: "webhook-filter-error") != nil)
            #expect(badFilter.html.contains("value=\"((( nope\""))

            let badName = try await browser.post(
                "/webhooks",
                [("name", "Bad Name/.."), ("url", Self.deadURL), ("events", "run.failed")]
            )
            #expect(badName.status == .unprocessableContent)
            #expect(Self.element(in: badName.html, id: "webhook-name-error") != nil)
            #expect(badName.html.contains("value=\"Bad Name/..\""))

            let list = try await Self.api(client, .get, "/v1/webhooks", token: token)
            #expect(list.json["items"]?.arrayValue?.isEmpty == true)
            // Without the CSRF token the form changes nothing.
            let forged = try await browser.post(
                "/webhooks",
                [("name", "forged"), ("url", Self.deadURL), ("events", "run.failed")],
                csrf: false
            )
            #expect(forged.status == .forbidden)
            #expect(try await Self.api(client, .get, "/v1/webhooks/forged", token: token).status == .notFound)
        }
    }

    // MARK: Roles and organizations

    @Test(arguments: TestBackend.available)
    func aViewerSeesTheListsButNoForms(_ backend: TestBackend) async throws {
        try await Self.withEvents(backend) { client in
            let (owner, token) = try await Self.signUp(client)
            try await Self.putGreet(client, token: token)
            _ = try await owner.post(
                "/webhooks",
                [("name", "alerts"), ("url", Self.deadURL), ("events", "run.failed"), ("enabled", "true")]
            )
            let trigger = try await Self.api(
                client,
                .put,
                "/v1/triggers/inbound",
                token: token,
                json: #"{"workflow": "greet", "verify": {"scheme": "none"}}"#
            )
            #expect(trigger.status == .created)
            let viewer = try await ConsoleTestBrowser.invited(
                client,
                email: "viewer@example.com",
                password: Self.password,
                role: "viewer",
                orgID: try #require(owner.cookie("caravan_org")),
                inviterToken: token
            )
            let webhooks = try await viewer.get("/webhooks")
            #expect(webhooks.status == .ok)
            #expect(webhooks.html.contains("href=\"/webhooks/alerts\""))
            #expect(!webhooks.html.contains("method=\"post\" action=\"/webhooks\""))
            #expect(!webhooks.html.contains("Add a webhook"))
            let webhook = try await viewer.get("/webhooks/alerts")
            #expect(webhook.status == .ok)
            #expect(!webhook.html.contains("Resend"))
            #expect(!webhook.html.contains("rotate-secret"))
            #expect(!webhook.html.contains("/webhooks/alerts/delete"))
            let triggers = try await viewer.get("/triggers")
            #expect(triggers.html.contains("href=\"/triggers/inbound\""))
            #expect(!triggers.html.contains("Add a trigger"))
            let triggerPage = try await viewer.get("/triggers/inbound")
            #expect(triggerPage.status == .ok)
            #expect(!triggerPage.html.contains("/triggers/inbound/delete"))

            let posted = try await viewer.post(
                "/webhooks",
                [("name", "sneaky"), ("url", Self.deadURL), ("events", "run.failed")]
            )
            #expect(posted.status == .forbidden)
            #expect(!posted.html.contains("whsec_"))
            #expect(try await viewer.post("/webhooks/alerts/delete", []).status == .forbidden)
            #expect(try await viewer.post("/triggers/inbound/delete", []).status == .forbidden)
            #expect(try await Self.api(client, .get, "/v1/webhooks/sneaky", token: token).status == .notFound)
            #expect(try await Self.api(client, .get, "/v1/webhooks/alerts", token: token).status == .ok)
            #expect(try await Self.api(client, .get, "/v1/triggers/inbound", token: token).status == .ok)

            // Notification settings are for admins: neither in the viewer's settings nor open to them.
            let settings = try await viewer.get("/settings/members")
            #expect(!settings.html.contains("/settings/notifications"))
            #expect(try await viewer.get("/settings/notifications").status == .forbidden)
            #expect(try await owner.get("/settings/members").html.contains("href=\"/settings/notifications\""))
        }
    }

    @Test(arguments: TestBackend.available)
    func anotherOrganizationsWebhooksAndTriggersAreNotFound(_ backend: TestBackend) async throws {
        try await Self.withEvents(backend) { client in
            let (owner, token) = try await Self.signUp(client)
            try await Self.putGreet(client, token: token)
            _ = try await owner.post(
                "/webhooks",
                [("name", "alerts"), ("url", Self.deadURL), ("events", "run.failed"), ("enabled", "true")]
            )
            _ = try await Self.api(
                client,
                .put,
                "/v1/triggers/inbound",
                token: token,
                json: #"{"workflow": "greet", "verify": {"scheme": "none"}}"#
            )
            let (other, _) = try await Self.signUp(client, email: "mallory@example.com", organization: "Other")
            let list = try await other.get("/webhooks")
            #expect(list.html.contains("No webhooks yet"))
            #expect(!list.html.contains("alerts"))
            let webhook = try await other.get("/webhooks/alerts")
            #expect(webhook.status == .notFound)
            #expect(webhook.html.contains("<h1>Not found</h1>"))
            #expect(!webhook.html.contains(Self.deadURL))
            #expect(try await other.get("/triggers/inbound").status == .notFound)
            #expect(try await other.post("/webhooks/alerts/delete", []).status == .notFound)
            #expect(try await other.post("/webhooks/alerts/rotate-secret", []).status == .notFound)
            #expect(try await other.post("/webhooks/alerts/enable", []).status == .notFound)
            #expect(try await other.post("/triggers/inbound/delete", []).status == .notFound)
            #expect(try await Self.api(client, .get, "/v1/webhooks/alerts", token: token).status == .ok)
            #expect(try await Self.api(client, .get, "/v1/triggers/inbound", token: token).status == .ok)
        }
    }

    // MARK: Triggers

    @Test(arguments: TestBackend.available)
    func aTriggerCreatedThroughTheFormShowsItsURLAndItsDeliveries(_ backend: TestBackend) async throws {
        try await Self.withEvents(backend) { client in
            let (browser, token) = try await Self.signUp(client)
            try await Self.putGreet(client, token: token)
            let empty = try await browser.get("/triggers")
            #expect(empty.html.contains("No triggers yet"))
            #expect(empty.html.contains("href=\"/events\" aria-current=\"page\""))

            // Refused: the workflow does not exist, and a signed scheme needs its secret.
            let refused = try await browser.post(
                "/triggers",
                [
                    ("name", "deploy"), ("kind", "workflow"), ("target", "missing"), ("scheme", "github"),
                    ("secret", ""), ("input", #"{"name": "{{ body.name }}"}"#), ("mode", "direct"),
                    ("enabled", "true"),
                ]
            )
            #expect(refused.status == .unprocessableContent)
            #expect(Self.element(in: refused.html, id: "trigger-secret-error") != nil)
            #expect(refused.html.contains("value=\"missing\""))
            #expect(refused.html.contains("{&quot;name&quot;: &quot;{{ body.name }}&quot;}"))
            let badBatch = try await browser.post(
                "/triggers",
                [
                    ("name", "deploy"), ("kind", "workflow"), ("target", "greet"), ("scheme", "none"),
                    ("mode", "batch"), ("max_events", "lots"), ("window", "10s"), ("enabled", "true"),
                ]
            )
            #expect(badBatch.status == .unprocessableContent)
            #expect(Self.element(in: badBatch.html, id: "trigger-max-events-error")?.contains("integer") == true)
            #expect(badBatch.html.contains("value=\"lots\""))
            #expect(badBatch.html.contains("<option value=\"batch\" selected>"))
            let missing = try await browser.post(
                "/triggers",
                [
                    ("name", "deploy"), ("kind", "workflow"), ("target", "missing"), ("scheme", "none"),
                    ("mode", "direct"), ("enabled", "true"),
                ]
            )
            #expect(Self.element(in: missing.html, id: "trigger-target-error")?.contains("does not exist") == true)

            let created = try await browser.post(
                "/triggers",
                [
                    ("name", "deploy"), ("kind", "workflow"), ("target", "greet"), ("scheme", "none"),
                    ("input", #"{"name": "{{ body.name }}"}"#), ("mode", "direct"), ("per_minute", "600"),
                    ("enabled", "true"),
                ]
            )
            #expect(created.path == "/triggers/deploy?done=trigger-created")
            #expect(created.html.contains("The trigger was created"))
            let stored = try await Self.api(client, .get, "/v1/triggers/deploy", token: token)
            let hook = try #require(stored.json["url"]?.stringValue)
            #expect(hook.hasPrefix("/v1/hooks/trg_"))
            #expect(stored.json["input"] == ["name": "{{ body.name }}"])
            #expect(stored.json["rate_limit"]?["per_minute"] == 600)
            let url = try #require(Self.element(in: created.html, id: "hook-url"))
            #expect(url.hasSuffix(hook))
            #expect(created.html.contains("Not verified"))
            // Absolute, as the browser reached the server (the test client's host is localhost), behind a proxy
            // that ends TLS too.
            #expect(url == "http://localhost" + hook)
            let behindProxy = try await browser.get(
                "/triggers/deploy",
                headers: [HTTPField.Name("X-Forwarded-Proto")!: "https"]
            )
            #expect(Self.element(in: behindProxy.html, id: "hook-url") == "https://localhost" + hook)
            #expect(created.html.contains("No deliveries"))

            let delivered = try await client.send(.post, hook, json: #"{"name": "Ada"}"#)
            #expect(delivered.status == .accepted)
            let runID = try #require(delivered.json["run_id"]?.stringValue)
            let page = try await browser.get("/triggers/deploy")
            #expect(page.html.contains("href=\"/runs/\(runID)\""))
            #expect(page.html.contains(">accepted</span>"))
            #expect(page.html.contains("started"))

            // Replaced through the form from its page's link: the URL stays the same.
            let editing = try await browser.get("/triggers?edit=deploy")
            #expect(editing.html.contains("Replace a trigger"))
            #expect(editing.html.contains("value=\"600\""))
            let replaced = try await browser.post(
                "/triggers",
                [
                    ("name", "deploy"), ("kind", "workflow"), ("target", "greet"), ("scheme", "none"),
                    ("mode", "direct"),
                ]
            )
            #expect(replaced.path == "/triggers/deploy?done=trigger-saved")
            #expect(replaced.html.contains(">disabled</span>"))
            #expect(Self.element(in: replaced.html, id: "hook-url") == url)
            let deleted = try await browser.post("/triggers/deploy/delete", [])
            #expect(deleted.path == "/triggers?done=trigger-deleted")
            #expect(try await client.send(.post, hook, json: "{}").status == .notFound)
        }
    }

    // MARK: Notifications

    @Test(arguments: TestBackend.available)
    func smtpSettingsAreSavedAndATestEmailIsSent(_ backend: TestBackend) async throws {
        var options = TestSMTPServer.Options()
        options.account = ("mailer", "Sm7p-pa55word-never-shown")
        try await TestSMTPServer.with(options) { smtp in
            try await Self.withEvents(backend) { client in
                let (browser, token) = try await Self.signUp(client)
                let secret = try await Self.api(
                    client,
                    .put,
                    "/v1/secrets/SMTP_PASSWORD",
                    token: token,
                    json: #"{"value": "Sm7p-pa55word-never-shown"}"#
                )
                #expect(secret.status == .created)
                let empty = try await browser.get("/settings/notifications")
                #expect(empty.status == .ok)
                #expect(empty.html.contains("No mail server yet"))
                #expect(empty.html.contains("<option value=\"SMTP_PASSWORD\">"))

                let fields: [(String, String)] = [
                    ("host", "127.0.0.1"), ("security", "starttls"), ("username", "mailer"),
                    ("password_secret", "SMTP_PASSWORD"), ("from", "Caravan Alerts <ops@example.com>"),
                    ("insecure_skip_verify", "true"),
                ]
                let refused = try await browser.post("/settings/notifications", fields + [("port", "lots")])
                #expect(refused.status == .unprocessableContent)
                #expect(Self.element(in: refused.html, id: "smtp-port-error") != nil)
                #expect(refused.html.contains("value=\"lots\""))
                #expect(refused.html.contains("value=\"Caravan Alerts &lt;ops@example.com&gt;\""))
                let saved = try await browser.post("/settings/notifications", fields + [("port", "\(smtp.port)")])
                #expect(saved.path == "/settings/notifications?done=smtp-saved")
                #expect(saved.html.contains("<code>127.0.0.1:\(smtp.port)</code>"))
                #expect(saved.html.contains("<code>SMTP_PASSWORD</code>"))
                #expect(!saved.html.contains("Sm7p-pa55word-never-shown"))
                let stored = try await Self.api(client, .get, "/v1/notifications/smtp", token: token)
                #expect(stored.json["password_secret"] == "SMTP_PASSWORD")

                let sent = try await browser.post(
                    "/settings/notifications/test",
                    [("kind", "email"), ("destination", "oncall@example.com"), ("title", "Ping from the console")]
                )
                #expect(sent.status == .ok)
                #expect(Self.element(in: sent.html, id: "test-result")?.contains("Delivered") == true)
                #expect(smtp.accepted.count == 1)
                #expect(smtp.accepted.first?.recipients == ["oncall@example.com"])
                #expect(smtp.accepted.first?.header("Subject") == "Ping from the console")

                let failed = try await browser.post(
                    "/settings/notifications/test",
                    [("kind", "webhook"), ("destination", Self.deadURL)]
                )
                #expect(failed.html.contains("<strong>Not delivered:</strong>"))
                #expect(failed.html.contains("value=\"\(Self.deadURL)\""))

                let removed = try await browser.post("/settings/notifications/delete", [])
                #expect(removed.path == "/settings/notifications?done=smtp-deleted")
                #expect(removed.html.contains("No mail server yet"))
                #expect(try await Self.api(client, .get, "/v1/notifications/smtp", token: token).status == .notFound)
            }
        }
    }
}
