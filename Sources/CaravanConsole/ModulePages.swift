import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// WebAssembly modules: the list, and a module's page (its version, digest, imports, permissions, limits and
/// schemas, its versions) with a form that calls it once with a JSON input and shows the output or the error.
/// Modules are uploaded through the API (`PUT /v1/modules/{name}`), as the empty list says.
struct ModulePages: Sendable {
    let console: Console

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/modules") { request, context in
            await console.page(request, context) { visit in
                let data = try await WorkflowPages.listData(
                    request,
                    visit,
                    console: console,
                    pages: "/modules",
                    api: "/v1/modules"
                )
                return console.views.page("modules", title: "Modules", visit: visit, data)
            }
        }
        router.get("/modules/{name}") { request, context in
            let name = try context.parameters.require("name")
            return await console.page(request, context) { visit in
                try await modulePage(
                    name,
                    version: request.uri.queryParameters.get("version").map { String($0) },
                    visit
                )
            }
        }
        router.post("/modules/{name}/call") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, form in
                let typed = form.trimmed("input") ?? "{}"
                guard let input = try? JSONValue(parsing: Array(typed.utf8), maxDepth: 64) else {
                    let problem = ConsoleProblem(
                        status: 422,
                        code: "validation_failed",
                        detail: "The input is not JSON.",
                        pointer: "/input",
                        errors: [(pointer: "/input", detail: "must be JSON, e.g. {\"text\": \"hello\"}")]
                    )
                    return try await modulePage(name, version: nil, visit, typed: typed, problem: problem)
                }
                let path = "/v1/modules/\(ConsoleMarkup.segment(name))/call"
                switch try await console.change(.post, path, body: ["input": input], visit) {
                case .success(let answer):
                    return try await modulePage(name, version: nil, visit, typed: typed, output: answer["output"])
                case .failure(let problem):
                    return try await modulePage(name, version: nil, visit, typed: typed, problem: problem)
                }
            }
        }
    }

    private func modulePage(
        _ name: String,
        version: String?,
        _ visit: ConsoleVisit,
        typed: String = "{}",
        output: JSONValue? = nil,
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let query = version.flatMap(Int.init).map { "?version=\($0)" } ?? ""
        let module = try await console.read("/v1/modules/\(ConsoleMarkup.segment(name))\(query)", visit)
        let permissions = module["permissions"] ?? [:]
        var granted: [String] = []
        if permissions["http"] == true { granted.append("HTTP (through the egress policy)") }
        if permissions["kv"] == true { granted.append("key-value store") }
        let secrets = permissions["secrets"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if !secrets.isEmpty { granted.append("secrets " + secrets.joined(separator: ", ")) }
        let limits = module["limits"] ?? [:]
        func number(_ value: JSONValue?) -> String { SettingsKit.grouped(Int64(value?.numberValue ?? 0)) }
        var data: [String: Any] = [
            "name": name,
            "href": "/modules/\(ConsoleMarkup.segment(name))",
            "version": Int(module["version"]?.numberValue ?? 1),
            "description": module["description"]?.stringValue ?? "",
            "sha256": module["sha256"]?.stringValue ?? "",
            "size": number(module["size"]),
            "created": ConsoleTime.element(module["created_at"]),
            "imports": (module["imports"]?.arrayValue ?? []).compactMap(\.stringValue),
            "granted": granted.isEmpty ? "none" : granted.joined(separator: "; "),
            "fuel": number(limits["fuel"]),
            "memory": number(limits["memory_bytes"]),
            "stack": number(limits["stack_bytes"]),
            "timeout": number(limits["timeout_ms"]),
            "inputSchema": module["input_schema"].flatMap { $0.isNull ? nil : ConsoleJSON.pretty($0).text } ?? false,
            "outputSchema": module["output_schema"].flatMap { $0.isNull ? nil : ConsoleJSON.pretty($0).text } ?? false,
            "versions": (module["versions"]?.arrayValue ?? []).map { version -> [String: Any] in
                let number = Int(version.numberValue ?? 0)
                return ["number": number, "href": "/modules/\(ConsoleMarkup.segment(name))?version=\(number)"]
            },
            "canWrite": visit.can("developer"),
            "typed": typed,
            "output": output.map { ConsoleJSON.pretty($0).text } ?? false,
            "problem": false,
        ]
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        return console.views.page("module", title: name, visit: visit, data, status: problem?.status ?? 200)
    }

    static let templates: [String: String] = [
        "modules": """
        <h1>Modules</h1>
        {{#empty}}<div class="empty"><p><strong>No modules yet.</strong> A module is WebAssembly code that workflows run as <code>wasm</code> steps and agents call as <code>wasm</code> tools, in a sandbox with limits of its own. Upload one with <code>PUT /v1/modules/NAME</code> and <code>{"wat": "(module …)"}</code> or <code>{"wasm": "BASE64"}</code>; <code>examples/wasm/word_count.c</code> is one in C.</p></div>{{/empty}}
        {{^empty}}
        <div class="scroll"><table>
        <caption>The organization's modules, each at its latest version</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Version</th><th scope="col">Description</th><th scope="col">Uploaded</th></tr></thead>
        <tbody>{{#items}}<tr><th scope="row"><a href="{{href}}">{{name}}</a></th><td>{{version}}</td><td>{{description}}</td><td>{{{updated}}}</td></tr>{{/items}}</tbody>
        </table></div>
        {{#next}}<p><a href="{{next}}">Next page</a></p>{{/next}}
        {{/empty}}
        """,
        "module": """
        <p><a href="/modules">Modules</a></p>
        <h1>{{name}} <span class="muted">version {{version}}</span></h1>
        {{#description}}<p>{{description}}</p>{{/description}}
        <dl class="facts">
        <dt>SHA-256</dt><dd><code>{{sha256}}</code></dd>
        <dt>Size</dt><dd>{{size}} bytes</dd>
        <dt>Uploaded</dt><dd>{{{created}}}</dd>
        <dt>Imports</dt><dd>{{#imports}}<code>{{.}}</code> {{/imports}}{{^imports}}none{{/imports}}</dd>
        <dt>Permissions</dt><dd>{{granted}}</dd>
        <dt>Fuel</dt><dd>{{fuel}} instructions</dd>
        <dt>Memory</dt><dd>{{memory}} bytes</dd>
        <dt>Stack</dt><dd>{{stack}} bytes</dd>
        <dt>Time</dt><dd>{{timeout}} ms</dd>
        </dl>
        {{#inputSchema}}<section class="card"><h2>Input schema</h2><pre>{{inputSchema}}</pre></section>{{/inputSchema}}
        {{#outputSchema}}<section class="card"><h2>Output schema</h2><pre>{{outputSchema}}</pre></section>{{/outputSchema}}
        <p>Versions: {{#versions}}<a href="{{href}}">{{number}}</a> {{/versions}}</p>
        {{#canWrite}}
        <section class="card" aria-labelledby="call-heading">
        <h2 id="call-heading">Call it</h2>
        <form method="post" action="{{href}}/call">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="module-input">Input (JSON)</label>
        <textarea id="module-input" name="input" rows="6">{{typed}}</textarea>
        <button type="submit">Call the latest version</button>
        </form>
        {{> problem}}
        {{#output}}<h3>Output</h3><pre id="module-output">{{output}}</pre>{{/output}}
        </section>
        {{/canWrite}}
        """,
    ]
}
