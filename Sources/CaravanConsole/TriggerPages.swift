import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Inbound triggers: the list with the form that creates and replaces them, and a trigger's page with its public
/// hook URL (absolute, as the browser reached this server), its settings and its delivery records, a page at a time.
struct TriggerPages: Sendable {
    let console: Console

    static let pageSize = 50
    static let schemes = ["standard_webhooks", "github", "stripe", "bearer", "none"]
    static let modes = ["direct", "batch", "route"]
    /// The fields of the trigger form.
    static let fields = [
        "name", "target", "input", "scheme", "secret", "tolerance", "filter", "mode", "max_events", "window",
        "route_key", "route_signal", "per_minute", "max_body_bytes", "enabled",
    ]
    /// The form field each of the API's pointers is about (the longest prefix wins).
    static let pointers: [String: String] = [
        "/name": "name", "/workflow": "target", "/agent": "target", "/input": "input", "/verify": "scheme",
        "/verify/scheme": "scheme", "/verify/secret": "secret", "/verify/tolerance": "tolerance", "/filter": "filter",
        "/mode": "mode", "/mode/batch/max_events": "max_events", "/mode/batch/window": "window",
        "/mode/route/key": "route_key", "/mode/route/signal": "route_signal", "/rate_limit": "per_minute",
        "/rate_limit/per_minute": "per_minute", "/max_body_bytes": "max_body_bytes", "/enabled": "enabled",
    ]

    static let flashes: [String: String] = [
        "trigger-created": "The trigger was created: give its URL to the sender.",
        "trigger-saved": "The trigger was saved; its URL is unchanged.",
        "trigger-deleted": "The trigger was deleted: its URL answers 404 from now on.",
    ]

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/triggers") { request, context in
            await console.page(request, context) { visit in try await listPage(visit, request: request) }
        }
        router.post("/triggers") { request, context in
            await console.action(request, context) { visit, form in try await save(visit, form) }
        }
        router.get("/triggers/{name}") { request, context in
            let name = try context.parameters.require("name")
            return await console.page(request, context) { visit in
                try await triggerPage(name, visit, request: request)
            }
        }
        router.post("/triggers/{name}/delete") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, _ in
                _ = try await console.change(.delete, Self.api(name), body: nil, visit).get()
                return .redirect("/triggers?done=trigger-deleted")
            }
        }
    }

    static func api(_ name: String) -> String { "/v1/triggers/\(ConsoleMarkup.segment(name))" }

    /// The form field a pointer of the API is about.
    static func field(_ pointer: String) -> String? {
        var path = pointer
        while !path.isEmpty {
            if let field = pointers[path] { return field }
            path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        }
        return nil
    }

    // MARK: The list and its form

    private func listPage(
        _ visit: ConsoleVisit,
        request: Request?,
        form: [String: Any]? = nil,
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let triggers = try await console.readAll("/v1/triggers", visit)
        let canWrite = visit.can("developer")
        let edit = request?.uri.queryParameters.get("edit").map { String($0) }
        let editing = edit.flatMap { name in triggers.first { $0["name"]?.stringValue == name } }
        var secretNames: [String] = []
        if canWrite {
            secretNames = ((try? await console.readAll("/v1/secrets", visit)) ?? []).compactMap {
                $0["name"]?.stringValue
            }
        }
        var data = EventsPages.frame(current: "/triggers", request: request, flashes: Self.flashes)
        data["triggers"] = triggers.map(Self.row)
        data["empty"] = triggers.isEmpty
        data["canWrite"] = canWrite
        data["secretNames"] = secretNames.map { ["name": $0] }
        data["form"] = EventsForm.withErrors(
            form ?? Self.form(editing),
            problem,
            fields: Self.fields,
            field: Self.field
        )
        if let shown = ConsoleViews.problem(problem) { data["problem"] = shown }
        return console.views.page("triggers", title: "Triggers", visit: visit, data, status: problem?.status ?? 200)
    }

    /// What a trigger starts: `workflow deploy` or `agent triage`, and the page of it.
    static func target(_ trigger: JSONValue) -> (kind: String, name: String, href: String) {
        if let agent = trigger["agent"]?.stringValue {
            return ("agent", agent, "/agents/\(ConsoleMarkup.segment(agent))")
        }
        let workflow = trigger["workflow"]?.stringValue ?? ""
        return ("workflow", workflow, "/workflows/\(ConsoleMarkup.segment(workflow))")
    }

    /// How a trigger's deliveries become runs, in words.
    static func mode(_ trigger: JSONValue) -> String {
        let mode = trigger["mode"]
        if let batch = mode?["batch"] {
            let events = batch["max_events"]?.numberValue.map { String(Int64($0)) } ?? "?"
            return "batch: up to \(events) events or \(batch["window"]?.stringValue ?? "?")"
        }
        if let route = mode?["route"] {
            return "route by \(route["key"]?.stringValue ?? "?") as signal \(route["signal"]?.stringValue ?? "event")"
        }
        return "direct: a run per delivery"
    }

    /// A trigger as one row of the list.
    static func row(_ trigger: JSONValue) -> [String: Any] {
        let name = trigger["name"]?.stringValue ?? ""
        let target = target(trigger)
        return [
            "name": name,
            "href": "/triggers/\(ConsoleMarkup.segment(name))",
            "kind": target.kind,
            "target": target.name,
            "targetHref": target.href,
            "scheme": trigger["verify"]?["scheme"]?.stringValue ?? "",
            "unverified": trigger["verify"]?["scheme"]?.stringValue == "none",
            "mode": mode(trigger),
            "enabled": trigger["enabled"] != .bool(false),
        ]
    }

    /// The form's fields: a trigger's values when it is being replaced, else the defaults.
    static func form(_ trigger: JSONValue?) -> [String: Any] {
        var input = ""
        if let value = trigger?["input"] {
            input = value.stringValue ?? ConsoleJSON.pretty(value).text
        }
        let mode = trigger?["mode"]
        let kind = trigger?["agent"] != nil ? "agent" : "workflow"
        return values(
            [
                "name": trigger?["name"]?.stringValue ?? "",
                "target": trigger.map { target($0).name } ?? "",
                "input": input,
                "secret": trigger?["verify"]?["secret"]?.stringValue ?? "",
                "tolerance": trigger?["verify"]?["tolerance"]?.stringValue ?? "",
                "filter": trigger?["filter"]?.stringValue ?? "",
                "max_events": mode?["batch"]?["max_events"]?.numberValue.map { String(Int64($0)) } ?? "",
                "window": mode?["batch"]?["window"]?.stringValue ?? "",
                "route_key": mode?["route"]?["key"]?.stringValue ?? "",
                "route_signal": mode?["route"]?["signal"]?.stringValue ?? "",
                "per_minute": trigger?["rate_limit"]?["per_minute"]?.numberValue.map { String(Int64($0)) } ?? "",
                "max_body_bytes": trigger?["max_body_bytes"]?.numberValue.map { String(Int64($0)) } ?? "",
            ],
            kind: kind,
            scheme: trigger?["verify"]?["scheme"]?.stringValue ?? "github",
            mode: mode?["batch"] != nil ? "batch" : (mode?["route"] != nil ? "route" : "direct"),
            enabled: trigger?["enabled"] != .bool(false),
            existing: trigger != nil
        )
    }

    static func values(
        _ texts: [String: String],
        kind: String,
        scheme: String,
        mode: String,
        enabled: Bool,
        existing: Bool
    ) -> [String: Any] {
        var values: [String: Any] = texts
        values["kinds"] = ["workflow", "agent"].map { ["value": $0, "selected": $0 == kind] }
        values["schemes"] = schemes.map { ["value": $0, "selected": $0 == scheme] }
        values["modes"] = modes.map { ["value": $0, "selected": $0 == mode] }
        values["enabled"] = enabled
        values["existing"] = existing
        return values
    }

    /// `PUT /v1/triggers/{name}` from the form. The input is JSON when it reads as JSON (`{"repo": "{{ body.repo
    /// }}"}`), else a template string (`{{ body }}`).
    private func save(_ visit: ConsoleVisit, _ form: ConsoleForm) async throws -> ConsoleAnswer {
        let name = form.trimmed("name") ?? ""
        let texts = Dictionary(
            uniqueKeysWithValues: [
                "name", "target", "input", "secret", "tolerance", "filter", "max_events", "window", "route_key",
                "route_signal", "per_minute", "max_body_bytes",
            ].map { ($0, form[$0] ?? "") }
        )
        let kind = form["kind"] == "agent" ? "agent" : "workflow"
        let mode = form["mode"] ?? "direct"
        let values = Self.values(
            texts,
            kind: kind,
            scheme: form["scheme"] ?? "",
            mode: mode,
            enabled: form["enabled"] != nil,
            existing: false
        )
        guard EventsForm.isValidName(name) else {
            return try await listPage(
                visit,
                request: nil,
                form: values,
                problem: SettingsKit.invalid("/name", "a trigger's name is 1 to 64 of a-z, 0-9 and -")
            )
        }
        var body: [String: JSONValue] = [kind: .string(form.trimmed("target") ?? "")]
        if let input = form.trimmed("input") {
            body["input"] = (try? JSONValue(parsing: Array(input.utf8))) ?? .string(input)
        }
        var verify: [String: JSONValue] = ["scheme": .string(form["scheme"] ?? "")]
        if let secret = form.trimmed("secret") { verify["secret"] = .string(secret) }
        if let tolerance = form.trimmed("tolerance") { verify["tolerance"] = .string(tolerance) }
        body["verify"] = .object(verify)
        if let filter = form.trimmed("filter") { body["filter"] = .string(filter) }
        switch mode {
        case "batch":
            body["mode"] = [
                "batch": [
                    "max_events": EventsForm.number(form.trimmed("max_events") ?? ""),
                    "window": .string(form.trimmed("window") ?? ""),
                ]
            ]
        case "route":
            var route: [String: JSONValue] = ["key": .string(form.trimmed("route_key") ?? "")]
            if let signal = form.trimmed("route_signal") { route["signal"] = .string(signal) }
            body["mode"] = ["route": .object(route)]
        default:
            break
        }
        if let rate = form.trimmed("per_minute") { body["rate_limit"] = ["per_minute": EventsForm.number(rate)] }
        if let bytes = form.trimmed("max_body_bytes") { body["max_body_bytes"] = EventsForm.number(bytes) }
        body["enabled"] = .bool(form["enabled"] != nil)
        let answer = try await console.api.call(.put, Self.api(name), as: visit.credentials, body: .object(body))
        if let problem = answer.problem {
            if [401, 403, 404].contains(problem.status) { throw problem }
            return try await listPage(visit, request: nil, form: values, problem: problem)
        }
        let done = answer.status == 201 ? "trigger-created" : "trigger-saved"
        return .redirect("/triggers/\(ConsoleMarkup.segment(name))?done=\(done)")
    }

    // MARK: A trigger

    private func triggerPage(_ name: String, _ visit: ConsoleVisit, request: Request) async throws -> ConsoleAnswer {
        let trigger = try await console.read(Self.api(name), visit)
        let cursor = request.uri.queryParameters.get("cursor").map { String($0) } ?? ""
        var query = ["limit=\(Self.pageSize)"]
        if !cursor.isEmpty { query.append("cursor=\(ConsoleMarkup.query(cursor))") }
        let answer = try await console.api.call(
            .get,
            "\(Self.api(name))/deliveries?" + query.joined(separator: "&"),
            as: visit.credentials
        )
        if let refused = answer.problem, refused.status != 422 { throw refused }
        let deliveries = answer.json["items"]?.arrayValue ?? []
        let href = "/triggers/\(ConsoleMarkup.segment(name))"
        let path = trigger["url"]?.stringValue ?? ""
        var data = EventsPages.frame(current: "/triggers", request: request, flashes: Self.flashes)
        data.merge(Self.row(trigger)) { _, new in new }
        data["url"] = (EventsForm.origin(request) ?? "") + path
        data["input"] = trigger["input"]?.stringValue ?? ConsoleJSON.pretty(trigger["input"] ?? .null).text
        data["secret"] = trigger["verify"]?["secret"]?.stringValue ?? false
        data["tolerance"] = trigger["verify"]?["tolerance"]?.stringValue ?? false
        data["filter"] = trigger["filter"]?.stringValue ?? false
        data["rate"] = trigger["rate_limit"]?["per_minute"]?.numberValue.map { String(Int64($0)) } ?? false
        data["maxBody"] = trigger["max_body_bytes"]?.numberValue.map { SettingsKit.grouped(Int64($0)) } ?? false
        data["created"] = ConsoleTime.element(trigger["created_at"])
        data["updated"] = ConsoleTime.element(trigger["updated_at"])
        data["editHref"] = "/triggers?edit=\(ConsoleMarkup.query(name))#trigger-form"
        data["canWrite"] = visit.can("developer")
        data["deliveries"] = deliveries.map(Self.delivery)
        data["noDeliveries"] = deliveries.isEmpty
        data["firstPage"] = cursor.isEmpty
        data["next"] =
            answer.json["next_cursor"]?.stringValue.map { href + "?cursor=\(ConsoleMarkup.query($0))" } ?? false
        if let view = ConsoleViews.problem(answer.problem) { data["problem"] = view }
        return console.views.page(
            "trigger",
            title: "Trigger \(name)",
            visit: visit,
            data,
            status: answer.problem?.status ?? 200
        )
    }

    /// A delivery record as one row of the trigger's page.
    static func delivery(_ record: JSONValue) -> [String: Any] {
        let outcome = record["outcome"]?.stringValue ?? ""
        let classes = [
            "accepted": "status-succeeded", "refused": "status-failed", "filtered": "status-waiting",
        ]
        let count = Int64(record["count"]?.numberValue ?? 1)
        return [
            "id": record["delivery_id"]?.stringValue ?? "",
            "received": ConsoleTime.element(record["received_at"]),
            "outcome": outcome,
            "outcomeClass": classes[outcome] ?? "status-pending",
            "reason": record["reason"]?.stringValue ?? false,
            "run": record["run_id"]?.stringValue.map { ["id": $0, "href": "/runs/\(ConsoleMarkup.segment($0))"] }
                ?? false,
            "status": record["status"]?.numberValue.map { String(Int64($0)) } ?? "",
            "bytes": SettingsKit.grouped(Int64(record["body_bytes"]?.numberValue ?? 0)),
            "count": count > 1 ? SettingsKit.grouped(count) : false,
        ]
    }

    static let templates: [String: String] = [
        "triggers": """
        {{> events-nav}}
        <h2>Triggers</h2>
        <p class="muted">Public hook URLs whose verified deliveries start runs: GitHub, Stripe, any Standard Webhooks sender, or a script with a token posts to a trigger's URL without an API key.</p>
        {{#empty}}<div class="empty"><p><strong>No triggers yet.</strong> {{#canWrite}}Add one below: the workflow or agent it starts and how a delivery is verified.{{/canWrite}}{{^canWrite}}A developer of this organization adds them here.{{/canWrite}}</p></div>{{/empty}}
        {{^empty}}
        <div class="scroll"><table>
        <caption class="visually-hidden">Triggers</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Starts</th><th scope="col">Verified by</th><th scope="col">Mode</th><th scope="col">State</th></tr></thead>
        <tbody>{{#triggers}}<tr>
        <td><a href="{{href}}"><code>{{name}}</code></a></td><td>{{kind}} <a href="{{targetHref}}"><code>{{target}}</code></a></td>
        <td>{{#unverified}}<span class="status-failed">none</span>{{/unverified}}{{^unverified}}{{scheme}}{{/unverified}}</td><td>{{mode}}</td>
        <td>{{#enabled}}<span class="badge status-succeeded">enabled</span>{{/enabled}}{{^enabled}}<span class="badge status-failed">disabled</span>{{/enabled}}</td>
        </tr>{{/triggers}}</tbody>
        </table></div>
        {{/empty}}
        {{#canWrite}}
        {{#form}}
        <h2 id="trigger-form">{{#existing}}Replace a trigger{{/existing}}{{^existing}}Add a trigger{{/existing}}</h2>
        {{> problem}}
        <form method="post" action="/triggers" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="trigger-name">Name <span class="muted">(lowercase letters, digits and -; the same name replaces it and keeps its URL)</span></label>
        <input id="trigger-name" name="name" required pattern="[a-z0-9-]{1,64}" value="{{name}}"{{#nameError}} aria-invalid="true" aria-describedby="trigger-name-error"{{/nameError}}>
        {{#nameError}}<p class="editor-error" id="trigger-name-error">{{nameError}}</p>{{/nameError}}
        <label for="trigger-kind">Starts a</label>
        <select id="trigger-kind" name="kind">{{#kinds}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/kinds}}</select>
        <label for="trigger-target">Named</label>
        <input id="trigger-target" name="target" required value="{{target}}"{{#targetError}} aria-invalid="true" aria-describedby="trigger-target-error"{{/targetError}}>
        {{#targetError}}<p class="editor-error" id="trigger-target-error">{{targetError}}</p>{{/targetError}}
        <label for="trigger-input">Input <span class="muted">(optional; JSON with templates such as <code>&#123;"repo": "&#123;&#123; body.repository.full_name &#125;&#125;"&#125;</code>, or one template; default <code>&#123;&#123; body &#125;&#125;</code>)</span></label>
        <textarea id="trigger-input" name="input" rows="3"{{#inputError}} aria-invalid="true" aria-describedby="trigger-input-error"{{/inputError}}>{{input}}</textarea>
        {{#inputError}}<p class="editor-error" id="trigger-input-error">{{inputError}}</p>{{/inputError}}
        <label for="trigger-scheme">Verified by</label>
        <select id="trigger-scheme" name="scheme"{{#schemeError}} aria-invalid="true" aria-describedby="trigger-scheme-error"{{/schemeError}}>{{#schemes}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/schemes}}</select>
        {{#schemeError}}<p class="editor-error" id="trigger-scheme-error">{{schemeError}}</p>{{/schemeError}}
        <label for="trigger-secret">Secret <span class="muted">(a secret's name in the vault; none for scheme none)</span></label>
        <input id="trigger-secret" name="secret" list="trigger-secret-names" value="{{secret}}" autocomplete="off"{{#secretError}} aria-invalid="true" aria-describedby="trigger-secret-error"{{/secretError}}>
        <datalist id="trigger-secret-names">{{#secretNames}}<option value="{{name}}">{{/secretNames}}</datalist>
        {{#secretError}}<p class="editor-error" id="trigger-secret-error">{{secretError}}</p>{{/secretError}}
        <label for="trigger-tolerance">Tolerance <span class="muted">(optional; standard_webhooks and stripe: how far a signed time may be off, 1s to 24h, default 5m)</span></label>
        <input id="trigger-tolerance" name="tolerance" value="{{tolerance}}"{{#toleranceError}} aria-invalid="true" aria-describedby="trigger-tolerance-error"{{/toleranceError}}>
        {{#toleranceError}}<p class="editor-error" id="trigger-tolerance-error">{{toleranceError}}</p>{{/toleranceError}}
        <label for="trigger-filter">Filter <span class="muted">(optional; such as <code>body.ref == 'refs/heads/main'</code>)</span></label>
        <input id="trigger-filter" name="filter" value="{{filter}}"{{#filterError}} aria-invalid="true" aria-describedby="trigger-filter-error"{{/filterError}}>
        {{#filterError}}<p class="editor-error" id="trigger-filter-error">{{filterError}}</p>{{/filterError}}
        <label for="trigger-mode">Mode <span class="muted">(direct: a run per delivery; batch: a run per batch; route: a run per key, later events sent to it as signals)</span></label>
        <select id="trigger-mode" name="mode"{{#modeError}} aria-invalid="true" aria-describedby="trigger-mode-error"{{/modeError}}>{{#modes}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/modes}}</select>
        {{#modeError}}<p class="editor-error" id="trigger-mode-error">{{modeError}}</p>{{/modeError}}
        <label for="trigger-max-events">Batch: most events <span class="muted">(1 to 10000)</span></label>
        <input id="trigger-max-events" name="max_events" inputmode="numeric" value="{{max_events}}"{{#max_eventsError}} aria-invalid="true" aria-describedby="trigger-max-events-error"{{/max_eventsError}}>
        {{#max_eventsError}}<p class="editor-error" id="trigger-max-events-error">{{max_eventsError}}</p>{{/max_eventsError}}
        <label for="trigger-window">Batch: window <span class="muted">(100ms to 24h, such as 10s)</span></label>
        <input id="trigger-window" name="window" value="{{window}}"{{#windowError}} aria-invalid="true" aria-describedby="trigger-window-error"{{/windowError}}>
        {{#windowError}}<p class="editor-error" id="trigger-window-error">{{windowError}}</p>{{/windowError}}
        <label for="trigger-route-key">Route: key <span class="muted">(a template such as <code>&#123;&#123; body.customer &#125;&#125;</code>)</span></label>
        <input id="trigger-route-key" name="route_key" value="{{route_key}}"{{#route_keyError}} aria-invalid="true" aria-describedby="trigger-route-key-error"{{/route_keyError}}>
        {{#route_keyError}}<p class="editor-error" id="trigger-route-key-error">{{route_keyError}}</p>{{/route_keyError}}
        <label for="trigger-route-signal">Route: signal <span class="muted">(default event)</span></label>
        <input id="trigger-route-signal" name="route_signal" value="{{route_signal}}"{{#route_signalError}} aria-invalid="true" aria-describedby="trigger-route-signal-error"{{/route_signalError}}>
        {{#route_signalError}}<p class="editor-error" id="trigger-route-signal-error">{{route_signalError}}</p>{{/route_signalError}}
        <label for="trigger-rate">Rate limit per minute <span class="muted">(optional)</span></label>
        <input id="trigger-rate" name="per_minute" inputmode="numeric" value="{{per_minute}}"{{#per_minuteError}} aria-invalid="true" aria-describedby="trigger-rate-error"{{/per_minuteError}}>
        {{#per_minuteError}}<p class="editor-error" id="trigger-rate-error">{{per_minuteError}}</p>{{/per_minuteError}}
        <label for="trigger-max-body">Largest body in bytes <span class="muted">(optional; default 262144)</span></label>
        <input id="trigger-max-body" name="max_body_bytes" inputmode="numeric" value="{{max_body_bytes}}"{{#max_body_bytesError}} aria-invalid="true" aria-describedby="trigger-max-body-error"{{/max_body_bytesError}}>
        {{#max_body_bytesError}}<p class="editor-error" id="trigger-max-body-error">{{max_body_bytesError}}</p>{{/max_body_bytesError}}
        <label><input type="checkbox" name="enabled" value="true"{{#enabled}} checked{{/enabled}}> Enabled</label>
        {{#enabledError}}<p class="editor-error" id="trigger-enabled-error">{{enabledError}}</p>{{/enabledError}}
        <button type="submit" class="primary">Save trigger</button>
        </form>
        {{/form}}
        {{/canWrite}}
        """,
        "trigger": """
        <p class="crumbs"><a href="/triggers">Triggers</a> / {{name}}</p>
        <h1>Trigger <code>{{name}}</code></h1>
        {{#flash}}<p class="flash" role="status">{{flash}}</p>{{/flash}}
        {{> problem}}
        <p>Senders post to:</p>
        <p><code id="hook-url">{{url}}</code></p>
        {{#unverified}}<p class="problem" role="note"><strong>Not verified:</strong> anyone who knows this URL can start runs.</p>{{/unverified}}
        <dl class="facts">
        <dt>Starts</dt><dd>{{kind}} <a href="{{targetHref}}"><code>{{target}}</code></a></dd>
        <dt>State</dt><dd>{{#enabled}}<span class="badge status-succeeded">enabled</span>{{/enabled}}{{^enabled}}<span class="badge status-failed">disabled</span> <span class="muted">(its URL answers 404)</span>{{/enabled}}</dd>
        <dt>Verified by</dt><dd>{{scheme}}{{#secret}} with the secret <code>{{secret}}</code>{{/secret}}{{#tolerance}}, tolerance {{tolerance}}{{/tolerance}}</dd>
        <dt>Input</dt><dd><pre class="code">{{input}}</pre></dd>
        <dt>Filter</dt><dd>{{#filter}}<code>{{filter}}</code>{{/filter}}{{^filter}}<span class="muted">none</span>{{/filter}}</dd>
        <dt>Mode</dt><dd>{{mode}}</dd>
        <dt>Rate limit</dt><dd>{{#rate}}{{rate}} a minute{{/rate}}{{^rate}}<span class="muted">none</span>{{/rate}}</dd>
        <dt>Largest body</dt><dd>{{#maxBody}}{{maxBody}} bytes{{/maxBody}}{{^maxBody}}<span class="muted">the default</span>{{/maxBody}}</dd>
        <dt>Created</dt><dd>{{{created}}}</dd>
        <dt>Changed</dt><dd>{{{updated}}}</dd>
        </dl>
        {{#canWrite}}<p class="actions"><a href="{{editHref}}">Replace this trigger</a></p>{{/canWrite}}
        <h2>Deliveries</h2>
        {{#noDeliveries}}<div class="empty"><p><strong>No deliveries{{^firstPage}} further back{{/firstPage}}.</strong> Every request to the URL is recorded here for 7 days: accepted, duplicate, filtered or refused, never its body.</p></div>{{/noDeliveries}}
        {{^noDeliveries}}
        <div class="scroll"><table>
        <caption class="visually-hidden">Deliveries, newest first</caption>
        <thead><tr><th scope="col">Delivery</th><th scope="col">Received</th><th scope="col">Outcome</th><th scope="col">Reason</th><th scope="col">Run</th><th scope="col">Answer</th><th scope="col">Body bytes</th></tr></thead>
        <tbody>{{#deliveries}}<tr>
        <td class="clip"><code>{{id}}</code></td><td>{{{received}}}</td>
        <td><span class="badge {{outcomeClass}}">{{outcome}}</span>{{#count}} <span class="muted">× {{count}}</span>{{/count}}</td>
        <td>{{#reason}}{{reason}}{{/reason}}{{^reason}}<span class="muted">—</span>{{/reason}}</td>
        <td>{{#run}}<a href="{{href}}"><code>{{id}}</code></a>{{/run}}{{^run}}<span class="muted">—</span>{{/run}}</td>
        <td>{{status}}</td><td>{{bytes}}</td>
        </tr>{{/deliveries}}</tbody>
        </table></div>
        {{/noDeliveries}}
        <p class="actions">{{^firstPage}}<a href="{{href}}">Newest deliveries</a>{{/firstPage}}{{#next}}<a href="{{next}}">Older deliveries</a>{{/next}}</p>
        {{#canWrite}}
        <h2>Delete</h2>
        <details><summary>Delete this trigger</summary>
        <p>Its URL answers 404 at once; its delivery records and buffered events go with it.</p>
        <form method="post" action="{{href}}/delete" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit" class="danger">Delete trigger {{name}}</button>
        </form></details>
        {{/canWrite}}
        """,
    ]
}
