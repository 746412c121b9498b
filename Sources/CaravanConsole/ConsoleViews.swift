import CaravanCore
import Foundation
import HTTPTypes
import Mustache

/// The console's Mustache templates, parsed once at start, and the page layout around them.
///
/// `{{name}}` escapes HTML (`< > & " '`), so text from users, models and tools is always shown as text; `{{{name}}}`
/// inserts markup and is used only for markup the console built itself (`ConsoleMarkup`).
struct ConsoleViews: Sendable {
    private let library: MustacheLibrary

    /// Every template, by name: the layout here, each page's beside its routes.
    static let templates: [String: String] =
        layoutTemplates
        .merging(AuthPages.templates) { first, _ in first }
        .merging(RunPages.templates) { first, _ in first }
        .merging(WorkflowPages.templates) { first, _ in first }
        .merging(SettingsPages.templates) { first, _ in first }
        .merging(UsagePages.templates) { first, _ in first }
        .merging(EventsPages.templates) { first, _ in first }
        .merging(ModulePages.templates) { first, _ in first }
        .merging(CatalogPages.templates) { first, _ in first }
        .merging(KnowledgePages.templates) { first, _ in first }

    init() throws {
        var library = MustacheLibrary()
        for (name, text) in Self.templates { try library.register(text, named: name) }
        self.library = library
    }

    /// Renders the template `name` with `data`.
    func render(_ name: String, _ data: [String: Any]) -> String {
        library.render(data, withTemplate: name) ?? ""
    }

    /// A whole page: the layout (navigation for a signed-in visit) around `body`.
    func document(title: String, visit: ConsoleVisit?, body: String, live: String? = nil) -> String {
        var data: [String: Any] = ["title": title, "body": body]
        if let live { data["live"] = live }
        if let visit {
            data["signedIn"] = true
            data["email"] = visit.email
            data["csrf"] = visit.csrf
            data["organization"] = visit.organization?.name ?? ""
            data["orgs"] = visit.memberships.map { membership -> [String: Any] in
                [
                    "id": membership.id, "name": membership.name, "role": membership.role,
                    "selected": membership.id == visit.organization?.id,
                ]
            }
            data["severalOrgs"] = visit.memberships.count > 1
            data["nav"] = Self.sections.filter { visit.can($0.role) }.map { section -> [String: Any] in
                let current = ([section.href] + (Self.sectionPaths[section.href] ?? [])).contains { href in
                    visit.path == href || visit.path.hasPrefix(href + "/")
                }
                return ["href": section.href, "label": section.label, "current": current]
            }
        }
        return render("layout", data)
    }

    /// A signed-in page: the layout with `template` rendered from `data` inside, answered with `status` (the
    /// API's, when a refused form is shown again).
    func page(
        _ template: String,
        title: String,
        visit: ConsoleVisit,
        _ data: [String: Any],
        live: String? = nil,
        status: Int = 200
    ) -> ConsoleAnswer {
        var data = data
        data["csrf"] = visit.csrf
        return .html(
            document(title: title, visit: visit, body: render(template, data), live: live),
            status: HTTPResponse.Status(code: status)
        )
    }

    /// A problem as the `problem` template shows it.
    static func problem(_ problem: ConsoleProblem?) -> [String: Any]? {
        guard let problem else { return nil }
        return [
            "detail": problem.detail, "code": problem.code, "hasErrors": !problem.errors.isEmpty,
            "errors": problem.errors.map { ["pointer": $0.pointer, "detail": $0.detail] },
        ]
    }

    /// The sections of the navigation, and the least role that sees each.
    static let sections: [(href: String, label: String, role: String)] = [
        ("/runs", "Runs", "viewer"),
        ("/approvals", "Approvals", "viewer"),
        ("/workflows", "Workflows", "viewer"),
        ("/agents", "Agents", "viewer"),
        ("/modules", "Modules", "viewer"),
        ("/knowledge", "Knowledge", "viewer"),
        ("/catalog", "Catalog", "viewer"),
        ("/events", "Events", "viewer"),
        ("/usage", "Usage", "viewer"),
        ("/audit", "Audit log", "admin"),
        ("/settings", "Settings", "viewer"),
    ]

    /// The paths of a section besides its own: Events' pages are the webhooks' and the triggers'.
    static let sectionPaths: [String: [String]] = ["/events": ["/webhooks", "/triggers"], "/catalog": ["/ledger"]]

    static let layoutTemplates: [String: String] = [
        "layout": """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="light dark">
        <title>{{title}} · Caravan</title>
        <link rel="stylesheet" href="/assets/console.css">
        <script src="/assets/console.js" defer></script>
        </head>
        <body{{#live}} data-live="{{live}}"{{/live}}>
        <a class="skip" href="#main">Skip to content</a>
        {{#signedIn}}
        <header class="top">
        <a class="brand" href="/runs">Caravan</a>
        <nav aria-label="Sections"><ul>
        {{#nav}}<li><a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{label}}</a></li>{{/nav}}
        </ul></nav>
        <div class="account">
        {{#severalOrgs}}
        <form method="post" action="/organization" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="org-switch">Organization</label>
        <select id="org-switch" name="org">{{#orgs}}<option value="{{id}}"{{#selected}} selected{{/selected}}>{{name}} ({{role}})</option>{{/orgs}}</select>
        <button type="submit">Switch</button>
        </form>
        {{/severalOrgs}}
        {{^severalOrgs}}<span class="org" title="Organization">{{organization}}</span>{{/severalOrgs}}
        <form method="post" action="/logout" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit" class="link">Sign out <span class="muted">{{email}}</span></button>
        </form>
        </div>
        </header>
        {{/signedIn}}
        <main id="main" tabindex="-1">
        {{{body}}}
        </main>
        </body>
        </html>
        """,
        "error": """
        <h1>{{title}}</h1>
        <p class="problem" role="alert">{{detail}}</p>
        <p class="muted">Code <code>{{code}}</code> · status {{status}} · request <code>{{requestID}}</code></p>
        <p><a href="/runs">Back to runs</a></p>
        """,
        "problem": """
        {{#problem}}<div class="problem" role="alert"><strong>{{detail}}</strong>{{#hasErrors}}<ul>{{#errors}}<li><code>{{pointer}}</code> {{detail}}</li>{{/errors}}</ul>{{/hasErrors}}</div>{{/problem}}
        """,
    ]
}

/// Markup the console builds in code (graphs, timelines, folded JSON): every piece of text in it passes through
/// `escape`, so it may be inserted into a template unescaped.
enum ConsoleMarkup {
    /// HTML-escapes text for element content and quoted attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// A path segment, percent-encoded, for links built from ids and names.
    static func segment(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-_.~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    /// A query value, percent-encoded.
    static func query(_ text: String) -> String { segment(text) }
}
