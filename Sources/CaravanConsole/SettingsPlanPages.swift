import CaravanCore
import CaravanWorkflow
import Foundation
import HTTPTypes
import Hummingbird

/// The settings sections about what the organization plans for: the monthly model budget, and the workflows that
/// run on a schedule with the next times each fires.
extension SettingsPages {
    func registerPlans(in router: Router<ConsoleRequestContext>) {
        router.get("/settings/budget") { request, context in
            await console.page(request, context) { visit in try await budgetPage(visit, request: request) }
        }
        router.post("/settings/budget") { request, context in
            await console.action(request, context) { visit, form in try await saveBudget(visit, form) }
        }
        router.get("/settings/schedules") { request, context in
            await console.page(request, context) { visit in try await schedulesPage(visit) }
        }
    }

    // MARK: Budget

    private func budgetPage(
        _ visit: ConsoleVisit,
        request: Request?,
        form: [String: Any]? = nil,
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let budget = try await console.read("/v1/budget", visit)
        let cost = budget["cost_usd"]?.numberValue
        let tokens = budget["tokens"]?.numberValue.map { Int64($0) }
        let spentCost = budget["spent_cost_usd"]?.numberValue ?? 0
        let spentTokens = Int64(budget["spent_tokens"]?.numberValue ?? 0)
        var data = frame(visit, current: "/settings/budget", request: request)
        data["cost"] = cost.map(SettingsKit.dollars) ?? false
        data["tokens"] = tokens.map(SettingsKit.grouped) ?? false
        data["spentCost"] = SettingsKit.dollars(spentCost)
        data["spentTokens"] = SettingsKit.grouped(spentTokens)
        data["costShare"] = cost.map { $0 > 0 ? Self.percent(spentCost / $0) : "" } ?? false
        data["tokenShare"] = tokens.map { $0 > 0 ? Self.percent(Double(spentTokens) / Double($0)) : "" } ?? false
        data["costMeter"] = cost.map { ["value": min(spentCost, $0), "max": $0] } ?? false
        data["tokenMeter"] = tokens.map { ["value": min(spentTokens, $0), "max": $0] } ?? false
        data["canManage"] = visit.can("admin")
        data["form"] =
            form ?? [
                "cost": cost.map { String(format: "%.2f", $0) } ?? "", "tokens": tokens.map { String($0) } ?? "",
            ]
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        return console.views.page(
            "settings-budget",
            title: "Budget",
            visit: visit,
            data,
            status: problem?.status ?? 200
        )
    }

    static func percent(_ share: Double) -> String { String(format: "%.0f%%", share * 100) }

    /// `PUT /v1/budget`: an empty field is no limit.
    private func saveBudget(_ visit: ConsoleVisit, _ form: ConsoleForm) async throws -> ConsoleAnswer {
        let values: [String: Any] = ["cost": form["cost_usd"] ?? "", "tokens": form["tokens"] ?? ""]
        var body: [String: JSONValue] = ["cost_usd": .null, "tokens": .null]
        if let text = form.trimmed("cost_usd") {
            guard let number = Double(text.replacingOccurrences(of: "$", with: "")), number.isFinite else {
                return try await budgetPage(
                    visit,
                    request: nil,
                    form: values,
                    problem: SettingsKit.invalid("/cost_usd", "the monthly cost is a number of US dollars, or empty")
                )
            }
            body["cost_usd"] = .double(number)
        }
        if let text = form.trimmed("tokens") {
            guard let number = Int64(text.filter { !$0.isWhitespace && $0 != "," && $0 != "_" }) else {
                return try await budgetPage(
                    visit,
                    request: nil,
                    form: values,
                    problem: SettingsKit.invalid("/tokens", "the monthly tokens are a whole number, or empty")
                )
            }
            body["tokens"] = .int(number)
        }
        switch try await console.change(.put, "/v1/budget", body: .object(body), visit) {
        case .success: return .redirect("/settings/budget?done=budget-saved")
        case .failure(let problem): return try await budgetPage(visit, request: nil, form: values, problem: problem)
        }
    }

    // MARK: Schedules

    /// How many coming ticks of each schedule the page shows.
    static let shownTicks = 3

    private func schedulesPage(_ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let workflows = try await console.readAll("/v1/workflows", visit)
        let now = Date(timeIntervalSince1970: Double(WallClock.system.nowMilliseconds()) / 1000)
        let schedules = workflows.compactMap { workflow -> [String: Any]? in
            guard workflow["archived"] != .bool(true), let schedule = workflow["definition"]?["schedule"],
                let cron = schedule["cron"]?.stringValue
            else { return nil }
            let name = workflow["name"]?.stringValue ?? ""
            let zoneName = schedule["timezone"]?.stringValue ?? "UTC"
            return [
                "name": name,
                "href": "/workflows/\(ConsoleMarkup.segment(name))",
                "cron": cron,
                "timezone": zoneName,
                "catchUp": schedule["catch_up"] != .bool(false),
                "ticks": Self.ticks(cron: cron, zone: zoneName, after: now, count: Self.shownTicks),
            ]
        }
        var data = frame(visit, current: "/settings/schedules")
        data["schedules"] = schedules
        data["empty"] = schedules.isEmpty
        return console.views.page("settings-schedules", title: "Schedules", visit: visit, data)
    }

    /// The next `count` times `cron` fires after `date` in the time zone `zone`: each as a `<time>` (UTC, or the
    /// browser's zone with the script) and as the wall-clock time of the schedule's zone. Empty when the
    /// expression or zone cannot be read (the API would not have stored it) or never fires.
    static func ticks(cron: String, zone: String, after date: Date, count: Int) -> [[String: Any]] {
        guard let expression = try? CronExpression(parsing: cron), let timeZone = TimeZone(identifier: zone) else {
            return []
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "EEE yyyy-MM-dd HH:mm"
        var ticks: [[String: Any]] = []
        var last = date
        while ticks.count < count, let next = expression.next(after: last, in: timeZone) {
            let milliseconds = Int64((next.timeIntervalSince1970 * 1000).rounded())
            ticks.append([
                "at": ConsoleTime.element(.string(Clock.rfc3339(milliseconds))),
                "local": formatter.string(from: next) + " " + zone,
            ])
            last = next
        }
        return ticks
    }

    // MARK: Templates

    static let planTemplates: [String: String] = [
        "settings-budget": """
        {{> settings-nav}}
        <h2>Monthly model budget</h2>
        <p class="muted">Model calls past the budget fail with <code>budget_exceeded</code> until the month ends (UTC).</p>
        <dl class="facts">
        <dt>Cost this month</dt><dd>{{spentCost}}{{#cost}} of {{cost}}{{/cost}}{{^cost}} <span class="muted">(no limit)</span>{{/cost}}{{#costMeter}} <meter value="{{value}}" min="0" max="{{max}}">{{costShare}}</meter> {{costShare}}{{/costMeter}}</dd>
        <dt>Tokens this month</dt><dd>{{spentTokens}}{{#tokens}} of {{tokens}}{{/tokens}}{{^tokens}} <span class="muted">(no limit)</span>{{/tokens}}{{#tokenMeter}} <meter value="{{value}}" min="0" max="{{max}}">{{tokenShare}}</meter> {{tokenShare}}{{/tokenMeter}}</dd>
        </dl>
        <p><a href="/usage">See usage by day, model and agent</a></p>
        {{#canManage}}
        {{#form}}
        <h2>Set the budget</h2>
        {{> problem}}
        <form method="post" action="/settings/budget" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="budget-cost">Monthly cost in US dollars <span class="muted">(empty: no limit)</span></label>
        <input id="budget-cost" name="cost_usd" inputmode="decimal" value="{{cost}}">
        <label for="budget-tokens">Monthly tokens <span class="muted">(empty: no limit)</span></label>
        <input id="budget-tokens" name="tokens" inputmode="numeric" value="{{tokens}}">
        <button type="submit" class="primary">Save budget</button>
        </form>
        {{/form}}
        {{/canManage}}
        """,
        "settings-schedules": """
        {{> settings-nav}}
        <h2>Schedules</h2>
        <p class="muted">Workflows with a <code>schedule</code> in their definition start on their own. Times are shown in UTC, or your browser's time zone, and in the schedule's zone.</p>
        {{#empty}}<div class="empty"><p><strong>No workflow runs on a schedule.</strong> Add <code>schedule: {cron: "0 9 * * 1-5", timezone: Europe/Paris}</code> to a workflow's definition to start it on its own.</p></div>{{/empty}}
        {{^empty}}
        <div class="scroll"><table>
        <caption class="visually-hidden">Scheduled workflows</caption>
        <thead><tr><th scope="col">Workflow</th><th scope="col">Cron</th><th scope="col">Time zone</th><th scope="col">Missed ticks</th><th scope="col">Next</th></tr></thead>
        <tbody>{{#schedules}}<tr><td><a href="{{href}}">{{name}}</a></td><td><code>{{cron}}</code></td><td>{{timezone}}</td><td>{{#catchUp}}caught up{{/catchUp}}{{^catchUp}}skipped{{/catchUp}}</td>
        <td><ol>{{#ticks}}<li>{{{at}}} <span class="muted">({{local}})</span></li>{{/ticks}}</ol>{{^ticks}}<span class="muted">never</span>{{/ticks}}</td></tr>{{/schedules}}</tbody>
        </table></div>
        {{/empty}}
        """,
    ]
}
