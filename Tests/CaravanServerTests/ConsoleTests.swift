import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// The console as a browser meets it over HTTP: sign-in and its cookies, the headers that keep pages from running
/// foreign script, forms refused without their CSRF token, hostile content shown as text, and another
/// organization's data out of reach.
@Suite(.tags(.integration, .security), .timeLimit(.minutes(2)))
struct ConsoleTests {
    static let password = "correct horse battery staple"

    /// A workflow whose name, description, input and output carry markup that must never run.
    static let hostileWorkflow = """
        name: hostile
        description: "<script>alert('description')</script>"
        steps:
          - id: echo
            template: "<img src=x onerror=alert('output')> {{ input.text }}"
        output: "{{ steps.echo.output }}"
        """

    /// Signs up through the console and returns the browser and the API client of the same account.
    static func signedIn(_ client: any TestClientProtocol) async throws -> ConsoleTestBrowser {
        let browser = ConsoleTestBrowser(client)
        let page = try await browser.signUp(email: "owner@example.com", password: password, organization: "Acme")
        #expect(page.status == .ok)
        #expect(page.path == "/runs")
        return browser
    }

    static func accessToken(
        _ client: any TestClientProtocol,
        email: String = "owner@example.com"
    ) async throws
        -> String
    {
        let login = try await client.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "\#(email)", "password": "\#(password)"}"#
        )
        return try #require(login.json["access_token"]?.stringValue)
    }

    /// Puts a YAML workflow definition through the API as `token`'s user.
    static func putWorkflow(
        _ client: any TestClientProtocol,
        token: String,
        name: String,
        yaml: String
    ) async throws
        -> (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields)
    {
        try await client.send(
            .put,
            "/v1/workflows/\(name)",
            json: yaml,
            contentType: "application/yaml",
            headers: [.authorization: "Bearer \(token)"]
        )
    }

    static func startRun(
        _ client: any TestClientProtocol,
        token: String,
        workflow: String,
        input: String,
        wait: Bool = true
    ) async throws -> String {
        let started = try await client.send(
            .post,
            "/v1/workflows/\(workflow)/runs" + (wait ? "?wait=10s" : ""),
            json: #"{"input": \#(input)}"#,
            headers: [.authorization: "Bearer \(token)"]
        )
        return try #require(started.json["id"]?.stringValue)
    }

    /// Polls a run until it has `status`. - Throws: when it has not within five seconds.
    static func waitFor(_ client: any TestClientProtocol, token: String, runID: String, status: String) async throws {
        for _ in 0..<250 {
            let run = try await client.send(.get, "/v1/runs/\(runID)", headers: [.authorization: "Bearer \(token)"])
            if run.json["status"]?.stringValue == status { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("run \(runID) did not become \(status)")
    }

    @Test(arguments: TestBackend.available)
    func signInSetsStrictCookiesAndPagesForbidForeignScript(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let anonymous = try await client.execute(uri: "/runs", method: .get, headers: [:], body: nil)
            #expect(anonymous.status == .seeOther)
            #expect(anonymous.headers[.location] == "/login?next=%2Fruns")

            let browser = try await Self.signedIn(client)
            let page = try await browser.get("/runs")
            let policy = try #require(page.headers[HTTPField.Name("Content-Security-Policy")!])
            #expect(policy.contains("script-src 'self'"))
            #expect(policy.contains("frame-ancestors 'none'"))
            #expect(!policy.contains("unsafe-inline"))
            #expect(page.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            #expect(page.headers[.cacheControl] == "no-store")
            #expect(page.html.contains("No runs yet"))
            #expect(!page.html.contains("<script>"))
            #expect(!page.html.contains(" style="))

            // The session's cookies: HttpOnly and SameSite=Strict always, Secure when the console is reached over TLS.
            let login = try await client.execute(uri: "/login", method: .get, headers: [:], body: nil)
            let csrf = try #require(
                login.headers[values: .setCookie].first { $0.hasPrefix("caravan_csrf=") }?.split(separator: ";")
                    .first?.dropFirst("caravan_csrf=".count)
            )
            let form =
                "_csrf=\(csrf)&email=owner%40example.com&password=\(Self.password.replacingOccurrences(of: " ", with: "+"))"
            for secure in [false, true] {
                var headers: HTTPFields = [
                    .contentType: "application/x-www-form-urlencoded", .cookie: "caravan_csrf=\(csrf)",
                ]
                if secure { headers[HTTPField.Name("X-Forwarded-Proto")!] = "https" }
                let signedIn = try await client.execute(
                    uri: "/login",
                    method: .post,
                    headers: headers,
                    body: ByteBuffer(string: form)
                )
                #expect(signedIn.status == .seeOther)
                let cookies = signedIn.headers[values: .setCookie]
                for name in ["caravan_access", "caravan_refresh"] {
                    let cookie = try #require(cookies.first { $0.hasPrefix(name + "=") })
                    #expect(cookie.contains("HttpOnly"))
                    #expect(cookie.contains("SameSite=Strict"))
                    #expect(cookie.contains("Secure") == secure)
                }
            }
        }
    }

    @Test(arguments: TestBackend.available)
    func signInAsksForTheTwoFactorCode(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            _ = try await Self.signedIn(client)
            let token = try await Self.accessToken(client)
            let enrolment = try await client.send(
                .post,
                "/v1/auth/mfa/totp",
                headers: [.authorization: "Bearer \(token)"]
            )
            let secret = try #require(enrolment.json["secret"]?.stringValue)
            let verified = try await client.send(
                .post,
                "/v1/auth/mfa/totp/verify",
                json: #"{"code": "\#(totpCode(base32: secret, at: Date()))"}"#,
                headers: [.authorization: "Bearer \(token)"]
            )
            #expect(verified.status.code < 300)

            let browser = ConsoleTestBrowser(client)
            let withoutCode = try await browser.signIn(email: "owner@example.com", password: Self.password)
            #expect(withoutCode.status == .unauthorized)
            #expect(withoutCode.html.contains("two-factor"))
            #expect(browser.cookie("caravan_access") == nil)
            let wrongCode = try await browser.signIn(
                email: "owner@example.com",
                password: Self.password,
                totp: "000000"
            )
            #expect(wrongCode.path == "/login")
            #expect(browser.cookie("caravan_access") == nil)

            let signedIn = try await browser.signIn(
                email: "owner@example.com",
                password: Self.password,
                totp: totpCode(base32: secret, at: Date().addingTimeInterval(30))
            )
            #expect(signedIn.status == .ok)
            #expect(signedIn.path == "/runs")
            #expect(browser.cookie("caravan_access") != nil)
        }
    }

    @Test(arguments: TestBackend.available)
    func formsWithoutTheirTokenOrFromAnotherOriginAreRefused(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let browser = try await Self.signedIn(client)
            let token = try await Self.accessToken(client)
            let put = try await client.send(
                .put,
                "/v1/workflows/waits",
                json: #"{"steps": [{"id": "ask", "approval": {"message": "go?"}}]}"#,
                headers: [.authorization: "Bearer \(token)"]
            )
            #expect(put.status == .created)
            let runID = try await Self.startRun(client, token: token, workflow: "waits", input: "{}", wait: false)
            try await Self.waitFor(client, token: token, runID: runID, status: "waiting")

            let refusals: [(csrf: Bool, headers: HTTPFields)] = [
                (false, [:]),
                (true, [.origin: "https://evil.example"]),
                (true, [HTTPField.Name("Sec-Fetch-Site")!: "cross-site"]),
            ]
            for refusal in refusals {
                let page = try await browser.post(
                    "/runs/\(runID)/cancel",
                    [],
                    csrf: refusal.csrf,
                    headers: refusal.headers
                )
                #expect(page.status == .forbidden)
                #expect(page.html.contains("csrf_failed"))
            }
            let stillWaiting = try await client.send(
                .get,
                "/v1/runs/\(runID)",
                headers: [.authorization: "Bearer \(token)"]
            )
            #expect(stillWaiting.json["status"] == "waiting")

            let approvals = try await browser.get("/approvals")
            #expect(approvals.html.contains(runID))
            let approved = try await browser.post(
                "/runs/\(runID)/approve",
                [("decision", "approve"), ("back", "/approvals")]
            )
            #expect(approved.status == .ok)
            #expect(approved.path == "/approvals")
            try await Self.waitFor(client, token: token, runID: runID, status: "succeeded")
        }
    }

    @Test(arguments: TestBackend.available)
    func hostileContentIsShownAsText(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let browser = try await Self.signedIn(client)
            let token = try await Self.accessToken(client)
            let put = try await Self.putWorkflow(client, token: token, name: "hostile", yaml: Self.hostileWorkflow)
            #expect(put.status == .created)
            let runID = try await Self.startRun(
                client,
                token: token,
                workflow: "hostile",
                input: #"{"text": "\"><script>alert('input')</script> javascript:alert(1)"}"#
            )
            for path in ["/runs", "/runs/\(runID)", "/runs/rows"] {
                let page = try await browser.get(path)
                #expect(page.status == .ok, "\(path)")
                #expect(!page.html.contains("<script>alert"), "\(path)")
                #expect(!page.html.contains("<img src=x"), "\(path)")
                #expect(!page.html.contains("href=\"javascript:"), "\(path)")
            }
            let run = try await browser.get("/runs/\(runID)")
            #expect(run.html.contains("&lt;script&gt;alert(&#39;input&#39;)&lt;/script&gt;"))
            #expect(run.html.contains("&lt;img src=x onerror=alert(&#39;output&#39;)&gt;"))

            // A search for a hostile id lands on "not found", with the id shown as text.
            let search = try await browser.get("/runs?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
            #expect(search.status == .notFound)
            #expect(!search.html.contains("<script>alert"))
        }
    }

    @Test(arguments: TestBackend.available)
    func anotherOrganizationsRunIsNotFound(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            _ = try await Self.signedIn(client)
            let token = try await Self.accessToken(client)
            let put = try await Self.putWorkflow(client, token: token, name: "hostile", yaml: Self.hostileWorkflow)
            #expect(put.status == .created)
            let runID = try await Self.startRun(
                client,
                token: token,
                workflow: "hostile",
                input: #"{"text": "secret"}"#
            )

            // A second organization, whose only member is invited there and nowhere else.
            let other = try await client.send(
                .post,
                "/v1/organizations",
                json: #"{"name": "Other"}"#,
                headers: [.authorization: "Bearer \(token)"]
            )
            let otherID = try #require(other.json["id"]?.stringValue)
            let invitation = try await client.send(
                .post,
                "/v1/organizations/\(otherID)/invitations",
                json: #"{"email": "stranger@example.com", "role": "owner"}"#,
                headers: [.authorization: "Bearer \(token)"]
            )
            let invitationToken = try #require(invitation.json["token"]?.stringValue)
            let stranger = ConsoleTestBrowser(client)
            _ = try await stranger.get("/signup")
            let signedUp = try await stranger.post(
                "/signup",
                [("email", "stranger@example.com"), ("password", Self.password), ("invitation", invitationToken)]
            )
            #expect(signedUp.path == "/runs")

            let page = try await stranger.get("/runs/\(runID)")
            #expect(page.status == .notFound)
            #expect(!page.html.contains("secret"))
            let stream = try await stranger.get("/live/runs/\(runID)", headers: [.accept: "text/event-stream"])
            #expect(stream.status == .notFound)
            let list = try await stranger.get("/runs")
            #expect(!list.html.contains(runID))
            // Choosing the organization of someone else is refused too.
            let me = try await client.send(.get, "/v1/me", headers: [.authorization: "Bearer \(token)"])
            let acme = try #require(
                me.json["organizations"]?.arrayValue?.first { $0["name"] == "Acme" }?["id"]?.stringValue
            )
            let switched = try await stranger.post("/organization", [("org", acme)])
            #expect(switched.status == .notFound)
        }
    }

    @Test(arguments: TestBackend.available)
    func aRunPageShowsItsGraphFoldsLargeOutputAndStreamsLive(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let browser = try await Self.signedIn(client)
            let token = try await Self.accessToken(client)
            let definition = """
                steps:
                  - id: big
                    template: "{{ input.text }}"
                  - id: after
                    needs: [big]
                    template: "done"
                """
            let put = try await Self.putWorkflow(client, token: token, name: "large", yaml: definition)
            #expect(put.status == .created)
            let text = String(repeating: "0123456789abcdef", count: 12_000)  // 192 KB, three times what a page shows
            let runID = try await Self.startRun(
                client,
                token: token,
                workflow: "large",
                input: #"{"text": "\#(text)"}"#
            )

            let page = try await browser.get("/runs/\(runID)")
            #expect(page.status == .ok)
            #expect(page.html.contains("class=\"graph\""))
            #expect(page.html.contains("M158,30"))  // the edge from `big` to `after`
            #expect(page.html.contains("class=\"timeline\""))
            #expect(page.html.contains("The whole output"))
            #expect(page.html.utf8.count < 250_000)
            let whole = try await browser.get("/runs/\(runID)/steps/big/output")
            #expect(whole.html.utf8.count > 192_000)

            let stream = try await browser.get("/live/runs/\(runID)", headers: [.accept: "text/event-stream"])
            #expect(stream.status == .ok)
            #expect(stream.headers[.contentType]?.hasPrefix("text/event-stream") == true)
            #expect(stream.html.contains("event: run.succeeded"))
        }
    }

    @Test(arguments: TestBackend.available)
    func aLapsedSessionIsRenewedOnceForRequestsThatComeTogether(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, signUp: false) { client, _ in
            let browser = try await Self.signedIn(client)
            let firstRefresh = try #require(browser.cookie("caravan_refresh"))
            // The access cookie lapses; five requests then come at once with the same refresh cookie. Refreshing
            // with it five times would end the session (a used refresh token presented again revokes it).
            browser.forget("caravan_access")
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for path in ["/runs", "/runs/rows", "/approvals", "/runs", "/runs/rows"] {
                    group.addTask { Int(try await browser.get(path).status.code) }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == [200, 200, 200, 200, 200])
            #expect(browser.cookie("caravan_refresh") != firstRefresh)
            // The session lives on: once the new access cookie lapses too, the new refresh cookie renews it.
            browser.forget("caravan_access")
            let later = try await browser.get("/runs")
            #expect(later.status == .ok)
            #expect(later.path == "/runs")
        }
    }
}
