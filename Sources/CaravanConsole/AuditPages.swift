import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// The audit log for admins: entries newest first, filtered by action, a page at a time, and whether the hash
/// chain still verifies (or the first entry where it breaks).
struct AuditPages: Sendable {
    let console: Console

    static let pageSize = 50

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/audit") { request, context in
            await console.page(request, context) { visit in try await auditPage(visit, request: request) }
        }
    }

    private func auditPage(_ visit: ConsoleVisit, request: Request) async throws -> ConsoleAnswer {
        let parameters = request.uri.queryParameters
        let action = parameters.get("action").map { String($0) }?.trimmingCharacters(in: .whitespaces) ?? ""
        let cursor = parameters.get("cursor").map { String($0) } ?? ""
        var query = ["limit=\(Self.pageSize)"]
        if !action.isEmpty { query.append("action=\(ConsoleMarkup.query(action))") }
        if !cursor.isEmpty { query.append("cursor=\(ConsoleMarkup.query(cursor))") }
        let answer = try await console.api.call(
            .get,
            "/v1/audit?" + query.joined(separator: "&"),
            as: visit.credentials
        )
        // A filter or cursor the API cannot read is shown beside the filters; anything else ends the page.
        if let problem = answer.problem, problem.status != 422 { throw problem }
        let entries = answer.json["items"]?.arrayValue ?? []
        let next = answer.json["next_cursor"]?.stringValue
        let filter = action.isEmpty ? "" : "action=\(ConsoleMarkup.query(action))&"
        var data: [String: Any] = [
            "action": action,
            "entries": entries.map(Self.row),
            "empty": entries.isEmpty,
            "firstPage": cursor.isEmpty,
            "filtered": !action.isEmpty,
            "newest": "/audit" + (action.isEmpty ? "" : "?action=\(ConsoleMarkup.query(action))"),
            "next": next.map { "/audit?\(filter)cursor=\(ConsoleMarkup.query($0))" } ?? false,
            "verification": false,
            "problem": false,
        ]
        data["problem"] = ConsoleViews.problem(answer.problem)
        // The chain is checked whole, which reads every entry: only when asked, never on every visit.
        if parameters.get("verify") == "1" {
            let verify = try await console.read("/v1/audit/verify", visit)
            let checked = Int64(verify["checked"]?.numberValue ?? 0)
            let broken = verify["first_break"]
            data["verification"] =
                [
                    "intact": verify["intact"] == .bool(true),
                    "checked": SettingsKit.grouped(checked),
                    "plural": checked != 1,
                    "brokenSeq": broken?["seq"]?.numberValue.map { String(Int64($0)) } ?? false,
                    "reason": broken?["reason"]?.stringValue ?? "",
                ] as [String: Any]
        }
        return console.views.page(
            "audit",
            title: "Audit log",
            visit: visit,
            data,
            status: answer.problem?.status ?? 200
        )
    }

    /// An entry as one row of the table.
    static func row(_ entry: JSONValue) -> [String: Any] {
        let actor = entry["actor"]
        return [
            "seq": entry["seq"]?.numberValue.map { String(Int64($0)) } ?? entry["id"]?.stringValue ?? "",
            "at": ConsoleTime.element(entry["at"]),
            "actor": [actor?["type"]?.stringValue, actor?["id"]?.stringValue].compactMap { $0 }.joined(separator: ":"),
            "action": entry["action"]?.stringValue ?? "",
            "target": entry["target"]?.stringValue ?? "",
            "outcome": entry["outcome"]?.stringValue ?? "",
            "failed": entry["outcome"]?.stringValue.map { $0 != "success" } ?? false,
            "source": entry["source"]?.stringValue ?? "",
            "requestID": entry["request_id"]?.stringValue ?? false,
            "details": ConsoleJSON.summary(entry["details"], length: 200),
        ]
    }

    static let templates: [String: String] = [
        "audit": """
        <h1>Audit log</h1>
        {{#verification}}
        {{#intact}}<p class="flash" role="status"><strong>Verified</strong>: the chain of {{checked}} entr{{#plural}}ies{{/plural}}{{^plural}}y{{/plural}} is intact and matches its signed head.</p>{{/intact}}
        {{^intact}}<div class="problem" role="alert"><strong>The chain does not verify.</strong> {{#brokenSeq}}The first altered entry is #{{brokenSeq}}: {{reason}}.{{/brokenSeq}}{{^brokenSeq}}{{reason}}{{/brokenSeq}} Entries from there on cannot be trusted.</div>{{/intact}}
        {{/verification}}
        {{^verification}}<form method="get" action="/audit" class="inline"><input type="hidden" name="verify" value="1"><button type="submit">Verify the chain</button> <span class="muted">reads every entry of the organization's log</span></form>{{/verification}}
        <form method="get" action="/audit" class="filters" aria-label="Filter">
        <label for="audit-action">Action</label>
        <input id="audit-action" name="action" value="{{action}}" placeholder="e.g. createAPIKey" maxlength="200">
        <button type="submit">Filter</button>
        {{#filtered}}<a href="/audit">Every action</a>{{/filtered}}
        </form>
        {{> problem}}
        {{#empty}}<div class="empty"><p><strong>No entries{{#filtered}} of this action{{/filtered}}{{^firstPage}} further back{{/firstPage}}.</strong> {{#filtered}}Check the action's name (an operation such as <code>createAPIKey</code> or <code>auth.login_failed</code>).{{/filtered}}{{^filtered}}Every change made through the API or this console is recorded here.{{/filtered}}</p></div>{{/empty}}
        {{^empty}}
        <div class="scroll"><table>
        <caption class="visually-hidden">Audit entries, newest first</caption>
        <thead><tr><th scope="col">#</th><th scope="col">At</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Outcome</th><th scope="col">Source</th><th scope="col">Details</th></tr></thead>
        <tbody>{{#entries}}<tr><td>{{seq}}</td><td>{{{at}}}</td><td><code>{{actor}}</code></td><td>{{action}}</td><td><code>{{target}}</code></td>
        <td>{{#failed}}<span class="status-failed">{{outcome}}</span>{{/failed}}{{^failed}}{{outcome}}{{/failed}}</td>
        <td>{{source}}{{#requestID}}<br><span class="muted">{{requestID}}</span>{{/requestID}}</td><td class="clip">{{details}}</td></tr>{{/entries}}</tbody>
        </table></div>
        {{/empty}}
        <p class="actions">{{^firstPage}}<a href="{{newest}}">Newest entries</a>{{/firstPage}}{{#next}}<a href="{{next}}">Older entries</a>{{/next}}</p>
        """
    ]
}
