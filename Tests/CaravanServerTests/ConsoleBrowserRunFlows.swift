import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

/// Runs as a person follows them: the live list, the approvals inbox, a failed run retried, an agent's tool call
/// approved and its trace, keys revoked and usage.
extension ConsoleBrowser {
    /// The badge of run `id` in the runs list.
    func listedStatus(_ id: String) async throws -> String {
        try await onFreshElement {
            try await session.find(css: "tr[data-run-id='\(id)'] [data-field=status]", timeout: .milliseconds(200))
                .text()
        }
    }

    /// With the runs list open, a run started through the API appears and changes status without a reload.
    func runsListFollowsARunLive(_ api: ServerAPI) async throws {
        let flow = "live runs list"
        try await open("/runs")
        #expect(try await attribute("data-live", of: "body") == "runs", "\(flow): the list follows the runs")
        try await markDocument()
        let id = try await api.start("/v1/workflows/release-approval/runs", input: ["version": "v2.14.0"])
        try await session.waitUntil("\(flow): the new run's row appears", timeout: .seconds(10)) {
            try await !listedStatus(id).isEmpty
        }
        // The run waits first on its timer, then on the person; the approval goes once the approval step waits.
        try await session.waitUntil("\(flow): the release asks for approval", timeout: .seconds(10)) {
            try await api.stepStatus(id, "sign_off") == "waiting"
        }
        try await session.waitUntil("\(flow): the row's badge shows waiting", timeout: .seconds(10)) {
            try await listedStatus(id) == "waiting"
        }
        let approved = try await api.send("POST", "/v1/runs/\(id)/signals/approve", json: ["approved": true])
        #expect(approved.status == 202, "\(flow): the approval is accepted: \(approved.json)")
        try await session.waitUntil("\(flow): the row's badge turns to succeeded", timeout: .seconds(10)) {
            try await listedStatus(id) == "succeeded"
        }
        #expect(try await stillTheSameDocument(), "\(flow): the list changed in place, without a reload")
        #expect(try await attribute("hidden", of: "table.runs") == nil, "\(flow): the table shows once it has a row")
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")
    }

    /// Two releases wait; one is approved from `/approvals`, succeeds, and its page shows the graph and the
    /// timeline. Returns the one still waiting.
    func approveFromTheInbox(_ api: ServerAPI) async throws -> String {
        let flow = "approvals inbox"
        let approved = try await api.start("/v1/workflows/release-approval/runs", input: ["version": "v2.15.0"])
        let waiting = try await api.start("/v1/workflows/release-approval/runs", input: ["version": "v2.15.1"])
        try await session.waitUntil("\(flow): both runs wait for approval", timeout: .seconds(10)) {
            let (first, second) = (
                try await api.stepStatus(approved, "sign_off"), try await api.stepStatus(waiting, "sign_off")
            )
            return first == "waiting" && second == "waiting"
        }
        try await open("/approvals")
        let approval = ".approval:has(a[href='/runs/\(approved)'])"
        #expect(try await session.findAll(css: ".approval").count == 2, "\(flow): the inbox lists both runs")
        #expect(
            try await text(approval).contains("Ship v2.15.0 to production?"),
            "\(flow): the inbox shows the step's message"
        )
        try await screenshot("approvals")
        try await click("\(approval) button[value=approve]")
        try await session.waitUntil("\(flow): the approved run succeeds", timeout: .seconds(10)) {
            try await api.status(approved) == "succeeded"
        }
        // The inbox follows runs live: the page the approval returned to may have been drawn before the engine took
        // the signal, and the approved run leaves it without a reload.
        try await session.executeScript("window.__inboxNotReloaded = true")
        try await session.waitUntil("\(flow): the approved run leaves the inbox", timeout: .seconds(10)) {
            try await session.findAll(css: approval).isEmpty
        }
        #expect(
            try await session.executeScript("return window.__inboxNotReloaded === true") == .bool(true),
            "\(flow): the inbox changed without a reload"
        )
        #expect(
            try await session.findAll(css: ".approval:has(a[href='/runs/\(waiting)'])").count == 1,
            "\(flow): the other run still waits in the inbox"
        )
        #expect(try await api.status(waiting) == "waiting", "\(flow): only the approved run went on")

        try await open("/runs/\(approved)")
        #expect(try await text("#run-status") == "succeeded", "\(flow): the run page says succeeded")
        let nodes = try await session.findAll(css: "svg.graph g.node.status-succeeded")
        #expect(nodes.count == 3, "\(flow): the graph shows the three steps succeeded (\(nodes.count))")
        #expect(try await text("svg.graph").contains("sign_off"), "\(flow): the graph names the approval step")
        let bars = try await session.findAll(css: "svg.timeline g.bar")
        #expect(bars.count == 3, "\(flow): the timeline has a bar per step (\(bars.count))")
        #expect(
            try await text("#step-sign_off").contains("succeeded"),
            "\(flow): the approval step's details say succeeded"
        )
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")
        return waiting
    }

    /// An order whose carrier call is refused once (409): the run page shows the error; "Retry from the failed
    /// steps" runs the failed step again, and the page, following the run, ends on succeeded.
    func failedRunIsRetried(_ api: ServerAPI) async throws {
        let flow = "failed run and retry"
        let id = try await api.start(
            "/v1/workflows/order-fulfilment/runs",
            input: ["order": "A-1042", "email": "ana@example.com"]
        )
        try await session.waitUntil("\(flow): the run fails", timeout: .seconds(10)) {
            try await api.status(id) == "failed"
        }
        try await open("/runs/\(id)")
        #expect(try await text("#run-status") == "failed", "\(flow): the run page says failed")
        let error = try await text(".problem[role=alert]")
        #expect(error.contains("http_409") && error.contains("book"), "\(flow): the page shows the error: \(error)")
        #expect(
            try await session.findAll(css: "svg.graph g.node.status-failed").count == 1,
            "\(flow): the graph marks the failed step"
        )
        // The retry answers with the same path: wait for the new document, not the one the button was on.
        try await markDocument()
        try await click("form[action='/runs/\(id)/retry'] button")
        try await session.waitUntil("\(flow): the retry answers with a new page", timeout: .seconds(10)) {
            try await !stillTheSameDocument()
        }
        try await waitForPath("/runs/\(id)", flow)
        #expect(
            try await attribute("data-live", of: "body") == "run:\(id)",
            "\(flow): the page after the retry follows the running run"
        )
        try await markDocument()
        try await waitForRunStatus("succeeded", flow)
        #expect(try await stillTheSameDocument(), "\(flow): the page reached succeeded live, without a reload")
        #expect(try await session.findAll(css: ".problem[role=alert]").isEmpty, "\(flow): the error is gone")
        let done = try await session.findAll(css: "svg.graph g.node.status-succeeded")
        #expect(done.count == 5, "\(flow): all five steps succeeded (\(done.count))")
        #expect(
            try await text("#step-notify").contains("Order A-1042 ships today"),
            "\(flow): the last step's output shows"
        )
        // Every bar starts right of the axis's origin, the steps kept from before the retry too.
        let outside = try await session.executeScript(
            """
            var svg = document.querySelector("svg.timeline");
            var zero = Array.from(svg.querySelectorAll("text.sub")).find(function (t) { return t.textContent === "0"; });
            var origin = Number(zero.getAttribute("x"));
            return Array.from(svg.querySelectorAll("g.bar rect"))
              .filter(function (r) { return Number(r.getAttribute("x")) < origin; }).length;
            """
        )
        #expect(
            try await session.findAll(css: "svg.timeline g.bar").count == 5 && outside == .int(0),
            "\(flow): the timeline draws all five steps on its axis (\(outside) left of it)"
        )
        #expect(http.calls("/fail/1/409") == 2, "\(flow): the carrier was called once more, not the others")
        #expect(http.calls("/count/reserve") == 1, "\(flow): the step that succeeded was not repeated")
        try await screenshot("run")
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")
    }

    /// An agent asks to call a tool that needs approval: its run page shows the exact arguments; Approve lets the
    /// call go, and the page ends with the trace of both turns, the call and its result.
    func agentToolCallIsApprovedAndTraced(_ api: ServerAPI) async throws {
        let flow = "agent approval and trace"
        let id = try await api.start(
            "/v1/agents/refund-assistant/runs",
            input: "The kettle from order A-1042 arrived broken; the customer asks for the $25.50 back."
        )
        try await open("/runs/\(id)")
        try await session.waitUntil("\(flow): the tool call waits for a person on the run page", timeout: .seconds(15))
        {
            try await !session.findAll(css: ".pending .approval").isEmpty
        }
        let pending = try await text(".pending .approval")
        #expect(pending.contains("issue_refund"), "\(flow): the approval names the tool: \(pending)")
        let arguments = try await text(".pending .approval pre.json")
        #expect(
            arguments.contains(#""order": "A-1042""#) && arguments.contains(#""amount": 25.5"#),
            "\(flow): the approval shows the exact arguments: \(arguments)"
        )
        #expect(http.calls("/count/refund") == 0, "\(flow): nothing is called before the approval")
        try await click(".pending button[value=approve]")
        try await waitForPath("/runs/\(id)", flow)
        try await waitForRunStatus("succeeded", flow)
        let turns = try await session.findAll(css: ".trace .turns > li.turn")
        #expect(turns.count == 2, "\(flow): the trace has both model turns (\(turns.count))")
        let trace = try await text(".trace")
        #expect(trace.contains("Turn 1") && trace.contains("Turn 2"), "\(flow): the turns are numbered")
        #expect(trace.contains("gpt-4o-mini"), "\(flow): each turn names its model")
        #expect(try await text(".trace .call code") == "issue_refund", "\(flow): the trace shows the tool call")
        #expect(try await text(".trace .call .badge") == "approved", "\(flow): marked approved")
        #expect(
            try await text(".trace .call pre.json:last-of-type").contains("/count/refund"),
            "\(flow): the trace shows the tool's result"
        )
        #expect(
            trace.contains("Refunded $25.50 for order A-1042"),
            "\(flow): the trace shows the model's final answer"
        )
        #expect(http.calls("/count/refund") == 1, "\(flow): the tool ran once")
        try await screenshot("agent-trace", scrollTo: "#trace-title")
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")
    }

    /// A second key is created, works, and is revoked from the list; the API refuses it from then on.
    func revokeAnAPIKey() async throws {
        let flow = "API key revoked"
        try await open("/settings/api-keys")
        try await type("nightly report", into: "#key-name")
        try await click("#key-role option[value=viewer]")
        try await click("form[action='/settings/api-keys'] button[type=submit]")
        let key = try await text("#new-key")
        let api = ServerAPI(base: base, bearer: key)
        #expect(try await api.send("GET", "/v1/runs").status == 200, "\(flow): the new key works")
        try await open("/settings/api-keys")
        #expect(try await session.findAll(css: "table tbody tr").count == 2, "\(flow): the list shows both keys")
        try await screenshot("settings-api-keys")
        let row = "tbody tr:has(button.danger)"
        let rows = try await session.findAll(css: row)
        var revokeRow: WebDriverSession.Element?
        for candidate in rows where try await candidate.text().contains("nightly report") { revokeRow = candidate }
        let target = try #require(revokeRow, "\(flow): the key's row is listed")
        let form = try await session.executeScript(
            "return arguments[0].querySelector('form').getAttribute('action')",
            args: [target.reference]
        )
        let action = try #require(form.stringValue, "\(flow): the row has a revoke form")
        try await click("tbody tr:has(form[action='\(action)']) summary")
        try await click("form[action='\(action)'] button")
        try await waitForPath("/settings/api-keys?done=key-revoked", flow)
        let listed = try await text("table tbody")
        #expect(!listed.contains("nightly report"), "\(flow): the revoked key left the list")
        #expect(listed.contains("deploy pipeline"), "\(flow): the other key stays")
        #expect(try await api.send("GET", "/v1/runs").status == 401, "\(flow): the API refuses the revoked key")
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")
    }

    /// The usage page draws the agent's model calls.
    func usageRenders() async throws {
        let flow = "usage"
        try await open("/usage")
        #expect(
            try await session.findAll(css: "svg.usage-chart").count == 3,
            "\(flow): the day, model and agent charts"
        )
        let page = try await pageText()
        #expect(page.contains("openai/gpt-4o-mini") || page.contains("gpt-4o-mini"), "\(flow): the model is listed")
        #expect(page.contains("refund-assistant"), "\(flow): the agent is listed")
        try await screenshot("usage")
        #expect(try await pageProblems() == [], "\(flow): no script error nor content security policy violation")
    }

    /// The runs list, for the pictures, once the flows have made a few runs and one more order has failed.
    func screenshotRunsList(_ api: ServerAPI) async throws {
        let failed = try await api.start(
            "/v1/workflows/order-fulfilment/runs",
            input: ["order": "A-1043", "email": "li@example.com"]
        )
        try await session.waitUntil("runs list: the second order fails", timeout: .seconds(10)) {
            try await api.status(failed) == "failed"
        }
        try await open("/runs")
        let rows = try await session.findAll(css: "table.runs tbody tr")
        #expect(rows.count >= 6, "runs list: every run is listed (\(rows.count))")
        #expect(try await listedStatus(failed) == "failed", "runs list: the failed order is marked failed")
        let error = try await text("tr[data-run-id='\(failed)'] td.clip")
        #expect(error.contains("409"), "runs list: the failed order's row shows its error: \(error)")
        try await screenshot("runs")
        #expect(try await pageProblems() == [], "runs list: no script error nor content security policy violation")
    }
}
