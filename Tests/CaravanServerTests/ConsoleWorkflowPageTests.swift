import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// The console's workflow and agent pages over real HTTP: a definition written in the editor with mistakes, each
/// shown beside the line it is about, fixed and saved; a run started from the form generated from the input
/// schema; an agent talked to on a thread; and hostile names, descriptions and definitions shown as text.
@Suite(.tags(.integration, .security), .timeLimit(.minutes(2)))
struct ConsoleWorkflowPageTests {
    static let password = "correct horse battery staple"
    static let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>"

    /// A workflow with two mistakes: a step that needs a step that does not exist (line 18) and a field no
    /// workflow has (line 20).
    static let faulty = """
        name: greeter
        description: Greets people
        input:
          type: object
          required: [name, count]
          properties:
            name: {type: string, description: Who to greet}
            count: {type: integer}
            loud: {type: boolean}
            tone: {enum: [warm, dry]}
            extra: {type: object}
        steps:
          - id: greet
            template: "Hello {{ input.name }}"
          - id: shout
            needs:
              - greet
              - missing
            template: "{{ steps.greet.output }}!"
        colour: blue
        output: {text: "{{ steps.shout.output }}", input: "{{ input }}"}
        """

    /// `faulty` with its mistakes fixed.
    static var fixed: String {
        faulty.replacingOccurrences(of: "      - missing\n", with: "").replacingOccurrences(
            of: "colour: blue\n",
            with: ""
        )
    }

    static func signedIn(_ client: any TestClientProtocol) async throws -> (ConsoleTestBrowser, token: String) {
        let browser = ConsoleTestBrowser(client)
        let page = try await browser.signUp(email: "owner@example.com", password: password, organization: "Acme")
        #expect(page.path == "/runs")
        let login = try await client.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "owner@example.com", "password": "\#(password)"}"#
        )
        return (browser, try #require(login.json["access_token"]?.stringValue))
    }

    /// The markup of line `number` of the editor's listing, up to the next line.
    static func listedLine(_ number: Int, in html: String) -> String? {
        guard let start = html.range(of: "<li id=\"line-\(number)\"") else { return nil }
        let rest = html[start.lowerBound...]
        let end = rest.range(of: "<li id=\"line-\(number + 1)\"")?.lowerBound ?? rest.range(of: "</ol>")?.lowerBound
        return String(rest[..<(end ?? rest.endIndex)])
    }

    /// Polls a run until it has finished. - Returns: the run.
    static func finished(_ client: any TestClientProtocol, token: String, runID: String) async throws -> JSONValue {
        for _ in 0..<250 {
            let run = try await client.send(.get, "/v1/runs/\(runID)", headers: [.authorization: "Bearer \(token)"])
            if ["succeeded", "failed", "cancelled"].contains(run.json["status"]?.stringValue ?? "") { return run.json }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("run \(runID) did not finish")
        return .null
    }

    @Test(arguments: TestBackend.available)
    func theEditorShowsEachErrorBesideItsLineAndARunStartsFromTheGeneratedForm(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live, signUp: false) { client, _ in
            let (browser, token) = try await Self.signedIn(client)
            let empty = try await browser.get("/workflows")
            #expect(empty.status == .ok)
            #expect(empty.html.contains("No workflows yet"))
            #expect(empty.html.contains("Create from an example"))
            #expect(empty.html.contains("href=\"/workflows/new\""))
            let example = try await browser.get("/workflows/new?example=hello-world")
            #expect(example.status == .ok)
            #expect(example.html.contains("value=\"hello-world\""))
            #expect(example.html.contains("sleep: 1s"))

            // Two mistakes, each under its own line; the lines without one are not marked.
            let refused = try await browser.post("/workflows/new", [("name", "greeter"), ("yaml", Self.faulty)])
            #expect(refused.status == .unprocessableContent)
            #expect(refused.path == "/workflows/new")
            let line18 = try #require(Self.listedLine(18, in: refused.html))
            #expect(line18.contains("class=\"has-error\""))
            #expect(line18.contains("- missing"))
            #expect(line18.contains("/steps/1/needs/1: &#39;missing&#39; is not a step of this workflow"))
            let line20 = try #require(Self.listedLine(20, in: refused.html))
            #expect(line20.contains("class=\"has-error\""))
            #expect(line20.contains("/colour: is not a field of a workflow definition"))
            #expect(Self.listedLine(17, in: refused.html)?.contains("has-error") == false)
            #expect(refused.html.contains("<a href=\"#line-18\">Line 18</a>"))
            // The text comes back as it was typed, to be fixed.
            #expect(
                refused.html.contains("- missing\n    template: &quot;{{ steps.greet.output }}!&quot;\ncolour: blue")
            )
            #expect(refused.html.contains("value=\"greeter\""))

            // A YAML syntax error is placed on its line too (the flow mapping of line 3 never closes).
            let broken = "name: greeter\nsteps:\n  - {id: a, template: x\n  - id: b\n"
            let unparsed = try await browser.post("/workflows/new", [("name", "greeter"), ("yaml", broken)])
            #expect([400, 422].contains(unparsed.status.code))
            #expect(unparsed.html.contains("The YAML does not parse"))
            #expect(unparsed.html.contains("class=\"has-error\""))

            // A browser sends the textarea's lines with CRLF; the fixed definition saves and opens its page.
            let saved = try await browser.post(
                "/workflows/new",
                [("name", "greeter"), ("yaml", Self.fixed.replacingOccurrences(of: "\n", with: "\r\n"))]
            )
            #expect(saved.status == .ok)
            #expect(saved.path == "/workflows/greeter")
            #expect(saved.html.contains("Greets people"))
            #expect(saved.html.contains("<pre class=\"code\""))
            #expect(saved.html.contains("name: greeter"))
            #expect(saved.html.contains("needs: [greet]"))
            #expect(saved.html.contains("Version 1"))
            #expect(saved.html.contains("No runs yet"))
            // The form generated from the input schema: one field per property, the required ones marked.
            #expect(saved.html.contains("type=\"text\" id=\"input-0\" name=\"input.name\" value=\"\" required"))
            #expect(saved.html.contains("type=\"number\" step=\"1\" id=\"input-1\" name=\"input.count\""))
            #expect(saved.html.contains("type=\"checkbox\" id=\"input-3\" name=\"input.loud\""))
            #expect(saved.html.contains("<option value=\"&quot;warm&quot;\">warm</option>"))
            #expect(saved.html.contains("<textarea id=\"input-2\" name=\"input.extra\""))
            #expect(saved.html.contains("Who to greet"))

            let listed = try await browser.get("/workflows")
            #expect(listed.html.contains("href=\"/workflows/greeter\""))
            #expect(listed.html.contains("Greets people"))
            let edit = try await browser.get("/workflows/greeter/edit")
            #expect(edit.status == .ok)
            #expect(edit.html.contains("name: greeter"))
            #expect(!edit.html.contains("id=\"definition-name\""))

            // A number that is not one is refused beside its field, with what was typed kept.
            let wrong = try await browser.post(
                "/workflows/greeter/runs",
                [("input.name", "Ada"), ("input.count", "many"), ("input.extra", "")]
            )
            #expect(wrong.status == .unprocessableContent)
            #expect(wrong.html.contains("must be a whole number"))
            #expect(wrong.html.contains("name=\"input.name\" value=\"Ada\""))

            let started = try await browser.post(
                "/workflows/greeter/runs",
                [
                    ("input.name", "Ada"), ("input.count", "3"), ("input.loud", "true"),
                    ("input.tone", "\"warm\""), ("input.extra", "{\"a\": 1}"),
                ]
            )
            #expect(started.status == .ok)
            #expect(started.path.hasPrefix("/runs/"))
            let runID = String(started.path.dropFirst("/runs/".count))
            let run = try await Self.finished(client, token: token, runID: runID)
            #expect(run["status"] == "succeeded")
            #expect(run["output"]?["text"] == "Hello Ada!")
            #expect(
                run["input"] == ["name": "Ada", "count": 3, "loud": true, "tone": "warm", "extra": ["a": 1]]
            )
            let page = try await browser.get("/workflows/greeter")
            #expect(page.html.contains("href=\"/runs/\(runID)\""))

            // A second version is listed, and the first is still there to read.
            let changed = try await browser.post(
                "/workflows/greeter/edit",
                [("yaml", Self.fixed.replacingOccurrences(of: "Greets people", with: "Greets everyone"))]
            )
            #expect(changed.path == "/workflows/greeter")
            #expect(changed.html.contains("href=\"/workflows/greeter?version=1\""))
            let first = try await browser.get("/workflows/greeter?version=1")
            #expect(first.html.contains("description: Greets people"))

            let archived = try await browser.post("/workflows/greeter/archive", [])
            #expect(archived.path == "/workflows/greeter")
            #expect(archived.html.contains(">archived</span>"))
            #expect(!archived.html.contains("id=\"start-form\""))
        }
    }

    @Test(arguments: TestBackend.available)
    func hostileNamesDescriptionsAndDefinitionsAreShownAsText(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live, signUp: false) { client, _ in
            let (browser, _) = try await Self.signedIn(client)
            let quoted = Self.hostile.replacingOccurrences(of: "\"", with: "\\\"")
            let definition = """
                name: hostile
                description: "\(quoted)"
                input:
                  type: object
                  properties:
                    "\(quoted)": {type: string, description: "\(quoted)"}
                    link: {enum: ["javascript:alert(3)", "\(quoted)"]}
                steps:
                  - id: echo
                    template: "\(quoted)"
                """
            let saved = try await browser.post("/workflows/new", [("name", ""), ("yaml", definition)])
            #expect(saved.path == "/workflows/hostile")
            // A name that is itself hostile is refused, and shown back as text.
            let refused = try await browser.post("/workflows/new", [("name", Self.hostile), ("yaml", definition)])
            #expect(refused.status == .unprocessableContent)
            #expect(refused.html.contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img"))

            for page in [
                try await browser.get("/workflows"), try await browser.get("/workflows/hostile"),
                try await browser.get("/workflows/hostile/edit"), refused,
            ] {
                #expect(page.status.code < 500)
                #expect(!page.html.contains("<script>alert(1)"), "\(page.path)")
                #expect(!page.html.contains("<img src=x"), "\(page.path)")
                #expect(!page.html.contains("href=\"javascript:"), "\(page.path)")
                #expect(page.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "\(page.path)")
            }
        }
    }

    @Test(arguments: TestBackend.available)
    func anAgentIsWrittenInTheEditorAndTalkedToOnAThread(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live, signUp: false) { client, _ in
            let (browser, token) = try await Self.signedIn(client)
            let bearer: HTTPFields = [.authorization: "Bearer \(token)"]
            let empty = try await browser.get("/agents")
            #expect(empty.html.contains("No agents yet"))
            _ = try await client.send(.put, "/v1/secrets/key", json: #"{"value": "sk-test"}"#, headers: bearer)
            let provider = try await client.send(
                .put,
                "/v1/providers/openai",
                json:
                    #"{"kind": "openai", "base_url": "http://127.0.0.1:9", "api_key_secret": "key", "models": ["gpt-4o-mini"]}"#,
                headers: bearer
            )
            #expect(provider.status.code < 300)

            let faulty = """
                name: helper
                description: "\(Self.hostile.replacingOccurrences(of: "\"", with: "\\\""))"
                model: openai/gpt-4o-mini
                instructions: Answer briefly.
                max_turns: many
                """
            let refused = try await browser.post("/agents/new", [("name", "helper"), ("yaml", faulty)])
            #expect(refused.status == .unprocessableContent)
            #expect(Self.listedLine(5, in: refused.html)?.contains("class=\"has-error\"") == true)
            let saved = try await browser.post(
                "/agents/new",
                [("name", "helper"), ("yaml", faulty.replacingOccurrences(of: "many", with: "3"))]
            )
            #expect(saved.path == "/agents/helper")
            #expect(saved.html.contains("Talk to the agent"))
            #expect(saved.html.contains("model: openai/gpt-4o-mini"))
            #expect(!saved.html.contains("<script>alert(1)"))
            let list = try await browser.get("/agents")
            #expect(list.html.contains("href=\"/agents/helper\""))
            #expect(!list.html.contains("<script>alert(1)"))

            let talked = try await browser.post("/agents/helper/runs", [("message", "Hello there"), ("thread", "")])
            #expect(talked.path.hasPrefix("/runs/"))
            let runID = String(talked.path.dropFirst("/runs/".count))
            let run = try await client.send(.get, "/v1/runs/\(runID)", headers: bearer)
            #expect(run.json["input"] == "Hello there")
            let thread = try #require(run.json["thread"]?.stringValue)
            _ = try await Self.finished(client, token: token, runID: runID)

            let continued = try await browser.get("/agents/helper?thread=\(thread)")
            #expect(continued.status == .ok)
            #expect(continued.html.contains("name=\"thread\" value=\"\(thread)\""))
            let page = try await browser.get("/agents/helper")
            #expect(page.html.contains("href=\"/agents/helper?thread=\(thread)\""))
            #expect(page.html.contains("href=\"/runs/\(runID)\""))

            // The next turn goes on the same thread; a JSON object is sent as such.
            let second = try await browser.post(
                "/agents/helper/runs",
                [("message", #"{"question": "and then?"}"#), ("thread", thread)]
            )
            let secondID = String(second.path.dropFirst("/runs/".count))
            let secondRun = try await client.send(.get, "/v1/runs/\(secondID)", headers: bearer)
            #expect(secondRun.json["thread"]?.stringValue == thread)
            #expect(secondRun.json["input"] == ["question": "and then?"])
            _ = try await Self.finished(client, token: token, runID: secondID)
        }
    }

    @Test(arguments: TestBackend.available)
    func aViewerReadsWorkflowsButHasNoFormToChangeOrStartThem(_ backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live, signUp: false) { client, _ in
            let (owner, token) = try await Self.signedIn(client)
            let saved = try await owner.post("/workflows/new", [("name", ""), ("yaml", Self.fixed)])
            #expect(saved.path == "/workflows/greeter")
            let orgID = try #require(owner.cookie("caravan_org"))
            let viewer = try await ConsoleTestBrowser.invited(
                client,
                email: "viewer@example.com",
                password: Self.password,
                role: "viewer",
                orgID: orgID,
                inviterToken: token
            )

            let page = try await viewer.get("/workflows/greeter")
            #expect(page.status == .ok)
            #expect(page.html.contains("name: greeter"))
            #expect(!page.html.contains("id=\"start-form\""))
            #expect(!page.html.contains("/workflows/greeter/edit"))
            #expect(!page.html.contains("Archive workflow"))
            #expect(!(try await viewer.get("/workflows")).html.contains("New workflow"))
            #expect(try await viewer.get("/workflows/new").status == .forbidden)
            let started = try await viewer.post(
                "/workflows/greeter/runs",
                [("input.name", "Ada"), ("input.count", "1")]
            )
            #expect(started.status == .forbidden)
            let edited = try await viewer.post("/workflows/greeter/edit", [("yaml", Self.fixed)])
            #expect(edited.status == .forbidden)
            let runs = try await client.send(.get, "/v1/runs", headers: [.authorization: "Bearer \(token)"])
            #expect(runs.json["items"]?.arrayValue?.isEmpty == true)
        }
    }
}
