import CaravanCore
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// The console's settings, usage and audit pages as a browser meets them: an API key shown once and working until
/// it is revoked, sections a viewer may not use kept from them, forms refused without their CSRF token, usage
/// drawn as SVG, schedules with their coming ticks, and hostile names shown as text.
@Suite(.tags(.integration, .security), .timeLimit(.minutes(2)))
struct ConsoleSettingsPageTests {
    static let password = "correct horse battery staple"
    static let hostile = "\"><img src=x onerror=alert(1)><script>alert(2)</script>"

    /// Signs the owner up through the console.
    static func owner(_ client: any TestClientProtocol) async throws -> ConsoleTestBrowser {
        let browser = ConsoleTestBrowser(client)
        let page = try await browser.signUp(email: "owner@example.com", password: password, organization: "Acme")
        #expect(page.path == "/runs")
        return browser
    }

    static func token(_ client: any TestClientProtocol, email: String) async throws -> String {
        let login = try await client.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "\#(email)", "password": "\#(password)"}"#
        )
        return try #require(login.json["access_token"]?.stringValue)
    }

    /// The text of the first element `<tag class="secret" id="id">…</tag>` of a page.
    static func secret(in html: String, id: String) -> String? {
        guard let start = html.range(of: "class=\"secret\" id=\"\(id)\">") else { return nil }
        let rest = html[start.upperBound...]
        guard let end = rest.range(of: "</") else { return nil }
        return String(rest[..<end.lowerBound])
    }

    static func occurrences(of needle: String, in haystack: String) -> Int {
        haystack.components(separatedBy: needle).count - 1
    }

    @Test(arguments: TestBackend.available)
    func anAPIKeyIsShownOnceWorksAndStopsWhenRevoked(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let browser = try await Self.owner(client)
            let list = try await browser.get("/settings/api-keys")
            #expect(list.status == .ok)
            #expect(list.html.contains("No API keys yet"))

            let created = try await browser.post(
                "/settings/api-keys",
                [("name", "ci " + Self.hostile), ("role", "developer"), ("expires_at", "2999-12-31")]
            )
            #expect(created.status == .ok)
            #expect(created.path == "/settings/api-keys")
            let key = try #require(Self.secret(in: created.html, id: "new-key"))
            #expect(key.count > 20)
            #expect(Self.occurrences(of: key, in: created.html) == 1)
            #expect(created.html.contains("will not be shown again"))
            #expect(!created.html.contains("<script>alert(2)"))
            #expect(!created.html.contains("<img src=x"))
            for name in ["caravan_access", "caravan_refresh", "caravan_csrf", "caravan_org"] {
                #expect(browser.cookie(name)?.contains(key) != true)
            }
            #expect(created.headers[.cacheControl] == "no-store")

            let me = try await client.send(.get, "/v1/me", headers: [.authorization: "Bearer \(key)"])
            #expect(me.status == .ok)
            #expect(me.json["api_key"]?["role"] == "developer")
            let id = try #require(me.json["api_key"]?["id"]?.stringValue)

            let listed = try await browser.get("/settings/api-keys")
            #expect(!listed.html.contains(key))
            #expect(listed.html.contains("ci &quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;"))
            #expect(listed.html.contains("/settings/api-keys/\(id)/revoke"))

            let revoked = try await browser.post("/settings/api-keys/\(id)/revoke", [])
            #expect(revoked.status == .ok)
            #expect(revoked.path == "/settings/api-keys?done=key-revoked")
            #expect(revoked.html.contains("The API key was revoked"))
            let refused = try await client.send(.get, "/v1/me", headers: [.authorization: "Bearer \(key)"])
            #expect(refused.status == .unauthorized)
        }
    }

    @Test(arguments: TestBackend.available)
    func theAPIKeyFormIsRefusedWithoutItsToken(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let browser = try await Self.owner(client)
            _ = try await browser.get("/settings/api-keys")
            let missing = try await browser.post(
                "/settings/api-keys",
                [("name", "forged"), ("role", "owner")],
                csrf: false
            )
            #expect(missing.status == .forbidden)
            let wrong = try await browser.post(
                "/settings/api-keys",
                [("name", "forged"), ("role", "owner"), ("_csrf", "not-the-token")],
                csrf: false
            )
            #expect(wrong.status == .forbidden)
            let token = try await Self.token(client, email: "owner@example.com")
            let keys = try await client.send(.get, "/v1/api-keys", headers: [.authorization: "Bearer \(token)"])
            #expect(keys.status == .ok)
            #expect(keys.json["items"]?.arrayValue?.isEmpty == true)
            #expect(!(try await browser.get("/settings/api-keys")).html.contains("forged"))
        }
    }

    @Test(arguments: TestBackend.available)
    func aViewerSeesNoAdminSectionsAndIsRefusedThem(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let owner = try await Self.owner(client)
            let orgID = try #require(owner.cookie("caravan_org"))
            let ownerToken = try await Self.token(client, email: "owner@example.com")
            let viewer = try await ConsoleTestBrowser.invited(
                client,
                email: "viewer@example.com",
                password: Self.password,
                role: "viewer",
                orgID: orgID,
                inviterToken: ownerToken
            )
            let settings = try await viewer.get("/settings")
            #expect(settings.status == .ok)
            #expect(settings.path == "/settings/providers")
            #expect(!settings.html.contains("/settings/api-keys"))
            #expect(!settings.html.contains("/settings/secrets"))
            #expect(settings.html.contains("/settings/members"))
            #expect(!settings.html.contains("Add a provider"))
            let members = try await viewer.get("/settings/members")
            #expect(members.html.contains("owner@example.com"))
            #expect(!members.html.contains("Invite someone"))

            #expect(try await viewer.get("/settings/api-keys").status == .forbidden)
            let posted = try await viewer.post("/settings/api-keys", [("name", "sneaky"), ("role", "viewer")])
            #expect(posted.status == .forbidden)
            #expect(!posted.html.contains("class=\"secret\""))
            #expect(try await viewer.get("/audit").status == .forbidden)
            let keys = try await client.send(.get, "/v1/api-keys", headers: [.authorization: "Bearer \(ownerToken)"])
            #expect(keys.json["items"]?.arrayValue?.isEmpty == true)

            // The owner sees every section.
            let ownerSettings = try await owner.get("/settings/members")
            for section in ["providers", "secrets", "api-keys", "members", "budget", "schedules", "account"] {
                #expect(ownerSettings.html.contains("href=\"/settings/\(section)\""), "\(section)")
            }
            #expect(ownerSettings.html.contains("viewer@example.com"))
            #expect(ownerSettings.html.contains("Invite someone"))
        }
    }

    @Test(arguments: TestBackend.available)
    func usageIsDrawnOnTheServerOnceAModelCallIsMetered(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, application in
            let browser = try await Self.owner(client)
            let empty = try await browser.get("/usage")
            #expect(empty.status == .ok)
            #expect(empty.html.contains("No model calls"))
            #expect(!empty.html.contains("<svg"))

            // One metered call, as the gateway records it, by an agent with a hostile name.
            let orgID = try #require(browser.cookie("caravan_org"))
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            try await application.database.withTransaction { executor in
                try await executor.execute(
                    """
                    INSERT INTO model_usage (org_id, at, run_id, agent, provider, model, input_tokens, output_tokens,
                        cost_usd, latency_ms, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                    """,
                    [
                        .text(orgID), .int(now), .text("r_test"), .text(Self.hostile), .text("openai"),
                        .text("gpt-4o-mini"), .int(1200), .int(345), .double(0.0123), .int(250), .text("success"),
                    ]
                )
            }
            let page = try await browser.get("/usage")
            #expect(page.status == .ok)
            #expect(Self.occurrences(of: "<svg", in: page.html) == 3)
            #expect(page.html.contains("<title id=\"usage-day-title\">"))
            #expect(page.html.contains("class=\"series\""))
            #expect(page.html.contains("class=\"axis\""))
            #expect(page.html.contains("openai/gpt-4o-mini"))
            #expect(page.html.contains("1\u{202F}545"))
            #expect(page.html.contains("Latest model requests"), "the request log, for an admin")
            #expect(!page.html.contains("<script>alert(2)"))
            #expect(!page.html.contains("<img src=x"))
            #expect(page.html.contains("&lt;script&gt;alert(2)"))

            let bad = try await browser.get("/usage?from=yesterday")
            #expect(bad.status == .unprocessableContent)
            #expect(bad.html.contains("class=\"problem\""))
        }
    }

    @Test(arguments: TestBackend.available)
    func schedulesShowTheirNextTicksAndTheAuditChainVerifies(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let browser = try await Self.owner(client)
            let token = try await Self.token(client, email: "owner@example.com")
            let workflow = """
                name: nightly
                description: "<script>alert('schedule')</script>"
                schedule: {cron: "30 2 * * *", timezone: Europe/Paris}
                steps:
                  - id: hello
                    template: "hi"
                """
            let stored = try await client.send(
                .put,
                "/v1/workflows/nightly",
                json: workflow,
                contentType: "application/yaml",
                headers: [.authorization: "Bearer \(token)"]
            )
            #expect(stored.status == .created)
            let schedules = try await browser.get("/settings/schedules")
            #expect(schedules.status == .ok)
            #expect(schedules.html.contains("<code>30 2 * * *</code>"))
            #expect(Self.occurrences(of: "02:30 Europe/Paris", in: schedules.html) == 3)
            #expect(!schedules.html.contains("<script>alert"))

            let audit = try await browser.get("/audit")
            #expect(audit.status == .ok)
            #expect(audit.html.contains("Verify the chain"))
            #expect(!audit.html.contains("<strong>Verified</strong>"))
            let verified = try await browser.get("/audit?verify=1")
            #expect(verified.html.contains("<strong>Verified</strong>"))
            #expect(audit.html.contains("putWorkflow") || audit.html.contains("workflow"))
            let filtered = try await browser.get("/audit?action=nothing-like-this")
            #expect(filtered.html.contains("No entries of this action"))
        }
    }

    @Test(arguments: TestBackend.available)
    func settingsFormsSaveThroughTheAPIAndKeepWhatWasTypedWhenRefused(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let browser = try await Self.owner(client)

            // A secret's value is sealed and never shown, not even when the form is refused.
            let refusedSecret = try await browser.post(
                "/settings/secrets",
                [("name", "bad name!"), ("value", "hunter2-value"), ("allowed_hosts", "")]
            )
            #expect(refusedSecret.status == .unprocessableContent)
            #expect(refusedSecret.html.contains("class=\"problem\""))
            #expect(refusedSecret.html.contains("value=\"bad name!\""))
            #expect(!refusedSecret.html.contains("hunter2-value"))
            let savedSecret = try await browser.post(
                "/settings/secrets",
                [("name", "OPENAI_KEY"), ("value", "sk-very-secret"), ("allowed_hosts", "api.openai.com")]
            )
            #expect(savedSecret.path == "/settings/secrets?done=secret-saved")
            #expect(savedSecret.html.contains("OPENAI_KEY"))
            #expect(!savedSecret.html.contains("sk-very-secret"))

            // A provider the API refuses comes back with its fields as typed and the API's field errors.
            let refusedProvider = try await browser.post(
                "/settings/providers",
                [
                    ("name", "openai"), ("kind", "openai"), ("base_url", "javascript:alert(1)"),
                    ("api_key_secret", "OPENAI_KEY"), ("models", "gpt-4o-mini"), ("timeout", "60s"),
                    ("max_retries", "2"),
                ]
            )
            #expect(refusedProvider.status == .unprocessableContent)
            #expect(refusedProvider.html.contains("<code>/base_url</code>"))
            #expect(refusedProvider.html.contains("value=\"javascript:alert(1)\""))
            #expect(!refusedProvider.html.contains("href=\"javascript:"))
            let savedProvider = try await browser.post(
                "/settings/providers",
                [
                    ("name", "openai"), ("kind", "openai"), ("base_url", "https://api.openai.com/v1"),
                    ("api_key_secret", "OPENAI_KEY"), ("models", "gpt-4o-mini\ngpt-4o"), ("timeout", "30s"),
                    ("max_retries", "1"),
                ]
            )
            #expect(savedProvider.path == "/settings/providers?done=provider-saved")
            #expect(savedProvider.html.contains("gpt-4o-mini, gpt-4o"))
            #expect(savedProvider.html.contains(">closed</span>"))
            let editing = try await browser.get("/settings/providers?edit=openai")
            #expect(editing.html.contains("Replace a provider"))
            #expect(editing.html.contains("value=\"https://api.openai.com/v1\""))
            let deleted = try await browser.post("/settings/providers/openai/delete", [])
            #expect(deleted.path == "/settings/providers?done=provider-deleted")
            #expect(deleted.html.contains("No providers yet"))

            // The budget: empty is no limit; what is not a number is refused beside the form.
            let refusedBudget = try await browser.post("/settings/budget", [("cost_usd", "lots"), ("tokens", "")])
            #expect(refusedBudget.status == .unprocessableContent)
            #expect(refusedBudget.html.contains("value=\"lots\""))
            let budget = try await browser.post("/settings/budget", [("cost_usd", "25"), ("tokens", "1,000,000")])
            #expect(budget.path == "/settings/budget?done=budget-saved")
            #expect(budget.html.contains("$0.0000 of $25.00"))
            #expect(budget.html.contains("of 1\u{202F}000\u{202F}000"))

            // An invitation's token is shown once; a hostile email is refused and shown as text.
            let refusedInvite = try await browser.post(
                "/settings/members/invite",
                [("email", Self.hostile), ("role", "viewer")]
            )
            #expect(refusedInvite.status == .unprocessableContent)
            #expect(!refusedInvite.html.contains("<script>alert(2)"))
            let invited = try await browser.post(
                "/settings/members/invite",
                [("email", "dev@example.com"), ("role", "developer")]
            )
            let token = try #require(Self.secret(in: invited.html, id: "new-invitation"))
            #expect(Self.occurrences(of: token, in: invited.html) == 1)
            #expect(invited.html.contains("will not be shown again"))

            // Two-factor authentication: enrol, see the secret and recovery codes once, confirm with a code.
            let account = try await browser.get("/settings/account")
            #expect(account.html.contains("Set up two-factor authentication"))
            let enrolment = try await browser.post("/settings/account/mfa", [])
            #expect(enrolment.status == .ok)
            let secret = try #require(Self.secret(in: enrolment.html, id: "totp-secret"))
            #expect(Self.secret(in: enrolment.html, id: "totp-url")?.hasPrefix("otpauth://totp/") == true)
            #expect(Self.occurrences(of: "<li>", in: enrolment.html) >= 10)
            let wrong = try await browser.post("/settings/account/mfa/verify", [("code", "12")])
            #expect(wrong.status == .unprocessableContent)
            #expect(wrong.html.contains("class=\"problem\""))
            let verified = try await browser.post(
                "/settings/account/mfa/verify",
                [("code", totpCode(base32: secret, at: Date()))]
            )
            #expect(verified.path == "/settings/account?done=mfa-on")
            #expect(verified.html.contains("Two-factor authentication is on"))
            #expect(!verified.html.contains(secret))
        }
    }
}
