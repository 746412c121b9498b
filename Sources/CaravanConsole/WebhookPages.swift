import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Outbound webhooks: the list with the form that creates and changes them, and a webhook's page with its
/// deliveries (by status, a page at a time, each one re-sendable), secret rotation, enabling and deletion. A signing
/// secret is shown once, on the page that answers its creation or rotation, and never again.
struct WebhookPages: Sendable {
    let console: Console

    static let pageSize = 50
    static let formats = ["standard", "slack", "email"]
    static let statuses = ["pending", "delivered", "failed"]
    /// The fields of the webhook form, as the API's pointers name them.
    static let fields = ["name", "format", "url", "to", "events", "filter", "disable_after", "enabled"]

    static let flashes: [String: String] = [
        "webhook-saved": "The webhook was saved.",
        "webhook-deleted": "The webhook was deleted; nothing more is sent to it.",
        "webhook-enabled": "The webhook is enabled again; its failure streak starts over.",
        "delivery-resent": "The delivery was queued to be sent again now.",
    ]

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/webhooks") { request, context in
            await console.page(request, context) { visit in try await listPage(visit, request: request) }
        }
        router.post("/webhooks") { request, context in
            await console.action(request, context) { visit, form in try await save(visit, form) }
        }
        router.get("/webhooks/{name}") { request, context in
            let name = try context.parameters.require("name")
            return await console.page(request, context) { visit in
                try await webhookPage(name, visit, request: request)
            }
        }
        router.post("/webhooks/{name}/deliveries/{delivery}/resend") { request, context in
            let name = try context.parameters.require("name")
            let delivery = try context.parameters.require("delivery")
            return await console.action(request, context) { visit, _ in
                let path = "\(Self.api(name))/deliveries/\(ConsoleMarkup.segment(delivery))/resend"
                _ = try await console.change(.post, path, body: nil, visit).get()
                return .redirect("/webhooks/\(ConsoleMarkup.segment(name))?done=delivery-resent")
            }
        }
        router.post("/webhooks/{name}/rotate-secret") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, form in
                let grace = form.trimmed("grace")
                let body: JSONValue = .object(grace.map { ["grace": .string($0)] } ?? [:])
                switch try await console.change(.post, "\(Self.api(name))/rotate-secret", body: body, visit) {
                case .success(let answer):
                    return secretPage(
                        visit,
                        name: name,
                        secret: answer["secret"]?.stringValue ?? "",
                        previous: answer["previous_valid_for"]?.stringValue
                    )
                case .failure(let problem):
                    return try await webhookPage(name, visit, request: request, grace: grace ?? "", problem: problem)
                }
            }
        }
        router.post("/webhooks/{name}/enable") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, _ in
                var body = Self.definition(try await console.read(Self.api(name), visit))
                body["enabled"] = .bool(true)
                switch try await console.change(.put, Self.api(name), body: .object(body), visit) {
                case .success: return .redirect("/webhooks/\(ConsoleMarkup.segment(name))?done=webhook-enabled")
                case .failure(let problem):
                    return try await webhookPage(name, visit, request: request, problem: problem)
                }
            }
        }
        router.post("/webhooks/{name}/delete") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, _ in
                _ = try await console.change(.delete, Self.api(name), body: nil, visit).get()
                return .redirect("/webhooks?done=webhook-deleted")
            }
        }
    }

    static func api(_ name: String) -> String { "/v1/webhooks/\(ConsoleMarkup.segment(name))" }

    // MARK: The list and its form

    private func listPage(
        _ visit: ConsoleVisit,
        request: Request?,
        form: [String: Any]? = nil,
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let webhooks = try await console.readAll("/v1/webhooks", visit)
        let edit = request?.uri.queryParameters.get("edit").map { String($0) }
        let editing = edit.flatMap { name in webhooks.first { $0["name"]?.stringValue == name } }
        var data = EventsPages.frame(current: "/webhooks", request: request, flashes: Self.flashes)
        data["webhooks"] = webhooks.map(Self.row)
        data["empty"] = webhooks.isEmpty
        data["canWrite"] = visit.can("developer")
        data["form"] = EventsForm.withErrors(
            form ?? Self.form(editing),
            problem,
            fields: Self.fields,
            field: EventsForm.firstSegment
        )
        if let shown = ConsoleViews.problem(problem) { data["problem"] = shown }
        return console.views.page("webhooks", title: "Webhooks", visit: visit, data, status: problem?.status ?? 200)
    }

    /// What a webhook sends to: its URL, or its email addresses.
    static func target(_ webhook: JSONValue) -> String {
        webhook["url"]?.stringValue
            ?? (webhook["to"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
    }

    /// A webhook as one row of the list.
    static func row(_ webhook: JSONValue) -> [String: Any] {
        let name = webhook["name"]?.stringValue ?? ""
        return [
            "name": name,
            "href": "/webhooks/\(ConsoleMarkup.segment(name))",
            "format": webhook["format"]?.stringValue ?? "",
            "target": target(webhook),
            "events": (webhook["events"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
            "enabled": webhook["enabled"] == .bool(true),
            "reason": webhook["disabled_reason"]?.stringValue ?? false,
            "failingSince": EventsForm.time(webhook["failing_since"]),
        ]
    }

    /// The form's fields: a webhook's values when it is being changed, else the defaults.
    static func form(_ webhook: JSONValue?) -> [String: Any] {
        values(
            name: webhook?["name"]?.stringValue ?? "",
            format: webhook?["format"]?.stringValue ?? "standard",
            url: webhook?["url"]?.stringValue ?? "",
            to: (webhook?["to"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
            events: (webhook?["events"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
            filter: webhook?["filter"]?.stringValue ?? "",
            disableAfter: webhook?["disable_after"]?.stringValue ?? "",
            enabled: webhook.map { $0["enabled"] == .bool(true) } ?? true,
            existing: webhook != nil
        )
    }

    static func values(
        name: String,
        format: String,
        url: String,
        to: String,
        events: String,
        filter: String,
        disableAfter: String,
        enabled: Bool,
        existing: Bool
    ) -> [String: Any] {
        [
            "name": name, "url": url, "to": to, "events": events, "filter": filter, "disableAfter": disableAfter,
            "enabled": enabled, "existing": existing,
            "formats": formats.map { ["value": $0, "selected": $0 == format] },
        ]
    }

    /// `PUT /v1/webhooks/{name}` from the form. A new webhook's answer holds its secret: it is shown on the page
    /// this answers, once.
    private func save(_ visit: ConsoleVisit, _ form: ConsoleForm) async throws -> ConsoleAnswer {
        let name = form.trimmed("name") ?? ""
        let format = form["format"] ?? "standard"
        let values = Self.values(
            name: name,
            format: format,
            url: form["url"] ?? "",
            to: form["to"] ?? "",
            events: form["events"] ?? "",
            filter: form["filter"] ?? "",
            disableAfter: form["disable_after"] ?? "",
            enabled: form["enabled"] != nil,
            existing: false
        )
        guard EventsForm.isValidName(name) else {
            return try await listPage(
                visit,
                request: nil,
                form: values,
                problem: SettingsKit.invalid("/name", "a webhook's name is 1 to 64 of a-z, 0-9 and -")
            )
        }
        var body: [String: JSONValue] = [
            "format": .string(format),
            "events": .array(EventsForm.list(form["events"]).map(JSONValue.string)),
            "enabled": .bool(form["enabled"] != nil),
        ]
        if format == "email" {
            body["to"] = .array(EventsForm.list(form["to"]).map(JSONValue.string))
        } else if let url = form.trimmed("url") {
            body["url"] = .string(url)
        }
        if let filter = form.trimmed("filter") { body["filter"] = .string(filter) }
        if let disableAfter = form.trimmed("disable_after") { body["disable_after"] = .string(disableAfter) }
        switch try await console.change(.put, Self.api(name), body: .object(body), visit) {
        case .success(let answer):
            if let secret = answer["secret"]?.stringValue {
                return secretPage(visit, name: name, secret: secret, previous: nil)
            }
            return .redirect("/webhooks/\(ConsoleMarkup.segment(name))?done=webhook-saved")
        case .failure(let problem):
            return try await listPage(visit, request: nil, form: values, problem: problem)
        }
    }

    /// A webhook's definition as `PUT` takes it, from the API's answer.
    static func definition(_ webhook: JSONValue) -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        for field in ["format", "url", "to", "events", "filter", "disable_after", "enabled"] {
            if let value = webhook[field], !value.isNull { body[field] = value }
        }
        return body
    }

    /// The page that shows a new secret, once.
    private func secretPage(_ visit: ConsoleVisit, name: String, secret: String, previous: String?) -> ConsoleAnswer {
        var data = EventsPages.frame(current: "/webhooks", request: nil, flashes: [:])
        data["name"] = name
        data["href"] = "/webhooks/\(ConsoleMarkup.segment(name))"
        data["secret"] = secret
        data["rotated"] = previous != nil
        data["previous"] = previous ?? false
        return console.views.page(
            "webhook-secret",
            title: previous == nil ? "Webhook created" : "Secret rotated",
            visit: visit,
            data
        )
    }

    // MARK: A webhook

    private func webhookPage(
        _ name: String,
        _ visit: ConsoleVisit,
        request: Request,
        grace: String = "24h",
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let webhook = try await console.read(Self.api(name), visit)
        let parameters = request.uri.queryParameters
        let status = parameters.get("status").map { String($0) } ?? ""
        let cursor = parameters.get("cursor").map { String($0) } ?? ""
        var query = ["limit=\(Self.pageSize)"]
        if !status.isEmpty { query.append("status=\(ConsoleMarkup.query(status))") }
        if !cursor.isEmpty { query.append("cursor=\(ConsoleMarkup.query(cursor))") }
        let answer = try await console.api.call(
            .get,
            "\(Self.api(name))/deliveries?" + query.joined(separator: "&"),
            as: visit.credentials
        )
        // A status or cursor the API cannot read is shown beside the filter; anything else ends the page.
        if let refused = answer.problem, refused.status != 422 { throw refused }
        let deliveries = answer.json["items"]?.arrayValue ?? []
        let href = "/webhooks/\(ConsoleMarkup.segment(name))"
        let filter = status.isEmpty ? "" : "status=\(ConsoleMarkup.query(status))"
        let next = answer.json["next_cursor"]?.stringValue.map {
            href + "?" + (filter.isEmpty ? "" : filter + "&") + "cursor=\(ConsoleMarkup.query($0))"
        }
        let shown = problem ?? answer.problem
        var data = EventsPages.frame(current: "/webhooks", request: request, flashes: Self.flashes)
        data.merge(Self.row(webhook)) { _, new in new }
        data["isEmail"] = webhook["format"]?.stringValue == "email"
        data["filter"] = webhook["filter"]?.stringValue ?? false
        data["disableAfter"] = webhook["disable_after"]?.stringValue ?? ""
        data["created"] = ConsoleTime.element(webhook["created_at"])
        data["updated"] = ConsoleTime.element(webhook["updated_at"])
        data["editHref"] = "/webhooks?edit=\(ConsoleMarkup.query(name))#webhook-form"
        data["canWrite"] = visit.can("developer")
        data["deliveries"] = deliveries.map { Self.delivery($0, webhook: name) }
        data["noDeliveries"] = deliveries.isEmpty
        data["statuses"] = Self.statuses.map { ["value": $0, "selected": $0 == status] }
        data["filtered"] = !status.isEmpty
        data["firstPage"] = cursor.isEmpty
        data["newest"] = href + (filter.isEmpty ? "" : "?" + filter)
        data["next"] = next ?? false
        data["rotate"] = EventsForm.withErrors(
            ["grace": grace],
            problem,
            fields: ["grace"],
            field: EventsForm.firstSegment
        )
        if let view = ConsoleViews.problem(shown) { data["problem"] = view }
        return console.views.page("webhook", title: "Webhook \(name)", visit: visit, data, status: shown?.status ?? 200)
    }

    /// A delivery as one row of the webhook's page.
    static func delivery(_ delivery: JSONValue, webhook: String) -> [String: Any] {
        let id = delivery["id"]?.stringValue ?? ""
        let status = delivery["status"]?.stringValue ?? ""
        let classes = ["delivered": "status-succeeded", "failed": "status-failed"]
        return [
            "id": id,
            "status": status,
            "statusClass": classes[status] ?? "status-pending",
            "type": delivery["type"]?.stringValue ?? "",
            "run": delivery["run_id"]?.stringValue.map { ["id": $0, "href": "/runs/\(ConsoleMarkup.segment($0))"] }
                ?? false,
            "attempts": delivery["attempts"]?.numberValue.map { String(Int64($0)) } ?? "0",
            "response": delivery["response_status"]?.numberValue.map { String(Int64($0)) } ?? false,
            "latency": delivery["latency_ms"]?.numberValue.map { ConsoleTime.duration(milliseconds: Int64($0)) }
                ?? false,
            "error": delivery["error"]?.stringValue ?? false,
            "excerpt": delivery["response_excerpt"]?.stringValue ?? false,
            "created": ConsoleTime.element(delivery["created_at"]),
            "lastAttempt": EventsForm.time(delivery["last_attempt_at"]),
            "nextAttempt": status == "pending" ? EventsForm.time(delivery["next_attempt_at"]) : false,
            "deliveredAt": EventsForm.time(delivery["delivered_at"]),
            "resendAction":
                "/webhooks/\(ConsoleMarkup.segment(webhook))/deliveries/\(ConsoleMarkup.segment(id))/resend",
        ]
    }

    static let templates: [String: String] = [
        "webhooks": """
        {{> events-nav}}
        <h2>Webhooks</h2>
        <p class="muted">Run events sent as they happen: signed JSON to a URL (the Standard Webhooks way), a message to a Slack-compatible incoming webhook, or an email.</p>
        {{#empty}}<div class="empty"><p><strong>No webhooks yet.</strong> {{#canWrite}}Add one below: where to send, and which events (such as <code>run.failed</code> or <code>run.*</code>).{{/canWrite}}{{^canWrite}}A developer of this organization adds them here.{{/canWrite}}</p></div>{{/empty}}
        {{^empty}}
        <div class="scroll"><table>
        <caption class="visually-hidden">Webhooks</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Format</th><th scope="col">Sends to</th><th scope="col">Events</th><th scope="col">State</th><th scope="col">Failing since</th></tr></thead>
        <tbody>{{#webhooks}}<tr>
        <td><a href="{{href}}"><code>{{name}}</code></a></td><td>{{format}}</td><td class="clip"><code>{{target}}</code></td><td>{{events}}</td>
        <td>{{#enabled}}<span class="badge status-succeeded">enabled</span>{{/enabled}}{{^enabled}}<span class="badge status-failed">disabled</span>{{#reason}} <span class="muted">{{reason}}</span>{{/reason}}{{/enabled}}</td>
        <td>{{#failingSince}}{{{failingSince}}}{{/failingSince}}{{^failingSince}}<span class="muted">—</span>{{/failingSince}}</td>
        </tr>{{/webhooks}}</tbody>
        </table></div>
        {{/empty}}
        {{#canWrite}}
        {{#form}}
        <h2 id="webhook-form">{{#existing}}Change a webhook{{/existing}}{{^existing}}Add a webhook{{/existing}}</h2>
        {{> problem}}
        <form method="post" action="/webhooks" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="webhook-name">Name <span class="muted">(lowercase letters, digits and -; the same name changes it)</span></label>
        <input id="webhook-name" name="name" required pattern="[a-z0-9-]{1,64}" value="{{name}}"{{#nameError}} aria-invalid="true" aria-describedby="webhook-name-error"{{/nameError}}>
        {{#nameError}}<p class="editor-error" id="webhook-name-error">{{nameError}}</p>{{/nameError}}
        <label for="webhook-format">Format</label>
        <select id="webhook-format" name="format"{{#formatError}} aria-invalid="true" aria-describedby="webhook-format-error"{{/formatError}}>{{#formats}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/formats}}</select>
        {{#formatError}}<p class="editor-error" id="webhook-format-error">{{formatError}}</p>{{/formatError}}
        <label for="webhook-url">URL <span class="muted">(standard and slack: where to post)</span></label>
        <input id="webhook-url" name="url" type="url" value="{{url}}" placeholder="https://example.com/hooks/caravan"{{#urlError}} aria-invalid="true" aria-describedby="webhook-url-error"{{/urlError}}>
        {{#urlError}}<p class="editor-error" id="webhook-url-error">{{urlError}}</p>{{/urlError}}
        <label for="webhook-to">Recipients <span class="muted">(email: addresses separated by commas)</span></label>
        <input id="webhook-to" name="to" value="{{to}}" placeholder="ops@example.com"{{#toError}} aria-invalid="true" aria-describedby="webhook-to-error"{{/toError}}>
        {{#toError}}<p class="editor-error" id="webhook-to-error">{{toError}}</p>{{/toError}}
        <label for="webhook-events">Events <span class="muted">(separated by commas: run.failed, run.succeeded, step.*)</span></label>
        <input id="webhook-events" name="events" required value="{{events}}"{{#eventsError}} aria-invalid="true" aria-describedby="webhook-events-error"{{/eventsError}}>
        {{#eventsError}}<p class="editor-error" id="webhook-events-error">{{eventsError}}</p>{{/eventsError}}
        <label for="webhook-filter">Filter <span class="muted">(optional; an expression over the event, such as <code>run.workflow == 'deploy'</code>)</span></label>
        <input id="webhook-filter" name="filter" value="{{filter}}"{{#filterError}} aria-invalid="true" aria-describedby="webhook-filter-error"{{/filterError}}>
        {{#filterError}}<p class="editor-error" id="webhook-filter-error">{{filterError}}</p>{{/filterError}}
        <label for="webhook-disable-after">Disable after failing for <span class="muted">(optional, 1s to 90d; default 5d)</span></label>
        <input id="webhook-disable-after" name="disable_after" value="{{disableAfter}}" placeholder="5d"{{#disable_afterError}} aria-invalid="true" aria-describedby="webhook-disable-after-error"{{/disable_afterError}}>
        {{#disable_afterError}}<p class="editor-error" id="webhook-disable-after-error">{{disable_afterError}}</p>{{/disable_afterError}}
        <label><input type="checkbox" name="enabled" value="true"{{#enabled}} checked{{/enabled}}> Enabled</label>
        {{#enabledError}}<p class="editor-error" id="webhook-enabled-error">{{enabledError}}</p>{{/enabledError}}
        <button type="submit" class="primary">Save webhook</button>
        </form>
        {{/form}}
        {{/canWrite}}
        """,
        "webhook-secret": """
        {{> events-nav}}
        <h2>{{#rotated}}New signing secret of {{name}}{{/rotated}}{{^rotated}}Webhook {{name}} created{{/rotated}}</h2>
        <p>Receivers check each delivery's <code>webhook-signature</code> with this secret. Copy it now:</p>
        <p class="secret" id="webhook-secret">{{secret}}</p>
        <p role="note"><strong>It will not be shown again.</strong> Only a sealed copy is kept; if you lose it, rotate it on the webhook's page.</p>
        {{#previous}}<p>The previous secret stays valid for {{previous}}: until then every delivery carries a signature by each.</p>{{/previous}}
        <p><a href="{{href}}">Go to the webhook {{name}}</a></p>
        """,
        "webhook": """
        <p class="crumbs"><a href="/webhooks">Webhooks</a> / {{name}}</p>
        <h1>Webhook <code>{{name}}</code></h1>
        {{#flash}}<p class="flash" role="status">{{flash}}</p>{{/flash}}
        {{> problem}}
        {{^enabled}}<div class="problem" role="status"><strong>Disabled{{#reason}}: {{reason}}{{/reason}}.</strong> Nothing is sent until it is enabled again.
        {{#canWrite}}<form method="post" action="{{href}}/enable" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit">Enable</button>
        </form>{{/canWrite}}</div>{{/enabled}}
        <dl class="facts">
        <dt>Format</dt><dd>{{format}}</dd>
        <dt>{{#isEmail}}Recipients{{/isEmail}}{{^isEmail}}URL{{/isEmail}}</dt><dd><code>{{target}}</code></dd>
        <dt>Events</dt><dd>{{events}}</dd>
        <dt>Filter</dt><dd>{{#filter}}<code>{{filter}}</code>{{/filter}}{{^filter}}<span class="muted">none</span>{{/filter}}</dd>
        <dt>State</dt><dd>{{#enabled}}<span class="badge status-succeeded">enabled</span>{{/enabled}}{{^enabled}}<span class="badge status-failed">disabled</span>{{/enabled}}</dd>
        <dt>Failing since</dt><dd>{{#failingSince}}{{{failingSince}}}{{/failingSince}}{{^failingSince}}<span class="muted">—</span>{{/failingSince}}</dd>
        <dt>Disabled after failing for</dt><dd>{{disableAfter}}</dd>
        <dt>Created</dt><dd>{{{created}}}</dd>
        <dt>Changed</dt><dd>{{{updated}}}</dd>
        </dl>
        {{#canWrite}}<p class="actions"><a href="{{editHref}}">Change this webhook</a></p>{{/canWrite}}
        <h2>Deliveries</h2>
        <form method="get" action="{{href}}" class="filters" aria-label="Filter deliveries">
        <label for="delivery-status">Status</label>
        <select id="delivery-status" name="status"><option value="">any</option>{{#statuses}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/statuses}}</select>
        <button type="submit">Filter</button>
        {{#filtered}}<a href="{{href}}">Every delivery</a>{{/filtered}}
        </form>
        {{#noDeliveries}}<div class="empty"><p><strong>No deliveries{{#filtered}} in this state{{/filtered}}{{^firstPage}} further back{{/firstPage}}.</strong> Each run event the webhook follows is queued here as it happens.</p></div>{{/noDeliveries}}
        {{^noDeliveries}}
        <div class="scroll"><table>
        <caption class="visually-hidden">Deliveries, newest first</caption>
        <thead><tr><th scope="col">#</th><th scope="col">Status</th><th scope="col">Event</th><th scope="col">Run</th><th scope="col">Attempts</th><th scope="col">Answer</th><th scope="col">Latency</th><th scope="col">Error</th><th scope="col">Times</th>{{#canWrite}}<th scope="col">Actions</th>{{/canWrite}}</tr></thead>
        <tbody>{{#deliveries}}<tr>
        <td>{{id}}</td><td><span class="badge {{statusClass}}">{{status}}</span></td><td><code>{{type}}</code></td>
        <td>{{#run}}<a href="{{href}}"><code>{{id}}</code></a>{{/run}}{{^run}}<span class="muted">—</span>{{/run}}</td>
        <td>{{attempts}}</td>
        <td>{{#response}}{{response}}{{/response}}{{^response}}<span class="muted">—</span>{{/response}}{{#excerpt}}<br><span class="muted clip">{{excerpt}}</span>{{/excerpt}}</td>
        <td>{{#latency}}{{latency}}{{/latency}}{{^latency}}<span class="muted">—</span>{{/latency}}</td>
        <td>{{#error}}<span class="status-failed">{{error}}</span>{{/error}}{{^error}}<span class="muted">—</span>{{/error}}</td>
        <td>queued {{{created}}}{{#lastAttempt}}<br>last tried {{{lastAttempt}}}{{/lastAttempt}}{{#nextAttempt}}<br>next {{{nextAttempt}}}{{/nextAttempt}}{{#deliveredAt}}<br>delivered {{{deliveredAt}}}{{/deliveredAt}}</td>
        {{#canWrite}}<td><form method="post" action="{{resendAction}}" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit">Resend</button>
        </form></td>{{/canWrite}}
        </tr>{{/deliveries}}</tbody>
        </table></div>
        {{/noDeliveries}}
        <p class="actions">{{^firstPage}}<a href="{{newest}}">Newest deliveries</a>{{/firstPage}}{{#next}}<a href="{{next}}">Older deliveries</a>{{/next}}</p>
        {{#canWrite}}
        {{#rotate}}
        <h2>Rotate the signing secret</h2>
        <form method="post" action="{{href}}/rotate-secret" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="rotate-grace">Keep the previous secret valid for <span class="muted">(0s to 7d; meanwhile deliveries carry both signatures)</span></label>
        <input id="rotate-grace" name="grace" value="{{grace}}"{{#graceError}} aria-invalid="true" aria-describedby="rotate-grace-error"{{/graceError}}>
        {{#graceError}}<p class="editor-error" id="rotate-grace-error">{{graceError}}</p>{{/graceError}}
        <button type="submit">Rotate secret</button>
        </form>
        {{/rotate}}
        <h2>Delete</h2>
        <details><summary>Delete this webhook</summary>
        <p>Its queued deliveries go with it; nothing more is sent.</p>
        <form method="post" action="{{href}}/delete" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit" class="danger">Delete webhook {{name}}</button>
        </form></details>
        {{/canWrite}}
        """,
    ]
}
