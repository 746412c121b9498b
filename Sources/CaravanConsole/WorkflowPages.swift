import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Workflows: the list (with an example to start from when there is none), a workflow's page (its definition as
/// YAML, its versions, a "Start a run" form generated from its input schema, its recent runs), the YAML editor,
/// and archiving. Also registers the agents' pages (`AgentPages`), which share the editor.
struct WorkflowPages: Sendable {
    let console: Console

    var editor: DefinitionEditor {
        DefinitionEditor(kind: "workflow", pages: "/workflows", api: "/v1/workflows", console: console)
    }

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/workflows") { request, context in
            await console.page(request, context) { visit in try await list(request, visit) }
        }
        router.get("/workflows/new") { request, context in
            await console.page(request, context) { visit in
                try Self.requireWriter(visit, "create workflows")
                let example = request.uri.queryParameters.get("example") != nil
                return editor.new(
                    name: example ? Self.exampleName : "",
                    yaml: example ? Self.example : Self.blank,
                    visit
                )
            }
        }
        router.get("/workflows/{name}") { request, context in
            let name = try context.parameters.require("name")
            return await console.page(request, context) { visit in
                let version = request.uri.queryParameters.get("version").flatMap { Int(String($0)) }
                return try await workflowPage(name: name, version: version, typed: nil, problem: nil, visit)
            }
        }
        router.post("/workflows/{name}/runs") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, form in
                try await startRun(name: name, form: form, visit)
            }
        }
        editor.register(in: router)
        AgentPages(console: console).register(in: router)
    }

    /// Refuses a page that only changes things to a role that may not change them (the API would refuse the save).
    static func requireWriter(_ visit: ConsoleVisit, _ what: String) throws {
        guard visit.can("developer") else {
            throw ConsoleProblem(status: 403, code: "forbidden", detail: "Only developers and above may \(what).")
        }
    }

    // MARK: The list

    private func list(_ request: Request, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let data = try await Self.listData(request, visit, console: console, pages: "/workflows", api: "/v1/workflows")
        return console.views.page("workflows", title: "Workflows", visit: visit, data)
    }

    /// A page of the workflows' or agents' list, as their list templates read it (`items`, `empty`, `next`, …).
    static func listData(
        _ request: Request,
        _ visit: ConsoleVisit,
        console: Console,
        pages: String,
        api: String
    ) async throws -> [String: Any] {
        let cursor = request.uri.queryParameters.get("cursor").map { String($0) } ?? ""
        let page = try await console.read(
            api + "?limit=50" + (cursor.isEmpty ? "" : "&cursor=\(ConsoleMarkup.query(cursor))"),
            visit
        )
        let items = page["items"]?.arrayValue ?? []
        return [
            "items": items.map(Self.listRow(base: pages)),
            "empty": items.isEmpty && cursor.isEmpty,
            "firstPage": cursor.isEmpty,
            "next": page["next_cursor"]?.stringValue.map { "\(pages)?cursor=\(ConsoleMarkup.query($0))" } ?? false,
            "canWrite": visit.can("developer"),
            "canAdmin": visit.can("admin"),
        ]
    }

    /// A workflow or an agent as one row of its list.
    static func listRow(base: String) -> (JSONValue) -> [String: Any] {
        { item in
            let name = item["name"]?.stringValue ?? ""
            return [
                "name": name,
                "href": "\(base)/\(ConsoleMarkup.segment(name))",
                "version": Int(item["latest_version"]?.numberValue ?? item["version"]?.numberValue ?? 1),
                "description": item["description"]?.stringValue ?? "",
                "archived": item["archived"] == .bool(true),
                "updated": ConsoleTime.element(item["updated_at"]),
            ]
        }
    }

    // MARK: A workflow

    /// A workflow's page; `typed` and `problem` are the start form as sent and what the API said of it.
    private func workflowPage(
        name: String,
        version: Int?,
        typed: ConsoleForm?,
        problem: ConsoleProblem?,
        _ visit: ConsoleVisit
    ) async throws -> ConsoleAnswer {
        let path = "/v1/workflows/\(ConsoleMarkup.segment(name))"
        let latest = try await console.read(path, visit)
        let latestVersion = Int(latest["latest_version"]?.numberValue ?? latest["version"]?.numberValue ?? 1)
        let shownVersion = version.map { min(max(1, $0), latestVersion) } ?? latestVersion
        let shown =
            shownVersion == latestVersion ? latest : try await console.read("\(path)?version=\(shownVersion)", visit)
        let archived = latest["archived"] == .bool(true)
        let runs = try await console.read("/v1/runs?workflow=\(ConsoleMarkup.query(name))&limit=10", visit)
        let form = WorkflowInputForm(schema: latest["definition"]?["input"])
        var data: [String: Any] = [
            "name": name,
            "href": "/workflows/\(ConsoleMarkup.segment(name))",
            "description": latest["description"]?.stringValue ?? false,
            "archived": archived,
            "latestVersion": latestVersion,
            "shownVersion": shownVersion,
            "isLatest": shownVersion == latestVersion,
            "updated": ConsoleTime.element(latest["updated_at"]),
            "yaml": DefinitionYAML.text(shown["definition"] ?? .null),
            "versions": try await versions(
                path: path,
                base: "/workflows/\(ConsoleMarkup.segment(name))",
                latest: latestVersion,
                shown: shownVersion,
                visit
            ),
            "runs": (runs["items"]?.arrayValue ?? []).map(RunPages.row),
            "hasRuns": !(runs["items"]?.arrayValue ?? []).isEmpty,
            "runsHref": "/runs?workflow=\(ConsoleMarkup.query(name))",
            "canWrite": visit.can("developer"),
            "canStart": visit.can("developer") && !archived,
            "hasSchema": form.fields != nil,
            "idempotencyKey": UUID().uuidString,
            "problem": ConsoleViews.problem(problem) ?? false,
        ]
        for (key, value) in form.view(typed: typed, problem: problem) { data[key] = value }
        return console.views.page("workflow", title: name, visit: visit, data, status: problem?.status ?? 200)
    }

    /// The versions of a workflow or an agent, newest first, each linking to its page; the newest
    /// `datedVersions` with when they were saved.
    func versions(
        path: String,
        base: String,
        latest: Int,
        shown: Int,
        _ visit: ConsoleVisit
    ) async throws
        -> [[String: Any]]
    {
        try await Self.versions(console: console, path: path, base: base, latest: latest, shown: shown, visit)
    }

    /// How many versions the page reads one by one to show when each was saved.
    static let datedVersions = 20

    static func versions(
        console: Console,
        path: String,
        base: String,
        latest: Int,
        shown: Int,
        _ visit: ConsoleVisit
    ) async throws -> [[String: Any]] {
        var rows: [[String: Any]] = []
        for number in stride(from: latest, through: 1, by: -1) {
            var created: Any = false
            var description: Any = false
            if latest - number < datedVersions {
                let answer = try await console.api.call(.get, "\(path)?version=\(number)", as: visit.credentials)
                if answer.succeeded {
                    created = ConsoleTime.element(answer.json["created_at"])
                    description = answer.json["description"]?.stringValue ?? false
                }
            }
            rows.append([
                "number": number,
                "href": number == latest ? base : "\(base)?version=\(number)",
                "current": number == shown,
                "created": created,
                "description": description,
            ])
        }
        return rows
    }

    /// Starts a run from the generated form: to the run's page, or the workflow's page again with what was typed
    /// and the errors beside their fields.
    private func startRun(name: String, form: ConsoleForm, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let path = "/v1/workflows/\(ConsoleMarkup.segment(name))"
        let latest = try await console.read(path, visit)
        let inputForm = WorkflowInputForm(schema: latest["definition"]?["input"])
        let input: JSONValue
        switch inputForm.input(from: form) {
        case .success(let value): input = value
        case .failure(let problem):
            return try await workflowPage(name: name, version: nil, typed: form, problem: problem, visit)
        }
        var headers: HTTPFields = [:]
        if let key = form.trimmed("idempotency_key"), key.utf8.count <= 255 {
            headers[HTTPField.Name("Idempotency-Key")!] = key  // a valid token, cannot fail
        }
        let answer = try await console.api.call(
            .post,
            "\(path)/runs",
            as: visit.credentials,
            body: ["input": input],
            headers: headers
        )
        if let problem = answer.problem {
            if [401, 403, 404].contains(problem.status) { throw problem }
            return try await workflowPage(name: name, version: nil, typed: form, problem: problem, visit)
        }
        guard let id = answer.json["id"]?.stringValue else {
            throw ConsoleProblem(status: 502, code: "bad_answer", detail: "The API did not name the run it started.")
        }
        return .redirect("/runs/\(ConsoleMarkup.segment(id))")
    }

    // MARK: Definitions to start from

    static let exampleName = "hello-world"

    /// A small workflow that runs anywhere: no network, no secrets; one input field, a template, a one-second
    /// durable timer and a second template that needs the first.
    static let example = """
        name: hello-world
        description: Greets someone, waits a second, then welcomes them
        input:
          type: object
          required: [name]
          properties:
            name: {type: string, description: Who to greet}
            excited: {type: boolean, description: End with an exclamation mark}
        steps:
          - id: greet
            template: "Hello {{ input.name }}"
          - id: pause
            needs: [greet]
            sleep: 1s
          - id: welcome
            needs: [pause]
            template: "{{ steps.greet.output }}, welcome aboard"
        output:
          greeting: "{{ steps.welcome.output }}"
          excited: "{{ input.excited }}"

        """

    /// What a new workflow's editor starts from.
    static let blank = """
        description: What this workflow does
        steps:
          - id: first
            template: "Hello"

        """

    static let templates: [String: String] =
        DefinitionEditor.templates
        .merging(AgentPages.templates) { first, _ in first }
        .merging(ownTemplates) { first, _ in first }

    private static let ownTemplates: [String: String] = [
        "definition-row": """
        <tr>
        <td><a href="{{href}}">{{name}}</a>{{#archived}} <span class="badge status-cancelled">archived</span>{{/archived}}</td>
        <td>{{version}}</td>
        <td class="clip" title="{{description}}">{{description}}</td>
        <td>{{{updated}}}</td>
        </tr>
        """,
        "workflows": """
        <h1>Workflows</h1>
        {{#canWrite}}<p class="actions"><a href="/workflows/new">New workflow</a></p>{{/canWrite}}
        {{#empty}}
        <div class="empty">
        <p><strong>No workflows yet.</strong> A workflow is a graph of steps written in YAML; once saved, it can be started here or through the API.</p>
        {{#canWrite}}
        <form method="get" action="/workflows/new" class="inline">
        <input type="hidden" name="example" value="hello-world">
        <button type="submit" class="primary">Create from an example</button>
        </form>
        <p class="muted">The example greets someone and needs no network or secrets: save it, then start it from its page.</p>
        {{/canWrite}}
        {{^canWrite}}<p>Ask a developer of this organization to create one.</p>{{/canWrite}}
        </div>
        {{/empty}}
        {{^empty}}
        <table>
        <caption class="visually-hidden">Workflows by name</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Latest version</th><th scope="col">Description</th><th scope="col">Updated</th></tr></thead>
        <tbody>{{#items}}{{> definition-row}}{{/items}}</tbody>
        </table>
        {{/empty}}
        <p class="actions">{{^firstPage}}<a href="/workflows">First page</a>{{/firstPage}}{{#next}}<a href="{{next}}" rel="next">More workflows</a>{{/next}}</p>
        """,
        "definition-versions": """
        <section aria-labelledby="versions-title">
        <h2 id="versions-title">Versions</h2>
        <ol class="versions">
        {{#versions}}<li><a href="{{href}}"{{#current}} aria-current="page"{{/current}}>Version {{number}}</a>{{#created}} · {{{created}}}{{/created}}{{#description}} · <span class="muted">{{description}}</span>{{/description}}</li>{{/versions}}
        </ol>
        </section>
        """,
        "workflow": """
        <p class="crumbs"><a href="/workflows">Workflows</a> / {{name}}</p>
        <h1>{{name}}{{#archived}} <span class="badge status-cancelled">archived</span>{{/archived}}</h1>
        {{#description}}<p>{{description}}</p>{{/description}}
        <p class="muted">Version {{latestVersion}} · updated {{{updated}}}</p>
        {{#canWrite}}
        <div class="actions">
        <a href="{{href}}/edit">Edit the definition</a>
        {{^archived}}<form method="post" action="{{href}}/archive" class="inline"><input type="hidden" name="_csrf" value="{{csrf}}"><button type="submit" class="danger">Archive workflow</button></form>{{/archived}}
        </div>
        {{/canWrite}}
        {{#archived}}<p class="muted">This workflow is archived: it starts no new runs; runs already started go on. Saving a new version brings it back.</p>{{/archived}}
        {{#canStart}}
        <section aria-labelledby="start-title">
        <h2 id="start-title">Start a run</h2>
        {{> problem}}
        <form method="post" action="{{href}}/runs" class="stack" id="start-form">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <input type="hidden" name="idempotency_key" value="{{idempotencyKey}}">
        {{#fields}}
        {{#isCheckbox}}<label for="{{id}}"><input type="checkbox" id="{{id}}" name="{{formName}}" value="true"{{#checked}} checked{{/checked}}> {{label}}{{#required}} <span class="muted">(required)</span>{{/required}}</label>{{/isCheckbox}}
        {{^isCheckbox}}<label for="{{id}}">{{label}}{{#required}} <span class="muted">(required)</span>{{/required}}</label>{{/isCheckbox}}
        {{#description}}<p class="muted" id="{{id}}-help">{{description}}</p>{{/description}}
        {{#isText}}<input type="text" id="{{id}}" name="{{formName}}" value="{{value}}"{{#required}} required{{/required}}{{#description}} aria-describedby="{{id}}-help"{{/description}}>{{/isText}}
        {{#isNumber}}<input type="number" step="{{step}}" id="{{id}}" name="{{formName}}" value="{{value}}"{{#required}} required{{/required}}{{#description}} aria-describedby="{{id}}-help"{{/description}}>{{/isNumber}}
        {{#isSelect}}<select id="{{id}}" name="{{formName}}"{{#required}} required{{/required}}>{{^required}}<option value="">(none)</option>{{/required}}{{#options}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/options}}</select>{{/isSelect}}
        {{#isJSON}}<textarea id="{{id}}" name="{{formName}}" rows="3" spellcheck="false"{{#required}} required{{/required}}>
        {{value}}</textarea><p class="muted">As JSON.</p>{{/isJSON}}
        {{#hasErrors}}<ul class="editor-error">{{#errors}}<li>{{.}}</li>{{/errors}}</ul>{{/hasErrors}}
        {{/fields}}
        {{#hasJSON}}
        <label for="run-input">Input (JSON)</label>
        <textarea id="run-input" name="input" rows="5" spellcheck="false">
        {{json}}</textarea>
        {{#hasJSONErrors}}<ul class="editor-error">{{#jsonErrors}}<li>{{.}}</li>{{/jsonErrors}}</ul>{{/hasJSONErrors}}
        {{/hasJSON}}
        <div class="actions"><button type="submit" class="primary">Start run</button></div>
        </form>
        </section>
        {{/canStart}}
        <section aria-labelledby="runs-title">
        <h2 id="runs-title">Recent runs</h2>
        {{#hasRuns}}
        <table class="runs">
        <caption class="visually-hidden">The workflow's latest runs, newest first</caption>
        <thead><tr><th scope="col">Run</th><th scope="col">Workflow or agent</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Duration</th><th scope="col">Error</th></tr></thead>
        <tbody>{{#runs}}{{> run-row}}{{/runs}}</tbody>
        </table>
        <p><a href="{{runsHref}}">Every run of this workflow</a></p>
        {{/hasRuns}}
        {{^hasRuns}}<p class="empty">No runs yet.{{#canStart}} Start one with the form above.{{/canStart}}</p>{{/hasRuns}}
        </section>
        <section aria-labelledby="definition-title">
        <h2 id="definition-title">Definition{{^isLatest}} (version {{shownVersion}}){{/isLatest}}</h2>
        {{^isLatest}}<p class="muted">An older version. <a href="{{href}}">The latest</a></p>{{/isLatest}}
        <pre class="code" tabindex="0" aria-label="The definition as YAML">{{yaml}}</pre>
        </section>
        {{> definition-versions}}
        """,
    ]
}
