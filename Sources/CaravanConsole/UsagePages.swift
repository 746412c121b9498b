import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Model usage: tokens and cost by day, by model and by agent over a range of days (the last 30 by default), each
/// as a bar chart drawn on the server and the table of the same numbers. Also registers the audit log's page.
struct UsagePages: Sendable {
    let console: Console

    /// The default range, in days up to and including today.
    static let defaultDays = 30
    /// The longest range the day chart draws.
    static let maxDays = 366
    static let dayMilliseconds: Int64 = 86_400_000

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/usage") { request, context in
            await console.page(request, context) { visit in try await usagePage(visit, request: request) }
        }
        AuditPages(console: console).register(in: router)
    }

    /// The range of a request: `?from=` and `?to=` as dates (`to` included), else the last 30 days; with the
    /// problem when what was asked for cannot be read.
    static func range(_ request: Request, now: Int64) -> (from: Int64, to: Int64, problem: ConsoleProblem?) {
        let today = now - now % dayMilliseconds
        let defaults = (from: today - Int64(defaultDays - 1) * dayMilliseconds, to: today + dayMilliseconds)
        func day(_ name: String) -> Int64?? {
            guard let text = request.uri.queryParameters.get(name).map({ String($0) }), !text.isEmpty else {
                return .some(nil)
            }
            guard text.count == 10, let value = Clock.parseRFC3339(text + "T00:00:00Z") else { return nil }
            return .some(value)
        }
        guard let from = day("from"), let to = day("to") else {
            return (
                defaults.from, defaults.to,
                SettingsKit.invalid("/from", "the dates are days such as 2030-01-31")
            )
        }
        let start = from ?? (to.map { $0 - Int64(defaultDays - 1) * dayMilliseconds } ?? defaults.from)
        let end = to.map { $0 + dayMilliseconds } ?? (from.map { _ in today + dayMilliseconds } ?? defaults.to)
        guard end > start else {
            return (defaults.from, defaults.to, SettingsKit.invalid("/to", "the last day comes after the first"))
        }
        guard (end - start) / dayMilliseconds <= Int64(maxDays) else {
            return (defaults.from, defaults.to, SettingsKit.invalid("/from", "choose at most \(maxDays) days"))
        }
        return (start, end, nil)
    }

    private func usagePage(_ visit: ConsoleVisit, request: Request) async throws -> ConsoleAnswer {
        let (from, to, problem) = Self.range(request, now: WallClock.system.nowMilliseconds())
        let window = "from=\(ConsoleMarkup.query(Clock.rfc3339(from)))&to=\(ConsoleMarkup.query(Clock.rfc3339(to)))"
        var groups: [String: [UsageChart.Row]] = [:]
        for grouping in ["day", "model", "agent"] {
            let answer = try await console.read("/v1/usage?group_by=\(grouping)&\(window)", visit)
            groups[grouping] = (answer["items"]?.arrayValue ?? []).map(UsageChart.Row.init)
        }
        // Every day of the range, so that a day without calls shows as one.
        let byDay = Dictionary((groups["day"] ?? []).map { ($0.label, $0) }, uniquingKeysWith: { first, _ in first })
        let days = stride(from: from, to: to, by: Int(Self.dayMilliseconds)).map { start -> UsageChart.Row in
            let label = String(Clock.rfc3339(start).prefix(10))
            return byDay[label] ?? UsageChart.Row(label: label)
        }
        let charts = [
            UsageChart(id: "usage-day", heading: "By day", keyName: "Day", rows: days, vertical: true),
            UsageChart(id: "usage-model", heading: "By model", keyName: "Model", rows: groups["model"] ?? []),
            UsageChart(id: "usage-agent", heading: "By agent", keyName: "Agent", rows: groups["agent"] ?? []),
        ]
        let all = groups["model"] ?? []
        let empty = all.isEmpty
        var data: [String: Any] = [
            "from": String(Clock.rfc3339(from).prefix(10)),
            "to": String(Clock.rfc3339(to - Self.dayMilliseconds).prefix(10)),
            "empty": empty,
            "charts": empty ? [] : charts.map { $0.view() },
            "requests": SettingsKit.grouped(all.reduce(0) { $0 + $1.requests }),
            "tokens": SettingsKit.grouped(all.reduce(0) { $0 + $1.inputTokens + $1.outputTokens }),
            "cost": SettingsKit.dollars(all.reduce(0) { $0 + $1.cost }),
            "problem": false,
        ]
        // The request log's latest calls, for those who may read it.
        if visit.can("admin") {
            let log = try await console.read("/v1/model-requests?limit=20", visit)
            let items = log["items"]?.arrayValue ?? []
            data["hasRequestLog"] = !items.isEmpty
            data["requestLog"] = items.map { item -> [String: Any] in
                [
                    "at": ConsoleTime.element(item["at"]),
                    "model": item["model"]?.stringValue ?? "",
                    "who": item["key_id"]?.stringValue ?? item["agent"]?.stringValue ?? item["run_id"]?.stringValue
                        ?? "",
                    "status": Int(item["status"]?.numberValue ?? 0),
                    "outcome": item["outcome"]?.stringValue ?? "",
                    "tokens": SettingsKit.grouped(
                        Int64((item["input_tokens"]?.numberValue ?? 0) + (item["output_tokens"]?.numberValue ?? 0))
                    ),
                    "cost": SettingsKit.dollars(item["cost_usd"]?.numberValue ?? 0),
                    "latency": SettingsKit.grouped(Int64(item["latency_ms"]?.numberValue ?? 0)),
                ]
            }
        }
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        return console.views.page("usage", title: "Usage", visit: visit, data, status: problem?.status ?? 200)
    }

    static let templates: [String: String] =
        [
            "usage": """
            <h1>Usage</h1>
            <form method="get" action="/usage" class="filters" aria-label="Range">
            <label for="usage-from">From</label><input id="usage-from" name="from" type="date" value="{{from}}">
            <label for="usage-to">To</label><input id="usage-to" name="to" type="date" value="{{to}}">
            <button type="submit">Show</button>
            <span class="muted">Whole days, UTC, both included.</span>
            </form>
            {{> problem}}
            {{#empty}}<div class="empty"><p><strong>No model calls from {{from}} to {{to}}.</strong> Usage appears here when agents or <code>/v1/chat/completions</code> call a model; add a model provider under <a href="/settings/providers">Settings</a>, then run an agent.</p></div>{{/empty}}
            {{^empty}}
            <dl class="facts"><dt>Requests</dt><dd>{{requests}}</dd><dt>Tokens</dt><dd>{{tokens}}</dd><dt>Cost</dt><dd>{{cost}}</dd></dl>
            <p><a href="/settings/budget">The monthly budget</a></p>
            {{#charts}}
            <section class="card" aria-labelledby="{{id}}-heading">
            <h2 id="{{id}}-heading">{{heading}}</h2>
            <div class="scroll">{{{svg}}}</div>
            <div class="scroll"><table>
            <caption>Tokens and cost {{lowerHeading}} (the numbers of the chart)</caption>
            <thead><tr><th scope="col">{{keyName}}</th><th scope="col">Requests</th><th scope="col">Input tokens</th><th scope="col">Output tokens</th><th scope="col">Tokens</th><th scope="col">Cost</th></tr></thead>
            <tbody>{{#rows}}<tr><th scope="row">{{label}}</th><td>{{requests}}</td><td>{{input}}</td><td>{{output}}</td><td>{{total}}</td><td>{{cost}}</td></tr>{{/rows}}</tbody>
            </table></div>
            </section>
            {{/charts}}
            {{/empty}}
            {{#hasRequestLog}}
            <section class="card" aria-labelledby="requests-heading">
            <h2 id="requests-heading">Latest model requests</h2>
            <div class="scroll"><table>
            <caption>The request log (<code>GET /v1/model-requests</code>): every call, failures included</caption>
            <thead><tr><th scope="col">When</th><th scope="col">Model</th><th scope="col">Key, agent or run</th><th scope="col">Status</th><th scope="col">Tokens</th><th scope="col">Cost</th><th scope="col">Latency (ms)</th></tr></thead>
            <tbody>{{#requestLog}}<tr><td>{{{at}}}</td><td>{{model}}</td><td>{{who}}</td><td>{{status}} {{outcome}}</td><td>{{tokens}}</td><td>{{cost}}</td><td>{{latency}}</td></tr>{{/requestLog}}</tbody>
            </table></div>
            </section>
            {{/hasRequestLog}}
            """
        ]
        .merging(AuditPages.templates) { first, _ in first }
}

/// Tokens and cost of one grouping as an SVG bar chart and the rows of its table. Each bar stacks input tokens
/// (class `series`) and output tokens (class `series2`) and says its numbers in its `<title>`; every label is
/// escaped; colours come from the stylesheet.
struct UsageChart {
    /// One total of `GET /v1/usage`.
    struct Row {
        var label: String
        var requests: Int64 = 0
        var inputTokens: Int64 = 0
        var outputTokens: Int64 = 0
        var cost: Double = 0

        var tokens: Int64 { inputTokens + outputTokens }

        init(label: String) { self.label = label }

        init(_ item: JSONValue) {
            label = item["key"]?.stringValue ?? ""
            requests = Int64(item["requests"]?.numberValue ?? 0)
            inputTokens = Int64(item["input_tokens"]?.numberValue ?? 0)
            outputTokens = Int64(item["output_tokens"]?.numberValue ?? 0)
            cost = item["cost_usd"]?.numberValue ?? 0
        }

        /// What one bar says, for its `<title>`.
        var summary: String {
            "\(label): \(SettingsKit.grouped(tokens)) tokens (\(SettingsKit.grouped(inputTokens)) in, "
                + "\(SettingsKit.grouped(outputTokens)) out), \(SettingsKit.dollars(cost)), "
                + "\(SettingsKit.grouped(requests)) request\(requests == 1 ? "" : "s")"
        }
    }

    var id: String
    var heading: String
    var keyName: String
    var rows: [Row]
    /// Columns along a time axis (days) rather than bars down a list.
    var vertical = false

    /// The most bars a list chart draws; the table has every row.
    static let maxBars = 25

    func view() -> [String: Any] {
        [
            "id": id, "heading": heading, "lowerHeading": heading.lowercased(), "keyName": keyName,
            "svg": vertical ? columnsSVG() : barsSVG(),
            "rows": rows.map { row -> [String: Any] in
                [
                    "label": row.label, "requests": SettingsKit.grouped(row.requests),
                    "input": SettingsKit.grouped(row.inputTokens), "output": SettingsKit.grouped(row.outputTokens),
                    "total": SettingsKit.grouped(row.tokens), "cost": SettingsKit.dollars(row.cost),
                ]
            },
        ]
    }

    private func open(width: Int, height: Int) -> String {
        "<svg class=\"usage-chart\" role=\"img\" aria-labelledby=\"\(id)-title\" viewBox=\"0 0 \(width) \(height)\" "
            + "width=\"\(width)\" height=\"\(height)\"><title id=\"\(id)-title\">"
            + ConsoleMarkup.escape("Tokens \(heading.lowercased()): input and output; the table below has the numbers")
            + "</title>"
    }

    private func legend(x: Int, y: Int) -> String {
        "<g class=\"legend\"><rect class=\"series\" x=\"\(x)\" y=\"\(y - 9)\" width=\"10\" height=\"10\"/>"
            + "<text x=\"\(x + 14)\" y=\"\(y)\" class=\"sub\">input tokens</text>"
            + "<rect class=\"series2\" x=\"\(x + 100)\" y=\"\(y - 9)\" width=\"10\" height=\"10\"/>"
            + "<text x=\"\(x + 114)\" y=\"\(y)\" class=\"sub\">output tokens</text></g>"
    }

    /// A label cut to `length` characters, escaped.
    private static func label(_ text: String, _ length: Int) -> String {
        ConsoleMarkup.escape(text.count > length ? String(text.prefix(length - 1)) + "…" : text)
    }

    /// Columns along the days: the tallest is the most tokens of a day.
    func columnsSVG() -> String {
        let most = max(1, rows.map(\.tokens).max() ?? 0)
        let left = 70
        let plotHeight = 160
        let top = 24
        let step = max(6, min(28, 720 / max(1, rows.count)))
        let width = left + rows.count * step + 20
        let height = top + plotHeight + 44
        let base = top + plotHeight
        var out = open(width: width, height: height)
        out += legend(x: left, y: 12)
        out += "<line class=\"axis\" x1=\"\(left)\" x2=\"\(width - 10)\" y1=\"\(base)\" y2=\"\(base)\"/>"
        out += "<line class=\"axis\" x1=\"\(left)\" x2=\"\(left)\" y1=\"\(top)\" y2=\"\(base)\"/>"
        out +=
            "<text x=\"\(left - 6)\" y=\"\(top + 4)\" class=\"sub\" text-anchor=\"end\">\(SettingsKit.grouped(most))</text>"
        out += "<text x=\"\(left - 6)\" y=\"\(base)\" class=\"sub\" text-anchor=\"end\">0</text>"
        let labelEvery = max(1, (rows.count + 9) / 10)
        for (index, row) in rows.enumerated() {
            let x = left + index * step + 1
            let barWidth = max(2, step - 2)
            let inputHeight = Int(Double(row.inputTokens) / Double(most) * Double(plotHeight))
            let outputHeight = Int(Double(row.outputTokens) / Double(most) * Double(plotHeight))
            out += "<g class=\"column\"><title>\(ConsoleMarkup.escape(row.summary))</title>"
            out +=
                "<rect class=\"series\" x=\"\(x)\" y=\"\(base - inputHeight)\" width=\"\(barWidth)\" height=\"\(inputHeight)\"/>"
            out +=
                "<rect class=\"series2\" x=\"\(x)\" y=\"\(base - inputHeight - outputHeight)\" width=\"\(barWidth)\" height=\"\(outputHeight)\"/>"
            out += "</g>"
            let lastApart = index == rows.count - 1 && index % labelEvery >= max(2, labelEvery / 2)
            if index % labelEvery == 0 || lastApart {
                // Days as MM-DD; the table has the whole dates.
                let text = row.label.count == 10 ? String(row.label.suffix(5)) : row.label
                out += "<text x=\"\(x + barWidth / 2)\" y=\"\(base + 16)\" class=\"sub\" text-anchor=\"middle\">"
                out += "\(Self.label(text, 10))</text>"
            }
        }
        return out + "</svg>"
    }

    /// Bars down the list, most tokens first, each with its tokens and cost after it.
    func barsSVG() -> String {
        let shown = Array(rows.sorted { ($0.tokens, $1.label) > ($1.tokens, $0.label) }.prefix(Self.maxBars))
        let most = max(1, shown.map(\.tokens).max() ?? 0)
        let labelWidth = 220
        let barWidth = 420
        let rowHeight = 24
        let top = 24
        let width = labelWidth + barWidth + 200
        let height = top + shown.count * rowHeight + 8
        var out = open(width: width, height: height)
        out += legend(x: labelWidth, y: 12)
        out += "<line class=\"axis\" x1=\"\(labelWidth)\" x2=\"\(labelWidth)\" y1=\"\(top)\" y2=\"\(height - 4)\"/>"
        for (index, row) in shown.enumerated() {
            let y = top + index * rowHeight
            let inputWidth = Int(Double(row.inputTokens) / Double(most) * Double(barWidth))
            let outputWidth = Int(Double(row.outputTokens) / Double(most) * Double(barWidth))
            out += "<text x=\"\(labelWidth - 8)\" y=\"\(y + 15)\" class=\"label\" text-anchor=\"end\">"
            out += "\(Self.label(row.label, 30))</text>"
            out += "<g class=\"usage-bar\"><title>\(ConsoleMarkup.escape(row.summary))</title>"
            out +=
                "<rect class=\"series\" x=\"\(labelWidth)\" y=\"\(y + 4)\" width=\"\(inputWidth)\" height=\"\(rowHeight - 8)\"/>"
            out +=
                "<rect class=\"series2\" x=\"\(labelWidth + inputWidth)\" y=\"\(y + 4)\" width=\"\(outputWidth)\" height=\"\(rowHeight - 8)\"/>"
            out += "</g>"
            out += "<text x=\"\(labelWidth + inputWidth + outputWidth + 6)\" y=\"\(y + 15)\" class=\"sub\">"
            out += "\(SettingsKit.grouped(row.tokens)) · \(SettingsKit.dollars(row.cost))</text>"
        }
        return out + "</svg>"
    }
}
