import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Settings: model providers, secrets, API keys, members and invitations, the monthly budget, schedules, and the
/// signed-in user's account (two-factor authentication), each a section of `/settings` shown to the roles that may
/// use it. Every change goes through the API, which decides again whether the role may make it.
struct SettingsPages: Sendable {
    let console: Console

    /// The sections of the settings, and the least role that sees each (the API's `AccessPolicy`: reading
    /// providers, members, the budget and workflows is for every member; secret names are for developers; API keys
    /// are for admins).
    static let sections: [(href: String, label: String, role: String)] = [
        ("/settings/providers", "Providers", "viewer"),
        ("/settings/secrets", "Secrets", "developer"),
        ("/settings/api-keys", "API keys", "admin"),
        ("/settings/members", "Members", "viewer"),
        ("/settings/budget", "Budget", "viewer"),
        ("/settings/schedules", "Schedules", "viewer"),
        ("/settings/notifications", "Notifications", "admin"),
        ("/settings/account", "Your account", "viewer"),
    ]

    /// What a `?done=` after a change says; only these texts are shown, never text from the address.
    static let flashes: [String: String] = [
        "provider-saved": "The provider was saved.",
        "provider-deleted": "The provider was deleted.",
        "secret-saved": "The secret was saved. Its value is sealed and will not be shown.",
        "secret-deleted": "The secret was deleted.",
        "key-revoked": "The API key was revoked: it no longer works.",
        "member-role": "The member's role was changed.",
        "member-removed": "The member was removed; their sessions have ended.",
        "budget-saved": "The budget was saved.",
        "mfa-on": "Two-factor authentication is on: signing in now asks for a code from your authenticator.",
    ]

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/settings") { request, context in
            await console.page(request, context) { visit in
                .redirect(Self.sections.first { visit.can($0.role) }?.href ?? "/settings/account")
            }
        }
        router.get("/settings/providers") { request, context in
            await console.page(request, context) { visit in
                try await providersPage(visit, request: request)
            }
        }
        router.post("/settings/providers") { request, context in
            await console.action(request, context) { visit, form in try await saveProvider(visit, form) }
        }
        registerDeletion(
            in: router,
            "/settings/providers/{name}/delete",
            api: "/v1/providers",
            back: "/settings/providers?done=provider-deleted"
        )
        router.get("/settings/secrets") { request, context in
            await console.page(request, context) { visit in try await secretsPage(visit, request: request) }
        }
        router.post("/settings/secrets") { request, context in
            await console.action(request, context) { visit, form in try await saveSecret(visit, form, request) }
        }
        registerDeletion(
            in: router,
            "/settings/secrets/{name}/delete",
            api: "/v1/secrets",
            back: "/settings/secrets?done=secret-deleted"
        )
        registerPlans(in: router)
        registerAccess(in: router)
    }

    // MARK: Layout

    /// The data every settings page has: the sub-navigation with the current section, and the flash of `?done=`.
    func frame(_ visit: ConsoleVisit, current: String, request: Request? = nil) -> [String: Any] {
        let done = request?.uri.queryParameters.get("done").map { String($0) }
        return [
            "sections": Self.sections.filter { visit.can($0.role) }.map { section -> [String: Any] in
                ["href": section.href, "label": section.label, "current": section.href == current]
            },
            "flash": done.flatMap { Self.flashes[$0] } ?? false,
            "problem": false,
        ]
    }

    // MARK: Providers

    private func providersPage(
        _ visit: ConsoleVisit,
        request: Request?,
        form: [String: Any]? = nil,
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let providers = try await console.readAll("/v1/providers", visit)
        let canManage = visit.can("admin")
        var secretNames: [String] = []
        if canManage {
            secretNames = ((try? await console.readAll("/v1/secrets", visit)) ?? []).compactMap {
                $0["name"]?.stringValue
            }
        }
        let edit = request?.uri.queryParameters.get("edit").map { String($0) }
        let editing = edit.flatMap { name in providers.first { $0["name"]?.stringValue == name } }
        var data = frame(visit, current: "/settings/providers", request: request)
        data["providers"] = providers.map(Self.providerRow)
        data["empty"] = providers.isEmpty
        data["canManage"] = canManage
        data["form"] = form ?? Self.providerForm(editing)
        data["editing"] = editing != nil || (form?["existing"] as? Bool ?? false)
        data["secretNames"] = secretNames.map { ["name": $0] }
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        return console.views.page(
            "settings-providers",
            title: "Providers",
            visit: visit,
            data,
            status: problem?.status ?? 200
        )
    }

    static func providerRow(_ provider: JSONValue) -> [String: Any] {
        let name = provider["name"]?.stringValue ?? ""
        return [
            "name": name,
            "kind": provider["kind"]?.stringValue ?? "",
            "baseURL": provider["base_url"]?.stringValue ?? "",
            "models": (provider["models"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
            "secret": provider["api_key_secret"]?.stringValue ?? false,
            "timeout": provider["timeout"]?.stringValue ?? "",
            "retries": provider["max_retries"]?.numberValue.map { String(Int($0)) } ?? "",
            "circuit": provider["circuit"]?.stringValue ?? false,
            "circuitOpen": provider["circuit"]?.stringValue.map { $0 != "closed" } ?? false,
            "editHref": "/settings/providers?edit=\(ConsoleMarkup.query(name))#provider-form",
            "deleteAction": "/settings/providers/\(ConsoleMarkup.segment(name))/delete",
        ]
    }

    /// The provider form's fields: a provider's values when it is being replaced, else the defaults.
    static func providerForm(_ provider: JSONValue?) -> [String: Any] {
        [
            "name": provider?["name"]?.stringValue ?? "",
            "kindOpenAI": provider?["kind"]?.stringValue != "anthropic",
            "kindAnthropic": provider?["kind"]?.stringValue == "anthropic",
            "baseURL": provider?["base_url"]?.stringValue ?? "",
            "secret": provider?["api_key_secret"]?.stringValue ?? "",
            "models": (provider?["models"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: "\n"),
            "timeout": provider?["timeout"]?.stringValue ?? "60s",
            "retries": provider?["max_retries"]?.numberValue.map { String(Int($0)) } ?? "2",
            "existing": provider != nil,
        ]
    }

    /// `PUT /v1/providers/{name}` from the form. Replacing a provider keeps its prices, which the form does not
    /// show (they are set through the API).
    private func saveProvider(_ visit: ConsoleVisit, _ form: ConsoleForm) async throws -> ConsoleAnswer {
        let name = form.trimmed("name") ?? ""
        let models = (form["models"] ?? "").split(whereSeparator: { $0 == "\n" || $0 == "," || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let retries = form.trimmed("max_retries") ?? "2"
        var body: [String: JSONValue] = [
            "kind": .string(form["kind"] ?? "openai"),
            "base_url": .string(form.trimmed("base_url") ?? ""),
            "models": .array(models.map(JSONValue.string)),
            "timeout": .string(form.trimmed("timeout") ?? "60s"),
            "max_retries": Int64(retries).map(JSONValue.int) ?? .string(retries),
        ]
        if let secret = form.trimmed("api_key_secret") { body["api_key_secret"] = .string(secret) }
        let values: [String: Any] = [
            "name": name, "kindOpenAI": form["kind"] != "anthropic", "kindAnthropic": form["kind"] == "anthropic",
            "baseURL": form["base_url"] ?? "", "secret": form["api_key_secret"] ?? "", "models": form["models"] ?? "",
            "timeout": form["timeout"] ?? "", "retries": form["max_retries"] ?? "", "existing": false,
        ]
        guard !name.isEmpty else {
            return try await providersPage(
                visit,
                request: nil,
                form: values,
                problem: SettingsKit.invalid("/name", "name the provider")
            )
        }
        let path = "/v1/providers/\(ConsoleMarkup.segment(name))"
        let existing = try await console.api.call(.get, path, as: visit.credentials)
        if existing.succeeded, let prices = existing.json["prices"], !prices.isNull { body["prices"] = prices }
        switch try await console.change(.put, path, body: .object(body), visit) {
        case .success: return .redirect("/settings/providers?done=provider-saved")
        case .failure(let problem): return try await providersPage(visit, request: nil, form: values, problem: problem)
        }
    }

    // MARK: Secrets

    private func secretsPage(
        _ visit: ConsoleVisit,
        request: Request,
        form: [String: Any]? = nil,
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let cursor = request.uri.queryParameters.get("cursor").map { String($0) }
        let page = try await console.read(
            "/v1/secrets?limit=100" + (cursor.map { "&cursor=\(ConsoleMarkup.query($0))" } ?? ""),
            visit
        )
        let secrets = page["items"]?.arrayValue ?? []
        var data = frame(visit, current: "/settings/secrets", request: request)
        data["secrets"] = secrets.map { secret -> [String: Any] in
            let name = secret["name"]?.stringValue ?? ""
            return [
                "name": name,
                "hosts": (secret["allowed_hosts"]?.arrayValue?.compactMap(\.stringValue)).map {
                    $0.joined(separator: ", ")
                } ?? false,
                "updated": ConsoleTime.element(secret["updated_at"]),
                "replaceHref": "/settings/secrets?name=\(ConsoleMarkup.query(name))#secret-form",
                "deleteAction": "/settings/secrets/\(ConsoleMarkup.segment(name))/delete",
            ]
        }
        data["empty"] = secrets.isEmpty && cursor == nil
        data["next"] =
            page["next_cursor"]?.stringValue.map { "/settings/secrets?cursor=\(ConsoleMarkup.query($0))" } ?? false
        data["canManage"] = visit.can("admin")
        data["form"] =
            form ?? [
                "name": request.uri.queryParameters.get("name").map { String($0) } ?? "", "hosts": "",
            ]
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        return console.views.page(
            "settings-secrets",
            title: "Secrets",
            visit: visit,
            data,
            status: problem?.status ?? 200
        )
    }

    /// `PUT /v1/secrets/{name}`. The value is never put back into the page, not even when the API refuses it.
    private func saveSecret(
        _ visit: ConsoleVisit,
        _ form: ConsoleForm,
        _ request: Request
    ) async throws
        -> ConsoleAnswer
    {
        let name = form.trimmed("name") ?? ""
        let values: [String: Any] = ["name": name, "hosts": form["allowed_hosts"] ?? ""]
        guard !name.isEmpty else {
            return try await secretsPage(
                visit,
                request: request,
                form: values,
                problem: SettingsKit.invalid("/name", "name the secret")
            )
        }
        var body: [String: JSONValue] = ["value": .string(form["value"] ?? "")]
        let hosts = (form["allowed_hosts"] ?? "").split(whereSeparator: { $0 == "," || $0.isWhitespace })
            .map(String.init)
        if !hosts.isEmpty { body["allowed_hosts"] = .array(hosts.map(JSONValue.string)) }
        switch try await console.change(.put, "/v1/secrets/\(ConsoleMarkup.segment(name))", body: .object(body), visit)
        {
        case .success: return .redirect("/settings/secrets?done=secret-saved")
        case .failure(let problem):
            return try await secretsPage(visit, request: request, form: values, problem: problem)
        }
    }

    // MARK: Templates

    /// A form that deletes (or revokes) the item its route's one parameter names, through `api`/{item}, then goes
    /// back to `back`.
    func registerDeletion(in router: Router<ConsoleRequestContext>, _ route: String, api: String, back: String) {
        let parameter = route.split(separator: "/").first { $0.hasPrefix("{") }.map {
            String($0.dropFirst().dropLast())
        }
        router.post(RouterPath(route)) { request, context in
            let item = try context.parameters.require(parameter ?? "")
            return await console.action(request, context) { visit, _ in
                _ = try await console.change(.delete, "\(api)/\(ConsoleMarkup.segment(item))", body: nil, visit).get()
                return .redirect(back)
            }
        }
    }

    static let templates: [String: String] =
        [
            "settings-nav": """
            <h1>Settings</h1>
            <nav aria-label="Settings sections" class="actions">{{#sections}}<a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{#current}}<strong>{{label}}</strong>{{/current}}{{^current}}{{label}}{{/current}}</a>{{/sections}}</nav>
            {{#flash}}<p class="flash" role="status">{{flash}}</p>{{/flash}}
            """,
            "settings-providers": """
            {{> settings-nav}}
            <h2>Model providers</h2>
            <p class="muted">Where agents and <code>/v1/chat/completions</code> send model calls, as <code>provider/model</code>.</p>
            {{#empty}}<div class="empty"><p><strong>No providers yet.</strong> {{#canManage}}Add one below: an OpenAI-compatible or Anthropic endpoint, the secret that holds its key, and the models it serves.{{/canManage}}{{^canManage}}An admin of this organization adds them here.{{/canManage}}</p></div>{{/empty}}
            {{^empty}}
            <div class="scroll"><table>
            <caption class="visually-hidden">Model providers</caption>
            <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Base URL</th><th scope="col">Models</th><th scope="col">Key secret</th><th scope="col">Timeout · retries</th><th scope="col">Circuit</th>{{#canManage}}<th scope="col">Actions</th>{{/canManage}}</tr></thead>
            <tbody>{{#providers}}<tr>
            <td><code>{{name}}</code></td><td>{{kind}}</td><td><code>{{baseURL}}</code></td><td>{{models}}</td>
            <td>{{#secret}}<code>{{secret}}</code>{{/secret}}{{^secret}}<span class="muted">none</span>{{/secret}}</td>
            <td>{{timeout}} · {{retries}}</td>
            <td>{{#circuit}}<span class="badge {{#circuitOpen}}status-failed{{/circuitOpen}}{{^circuitOpen}}status-succeeded{{/circuitOpen}}">{{circuit}}</span>{{/circuit}}{{^circuit}}<span class="muted">—</span>{{/circuit}}</td>
            {{#canManage}}<td><a href="{{editHref}}">Edit</a>
            <details><summary>Delete</summary>
            <form method="post" action="{{deleteAction}}" class="inline">
            <input type="hidden" name="_csrf" value="{{csrf}}">
            <button type="submit" class="danger">Delete provider {{name}}</button>
            </form></details></td>{{/canManage}}
            </tr>{{/providers}}</tbody>
            </table></div>
            {{/empty}}
            {{#canManage}}
            {{#form}}
            <h2 id="provider-form">{{#editing}}Replace a provider{{/editing}}{{^editing}}Add a provider{{/editing}}</h2>
            {{> problem}}
            <form method="post" action="/settings/providers" class="stack">
            <input type="hidden" name="_csrf" value="{{csrf}}">
            <label for="provider-name">Name <span class="muted">(lowercase letters, digits and -; the same name replaces)</span></label>
            <input id="provider-name" name="name" required pattern="[a-z0-9-]{1,64}" value="{{name}}">
            <label for="provider-kind">Kind</label>
            <select id="provider-kind" name="kind"><option value="openai"{{#kindOpenAI}} selected{{/kindOpenAI}}>OpenAI-compatible</option><option value="anthropic"{{#kindAnthropic}} selected{{/kindAnthropic}}>Anthropic</option></select>
            <label for="provider-url">Base URL</label>
            <input id="provider-url" name="base_url" type="url" required value="{{baseURL}}" placeholder="https://api.openai.com/v1">
            <label for="provider-secret">Secret with the API key <span class="muted">(a secret's name; empty when the endpoint needs no key)</span></label>
            <input id="provider-secret" name="api_key_secret" list="secret-names" value="{{secret}}" autocomplete="off">
            <datalist id="secret-names">{{#secretNames}}<option value="{{name}}">{{/secretNames}}</datalist>
            <label for="provider-models">Models <span class="muted">(one a line)</span></label>
            <textarea id="provider-models" name="models" rows="4" required>{{models}}</textarea>
            <label for="provider-timeout">Timeout <span class="muted">(e.g. 60s)</span></label>
            <input id="provider-timeout" name="timeout" value="{{timeout}}">
            <label for="provider-retries">Retries <span class="muted">(0 to 10)</span></label>
            <input id="provider-retries" name="max_retries" type="number" min="0" max="10" value="{{retries}}">
            <p class="muted">Prices per model are set through the API; replacing a provider here keeps them.</p>
            <button type="submit" class="primary">Save provider</button>
            </form>
            {{/form}}
            {{/canManage}}
            """,
            "settings-secrets": """
            {{> settings-nav}}
            <h2>Secrets</h2>
            <p class="muted">Sealed values that workflows use as <code>&#123;&#123; secrets.NAME &#125;&#125;</code> and providers use as keys. Values are never shown again.</p>
            {{#empty}}<div class="empty"><p><strong>No secrets yet.</strong> {{#canManage}}Add one below, then name it in a provider or a workflow.{{/canManage}}{{^canManage}}An admin of this organization adds them.{{/canManage}}</p></div>{{/empty}}
            {{^empty}}
            <div class="scroll"><table>
            <caption class="visually-hidden">Secrets</caption>
            <thead><tr><th scope="col">Name</th><th scope="col">Allowed hosts</th><th scope="col">Updated</th>{{#canManage}}<th scope="col">Actions</th>{{/canManage}}</tr></thead>
            <tbody>{{#secrets}}<tr><td><code>{{name}}</code></td><td>{{#hosts}}{{hosts}}{{/hosts}}{{^hosts}}<span class="muted">any</span>{{/hosts}}</td><td>{{{updated}}}</td>
            {{#canManage}}<td><a href="{{replaceHref}}">Replace value</a>
            <details><summary>Delete</summary>
            <form method="post" action="{{deleteAction}}" class="inline">
            <input type="hidden" name="_csrf" value="{{csrf}}">
            <button type="submit" class="danger">Delete secret {{name}}</button>
            </form></details></td>{{/canManage}}</tr>{{/secrets}}</tbody>
            </table></div>
            {{#next}}<p><a href="{{next}}">More secrets</a></p>{{/next}}
            {{/empty}}
            {{#canManage}}
            {{#form}}
            <h2 id="secret-form">Set a secret</h2>
            {{> problem}}
            <form method="post" action="/settings/secrets" class="stack">
            <input type="hidden" name="_csrf" value="{{csrf}}">
            <label for="secret-name">Name <span class="muted">(letters, digits and _; the same name replaces the value)</span></label>
            <input id="secret-name" name="name" required pattern="[A-Za-z_][A-Za-z0-9_]{0,63}" value="{{name}}" autocomplete="off">
            <label for="secret-value">Value</label>
            <input id="secret-value" name="value" type="password" required autocomplete="new-password">
            <label for="secret-hosts">Allowed hosts <span class="muted">(optional, separated by commas: api.example.com, *.example.com; empty: any)</span></label>
            <input id="secret-hosts" name="allowed_hosts" value="{{hosts}}" autocomplete="off">
            <button type="submit" class="primary">Save secret</button>
            </form>
            {{/form}}
            {{/canManage}}
            """,
        ]
        .merging(accessTemplates) { first, _ in first }
        .merging(planTemplates) { first, _ in first }
}
