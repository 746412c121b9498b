import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Settings › Notifications, for admins: the organization's SMTP server for email notifications (its password is a
/// secret of the vault, named here, never typed into this page), and a test notification to see a target work
/// before a workflow or a webhook relies on it.
struct NotificationPages: Sendable {
    let console: Console

    static let securities = ["starttls", "tls", "none"]
    static let testKinds = ["email", "slack", "webhook"]
    static let fields = ["host", "port", "security", "username", "password_secret", "from", "insecure_skip_verify"]

    static let flashes: [String: String] = [
        "smtp-saved": "The SMTP settings were saved.",
        "smtp-deleted": "The SMTP settings were removed: email notifications fail until new ones are set.",
    ]

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/settings/notifications") { request, context in
            await console.page(request, context) { visit in try await page(visit, request: request) }
        }
        router.post("/settings/notifications") { request, context in
            await console.action(request, context) { visit, form in try await save(visit, form) }
        }
        router.post("/settings/notifications/delete") { request, context in
            await console.action(request, context) { visit, _ in
                try Self.requireAdmin(visit)
                _ = try await console.change(.delete, "/v1/notifications/smtp", body: nil, visit).get()
                return .redirect("/settings/notifications?done=smtp-deleted")
            }
        }
        router.post("/settings/notifications/test") { request, context in
            await console.action(request, context) { visit, form in try await sendTest(visit, form) }
        }
    }

    static func requireAdmin(_ visit: ConsoleVisit) throws {
        guard visit.can("admin") else {
            throw ConsoleProblem(
                status: 403,
                code: "forbidden",
                detail: "Only an admin of the organization manages its notification settings."
            )
        }
    }

    private func page(
        _ visit: ConsoleVisit,
        request: Request?,
        form: [String: Any]? = nil,
        problem: ConsoleProblem? = nil,
        test: [String: Any]? = nil,
        testResult: Any = false
    ) async throws -> ConsoleAnswer {
        try Self.requireAdmin(visit)
        let answer = try await console.api.call(.get, "/v1/notifications/smtp", as: visit.credentials)
        if let refused = answer.problem, refused.status != 404 { throw refused }
        let settings: JSONValue? = answer.succeeded ? .some(answer.json) : .none
        let secretNames = ((try? await console.readAll("/v1/secrets", visit)) ?? []).compactMap {
            $0["name"]?.stringValue
        }
        var data = SettingsPages(console: console).frame(visit, current: "/settings/notifications", request: request)
        let done = request?.uri.queryParameters.get("done").map { String($0) }
        if let flash = done.flatMap({ Self.flashes[$0] }) { data["flash"] = flash }
        data["configured"] = settings.map { Self.summary($0) } ?? false
        data["secretNames"] = secretNames.map { ["name": $0] }
        data["form"] = EventsForm.withErrors(
            form ?? Self.form(settings),
            problem,
            fields: Self.fields,
            field: EventsForm.firstSegment
        )
        data["test"] = test ?? Self.testForm(kind: "email", destination: "", title: "")
        data["testResult"] = testResult
        if let shown = ConsoleViews.problem(problem) { data["problem"] = shown }
        return console.views.page(
            "settings-notifications",
            title: "Notifications",
            visit: visit,
            data,
            status: problem?.status ?? 200
        )
    }

    /// The stored settings as the page states them.
    static func summary(_ settings: JSONValue) -> [String: Any] {
        [
            "server": "\(settings["host"]?.stringValue ?? ""):\(Int64(settings["port"]?.numberValue ?? 0))",
            "security": settings["security"]?.stringValue ?? "",
            "username": settings["username"]?.stringValue ?? false,
            "passwordSecret": settings["password_secret"]?.stringValue ?? false,
            "from": settings["from"]?.stringValue ?? "",
            "insecure": settings["insecure_skip_verify"] == .bool(true),
            "updated": ConsoleTime.element(settings["updated_at"]),
        ]
    }

    /// The form's fields: the stored settings, else the defaults.
    static func form(_ settings: JSONValue?) -> [String: Any] {
        values(
            host: settings?["host"]?.stringValue ?? "",
            port: settings?["port"]?.numberValue.map { String(Int64($0)) } ?? "587",
            security: settings?["security"]?.stringValue ?? "starttls",
            username: settings?["username"]?.stringValue ?? "",
            passwordSecret: settings?["password_secret"]?.stringValue ?? "",
            from: settings?["from"]?.stringValue ?? "",
            insecure: settings?["insecure_skip_verify"] == .bool(true)
        )
    }

    static func values(
        host: String,
        port: String,
        security: String,
        username: String,
        passwordSecret: String,
        from: String,
        insecure: Bool
    ) -> [String: Any] {
        [
            "host": host, "port": port, "username": username, "passwordSecret": passwordSecret, "from": from,
            "insecure": insecure, "securities": securities.map { ["value": $0, "selected": $0 == security] },
        ]
    }

    static func testForm(kind: String, destination: String, title: String) -> [String: Any] {
        [
            "kinds": testKinds.map { ["value": $0, "selected": $0 == kind] }, "destination": destination,
            "title": title,
        ]
    }

    /// `PUT /v1/notifications/smtp` from the form.
    private func save(_ visit: ConsoleVisit, _ form: ConsoleForm) async throws -> ConsoleAnswer {
        try Self.requireAdmin(visit)
        let values = Self.values(
            host: form["host"] ?? "",
            port: form["port"] ?? "",
            security: form["security"] ?? "",
            username: form["username"] ?? "",
            passwordSecret: form["password_secret"] ?? "",
            from: form["from"] ?? "",
            insecure: form["insecure_skip_verify"] != nil
        )
        var body: [String: JSONValue] = [
            "security": .string(form["security"] ?? ""),
            "insecure_skip_verify": .bool(form["insecure_skip_verify"] != nil),
        ]
        for field in ["host", "from", "username", "password_secret"] {
            if let value = form.trimmed(field) { body[field] = .string(value) }
        }
        if let port = form.trimmed("port") { body["port"] = EventsForm.number(port) }
        switch try await console.change(.put, "/v1/notifications/smtp", body: .object(body), visit) {
        case .success: return .redirect("/settings/notifications?done=smtp-saved")
        case .failure(let problem): return try await page(visit, request: nil, form: values, problem: problem)
        }
    }

    /// `POST /v1/notifications/test`: what happened is shown beside the test form, a failure as the problem the API
    /// named (the mail server's refusal, a timeout, the egress policy).
    private func sendTest(_ visit: ConsoleVisit, _ form: ConsoleForm) async throws -> ConsoleAnswer {
        try Self.requireAdmin(visit)
        let kind = Self.testKinds.contains(form["kind"] ?? "") ? form["kind"] ?? "email" : "email"
        let destination = form.trimmed("destination") ?? ""
        let title = form.trimmed("title")
        let test = Self.testForm(kind: kind, destination: form["destination"] ?? "", title: form["title"] ?? "")
        let target: JSONValue =
            switch kind {
            case "email": ["email": ["to": .array(EventsForm.list(destination).map(JSONValue.string))]]
            default: .object([kind: .string(destination)])
            }
        var body: [String: JSONValue] = ["target": target]
        if let title { body["title"] = .string(title) }
        let answer = try await console.api.call(
            .post,
            "/v1/notifications/test",
            as: visit.credentials,
            body: .object(body)
        )
        if let problem = answer.problem {
            if [401, 403].contains(problem.status) { throw problem }
            let result: [String: Any] = [
                "delivered": false, "detail": problem.detail, "code": problem.code,
                "errors": problem.errors.map { ["pointer": $0.pointer, "detail": $0.detail] },
            ]
            return try await page(visit, request: nil, test: test, testResult: result)
        }
        let result: [String: Any] = [
            "delivered": true, "target": answer.json["target"]?.stringValue ?? kind,
            "status": answer.json["status"]?.numberValue.map { String(Int64($0)) } ?? false,
            "detail": false, "code": false, "errors": [[String: Any]](),
        ]
        return try await page(visit, request: nil, test: test, testResult: result)
    }

    static let templates: [String: String] = [
        "settings-notifications": """
        {{> settings-nav}}
        <h2>Notifications</h2>
        <p class="muted">The mail server that sends this organization's email notifications (the <code>notify</code> step and email webhooks). Slack and JSON webhooks need no settings.</p>
        {{#configured}}
        <dl class="facts">
        <dt>Server</dt><dd><code>{{server}}</code> ({{security}}){{#insecure}} <span class="status-failed">certificate not verified</span>{{/insecure}}</dd>
        <dt>Sign-in</dt><dd>{{#username}}<code>{{username}}</code>{{#passwordSecret}}, password in the secret <code>{{passwordSecret}}</code>{{/passwordSecret}}{{/username}}{{^username}}<span class="muted">none</span>{{/username}}</dd>
        <dt>From</dt><dd>{{from}}</dd>
        <dt>Changed</dt><dd>{{{updated}}}</dd>
        </dl>
        <details><summary>Remove the SMTP settings</summary>
        <form method="post" action="/settings/notifications/delete" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit" class="danger">Remove SMTP settings</button>
        </form></details>
        {{/configured}}
        {{^configured}}<div class="empty"><p><strong>No mail server yet.</strong> Email notifications fail until one is set below.</p></div>{{/configured}}
        {{#form}}
        <h2 id="smtp-form">{{#configured}}Change the mail server{{/configured}}{{^configured}}Set the mail server{{/configured}}</h2>
        {{> problem}}
        <form method="post" action="/settings/notifications" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="smtp-host">Host</label>
        <input id="smtp-host" name="host" required maxlength="253" value="{{host}}" placeholder="smtp.example.com"{{#hostError}} aria-invalid="true" aria-describedby="smtp-host-error"{{/hostError}}>
        {{#hostError}}<p class="editor-error" id="smtp-host-error">{{hostError}}</p>{{/hostError}}
        <label for="smtp-port">Port <span class="muted">(587 for STARTTLS, 465 for TLS)</span></label>
        <input id="smtp-port" name="port" required inputmode="numeric" value="{{port}}"{{#portError}} aria-invalid="true" aria-describedby="smtp-port-error"{{/portError}}>
        {{#portError}}<p class="editor-error" id="smtp-port-error">{{portError}}</p>{{/portError}}
        <label for="smtp-security">Security</label>
        <select id="smtp-security" name="security"{{#securityError}} aria-invalid="true" aria-describedby="smtp-security-error"{{/securityError}}>{{#securities}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/securities}}</select>
        {{#securityError}}<p class="editor-error" id="smtp-security-error">{{securityError}}</p>{{/securityError}}
        <label for="smtp-username">Username <span class="muted">(optional)</span></label>
        <input id="smtp-username" name="username" value="{{username}}" autocomplete="off"{{#usernameError}} aria-invalid="true" aria-describedby="smtp-username-error"{{/usernameError}}>
        {{#usernameError}}<p class="editor-error" id="smtp-username-error">{{usernameError}}</p>{{/usernameError}}
        <label for="smtp-password-secret">Password secret <span class="muted">(the name of a secret that holds the password; set it under Secrets)</span></label>
        <input id="smtp-password-secret" name="password_secret" list="smtp-secret-names" value="{{passwordSecret}}" autocomplete="off"{{#password_secretError}} aria-invalid="true" aria-describedby="smtp-password-secret-error"{{/password_secretError}}>
        <datalist id="smtp-secret-names">{{#secretNames}}<option value="{{name}}">{{/secretNames}}</datalist>
        {{#password_secretError}}<p class="editor-error" id="smtp-password-secret-error">{{password_secretError}}</p>{{/password_secretError}}
        <label for="smtp-from">From <span class="muted">(such as Caravan Alerts &lt;ops@example.com&gt;)</span></label>
        <input id="smtp-from" name="from" required maxlength="320" value="{{from}}"{{#fromError}} aria-invalid="true" aria-describedby="smtp-from-error"{{/fromError}}>
        {{#fromError}}<p class="editor-error" id="smtp-from-error">{{fromError}}</p>{{/fromError}}
        <label><input type="checkbox" name="insecure_skip_verify" value="true"{{#insecure}} checked{{/insecure}}> Skip certificate verification <span class="muted">(only for test servers and self-signed certificates)</span></label>
        {{#insecure_skip_verifyError}}<p class="editor-error" id="smtp-insecure-error">{{insecure_skip_verifyError}}</p>{{/insecure_skip_verifyError}}
        <button type="submit" class="primary">Save SMTP settings</button>
        </form>
        {{/form}}
        <h2 id="notification-test">Send a test</h2>
        {{#testResult}}
        {{#delivered}}<p class="flash" role="status" id="test-result"><strong>Delivered</strong> to the {{target}} target{{#status}}: it answered {{status}}{{/status}}.</p>{{/delivered}}
        {{^delivered}}<div class="problem" role="alert" id="test-result"><strong>Not delivered:</strong> {{detail}} <span class="muted">(<code>{{code}}</code>)</span><ul>{{#errors}}<li><code>{{pointer}}</code> {{detail}}</li>{{/errors}}</ul></div>{{/delivered}}
        {{/testResult}}
        {{#test}}
        <form method="post" action="/settings/notifications/test" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="test-kind">Send to</label>
        <select id="test-kind" name="kind">{{#kinds}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/kinds}}</select>
        <label for="test-destination">Addresses or URL <span class="muted">(email: addresses separated by commas; slack and webhook: the URL)</span></label>
        <input id="test-destination" name="destination" required value="{{destination}}">
        <label for="test-title">Title <span class="muted">(optional; an email's subject)</span></label>
        <input id="test-title" name="title" maxlength="256" value="{{title}}">
        <button type="submit">Send a test</button>
        </form>
        {{/test}}
        """
    ]
}
