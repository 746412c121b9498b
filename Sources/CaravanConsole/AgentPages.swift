import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Agents: the list, an agent's page (its definition as YAML, its versions, its recent conversations, and a
/// playground to talk to it on a thread kept between turns), the YAML editor shared with workflows, and archiving.
struct AgentPages: Sendable {
    let console: Console

    var editor: DefinitionEditor {
        DefinitionEditor(kind: "agent", pages: "/agents", api: "/v1/agents", console: console)
    }

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/agents") { request, context in
            await console.page(request, context) { visit in try await list(request, visit) }
        }
        router.get("/agents/new") { request, context in
            await console.page(request, context) { visit in
                try WorkflowPages.requireWriter(visit, "create agents")
                return editor.new(name: "", yaml: Self.blank, visit)
            }
        }
        router.get("/agents/{name}") { request, context in
            let name = try context.parameters.require("name")
            return await console.page(request, context) { visit in
                let parameters = request.uri.queryParameters
                return try await agentPage(
                    name: name,
                    version: parameters.get("version").flatMap { Int(String($0)) },
                    thread: parameters.get("thread").map { String($0) }.flatMap { $0.isEmpty ? nil : $0 },
                    message: nil,
                    problem: nil,
                    visit
                )
            }
        }
        router.post("/agents/{name}/runs") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, form in
                try await talk(name: name, form: form, visit)
            }
        }
        editor.register(in: router)
    }

    // MARK: The list

    private func list(_ request: Request, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let data = try await WorkflowPages.listData(
            request,
            visit,
            console: console,
            pages: "/agents",
            api: "/v1/agents"
        )
        return console.views.page("agents", title: "Agents", visit: visit, data)
    }

    // MARK: An agent

    /// An agent's page; `thread` is the conversation the playground continues, `message` and `problem` what was
    /// sent and what the API said when a turn was refused.
    private func agentPage(
        name: String,
        version: Int?,
        thread: String?,
        message: String?,
        problem: ConsoleProblem?,
        _ visit: ConsoleVisit
    ) async throws -> ConsoleAnswer {
        let path = "/v1/agents/\(ConsoleMarkup.segment(name))"
        let base = "/agents/\(ConsoleMarkup.segment(name))"
        let latest = try await console.read(path, visit)
        let latestVersion = Int(latest["latest_version"]?.numberValue ?? latest["version"]?.numberValue ?? 1)
        let shownVersion = version.map { min(max(1, $0), latestVersion) } ?? latestVersion
        let shown =
            shownVersion == latestVersion ? latest : try await console.read("\(path)?version=\(shownVersion)", visit)
        let archived = latest["archived"] == .bool(true)
        let runs = try await console.read("/v1/runs?agent=\(ConsoleMarkup.query(name))&limit=10", visit)
        let runItems = runs["items"]?.arrayValue ?? []

        // The thread's messages, when the playground continues one; a thread that is gone starts a new one.
        var messages: [[String: Any]] = []
        var threadGone = false
        if let thread {
            let answer = try await console.api.call(
                .get,
                "/v1/threads/\(ConsoleMarkup.segment(thread))/messages?limit=200",
                as: visit.credentials
            )
            if answer.status == 404 {
                threadGone = true
            } else if let problem = answer.problem {
                throw problem
            } else {
                messages = (answer.json["items"]?.arrayValue ?? []).map(Self.message)
            }
        }
        // Recent conversations: the threads of the latest runs, each with a link to go on with it.
        var seenThreads: Set<String> = []
        let conversations = runItems.compactMap { run -> [String: Any]? in
            guard let id = run["thread"]?.stringValue, seenThreads.insert(id).inserted else { return nil }
            return [
                "thread": id,
                "href": "\(base)?thread=\(ConsoleMarkup.query(id))",
                "created": ConsoleTime.element(run["created_at"]),
                "input": ConsoleJSON.summary(run["input"], length: 80),
            ]
        }
        let activeThread = threadGone ? nil : thread
        let data: [String: Any] = [
            "name": name,
            "href": base,
            "description": latest["description"]?.stringValue ?? false,
            "archived": archived,
            "latestVersion": latestVersion,
            "shownVersion": shownVersion,
            "isLatest": shownVersion == latestVersion,
            "updated": ConsoleTime.element(latest["updated_at"]),
            "yaml": DefinitionYAML.text(shown["definition"] ?? .null),
            "versions": try await WorkflowPages.versions(
                console: console,
                path: path,
                base: base,
                latest: latestVersion,
                shown: shownVersion,
                visit
            ),
            "runs": runItems.map(RunPages.row),
            "hasRuns": !runItems.isEmpty,
            "runsHref": "/runs?agent=\(ConsoleMarkup.query(name))",
            "conversations": conversations,
            "hasConversations": !conversations.isEmpty,
            "thread": activeThread ?? false,
            "threadID": activeThread ?? "",
            "threadGone": threadGone,
            "messages": messages,
            "hasMessages": !messages.isEmpty,
            "message": message ?? "",
            "canWrite": visit.can("developer"),
            "canTalk": visit.can("developer") && !archived,
            "problem": ConsoleViews.problem(problem) ?? false,
        ]
        return console.views.page("agent", title: name, visit: visit, data, status: problem?.status ?? 200)
    }

    /// A message of a thread as the page shows it: who said it, the text, the tools it called.
    static func message(_ json: JSONValue) -> [String: Any] {
        let calls = (json["tool_calls"]?.arrayValue ?? []).map { call -> [String: Any] in
            [
                "name": call["function"]?["name"]?.stringValue ?? "",
                "arguments": ConsoleJSON.summary(call["function"]?["arguments"], length: 300),
            ]
        }
        let runID = json["run_id"]?.stringValue
        return [
            "role": json["role"]?.stringValue ?? "",
            "content": json["content"]?.stringValue ?? ConsoleJSON.summary(json["content"], length: 4000),
            "calls": calls,
            "hasCalls": !calls.isEmpty,
            "toolName": json["name"]?.stringValue ?? false,
            "run": runID.map { ["id": $0, "href": "/runs/\(ConsoleMarkup.segment($0))"] } ?? false,
            "at": ConsoleTime.element(json["created_at"]),
        ]
    }

    /// One turn of the playground: the message (a JSON object when it parses as one, else the text) sent to the
    /// agent on the thread kept in the form, or on a new thread; then to the run's page, which follows the agent's
    /// trace live.
    private func talk(name: String, form: ConsoleForm, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let text = form["message"] ?? ""
        var thread = form.trimmed("thread")
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            let problem = ConsoleProblem(
                status: 422,
                code: "validation_failed",
                detail: "Write a message to the agent.",
                pointer: "/input",
                errors: []
            )
            return try await agentPage(name: name, version: nil, thread: thread, message: text, problem: problem, visit)
        }
        var input: JSONValue = .string(text)
        if let parsed = try? JSONValue(parsing: Array(text.utf8)), parsed.objectValue != nil { input = parsed }
        if thread == nil {
            let created = try await console.api.call(.post, "/v1/threads", as: visit.credentials, body: [:])
            if let problem = created.problem {
                if [401, 403, 404].contains(problem.status) { throw problem }
                return try await agentPage(
                    name: name,
                    version: nil,
                    thread: nil,
                    message: text,
                    problem: problem,
                    visit
                )
            }
            thread = created.json["id"]?.stringValue
        }
        var body: [String: JSONValue] = ["input": input]
        if let thread { body["thread"] = .string(thread) }
        let answer = try await console.api.call(
            .post,
            "/v1/agents/\(ConsoleMarkup.segment(name))/runs",
            as: visit.credentials,
            body: .object(body)
        )
        if let problem = answer.problem {
            if [401, 403].contains(problem.status) { throw problem }
            return try await agentPage(name: name, version: nil, thread: thread, message: text, problem: problem, visit)
        }
        guard let id = answer.json["id"]?.stringValue else {
            throw ConsoleProblem(status: 502, code: "bad_answer", detail: "The API did not name the run it started.")
        }
        return .redirect("/runs/\(ConsoleMarkup.segment(id))")
    }

    /// What a new agent's editor starts from: the model must name a provider of the organization's settings.
    static let blank = """
        name: helper
        description: Answers questions briefly
        model: openai/gpt-4o-mini
        instructions: You answer questions briefly and say so when you do not know.
        max_turns: 4

        """

    static let templates: [String: String] = [
        "agents": """
        <h1>Agents</h1>
        {{#canWrite}}<p class="actions"><a href="/agents/new">New agent</a></p>{{/canWrite}}
        {{#empty}}
        <div class="empty">
        <p><strong>No agents yet.</strong> An agent is a model with instructions and tools, written in YAML.</p>
        <p>An agent needs a model provider first{{#canAdmin}}: add one under <a href="/settings/providers">Settings</a>{{/canAdmin}}{{^canAdmin}}, which an admin adds under Settings{{/canAdmin}}.{{#canWrite}} Then <a href="/agents/new">create an agent</a> and talk to it from its page.{{/canWrite}}</p>
        </div>
        {{/empty}}
        {{^empty}}
        <table>
        <caption class="visually-hidden">Agents by name</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Latest version</th><th scope="col">Description</th><th scope="col">Updated</th></tr></thead>
        <tbody>{{#items}}{{> definition-row}}{{/items}}</tbody>
        </table>
        {{/empty}}
        <p class="actions">{{^firstPage}}<a href="/agents">First page</a>{{/firstPage}}{{#next}}<a href="{{next}}" rel="next">More agents</a>{{/next}}</p>
        """,
        "agent": """
        <p class="crumbs"><a href="/agents">Agents</a> / {{name}}</p>
        <h1>{{name}}{{#archived}} <span class="badge status-cancelled">archived</span>{{/archived}}</h1>
        {{#description}}<p>{{description}}</p>{{/description}}
        <p class="muted">Version {{latestVersion}} · updated {{{updated}}}</p>
        {{#canWrite}}
        <div class="actions">
        <a href="{{href}}/edit">Edit the definition</a>
        {{^archived}}<form method="post" action="{{href}}/archive" class="inline"><input type="hidden" name="_csrf" value="{{csrf}}"><button type="submit" class="danger">Archive agent</button></form>{{/archived}}
        </div>
        {{/canWrite}}
        {{#archived}}<p class="muted">This agent is archived: it starts no new runs. Saving a new version brings it back.</p>{{/archived}}
        <section aria-labelledby="playground-title">
        <h2 id="playground-title">Talk to the agent</h2>
        {{#threadGone}}<p class="problem">That conversation no longer exists; the next message starts a new one.</p>{{/threadGone}}
        {{#thread}}<p class="muted">Conversation <code>{{threadID}}</code> · <a href="{{href}}">Start a new conversation</a></p>{{/thread}}
        {{#hasMessages}}
        <ol class="turns conversation">
        {{#messages}}
        <li class="turn message-{{role}}">
        <p><strong>{{role}}</strong>{{#toolName}} <code>{{toolName}}</code>{{/toolName}} <span class="muted">{{{at}}}{{#run}} · <a href="{{href}}">run <code>{{id}}</code></a>{{/run}}</span></p>
        {{#content}}<div class="answer">{{content}}</div>{{/content}}
        {{#hasCalls}}<ul class="calls">{{#calls}}<li class="call">Tool call <code>{{name}}</code> <span class="muted">{{arguments}}</span></li>{{/calls}}</ul>{{/hasCalls}}
        </li>
        {{/messages}}
        </ol>
        {{/hasMessages}}
        {{#canTalk}}
        {{> problem}}
        <form method="post" action="{{href}}/runs" class="stack" id="talk-form">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <input type="hidden" name="thread" value="{{threadID}}">
        <label for="agent-message">Message <span class="muted">(text, or a JSON object for an agent that takes structured input)</span></label>
        <textarea id="agent-message" name="message" rows="4" required>
        {{message}}</textarea>
        <div class="actions"><button type="submit" class="primary">Send</button></div>
        </form>
        <p class="muted">Each message starts a run; its page shows the agent's trace as it happens, and this page, with the conversation open, shows the whole thread.</p>
        {{/canTalk}}
        {{^canTalk}}{{^archived}}<p class="muted">Developers and above may talk to the agent here.</p>{{/archived}}{{/canTalk}}
        </section>
        {{#hasConversations}}
        <section aria-labelledby="conversations-title">
        <h2 id="conversations-title">Recent conversations</h2>
        <ul>{{#conversations}}<li><a href="{{href}}">Continue <code>{{thread}}</code></a> · {{{created}}} · <span class="muted">{{input}}</span></li>{{/conversations}}</ul>
        </section>
        {{/hasConversations}}
        <section aria-labelledby="runs-title">
        <h2 id="runs-title">Recent runs</h2>
        {{#hasRuns}}
        <table class="runs">
        <caption class="visually-hidden">The agent's latest runs, newest first</caption>
        <thead><tr><th scope="col">Run</th><th scope="col">Workflow or agent</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Duration</th><th scope="col">Error</th></tr></thead>
        <tbody>{{#runs}}{{> run-row}}{{/runs}}</tbody>
        </table>
        <p><a href="{{runsHref}}">Every run of this agent</a></p>
        {{/hasRuns}}
        {{^hasRuns}}<p class="empty">No runs yet.</p>{{/hasRuns}}
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
