import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// An agent run as a person follows it in the console: the tool call waiting for approval with its exact
/// arguments, approved from the inbox's form, then the trace of both model turns with the call and its result.
enum AgentConsoleChecks {
    static func traceAndApproval(_ world: AgentWorld) async throws {
        try await world.putCarefulAgent { _ in "<script>alert('paid')</script> done" }
        let anonymous = try #require((world.client as? AuthenticatedClient)?.anonymous)
        let browser = ConsoleTestBrowser(anonymous)
        let signedIn = try await browser.signIn(email: "owner@example.com", password: AuthenticatedClient.ownerPassword)
        #expect(signedIn.path == "/runs")

        let thread = try await world.client.send(.post, "/v1/threads", json: "{}")
        let threadID = try #require(thread.json["id"]?.stringValue)
        let started = try await world.client.send(
            .post,
            "/v1/agents/careful/runs",
            json: #"{"input": "pay", "thread": "\#(threadID)"}"#
        )
        let runID = try #require(started.json["id"]?.stringValue)
        for _ in 0..<400 {
            if try await world.events(runID).contains(where: { $0["type"] == "tool.approval_requested" }) { break }
            try await Task.sleep(for: .milliseconds(25))
        }

        let inbox = try await browser.get("/approvals")
        #expect(inbox.html.contains(runID))
        #expect(inbox.html.contains("The agent wants to call <code>pay</code>"))
        #expect(inbox.html.contains("&quot;amount&quot;: 10"))
        let callID = try #require(Self.hidden("call_id", in: inbox.html))
        let digest = try #require(Self.hidden("arguments_digest", in: inbox.html))
        #expect(world.http.calls("/count/pay") == 0)

        let approved = try await browser.post(
            "/runs/\(runID)/approve",
            [("decision", "approve"), ("call_id", callID), ("arguments_digest", digest), ("back", "/approvals")]
        )
        #expect(approved.path == "/approvals")
        var status = ""
        for _ in 0..<400 where status != "succeeded" && status != "failed" {
            try await Task.sleep(for: .milliseconds(25))
            status = try await world.client.send(.get, "/v1/runs/\(runID)").json["status"]?.stringValue ?? ""
        }
        #expect(status == "succeeded")
        #expect(world.http.calls("/count/pay") == 1)

        let page = try await browser.get("/runs/\(runID)")
        #expect(page.html.contains("Agent trace"))
        #expect(page.html.contains("Turn 1"))
        #expect(page.html.contains("Turn 2"))
        #expect(page.html.contains("Tool call</strong> <code>pay</code>"))
        #expect(page.html.contains("approval-approved"))
        #expect(page.html.contains("&lt;script&gt;alert(&#39;paid&#39;)&lt;/script&gt; done"))
        #expect(!page.html.contains("<script>alert"))
        #expect(!page.html.contains("Waiting for a person"))
        #expect(page.html.contains("href=\"/agents/careful?thread=\(threadID)\""))
    }

    /// The value of the first hidden field `name` in a page.
    static func hidden(_ name: String, in html: String) -> String? {
        let marker = "name=\"\(name)\" value=\""
        guard let start = html.range(of: marker) else { return nil }
        let rest = html[start.upperBound...]
        return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
    }
}
