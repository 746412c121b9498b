import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Runs: the live list, a run's page (graph, timeline, steps, an agent's trace, actions), the approvals inbox,
/// and the live streams the pages follow.
struct RunPages: Sendable {
    let console: Console

    static let statuses = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"]

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/runs") { request, context in
            await console.page(request, context) { visit in try await list(request, visit) }
        }
        router.get("/runs/{id}") { request, context in
            let id = try context.parameters.require("id")
            return await console.page(request, context) { visit in try await runPage(id: id, visit) }
        }
        // The rows of the list's first page alone: what the page's script fetches, at most once a second, when runs
        // change, so that a busy organization costs the server one list read per open page and second.
        router.get("/runs/rows") { request, context in
            await console.page(request, context) { visit in try await list(request, visit, rowsOnly: true) }
        }
        router.get("/runs/{id}/steps/{step}/output") { request, context in
            let id = try context.parameters.require("id")
            let stepID = try context.parameters.require("step")
            return await console.page(request, context) { visit in
                let run = try await console.read("/v1/runs/\(ConsoleMarkup.segment(id))", visit)
                guard let step = run["steps"]?.arrayValue?.first(where: { $0["id"]?.stringValue == stepID }) else {
                    throw ConsoleProblem(status: 404, code: "not_found", detail: "The run has no step \(stepID).")
                }
                var text = ""
                (step["output"] ?? .null).write(to: &text)
                return .response(
                    Response(
                        status: .ok,
                        headers: [.contentType: "application/json; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text))
                    )
                )
            }
        }
        // An artifact of a run, downloaded through the API as the signed-in person (an attachment, sandboxed).
        router.get("/artifacts/{id}") { request, context in
            let id = try context.parameters.require("id")
            return await console.page(request, context) { visit in
                let response = try await console.api.send(
                    .get,
                    "/v1/artifacts/\(ConsoleMarkup.segment(id))",
                    as: visit.credentials,
                    headers: [:]
                )
                guard response.status == .ok else {
                    throw ConsoleProblem(status: 404, code: "not_found", detail: "There is no such artifact.")
                }
                return .response(response)
            }
        }
        router.get("/approvals") { request, context in
            await console.page(request, context) { visit in try await approvals(visit) }
        }
        router.get("/live/events") { request, context in
            await console.page(request, context) { visit in
                .response(try await stream("/v1/events", request, visit))
            }
        }
        router.get("/live/runs/{id}") { request, context in
            let id = try context.parameters.require("id")
            return await console.page(request, context) { visit in
                .response(try await stream("/v1/runs/\(ConsoleMarkup.segment(id))/events", request, visit))
            }
        }
        router.post("/runs/{id}/cancel") { request, context in
            let id = try context.parameters.require("id")
            return await console.action(request, context) { visit, _ in
                try await act(.post, "/v1/runs/\(ConsoleMarkup.segment(id))/cancel", body: [:], visit)
                return .redirect("/runs/\(ConsoleMarkup.segment(id))")
            }
        }
        router.post("/runs/{id}/retry") { request, context in
            let id = try context.parameters.require("id")
            return await console.action(request, context) { visit, _ in
                try await act(.post, "/v1/runs/\(ConsoleMarkup.segment(id))/retry", body: [:], visit)
                return .redirect("/runs/\(ConsoleMarkup.segment(id))")
            }
        }
        router.post("/runs/{id}/signal") { request, context in
            let id = try context.parameters.require("id")
            return await console.action(request, context) { visit, form in
                guard let name = form.trimmed("name") else {
                    throw ConsoleProblem(status: 422, code: "validation_failed", detail: "Name the signal to send.")
                }
                var data: JSONValue = .null
                if let text = form.trimmed("data") {
                    do throws(CaravanError) { data = try JSONValue(parsing: Array(text.utf8)) } catch {
                        throw ConsoleProblem(
                            status: 422,
                            code: "validation_failed",
                            detail: "The signal's data is not valid JSON: \(error.detail)"
                        )
                    }
                }
                try await act(
                    .post,
                    "/v1/runs/\(ConsoleMarkup.segment(id))/signals/\(ConsoleMarkup.segment(name))",
                    body: ["data": data],
                    visit
                )
                return .redirect("/runs/\(ConsoleMarkup.segment(id))")
            }
        }
        router.post("/runs/{id}/approve") { request, context in
            let id = try context.parameters.require("id")
            return await console.action(request, context) { visit, form in
                let approved = form["decision"] == "approve"
                var body: [String: JSONValue] = ["approved": .bool(approved)]
                if let callID = form["call_id"], let digest = form["arguments_digest"] {
                    body["data"] = ["call_id": .string(callID), "arguments_digest": .string(digest)]
                }
                try await act(
                    .post,
                    "/v1/runs/\(ConsoleMarkup.segment(id))/signals/approve",
                    body: .object(body),
                    visit
                )
                return .redirect(Console.localPath(form["back"]) ?? "/runs/\(ConsoleMarkup.segment(id))")
            }
        }
    }

    // MARK: Reading

    /// The most events of one run a page reads (an agent with many turns has a few per turn).
    static let maxEvents = 5000

    /// A run's stored events in order, read page by page.
    private func events(runID: String, _ visit: ConsoleVisit) async throws -> [JSONValue] {
        var events: [JSONValue] = []
        var after: String?
        repeat {
            let page = try await console.read(
                "/v1/runs/\(ConsoleMarkup.segment(runID))/events?limit=500"
                    + (after.map { "&after=\(ConsoleMarkup.query($0))" } ?? ""),
                visit
            )
            events += page["items"]?.arrayValue ?? []
            after = page["next_cursor"]?.stringValue
        } while after != nil && events.count < Self.maxEvents
        return events
    }

    private func act(_ method: HTTPRequest.Method, _ path: String, body: JSONValue, _ visit: ConsoleVisit) async throws
    {
        let answer = try await console.api.call(method, path, as: visit.credentials, body: body)
        if let problem = answer.problem { throw problem }
    }

    /// The API's event stream, handed to the browser as it comes.
    private func stream(_ path: String, _ request: Request, _ visit: ConsoleVisit) async throws -> Response {
        var headers: HTTPFields = [.accept: "text/event-stream"]
        if let last = request.headers[.lastEventID] { headers[.lastEventID] = last }
        let response = try await console.api.send(.get, path, as: visit.credentials, headers: headers)
        guard response.status == .ok else {
            throw ConsoleProblem(
                status: Int(response.status.code),
                code: "stream_failed",
                detail: "The stream is not available."
            )
        }
        return response
    }

    // MARK: The list

    private func list(_ request: Request, _ visit: ConsoleVisit, rowsOnly: Bool = false) async throws -> ConsoleAnswer {
        let parameters = request.uri.queryParameters
        if let search = parameters.get("q").map { String($0) }?.trimmingCharacters(in: .whitespaces), !search.isEmpty {
            return .redirect("/runs/\(ConsoleMarkup.segment(search))")
        }
        var query: [String] = ["limit=50"]
        var filters: [String: Any] = [:]
        for name in ["workflow", "agent", "status", "cursor"] {
            if let value = parameters.get(name).map { String($0) }, !value.isEmpty {
                query.append("\(name)=\(ConsoleMarkup.query(value))")
                filters[name] = value
            }
        }
        // The time fields are `datetime-local` values, read as UTC (the page says so).
        for name in ["from", "to"] {
            if let value = parameters.get(name).map({ String($0) }), !value.isEmpty {
                query.append("\(name)=\(ConsoleMarkup.query(value.count == 16 ? value + ":00Z" : value))")
                filters[name] = value
            }
        }
        let answer = try await console.api.call(.get, "/v1/runs?" + query.joined(separator: "&"), as: visit.credentials)
        if let problem = answer.problem, problem.status != 422 { throw problem }
        let runs = answer.json["items"]?.arrayValue ?? []
        let next = answer.json["next_cursor"]?.stringValue
        var nextQuery = query.filter { !$0.hasPrefix("cursor=") && !$0.hasPrefix("limit=") }
        if let next { nextQuery.append("cursor=\(ConsoleMarkup.query(next))") }
        var data: [String: Any] = [
            "runs": runs.map(Self.row),
            "empty": runs.isEmpty,
            "filtered": !filters.isEmpty,
            "firstPage": filters["cursor"] == nil,
            "next": next.map { _ in "/runs?" + nextQuery.joined(separator: "&") } ?? false,
            "statuses": Self.statuses.map { ["value": $0, "selected": filters["status"] as? String == $0] },
            "workflow": filters["workflow"] ?? "",
            "agent": filters["agent"] ?? "",
            "status": filters["status"] ?? "",
            "from": filters["from"] ?? "",
            "to": filters["to"] ?? "",
            "canWrite": visit.can("developer"),
        ]
        data["problem"] = ConsoleViews.problem(answer.problem)
        if rowsOnly { return .html(console.views.render("runs-rows", data)) }
        return console.views.page("runs", title: "Runs", visit: visit, data, live: "runs")
    }

    /// A run as one row of the list.
    static func row(_ run: JSONValue) -> [String: Any] {
        let id = run["id"]?.stringValue ?? ""
        let agent = run["agent"]?.stringValue
        let created = ConsoleTime.milliseconds(run["created_at"])
        let finished = ConsoleTime.milliseconds(run["finished_at"])
        let started = ConsoleTime.milliseconds(run["started_at"])
        return [
            "id": id,
            "href": "/runs/\(ConsoleMarkup.segment(id))",
            "name": agent ?? run["workflow"]?.stringValue ?? "",
            "kind": agent == nil ? "workflow" : "agent",
            "status": run["status"]?.stringValue ?? "",
            "created": ConsoleTime.element(run["created_at"]),
            "duration": finished.map { ConsoleTime.duration(milliseconds: $0 - (started ?? created ?? $0)) } ?? "",
            "child": false,
            "error": run["error"]?["message"]?.stringValue ?? "",
        ]
    }

    // MARK: A run

    private func runPage(id: String, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let path = "/v1/runs/\(ConsoleMarkup.segment(id))"
        let run = try await console.read(path, visit)
        let events = try await events(runID: id, visit)
        let isAgent = run["kind"]?.stringValue == "agent"
        var definition: JSONValue?
        if !isAgent, let workflow = run["workflow"]?.stringValue {
            let version = run["workflow_version"]?.numberValue.map { Int($0) } ?? 1
            definition = try? await console.read(
                "/v1/workflows/\(ConsoleMarkup.segment(workflow))?version=\(version)",
                visit
            )["definition"]
        }
        let status = run["status"]?.stringValue ?? ""
        let graph = RunGraph(run: run, definition: definition, events: events)
        let now = ConsoleTime.milliseconds(.string(Clock.rfc3339(WallClock.system.nowMilliseconds()))) ?? 0
        let runStart = ConsoleTime.milliseconds(run["started_at"])
        let runEnd = ConsoleTime.milliseconds(run["finished_at"])
        let trace =
            isAgent || events.contains { $0["type"]?.stringValue?.hasPrefix("llm.") == true }
            ? AgentTrace(events: events) : nil
        let pending = Self.pendingApprovals(run: run, events: events)
        let artifacts = try await console.read("\(path)/artifacts", visit)["items"]?.arrayValue ?? []
        let terminal = ["succeeded", "failed", "cancelled"].contains(status)
        let name = run["agent"]?.stringValue ?? run["workflow"]?.stringValue ?? ""
        var data: [String: Any] = [
            "id": id,
            "href": "/runs/\(ConsoleMarkup.segment(id))",
            "name": name,
            "nameHref": isAgent
                ? "/agents/\(ConsoleMarkup.segment(name))" : "/workflows/\(ConsoleMarkup.segment(name))",
            "kind": isAgent ? "agent" : "workflow",
            "version": run["workflow_version"]?.numberValue.map { Int($0) } ?? 0,
            "status": status,
            "created": ConsoleTime.element(run["created_at"]),
            "started": ConsoleTime.element(run["started_at"]),
            "finished": ConsoleTime.element(run["finished_at"]),
            "duration": runEnd.map { ConsoleTime.duration(milliseconds: $0 - (runStart ?? $0)) } ?? false,
            "parent": run["parent_run_id"]?.stringValue.map {
                ["id": $0, "href": "/runs/\(ConsoleMarkup.segment($0))"]
            }
                ?? false,
            "thread": run["thread"]?.stringValue.map { thread in
                ["href": "/agents/\(ConsoleMarkup.segment(name))?thread=\(ConsoleMarkup.query(thread))"]
            } ?? false,
            "error": Self.failure(run["error"]),
            "graph": graph.svg(),
            "timeline": graph.timelineSVG(runStart: runStart, runEnd: runEnd, now: now),
            "input": Self.json(run["input"]),
            "output": Self.json(run["output"]),
            "hasOutput": !(run["output"]?.isNull ?? true),
            "steps": (run["steps"]?.arrayValue ?? []).map { step in
                Self.step(
                    step,
                    runID: id,
                    definition: definition?["steps"]?.arrayValue?.first { $0["id"] == step["id"] }
                )
            },
            "events": events.suffix(200).map { event -> [String: Any] in
                [
                    "seq": event["seq"]?.numberValue.map { Int($0) } ?? 0,
                    "type": event["type"]?.stringValue ?? "",
                    "step": event["step"]?.stringValue ?? "",
                    "at": ConsoleTime.element(event["at"]),
                    "data": ConsoleJSON.summary(event["data"], length: 160),
                ]
            },
            "eventCount": events.count,
            "artifacts": artifacts.map { artifact -> [String: Any] in
                [
                    "name": artifact["name"]?.stringValue ?? "", "step": artifact["step"]?.stringValue ?? "",
                    "type": artifact["content_type"]?.stringValue ?? "",
                    "size": Self.size(Int(artifact["size"]?.numberValue ?? 0)),
                    "href": "/artifacts/\(ConsoleMarkup.segment(artifact["id"]?.stringValue ?? ""))",
                ]
            },
            "hasArtifacts": !artifacts.isEmpty,
            "pending": pending,
            "hasPending": !pending.isEmpty,
            "live": !terminal,
            "canWrite": visit.can("developer"),
            "canCancel": !terminal && visit.can("developer"),
            "canRetry": status == "failed" && visit.can("developer"),
        ]
        if let trace {
            data["trace"] = trace.view
        }
        return console.views.page(
            "run",
            title: "Run \(id)",
            visit: visit,
            data,
            live: terminal ? nil : "run:\(id)"
        )
    }

    /// A size in bytes as people read it: 512 B, 12.5 KiB, 3.2 MiB.
    static func size(_ bytes: Int) -> String {
        if bytes < 1_024 { return "\(bytes) B" }
        if bytes < 1 << 20 { return String(format: "%.1f KiB", Double(bytes) / 1_024) }
        return String(format: "%.1f MiB", Double(bytes) / Double(1 << 20))
    }

    /// Text for a template section: `false` when there is none, so that `{{#name}}` leaves it out.
    static func text(_ text: String?) -> Any {
        guard let text, !text.isEmpty else { return false }
        return text
    }

    /// A run's or step's error as the templates show it, or `false` when there is none.
    static func failure(_ error: JSONValue?) -> Any {
        guard let error, case .object = error else { return false }
        return [
            "code": error["code"]?.stringValue ?? "", "message": error["message"]?.stringValue ?? "",
            "step": error["step"]?.stringValue ?? false,
        ] as [String: Any]
    }

    /// A JSON value folded when it is large: its pretty text, and whether it was cut.
    static func json(_ value: JSONValue?) -> [String: Any] {
        let value = value ?? .null
        let pretty = ConsoleJSON.pretty(value)
        return ["text": pretty.text, "cut": pretty.cut, "large": pretty.text.utf8.count > 2048]
    }

    /// A step as its details show it, with what its definition told it to do (templates as written: the values
    /// they were rendered with, secrets above all, are not kept).
    static func step(_ step: JSONValue, runID: String, definition: JSONValue? = nil) -> [String: Any] {
        let id = step["id"]?.stringValue ?? ""
        let started = ConsoleTime.milliseconds(step["started_at"])
        let finished = ConsoleTime.milliseconds(step["finished_at"])
        var data: [String: Any] = [
            "id": id,
            "status": step["status"]?.stringValue ?? "",
            "attempts": step["attempts"]?.numberValue.map { Int($0) } ?? 0,
            "started": ConsoleTime.element(step["started_at"]),
            "duration": finished.map { ConsoleTime.duration(milliseconds: $0 - (started ?? $0)) } ?? false,
            "output": json(step["output"]),
            "hasOutput": !(step["output"]?.isNull ?? true),
            "outputHref": "/runs/\(ConsoleMarkup.segment(runID))/steps/\(ConsoleMarkup.segment(id))/output",
            // Set even when absent, so that a section does not find the run's value of the same name.
            "error": false, "child": false,
            "definition": definition.map { json($0) } ?? false,
        ]
        data["error"] = failure(step["error"])
        if let child = step["child_run_id"]?.stringValue {
            data["child"] = ["id": child, "href": "/runs/\(ConsoleMarkup.segment(child))"]
        }
        return data
    }

    /// What in a run waits for a person: approval steps (`step.waiting` with a signal) and an agent's tool calls
    /// (`tool.approval_requested`) that no decision has answered yet.
    static func pendingApprovals(run: JSONValue, events: [JSONValue]) -> [[String: Any]] {
        guard run["status"]?.stringValue == "waiting" || run["status"]?.stringValue == "running" else { return [] }
        var decided = Set<String>()
        for event in events where event["type"]?.stringValue == "signal.received" {
            if let call = event["data"]?["call_id"]?.stringValue { decided.insert(call) }
        }
        var pending: [[String: Any]] = []
        let waitingSteps = Set(
            (run["steps"]?.arrayValue ?? []).filter { $0["status"]?.stringValue == "waiting" }.compactMap {
                $0["id"]?.stringValue
            }
        )
        var seenSteps = Set<String>()
        for event in events.reversed() {
            let type = event["type"]?.stringValue
            let data = event["data"] ?? .null
            if type == "step.waiting", data["signal"]?.stringValue == "approve", let step = event["step"]?.stringValue,
                waitingSteps.contains(step), !seenSteps.contains(step)
            {
                seenSteps.insert(step)
                pending.append([
                    "kind": "step", "step": step, "message": text(ConsoleJSON.summary(data["message"], length: 2000)),
                    "tool": false, "callID": false,
                    "at": ConsoleTime.element(event["at"]),
                ])
            }
            if type == "tool.approval_requested", let call = data["call_id"]?.stringValue, !decided.contains(call) {
                decided.insert(call)
                pending.append([
                    "kind": "tool", "step": event["step"]?.stringValue ?? "", "tool": data["name"]?.stringValue ?? "",
                    "callID": call, "digest": data["arguments_digest"]?.stringValue ?? "", "message": false,
                    "arguments": json(data["arguments"]), "at": ConsoleTime.element(event["at"]),
                ])
            }
        }
        return pending.reversed()
    }

    // MARK: Approvals

    /// Every run of the organization that waits for a person, oldest first: runs waiting at an approval step, and
    /// agent runs whose tool call waits for approval inside a running step (up to 500 runs of each are read).
    private func approvals(_ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        var waiting: [JSONValue] = []
        for status in ["waiting", "running"] {
            var cursor: String?
            var read = 0
            repeat {
                let page = try await console.read(
                    "/v1/runs?status=\(status)&limit=100" + (cursor.map { "&cursor=\(ConsoleMarkup.query($0))" } ?? ""),
                    visit
                )
                let items = page["items"]?.arrayValue ?? []
                read += items.count
                waiting += status == "waiting" ? items : items.filter { $0["kind"] == "agent" }
                cursor = page["next_cursor"]?.stringValue
            } while cursor != nil && read < 500
        }
        waiting.sort { ($0["id"]?.stringValue ?? "") > ($1["id"]?.stringValue ?? "") }
        var items: [[String: Any]] = []
        for run in waiting.reversed() {
            guard let id = run["id"]?.stringValue else { continue }
            let events = try await events(runID: id, visit)
            for var pending in Self.pendingApprovals(run: run, events: events) {
                pending["runID"] = id
                pending["runHref"] = "/runs/\(ConsoleMarkup.segment(id))"
                pending["name"] = run["agent"]?.stringValue ?? run["workflow"]?.stringValue ?? ""
                items.append(pending)
            }
        }
        return console.views.page(
            "approvals",
            title: "Approvals",
            visit: visit,
            ["items": items, "empty": items.isEmpty, "canWrite": visit.can("developer")],
            live: "approvals"
        )
    }
}

/// An agent run's conversation as a trace: each model turn with its model, tokens, cost and latency, and each
/// tool call with its arguments and result.
struct AgentTrace {
    var turns: [[String: Any]] = []
    var totalTokens = 0
    var totalCost = 0.0

    init(events: [JSONValue]) {
        var requestAt: [Int: Int64] = [:]
        var current: [String: Any]?
        var calls: [[String: Any]] = []
        func close() {
            if var turn = current {
                turn["calls"] = calls
                turn["hasCalls"] = !calls.isEmpty
                turns.append(turn)
            }
            current = nil
            calls = []
        }
        for event in events {
            let data = event["data"] ?? .null
            let at = ConsoleTime.milliseconds(event["at"])
            switch event["type"]?.stringValue {
            case "llm.request":
                close()
                let turn = data["turn"]?.numberValue.map { Int($0) } ?? turns.count + 1
                requestAt[turn] = at
                current = [
                    "turn": turn, "model": data["model"]?.stringValue ?? "", "pending": true, "text": false,
                    "latency": false,
                ]
            case "llm.response":
                let turn = data["turn"]?.numberValue.map { Int($0) } ?? turns.count + 1
                if current == nil { current = ["turn": turn, "model": "", "text": false, "latency": false] }
                let input = Int(data["usage"]?["input_tokens"]?.numberValue ?? 0)
                let output = Int(data["usage"]?["output_tokens"]?.numberValue ?? 0)
                let cost = data["cost_usd"]?.numberValue ?? 0
                totalTokens += input + output
                totalCost += cost
                current?["pending"] = false
                if let model = data["model"]?.stringValue { current?["model"] = model }
                current?["inputTokens"] = input
                current?["outputTokens"] = output
                current?["cost"] = String(format: "%.6f", cost)
                current?["finish"] = data["finish_reason"]?.stringValue ?? ""
                current?["text"] = RunPages.text(data["text"]?.stringValue)
                if let start = requestAt[turn], let at {
                    current?["latency"] = ConsoleTime.duration(milliseconds: at - start)
                }
            case "tool.call":
                calls.append([
                    "id": data["id"]?.stringValue ?? "", "name": data["name"]?.stringValue ?? "",
                    "arguments": RunPages.json(data["arguments"]), "result": "", "hasResult": false,
                    "approval": false, "isError": false,
                ])
            case "tool.approval_requested":
                if let index = calls.lastIndex(where: { $0["name"] as? String == data["name"]?.stringValue }) {
                    calls[index]["approval"] = "requested"
                }
            case "signal.received" where data["call_id"] != nil:
                if let index = calls.indices.last {
                    calls[index]["approval"] = data["approved"] == .bool(true) ? "approved" : "refused"
                }
            case "tool.result":
                if let index = calls.lastIndex(where: { $0["id"] as? String == data["id"]?.stringValue }) {
                    calls[index]["result"] =
                        data["content"]?.stringValue ?? ConsoleJSON.summary(data["content"], length: 4000)
                    calls[index]["hasResult"] = true
                    calls[index]["isError"] = data["is_error"] == .bool(true)
                }
            default:
                break
            }
        }
        close()
    }

    /// The trace as the run template shows it.
    var view: [String: Any] {
        [
            "turns": turns, "totalTokens": totalTokens, "totalCost": String(format: "%.6f", totalCost),
            "count": turns.count,
        ]
    }
}

extension HTTPField.Name {
    static let lastEventID = HTTPField.Name("Last-Event-ID")!  // a valid token, cannot fail
}
