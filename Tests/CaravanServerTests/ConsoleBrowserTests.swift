import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

/// The console as a person uses it, in headless Chromium against the real `caravan serve` binary: signing up and
/// in with two-factor, runs followed live, approvals, a retry, an agent's trace, the workflow editor, API keys,
/// usage, hostile content, a forged form from another origin and another organization's run. One server and one
/// browser per backend carry every flow in turn, each flow named in its expectations.
@Suite(
    "The console in a browser",
    .tags(.integration, .security),
    .enabled(if: WebDriverSession.configuredDriverURL != nil, "needs CARAVAN_CHROMEDRIVER_URL (scripts/test sets it)"),
    .timeLimit(.minutes(3))
)
struct ConsoleBrowserTests {
    @Test(
        "sign-up, two-factor, live runs, approvals, retry, an agent's trace, the editor, keys, usage, hostile content, CSRF, tenancy",
        arguments: TestBackend.available
    )
    func flows(_ backend: TestBackend) async throws {
        let driverURL = try #require(WebDriverSession.configuredDriverURL)
        try await TestHTTPServer.with { http in
            try await FakeOpenAIServer.with(requiredAPIKey: ConsoleBrowser.modelKey) { model in
                model.respond(with: ConsoleBrowser.modelAnswers)
                try await ConsoleBrowser.withServer(backend) { server in
                    try await withWebDriverSession(driverURL: driverURL) { session in
                        let browser = ConsoleBrowser(session: session, server: server, http: http, model: model)
                        try await browser.runEveryFlow()
                    }
                }
            }
        }
    }
}

/// One browser session on one `caravan serve`: the flows, and what they share to drive pages.
struct ConsoleBrowser: Sendable {
    let session: WebDriverSession
    let server: CaravanProcess
    let http: TestHTTPServer
    let model: FakeOpenAIServer

    static let email = "dana@northwind.example"
    static let password = "a long and unusual passphrase"
    static let modelKey = "sk-fake-northwind"

    /// What the console must show as text and never run: a script element, an attribute break-out with a handler,
    /// and a `javascript:` address in running text.
    static let payload =
        #"<script>window.__pwned=1</script> "><img src=x onerror="window.__pwned=1"> javascript:window.__pwned=1"#

    /// The fake model: the refund agent (it has the `issue_refund` tool) first asks for the refund, then, with the
    /// tool's result, answers; any other agent answers with the hostile payload.
    static let modelAnswers: FakeModelResponder = { request in
        guard request.toolNames.contains("issue_refund") else {
            return .text("Summary: \(payload)", usage: FakeUsage(input: 2_140, output: 96))
        }
        if request.toolResults.isEmpty {
            return .toolCalls(
                [FakeToolCall(name: "issue_refund", arguments: #"{"order": "A-1042", "amount": 25.5}"#)],
                usage: FakeUsage(input: 1_312, output: 41)
            )
        }
        return .text(
            "Refunded $25.50 for order A-1042; the customer sees it within 5 working days.",
            usage: FakeUsage(input: 1_398, output: 27)
        )
    }

    var base: String { "http://127.0.0.1:\(server.port)" }

    /// Starts `caravan serve` on `backend` (a fresh PostgreSQL database, or a temporary data directory), allowed to
    /// call loopback (the test HTTP server, the fake model), runs `body` and stops the server.
    static func withServer<T: Sendable>(
        _ backend: TestBackend,
        _ body: @escaping @Sendable (CaravanProcess) async throws -> T
    ) async throws -> T {
        try await withTemporaryDirectory { directory in
            let masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            let arguments = [
                "serve", "--port", "0", "--egress-allow", "127.0.0.1", "--password-hash-cost", "4",
                "--master-key", masterKey,
            ]
            @Sendable func serve(_ extra: [String]) async throws -> T {
                let server = try await CaravanProcess(arguments: arguments + extra)
                do {
                    let result = try await body(server)
                    server.send(signal: SIGTERM)
                    _ = try await server.waitForExit()
                    return result
                } catch {
                    server.send(signal: SIGTERM)
                    _ = try? await server.waitForExit()
                    throw error
                }
            }
            switch backend {
            case .sqlite: return try await serve(["--data", directory])
            case .postgres:
                return try await PostgresTestServer.withFreshDatabase { url in try await serve(["--database", url]) }
            }
        }
    }

    /// Every flow, in an order where each leaves what the next needs (an account, a key, runs to show).
    func runEveryFlow() async throws {
        let recoveryCode = try await signUpAndTurnOnTwoFactor()
        let api = try await createAPIKeyInTheBrowser()
        try await configureModelsAndWorkflows(api)
        try await runsListFollowsARunLive(api)
        let waiting = try await approveFromTheInbox(api)
        try await failedRunIsRetried(api)
        try await agentToolCallIsApprovedAndTraced(api)
        try await editorShowsTheErrorBesideItsLine(api)
        try await revokeAnAPIKey()
        try await usageRenders()
        try await screenshotRunsList(api)
        try await hostileContentStaysText(api)
        try await formFromAnotherOriginIsRefused(api, runID: waiting)
        try await anotherOrganizationsRunIsNotFound(api, recoveryCode: recoveryCode)
    }

    // MARK: Driving pages

    /// Opens the console's `path`.
    func open(_ path: String) async throws {
        try await session.navigate(to: base + path)
    }

    /// The path (and query) of the page shown.
    func path() async throws -> String {
        let url = try await session.currentURL()
        return url.hasPrefix(base) ? String(url.dropFirst(base.count)) : url
    }

    /// Waits until the page shown is `expected` (a path, with its query when it has one).
    func waitForPath(_ expected: String, _ flow: String, timeout: Duration = .seconds(10)) async throws {
        try await session.waitUntil("\(flow): the browser reaches \(expected)", timeout: timeout) {
            try await path() == expected
        }
    }

    /// Runs `body` again (up to five times) when the element it found was replaced before it could use it: a live
    /// page redraws its content when its run changes, which may come between finding an element and using it.
    func onFreshElement<T>(_ body: () async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch let error as WebDriverError
                where attempt < 5
                && (error.error == "stale element reference"
                    || error.message.contains("does not belong to the document"))
            {
                attempt += 1
            }
        }
    }

    /// Empties the field `selector` and types `text` into it.
    func type(_ text: String, into selector: String) async throws {
        try await onFreshElement {
            let field = try await session.find(css: selector)
            try await field.clear()
            try await field.sendKeys(text)
        }
    }

    /// Clicks the element `selector`.
    func click(_ selector: String) async throws {
        try await onFreshElement { try await session.find(css: selector).click() }
    }

    /// The rendered text of the first element `selector`.
    func text(_ selector: String, timeout: Duration = .seconds(5)) async throws -> String {
        try await onFreshElement { try await session.find(css: selector, timeout: timeout).text() }
    }

    /// The page's text as it is rendered (`innerText`: what a person reads, markup escaped or not).
    func pageText() async throws -> String {
        try await session.executeScript("return document.body.innerText").stringValue ?? ""
    }

    /// Marks the window, so that `stillTheSameDocument()` tells a live update from a reload.
    func markDocument() async throws {
        try await session.executeScript("window.__sameDocument = true")
    }

    func stillTheSameDocument() async throws -> Bool {
        try await session.executeScript("return window.__sameDocument === true") == .bool(true)
    }

    /// Waits for the run page's status badge to read `status`; the page updates itself while the run is live.
    func waitForRunStatus(_ status: String, _ flow: String, timeout: Duration = .seconds(15)) async throws {
        try await session.waitUntil("\(flow): the run page shows \(status)", timeout: timeout) {
            try await onFreshElement { try await session.find(css: "#run-status", timeout: .milliseconds(200)).text() }
                == status
        }
    }

    /// What went wrong in the browser since the last call: a script error (an uncaught exception, a rejected
    /// promise), or a Content Security Policy violation, by a page of ours or by markup that got in and tried to
    /// run. Failed loads are left out: the refusals the flows provoke (403, 404, 422) are answered as pages.
    func pageProblems() async throws -> [String] {
        try await session.browserLogs().filter { entry in
            entry.message.contains("Content Security Policy")
                || (entry.level == "SEVERE" && entry.source == "javascript")
        }.map(\.message)
    }

    /// Saves a screenshot of the window as `<CARAVAN_CONSOLE_SCREENSHOTS>/<name>.png`, when that is set: from the
    /// top of the page, or from the element `scrollTo`.
    func screenshot(_ name: String, scrollTo selector: String? = nil) async throws {
        guard let directory = ProcessInfo.processInfo.environment["CARAVAN_CONSOLE_SCREENSHOTS"], !directory.isEmpty
        else { return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let selector {
            let element = try await session.find(css: selector)
            try await session.executeScript("arguments[0].scrollIntoView()", args: [element.reference])
        } else {
            try await session.executeScript("window.scrollTo(0, 0)")
        }
        try await session.saveScreenshot(to: "\(directory)/\(name).png")
    }

    /// The value of the attribute `name` of the first element `selector`.
    func attribute(_ name: String, of selector: String) async throws -> String? {
        try await onFreshElement { try await session.find(css: selector).attribute(name) }
    }
}

/// The API of the server under test, with one credential: for what the flows set up and check outside the browser.
struct ServerAPI: Sendable {
    let base: String
    let bearer: String

    struct Answer: Sendable {
        var status: Int
        var json: JSONValue
    }

    /// Sends `json` (or `yaml`) to `path` and returns the status and the JSON answered (`null` when there is none).
    @discardableResult
    func send(_ method: String, _ path: String, json: JSONValue? = nil, yaml: String? = nil) async throws -> Answer {
        var headers = [("Authorization", "Bearer \(bearer)")]
        var body: String?
        if let yaml {
            headers.append(("Content-Type", "application/yaml"))
            body = yaml
        } else if let json {
            headers.append(("Content-Type", "application/json"))
            body = json.canonicalText
        }
        let answer = try await fetch(base + path, method: method, headers: headers, body: body)
        return Answer(status: answer.status, json: (try? JSONValue(parsing: Array(answer.body.utf8))) ?? .null)
    }

    /// `PUT` a definition, expecting it stored (201 or 200).
    func put(_ path: String, yaml: String? = nil, json: JSONValue? = nil) async throws {
        let answer = try await send("PUT", path, json: json, yaml: yaml)
        #expect(answer.status == 201 || answer.status == 200, "PUT \(path): \(answer.status) \(answer.json)")
    }

    /// Starts a run of the workflow or agent at `path` (`/v1/workflows/NAME/runs`) and returns its id.
    func start(_ path: String, input: JSONValue) async throws -> String {
        let answer = try await send("POST", path, json: ["input": input])
        #expect(answer.status == 201 || answer.status == 202, "POST \(path): \(answer.status) \(answer.json)")
        return try #require(answer.json["id"]?.stringValue, "POST \(path) answered no run id: \(answer.json)")
    }

    /// The run `id`'s status.
    func status(_ id: String) async throws -> String {
        try await send("GET", "/v1/runs/\(id)").json["status"]?.stringValue ?? ""
    }

    /// The status of step `step` of run `id` (empty before the step is planned).
    func stepStatus(_ id: String, _ step: String) async throws -> String {
        let steps = try await send("GET", "/v1/runs/\(id)").json["steps"]?.arrayValue ?? []
        return steps.first { $0["id"]?.stringValue == step }?["status"]?.stringValue ?? ""
    }
}
