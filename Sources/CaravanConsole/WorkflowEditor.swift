import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// The YAML editor of a workflow or an agent: a textarea with the definition, saved with `PUT` as
/// `application/yaml`. When the API refuses it, the editor comes back with the text as it was typed, a numbered
/// listing of it, and every validation error under the line its pointer names.
struct DefinitionEditor: Sendable {
    /// What is edited: `workflow` or `agent`.
    let kind: String
    /// Where its pages are, `/workflows`.
    let pages: String
    /// Where the API keeps it, `/v1/workflows`.
    let api: String
    let console: Console

    /// The routes workflows and agents share: saving a new definition, editing one, archiving one.
    func register(in router: Router<ConsoleRequestContext>) {
        let editor = self
        router.post("\(pages)/new") { request, context in
            await console.action(request, context) { visit, form in
                try await editor.save(name: nil, form: form, visit)
            }
        }
        router.get("\(pages)/{name}/edit") { request, context in
            let name = try context.parameters.require("name")
            return await console.page(request, context) { visit in
                try WorkflowPages.requireWriter(visit, "edit \(editor.kind)s")
                return try await editor.existing(name: name, visit)
            }
        }
        router.post("\(pages)/{name}/edit") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, form in
                try await editor.save(name: name, form: form, visit)
            }
        }
        router.post("\(pages)/{name}/archive") { request, context in
            let name = try context.parameters.require("name")
            return await console.action(request, context) { visit, _ in
                let answer = try await console.api.call(
                    .delete,
                    "\(editor.api)/\(ConsoleMarkup.segment(name))",
                    as: visit.credentials
                )
                if let problem = answer.problem { throw problem }
                return .redirect("\(editor.pages)/\(ConsoleMarkup.segment(name))")
            }
        }
    }

    /// The editor of a new definition, starting from `yaml`.
    func new(name: String, yaml: String, _ visit: ConsoleVisit) -> ConsoleAnswer {
        page(name: name, isNew: true, yaml: yaml, problem: nil, visit)
    }

    /// The editor of the definition `name` as it stands.
    func existing(name: String, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let stored = try await console.read("\(api)/\(ConsoleMarkup.segment(name))", visit)
        return page(
            name: name,
            isNew: false,
            yaml: DefinitionYAML.text(stored["definition"] ?? .null),
            problem: nil,
            visit
        )
    }

    /// Saves the submitted form (`name` for a new definition, `yaml`): to the definition's page when the API took
    /// it, else the editor again with the errors beside their lines.
    func save(name fixedName: String?, form: ConsoleForm, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let yaml = DefinitionYAML.normalized(form["yaml"] ?? "")
        let typedName = fixedName ?? form.trimmed("name") ?? ""
        let name = typedName.isEmpty ? DefinitionYAML.name(in: yaml) ?? "" : typedName
        let isNew = fixedName == nil
        guard !name.isEmpty else {
            let problem = ConsoleProblem(
                status: 422,
                code: "validation_failed",
                detail: "Name the \(kind): lower-case letters, digits and dashes.",
                pointer: "/name",
                errors: []
            )
            return page(name: name, isNew: isNew, yaml: yaml, problem: problem, visit)
        }
        guard !yaml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            let problem = ConsoleProblem(
                status: 422,
                code: "validation_failed",
                detail: "Write the \(kind)'s definition in YAML.",
                pointer: nil,
                errors: []
            )
            return page(name: name, isNew: isNew, yaml: yaml, problem: problem, visit)
        }
        let answer = try await console.api.call(
            .put,
            "\(api)/\(ConsoleMarkup.segment(name))",
            as: visit.credentials,
            sending: .text(yaml, contentType: "application/yaml")
        )
        guard let problem = answer.problem else {
            return .redirect("\(pages)/\(ConsoleMarkup.segment(name))")
        }
        if [401, 403].contains(problem.status) { throw problem }
        return page(name: name, isNew: isNew, yaml: yaml, problem: problem, visit)
    }

    private func page(
        name: String,
        isNew: Bool,
        yaml: String,
        problem: ConsoleProblem?,
        _ visit: ConsoleVisit
    ) -> ConsoleAnswer {
        // The lines at fault: the API's field errors, and a syntax error found by reading the YAML here (the API
        // names it only in its detail). A problem without a line (a 404, a rate limit) is shown above the form.
        var marked: [Int: [String]] = [:]
        if let problem, [400, 422].contains(problem.status) {
            marked = DefinitionYAML.lines(of: problem.errors, in: yaml)
        }
        let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let last = max(1, lines.count)
        var clamped: [Int: [String]] = [:]
        for (line, messages) in marked { clamped[min(max(1, line), last), default: []] += messages }
        let listing = lines.enumerated().map { index, text -> [String: Any] in
            let messages = clamped[index + 1] ?? []
            return ["number": index + 1, "text": text, "errors": messages, "hasErrors": !messages.isEmpty]
        }
        let summary = clamped.keys.sorted().flatMap { line in
            (clamped[line] ?? []).map { ["line": line, "detail": $0] as [String: Any] }
        }
        let shownName = isNew ? "New \(kind)" : name
        let data: [String: Any] = [
            "kind": kind,
            "pages": pages,
            "section": kind == "agent" ? "Agents" : "Workflows",
            "heading": isNew ? "New \(kind)" : "Edit \(name)",
            "name": name,
            "isNew": isNew,
            "action": isNew ? "\(pages)/new" : "\(pages)/\(ConsoleMarkup.segment(name))/edit",
            "cancel": isNew ? pages : "\(pages)/\(ConsoleMarkup.segment(name))",
            "yaml": yaml,
            "rows": min(40, max(12, lines.count + 2)),
            "problem": problem.map { problem -> [String: Any] in
                ["detail": problem.detail, "code": problem.code, "lineCount": summary.count]
            } ?? false,
            "hasListing": !summary.isEmpty,
            "summary": summary,
            "listing": listing,
            "canWrite": visit.can("developer"),
        ]
        return console.views.page(
            "definition-editor",
            title: shownName,
            visit: visit,
            data,
            status: problem?.status ?? 200
        )
    }

    static let templates: [String: String] = [
        "definition-editor": """
        <p class="crumbs"><a href="{{pages}}">{{section}}</a>{{^isNew}} / <a href="{{cancel}}">{{name}}</a>{{/isNew}}</p>
        <h1>{{heading}}</h1>
        {{#problem}}
        <div class="problem" role="alert" id="editor-problem"><strong>{{detail}}</strong>
        {{#hasListing}}<ul>{{#summary}}<li><a href="#line-{{line}}">Line {{line}}</a>: {{detail}}</li>{{/summary}}</ul>{{/hasListing}}
        </div>
        {{/problem}}
        {{#hasListing}}
        <section aria-labelledby="listing-title">
        <h2 id="listing-title">Your definition, line by line</h2>
        <ol class="listing">
        {{#listing}}<li id="line-{{number}}" value="{{number}}"{{#hasErrors}} class="has-error"{{/hasErrors}}><code>{{text}}</code>{{#hasErrors}}<ul class="editor-error">{{#errors}}<li>{{.}}</li>{{/errors}}</ul>{{/hasErrors}}</li>{{/listing}}
        </ol>
        </section>
        {{/hasListing}}
        <form method="post" action="{{action}}" class="stack editor">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        {{#isNew}}<label for="definition-name">Name <span class="muted">(lower-case letters, digits and dashes; the YAML's <code>name</code> when left empty)</span></label>
        <input id="definition-name" name="name" value="{{name}}" pattern="[a-z0-9\\-]{1,64}" maxlength="64" autocomplete="off">{{/isNew}}
        <label for="definition-yaml">Definition (YAML)</label>
        <textarea id="definition-yaml" name="yaml" rows="{{rows}}" spellcheck="false" autocapitalize="off" required>
        {{yaml}}</textarea>
        <div class="actions"><button type="submit" class="primary">Save</button> <a href="{{cancel}}">Cancel</a></div>
        </form>
        """
    ]
}
