import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

/// What an attacker tries through the browser: markup in content, a form posted from another origin, another
/// organization's run in the address.
extension ConsoleBrowser {
    /// A workflow whose description, template output and run input carry markup, and an agent whose answer does:
    /// every page that shows them shows the text, and nothing of it runs or becomes an element.
    func hostileContentStaysText(_ api: ServerAPI) async throws {
        let flow = "hostile content"
        let payload = Self.payload
        try await api.put(
            "/v1/workflows/hostile",
            json: [
                "name": "hostile", "description": .string("Imports \(payload)"),
                "steps": [["id": "echo", "template": .string("\(payload) {{ input.text }}")]],
                "output": "{{ steps.echo.output }}",
            ]
        )
        try await api.put(
            "/v1/agents/digest-writer",
            yaml: """
                name: digest-writer
                model: openai/gpt-4o-mini
                instructions: "Summarise the text you are given in one line."
                """
        )
        let runID = try await api.start("/v1/workflows/hostile/runs", input: ["text": .string(payload)])
        let agentRunID = try await api.start("/v1/agents/digest-writer/runs", input: .string(payload))
        try await session.waitUntil("\(flow): both runs succeed", timeout: .seconds(15)) {
            let (workflow, agent) = (try await api.status(runID), try await api.status(agentRunID))
            return workflow == "succeeded" && agent == "succeeded"
        }
        let pages: [(path: String, showsPayload: Bool)] = [
            ("/runs", false), ("/runs/\(runID)", true), ("/workflows/hostile", true), ("/runs/\(agentRunID)", true),
        ]
        for page in pages {
            try await open(page.path)
            let where_ = "\(flow) on \(page.path)"
            #expect(
                try await session.executeScript("return window.__pwned === undefined") == .bool(true),
                "\(where_): no markup ran"
            )
            let injected = try await session.executeScript(
                """
                return document.querySelectorAll('img[src="x"], [onerror], a[href^="javascript:"]').length
                  + document.querySelectorAll('script:not([src="/assets/console.js"])').length
                """
            )
            #expect(injected == .int(0), "\(where_): no element came from the content (\(injected))")
            if page.showsPayload {
                let text = try await pageText()
                #expect(text.contains("<script>window.__pwned=1</script>"), "\(where_): the script tag shows as text")
                #expect(text.contains("<img src=x onerror="), "\(where_): the image tag shows as text")
                #expect(text.contains("javascript:window.__pwned=1"), "\(where_): the address shows as text")
            }
            #expect(try await pageProblems() == [], "\(where_): no script error nor content security policy violation")
        }
        #expect(
            try await pageText().contains("Summary: <script>"),
            "\(flow): the agent's answer shows as the model wrote it"
        )
    }

    /// A page on another origin posts a form to cancel a run, in the browser that holds the console's cookies:
    /// the console refuses it, and the run goes on waiting.
    func formFromAnotherOriginIsRefused(_ api: ServerAPI, runID: String) async throws {
        let flow = "CSRF from another origin"
        let action = "\(base)/runs/\(runID)/cancel"
        let site: [String: LoopbackFile] = [
            "/": LoopbackFile(
                "text/html; charset=utf-8",
                """
                <!doctype html>
                <html lang="en"><head><meta charset="utf-8"><title>You won a prize</title><link rel="icon" href="data:,"></head>
                <body>
                <form id="forged" method="post" action="\(action)"><input type="hidden" name="reason" value="prize"></form>
                <script src="/forge.js"></script>
                </body></html>
                """
            ),
            "/forge.js": LoopbackFile("text/javascript", "document.getElementById('forged').submit();"),
        ]
        try await withLoopbackSite(site) { port in
            try await session.navigate(to: "http://127.0.0.1:\(port)/")
            try await session.waitUntil("\(flow): the forged form is sent to the console", timeout: .seconds(10)) {
                try await session.currentURL() == action
            }
            #expect(
                try await session.pageSource().contains("csrf_failed"),
                "\(flow): the console answers the forged form with its refusal"
            )
        }
        #expect(try await api.status(runID) == "waiting", "\(flow): the run was not cancelled")
        let events = try await api.send("GET", "/v1/runs/\(runID)/events").json["items"]?.arrayValue ?? []
        #expect(
            !events.contains { $0["type"]?.stringValue == "run.cancelled" },
            "\(flow): no cancellation was recorded"
        )
    }

    /// Someone invited to another organization only signs up in the browser and opens a run of the first one by
    /// its id: "Not found", and nothing of the run.
    func anotherOrganizationsRunIsNotFound(_ api: ServerAPI, recoveryCode: String) async throws {
        let flow = "another organization's run"
        let runs = try await api.send("GET", "/v1/runs?workflow=order-fulfilment").json["items"]?.arrayValue ?? []
        let runID = try #require(runs.first?["id"]?.stringValue, "\(flow): an order run exists")
        // The owner's own session, signed in with a recovery code the enrolment page showed.
        let login = try await fetch(
            base + "/v1/auth/login",
            method: "POST",
            headers: [("Content-Type", "application/json")],
            body: JSONValue.object([
                "email": .string(Self.email), "password": .string(Self.password), "totp": .string(recoveryCode),
            ]).canonicalText
        )
        #expect(login.status == 200, "\(flow): the recovery code signs in: \(login.body)")
        let token = try #require(try JSONValue(parsing: Array(login.body.utf8))["access_token"]?.stringValue)
        let owner = ServerAPI(base: base, bearer: token)
        let other = try await owner.send("POST", "/v1/organizations", json: ["name": "Contoso"])
        let otherID = try #require(other.json["id"]?.stringValue, "\(flow): \(other.json)")
        let invitation = try await owner.send(
            "POST",
            "/v1/organizations/\(otherID)/invitations",
            json: ["email": "sam@contoso.example", "role": "owner"]
        )
        let invitationToken = try #require(invitation.json["token"]?.stringValue, "\(flow): \(invitation.json)")

        try await open("/runs")
        try await click("form[action='/logout'] button")
        try await waitForPath("/login", flow)
        try await open("/signup")
        try await type("sam@contoso.example", into: "#email")
        try await type(Self.password, into: "#password")
        try await type(invitationToken, into: "#invitation")
        try await click("form[action='/signup'] button[type=submit]")
        try await waitForPath("/runs", flow)
        #expect(try await text(".empty").contains("No runs yet"), "\(flow): the other organization has no runs")
        try await open("/runs/\(runID)")
        let page = try await pageText()
        #expect(page.contains("Not found"), "\(flow): the run is not found: \(page.prefix(300))")
        #expect(!page.contains("order-fulfilment") && !page.contains("A-1042"), "\(flow): nothing of the run shows")
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")
    }
}
