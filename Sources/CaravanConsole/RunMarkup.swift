import CaravanCore
import Foundation

/// JSON as the console shows it: pretty-printed, cut at a size a browser shows without effort.
enum ConsoleJSON {
    /// The most of one value a page shows; the rest is a link away.
    static let shownBytes = 64 << 10

    /// `value` pretty-printed with two-space indentation, and whether it was cut at `limit` bytes.
    static func pretty(_ value: JSONValue, limit: Int = shownBytes) -> (text: String, cut: Bool) {
        var out = ""
        var cut = false
        write(value, indent: 0, into: &out, limit: limit, cut: &cut)
        return (out, cut)
    }

    private static func write(_ value: JSONValue, indent: Int, into out: inout String, limit: Int, cut: inout Bool) {
        guard out.utf8.count < limit else {
            cut = true
            return
        }
        let pad = String(repeating: "  ", count: indent + 1)
        switch value {
        case .array(let items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "[\n"
            for (index, item) in items.enumerated() {
                guard out.utf8.count < limit else {
                    cut = true
                    return
                }
                out += pad
                write(item, indent: indent + 1, into: &out, limit: limit, cut: &cut)
                out += index == items.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: "  ", count: indent) + "]"
        case .object(let fields):
            if fields.isEmpty {
                out += "{}"
                return
            }
            out += "{\n"
            let keys = fields.keys.sorted()
            for (index, key) in keys.enumerated() {
                guard out.utf8.count < limit else {
                    cut = true
                    return
                }
                out += pad
                JSONValue.string(key).write(to: &out)
                out += ": "
                write(fields[key] ?? .null, indent: indent + 1, into: &out, limit: limit, cut: &cut)
                out += index == keys.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: "  ", count: indent) + "}"
        case .string(let text) where text.utf8.count > limit:
            JSONValue.string(String(text.utf8.prefix(limit)) ?? String(text.prefix(limit / 4))).write(to: &out)
            cut = true
        default:
            value.write(to: &out)
        }
    }

    /// Short text for a table cell: a string as it is, anything else as compact JSON, at most `length` characters.
    static func summary(_ value: JSONValue?, length: Int = 80) -> String {
        guard let value, !value.isNull else { return "" }
        var text = ""
        if case .string(let string) = value { text = string } else { value.write(to: &text) }
        // Cut by bytes first, so that a large value costs no more than a small one to count.
        let head = text.utf8.count > length * 4 ? String(decoding: text.utf8.prefix(length * 4), as: UTF8.self) : text
        return head.count > length || head.utf8.count < text.utf8.count ? String(head.prefix(length)) + "…" : head
    }
}

/// Timestamps of the API (RFC 3339, UTC) as the console shows them.
enum ConsoleTime {
    /// Milliseconds since 1970 of an API timestamp.
    static func milliseconds(_ value: JSONValue?) -> Int64? {
        value?.stringValue.flatMap(Clock.parseRFC3339)
    }

    /// A `<time>` element: UTC without JavaScript, the browser's own time zone with it.
    static func element(_ value: JSONValue?) -> String {
        guard let text = value?.stringValue else { return "<span class=\"muted\">—</span>" }
        let shown = text.replacingOccurrences(of: "T", with: " ").prefix(19) + " UTC"
        return "<time datetime=\"\(ConsoleMarkup.escape(text))\">\(ConsoleMarkup.escape(String(shown)))</time>"
    }

    /// A duration for people: `850 ms`, `12.4 s`, `3 min 5 s`, `2 h 10 min`.
    static func duration(milliseconds: Int64) -> String {
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        if milliseconds < 60_000 { return String(format: "%.1f s", Double(milliseconds) / 1000) }
        let seconds = milliseconds / 1000
        if seconds < 3600 { return "\(seconds / 60) min \(seconds % 60) s" }
        return "\(seconds / 3600) h \((seconds % 3600) / 60) min"
    }
}

/// A run's steps as pictures: the `needs` graph, each step coloured by its state, and a timeline of when each
/// step ran. Both are SVG built here, with every label escaped, and styled by classes of the console's stylesheet.
struct RunGraph {
    struct Step {
        var id: String
        var kind: String
        var status: String
        var needs: [String]
        var attempts: Int
        var startedAt: Int64?
        var finishedAt: Int64?
        /// When the step was retried (a `step.retrying` event each).
        var retries: [Int64] = []
    }

    var steps: [Step]

    /// The steps of `run` with the `needs` of its definition (`definition` may be `nil` when it cannot be read).
    init(run: JSONValue, definition: JSONValue?, events: [JSONValue]) {
        var declared: [String: (kind: String, needs: [String])] = [:]
        for step in definition?["steps"]?.arrayValue ?? [] {
            guard let id = step["id"]?.stringValue else { continue }
            let needs = step["needs"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let kind =
                step.objectValue?.keys.first {
                    !["id", "needs", "when", "timeout", "retry", "for_each", "name"].contains($0)
                }
                ?? "step"
            declared[id] = (kind, needs)
        }
        var retries: [String: [Int64]] = [:]
        for event in events where event["type"]?.stringValue == "step.retrying" {
            if let step = event["step"]?.stringValue, let at = ConsoleTime.milliseconds(event["at"]) {
                retries[step, default: []].append(at)
            }
        }
        steps = (run["steps"]?.arrayValue ?? []).compactMap { step in
            guard let id = step["id"]?.stringValue else { return nil }
            return Step(
                id: id,
                kind: declared[id]?.kind ?? (run["kind"]?.stringValue == "agent" ? "agent" : "step"),
                status: step["status"]?.stringValue ?? "pending",
                needs: declared[id]?.needs ?? [],
                attempts: Int(step["attempts"]?.numberValue ?? 0),
                startedAt: ConsoleTime.milliseconds(step["started_at"]),
                finishedAt: ConsoleTime.milliseconds(step["finished_at"]),
                retries: retries[id] ?? []
            )
        }
    }

    /// Each step's column: the length of the longest chain of `needs` before it.
    func layers() -> [String: Int] {
        let byID = Dictionary(steps.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var layer: [String: Int] = [:]
        func depth(_ id: String, _ visiting: Set<String>) -> Int {
            if let known = layer[id] { return known }
            guard let step = byID[id], !visiting.contains(id) else { return 0 }
            let value = step.needs.map { depth($0, visiting.union([id])) + 1 }.max() ?? 0
            layer[id] = value
            return value
        }
        for step in steps { _ = depth(step.id, []) }
        return layer
    }

    static let nodeWidth = 150
    static let nodeHeight = 44
    static let columnGap = 50
    static let rowGap = 16

    /// The `needs` graph as SVG, left to right; each node links to the step's details below.
    func svg() -> String {
        guard !steps.isEmpty else { return "" }
        let layer = layers()
        var rows: [Int: Int] = [:]
        var position: [String: (x: Int, y: Int)] = [:]
        for step in steps {
            let column = layer[step.id] ?? 0
            let row = rows[column, default: 0]
            rows[column] = row + 1
            position[step.id] = (
                8 + column * (Self.nodeWidth + Self.columnGap), 8 + row * (Self.nodeHeight + Self.rowGap)
            )
        }
        let width = 16 + ((layer.values.max() ?? 0) + 1) * (Self.nodeWidth + Self.columnGap) - Self.columnGap
        let height = 16 + (rows.values.max() ?? 1) * (Self.nodeHeight + Self.rowGap) - Self.rowGap
        var out =
            "<svg class=\"graph\" role=\"img\" aria-labelledby=\"graph-title\" viewBox=\"0 0 \(width) \(height)\" width=\"\(width)\" height=\"\(height)\">"
        out += "<title id=\"graph-title\">The run's steps and what each needs</title>"
        for step in steps {
            guard let to = position[step.id] else { continue }
            for need in step.needs {
                guard let from = position[need] else { continue }
                let x1 = from.x + Self.nodeWidth
                let y1 = from.y + Self.nodeHeight / 2
                let x2 = to.x
                let y2 = to.y + Self.nodeHeight / 2
                let middle = (x1 + x2) / 2
                out += "<path class=\"edge\" d=\"M\(x1),\(y1) C\(middle),\(y1) \(middle),\(y2) \(x2),\(y2)\"/>"
            }
        }
        for step in steps {
            guard let at = position[step.id] else { continue }
            let label = step.id.count > 18 ? String(step.id.prefix(17)) + "…" : step.id
            out += "<a href=\"#step-\(ConsoleMarkup.escape(step.id))\">"
            out += "<g class=\"node status-\(ConsoleMarkup.escape(step.status))\">"
            out += "<title>\(ConsoleMarkup.escape(step.id)): \(ConsoleMarkup.escape(step.status))</title>"
            out +=
                "<rect x=\"\(at.x)\" y=\"\(at.y)\" width=\"\(Self.nodeWidth)\" height=\"\(Self.nodeHeight)\" rx=\"6\"/>"
            out += "<text x=\"\(at.x + 10)\" y=\"\(at.y + 18)\" class=\"label\">\(ConsoleMarkup.escape(label))</text>"
            out +=
                "<text x=\"\(at.x + 10)\" y=\"\(at.y + 34)\" class=\"sub\">\(ConsoleMarkup.escape(step.kind)) · \(ConsoleMarkup.escape(step.status))</text>"
            out += "</g></a>"
        }
        return out + "</svg>"
    }

    /// When each step ran, as bars on one time axis (from the run's start, or its first step's when that came first,
    /// to its end, or to `now`), with a mark at each retry.
    func timelineSVG(runStart: Int64?, runEnd: Int64?, now: Int64) -> String {
        // From the earliest start: after a retry the run's start is the retry's, and the steps kept from before
        // it would otherwise fall left of the axis.
        let started = steps.compactMap(\.startedAt)
        guard let origin = (started + [runStart].compactMap { $0 }).min() else { return "" }
        let end = max(
            runEnd ?? now,
            (steps.compactMap { $0.finishedAt ?? ($0.startedAt != nil ? now : nil) }).max() ?? origin
        )
        let span = max(1, end - origin)
        let labelWidth = 160
        let barWidth = 560
        let rowHeight = 24
        let height = steps.count * rowHeight + 28
        let width = labelWidth + barWidth + 110
        var out =
            "<svg class=\"timeline\" role=\"img\" aria-labelledby=\"timeline-title\" viewBox=\"0 0 \(width) \(height)\" width=\"\(width)\" height=\"\(height)\">"
        out += "<title id=\"timeline-title\">When each step ran</title>"
        for (index, step) in steps.enumerated() {
            let y = index * rowHeight + 4
            let label = step.id.count > 22 ? String(step.id.prefix(21)) + "…" : step.id
            out += "<text x=\"0\" y=\"\(y + 15)\" class=\"label\">\(ConsoleMarkup.escape(label))</text>"
            guard let start = step.startedAt else {
                out +=
                    "<text x=\"\(labelWidth)\" y=\"\(y + 15)\" class=\"sub\">\(ConsoleMarkup.escape(step.status))</text>"
                continue
            }
            let finish = step.finishedAt ?? now
            let x = labelWidth + Int(Double(start - origin) / Double(span) * Double(barWidth))
            let w = max(2, Int(Double(finish - start) / Double(span) * Double(barWidth)))
            out += "<g class=\"bar status-\(ConsoleMarkup.escape(step.status))\">"
            out += "<title>\(ConsoleMarkup.escape(step.id)): \(ConsoleTime.duration(milliseconds: finish - start)), "
            out += "\(step.attempts) attempt\(step.attempts == 1 ? "" : "s")</title>"
            out += "<rect x=\"\(x)\" y=\"\(y + 3)\" width=\"\(w)\" height=\"\(rowHeight - 8)\" rx=\"3\"/></g>"
            for retry in step.retries {
                let rx = labelWidth + Int(Double(retry - origin) / Double(span) * Double(barWidth))
                out += "<line class=\"retry\" x1=\"\(rx)\" x2=\"\(rx)\" y1=\"\(y + 1)\" y2=\"\(y + rowHeight - 3)\"/>"
            }
            let attempts = step.attempts > 1 ? " · \(step.attempts) attempts" : ""
            out +=
                "<text x=\"\(min(x + w + 6, labelWidth + barWidth + 4))\" y=\"\(y + 15)\" class=\"sub\">\(ConsoleTime.duration(milliseconds: finish - start))\(attempts)</text>"
        }
        let axisY = steps.count * rowHeight + 20
        out += "<text x=\"\(labelWidth)\" y=\"\(axisY)\" class=\"sub\">0</text>"
        out +=
            "<text x=\"\(labelWidth + barWidth)\" y=\"\(axisY)\" class=\"sub\" text-anchor=\"end\">\(ConsoleTime.duration(milliseconds: span))</text>"
        return out + "</svg>"
    }
}
