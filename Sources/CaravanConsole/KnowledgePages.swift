import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// Knowledge: the collections, and a collection's page (its model and chunking, its documents, a form that adds a
/// document, a search form that shows the passages found). Collections are created with `PUT /v1/collections/NAME`.
struct KnowledgePages: Sendable {
    let console: Console

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/knowledge") { request, context in
            await console.page(request, context) { visit in
                let collections = try await console.readAll("/v1/collections", visit)
                let data: [String: Any] = [
                    "empty": collections.isEmpty,
                    "items": collections.map { collection -> [String: Any] in
                        let name = collection["name"]?.stringValue ?? ""
                        return [
                            "name": name, "href": "/knowledge/\(ConsoleMarkup.segment(name))",
                            "model": collection["embedding_model"]?.stringValue ?? "",
                            "updated": ConsoleTime.element(collection["updated_at"]),
                        ]
                    },
                ]
                return console.views.page("knowledge", title: "Knowledge", visit: visit, data)
            }
        }
        router.get("/knowledge/{name}") { request, context in
            let name = try context.parameters.require("name")
            return await console.page(request, context) { visit in try await collectionPage(name, visit) }
        }
        router.post("/knowledge/{name}/documents") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, form in
                let body: JSONValue = [
                    "name": .string(form.trimmed("name") ?? ""), "text": .string(form["text"] ?? ""),
                    "format": .string(form.trimmed("format") ?? "text"),
                ]
                let path = "/v1/collections/\(ConsoleMarkup.segment(name))/documents"
                switch try await console.change(.post, path, body: body, visit) {
                case .success: return .redirect("/knowledge/\(ConsoleMarkup.segment(name))")
                case .failure(let problem): return try await collectionPage(name, visit, problem: problem)
                }
            }
        }
        // Files chosen in the page's upload form (several at once: a folder's documents), each added through the
        // API as its own multipart upload; the page then says which were added and why others were refused.
        router.post("/knowledge/{name}/files") { request, context in
            let name = try context.parameters.require("name")
            var request = request
            let form: MultipartForm
            do {
                let body = try await request.collectBody(upTo: Self.maxUploadBytes)
                form = try MultipartForm.parse(
                    Array(body.readableBytesView),
                    contentType: request.headers[.contentType] ?? ""
                )
                try CSRFGuard.check(request, form: ConsoleForm(parsing: "_csrf=" + (form.part("_csrf")?.text ?? "")))
            } catch let problem as ConsoleProblem {
                return console.errorPage(problem, request: request, context: context)
            } catch {
                let problem = ConsoleProblem(
                    status: 413,
                    code: "payload_too_large",
                    detail: "The files could not be read: at most \(Self.maxUploadBytes >> 20) MiB at once, as a form."
                )
                return console.errorPage(problem, request: request, context: context)
            }
            return await console.page(request, context) { visit in
                let path = "/v1/collections/\(ConsoleMarkup.segment(name))/documents"
                var added: [String] = []
                var refused: [String] = []
                for file in form.parts where file.name == "file" && !(file.filename ?? "").isEmpty {
                    let (body, contentType) = MultipartForm.encode([file])
                    let answer = try await console.api.call(
                        .post,
                        path,
                        as: visit.credentials,
                        sending: .bytes(body, contentType: contentType)
                    )
                    if let problem = answer.problem {
                        if [401, 403, 404].contains(problem.status) { throw problem }
                        refused.append("\(file.filename ?? ""): \(problem.detail)")
                    } else {
                        added.append(file.filename ?? "")
                    }
                }
                return try await collectionPage(name, visit, uploaded: (added, refused))
            }
        }
        router.post("/knowledge/{name}/search") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, form in
                let query = form.trimmed("query") ?? ""
                let body: JSONValue = [
                    "query": .string(query), "mode": .string(form.trimmed("mode") ?? "hybrid"), "k": 10,
                ]
                let path = "/v1/collections/\(ConsoleMarkup.segment(name))/search"
                switch try await console.change(.post, path, body: body, visit) {
                case .success(let answer):
                    return try await collectionPage(name, visit, query: query, found: answer["items"]?.arrayValue ?? [])
                case .failure(let problem):
                    return try await collectionPage(name, visit, query: query, problem: problem)
                }
            }
        }
    }

    private func collectionPage(
        _ name: String,
        _ visit: ConsoleVisit,
        query: String = "",
        found: [JSONValue]? = nil,
        problem: ConsoleProblem? = nil,
        uploaded: (added: [String], refused: [String])? = nil
    ) async throws -> ConsoleAnswer {
        let segment = ConsoleMarkup.segment(name)
        let collection = try await console.read("/v1/collections/\(segment)", visit)
        let documents = try await console.readAll("/v1/collections/\(segment)/documents", visit)
        var data: [String: Any] = [
            "name": name, "href": "/knowledge/\(segment)",
            "model": collection["embedding_model"]?.stringValue ?? "",
            "size": Int(collection["chunking"]?["size"]?.numberValue ?? 0),
            "overlap": Int(collection["chunking"]?["overlap"]?.numberValue ?? 0),
            "documents": documents.map { document -> [String: Any] in
                [
                    "name": document["name"]?.stringValue ?? "", "format": document["format"]?.stringValue ?? "",
                    "chunks": Int(document["chunk_count"]?.numberValue ?? 0),
                    "characters": SettingsKit.grouped(Int64(document["characters"]?.numberValue ?? 0)),
                    "added": ConsoleTime.element(document["created_at"]),
                ]
            },
            "hasDocuments": !documents.isEmpty,
            "canWrite": visit.can("developer"),
            "query": query,
            "searched": found != nil,
            "found": (found ?? []).map { item -> [String: Any] in
                [
                    "document": item["document"]?.stringValue ?? "",
                    "position": Int(item["position"]?.numberValue ?? 0),
                    "score": String(format: "%.4f", item["score"]?.numberValue ?? 0),
                    "text": item["text"]?.stringValue ?? "",
                ]
            },
            "problem": false,
            "uploaded": uploaded.map { outcome -> [String: Any] in
                [
                    "added": outcome.added, "count": outcome.added.count, "hasAdded": !outcome.added.isEmpty,
                    "refused": outcome.refused, "hasRefused": !outcome.refused.isEmpty,
                ]
            } ?? false,
        ]
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        return console.views.page("collection", title: name, visit: visit, data, status: problem?.status ?? 200)
    }

    /// The most one upload form may carry.
    static let maxUploadBytes = 64 << 20

    static let templates: [String: String] = [
        "knowledge": """
        <h1>Knowledge</h1>
        {{#empty}}<div class="empty"><p><strong>No collections yet.</strong> A collection keeps documents cut into passages and embedded, for agents' <code>knowledge</code> tools and workflows' <code>search</code> steps. Create one with <code>PUT /v1/collections/NAME</code> and <code>{"embedding_model": "provider/model"}</code>.</p></div>{{/empty}}
        {{^empty}}
        <div class="scroll"><table>
        <caption>The organization's collections</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Embedding model</th><th scope="col">Changed</th></tr></thead>
        <tbody>{{#items}}<tr><th scope="row"><a href="{{href}}">{{name}}</a></th><td><code>{{model}}</code></td><td>{{{updated}}}</td></tr>{{/items}}</tbody>
        </table></div>
        {{/empty}}
        """,
        "collection": """
        <p><a href="/knowledge">Knowledge</a></p>
        <h1>{{name}}</h1>
        <dl class="facts">
        <dt>Embedding model</dt><dd><code>{{model}}</code></dd>
        <dt>Chunks</dt><dd>up to {{size}} characters, overlapping by {{overlap}}</dd>
        </dl>
        {{> problem}}
        <section class="card" aria-labelledby="search-heading">
        <h2 id="search-heading">Search</h2>
        <form method="post" action="{{href}}/search" class="inline" role="search">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="search-query">Query</label> <input id="search-query" name="query" value="{{query}}">
        <label for="search-mode">Mode</label> <select id="search-mode" name="mode"><option>hybrid</option><option>vector</option><option>text</option></select>
        <button type="submit">Search</button>
        </form>
        {{#searched}}<ol id="search-results">{{#found}}<li><strong>{{document}}</strong> #{{position}} <span class="muted">{{score}}</span><pre>{{text}}</pre></li>{{/found}}</ol>{{^found}}<p>Nothing found.</p>{{/found}}{{/searched}}
        </section>
        {{#hasDocuments}}
        <div class="scroll"><table>
        <caption>Documents</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Format</th><th scope="col">Characters</th><th scope="col">Chunks</th><th scope="col">Added</th></tr></thead>
        <tbody>{{#documents}}<tr><th scope="row">{{name}}</th><td>{{format}}</td><td>{{characters}}</td><td>{{chunks}}</td><td>{{{added}}}</td></tr>{{/documents}}</tbody>
        </table></div>
        {{/hasDocuments}}
        {{^hasDocuments}}<p class="muted">No documents yet.</p>{{/hasDocuments}}
        {{#canWrite}}
        <section class="card" aria-labelledby="upload-heading">
        <h2 id="upload-heading">Upload files</h2>
        {{#uploaded}}<div role="status" id="upload-outcome"><p>Added {{count}} document(s){{#hasAdded}}: {{#added}}<code>{{.}}</code> {{/added}}{{/hasAdded}}</p>{{#hasRefused}}<p>Refused:</p><ul>{{#refused}}<li>{{.}}</li>{{/refused}}</ul>{{/hasRefused}}</div>{{/uploaded}}
        <form method="post" action="{{href}}/files" enctype="multipart/form-data">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="upload-files">Files (text, Markdown, HTML, CSV, JSON, DOCX, PDF)</label> <input id="upload-files" type="file" name="file" multiple>
        <button type="submit">Upload</button>
        </form>
        </section>
        <section class="card" aria-labelledby="add-heading">
        <h2 id="add-heading">Add a document</h2>
        <form method="post" action="{{href}}/documents">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="document-name">Name</label> <input id="document-name" name="name">
        <label for="document-format">Format</label> <select id="document-format" name="format"><option>text</option><option>markdown</option><option>html</option><option>csv</option><option>json</option></select>
        <label for="document-text">Text</label> <textarea id="document-text" name="text" rows="8"></textarea>
        <button type="submit">Add</button>
        </form>
        </section>
        {{/canWrite}}
        """,
    ]
}
