import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// The catalog: a search over every organization's listings (with what this organization installed), a listing's
/// page (versions, price, requirements, reputation, ratings; install, upgrade, remove and rate for an installer,
/// deprecate for its publisher), and the ledger's statement of a month. Publishing is `POST /v1/catalog/listings`.
struct CatalogPages: Sendable {
    let console: Console

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/catalog") { request, context in
            await console.page(request, context) { visit in
                try await catalogPage(request, visit)
            }
        }
        router.get("/catalog/{id}") { request, context in
            let id = try context.parameters.require("id")
            return await console.page(request, context) { visit in try await listingPage(id, visit) }
        }
        listingForm(router, "install") { id, form in
            var body: [String: JSONValue] = ["listing": .string(id)]
            if let name = form.trimmed("name") { body["name"] = .string(name) }
            var secrets: [String: JSONValue] = [:]
            for name in (form["secret_names"] ?? "").split(separator: ",").map(String.init) {
                if let value = form.trimmed("secret_" + name) { secrets[name] = .string(value) }
            }
            if !secrets.isEmpty { body["secrets"] = .object(secrets) }
            return (.post, "/v1/catalog/installs", .object(body))
        }
        listingForm(router, "upgrade") { _, form in
            (.post, "/v1/catalog/installs/\(ConsoleMarkup.segment(form["install"] ?? ""))/upgrade", [:])
        }
        listingForm(router, "remove") { _, form in
            (.delete, "/v1/catalog/installs/\(ConsoleMarkup.segment(form["install"] ?? ""))", nil)
        }
        listingForm(router, "rate") { id, form in
            var body: [String: JSONValue] = ["stars": .int(Int64(form.trimmed("stars").flatMap(Int.init) ?? 0))]
            if let review = form.trimmed("review") { body["review"] = .string(review) }
            return (.put, "/v1/catalog/listings/\(ConsoleMarkup.segment(id))/rating", .object(body))
        }
        listingForm(router, "deprecate") { id, form in
            let version = form.trimmed("version").flatMap(Int.init) ?? 0
            return (.post, "/v1/catalog/listings/\(ConsoleMarkup.segment(id))/versions/\(version)/deprecate", nil)
        }
        router.get("/ledger") { request, context in
            await console.page(request, context) { visit in try await ledgerPage(request, visit) }
        }
    }

    /// A form of a listing's page, posted to `/catalog/{id}/ACTION`: the one API change `change` names, then the
    /// listing's page again, with the problem beside the forms when there is one.
    private func listingForm(
        _ router: Router<ConsoleRequestContext>,
        _ action: String,
        change: @escaping @Sendable (_ id: String, ConsoleForm) -> (HTTPRequest.Method, String, JSONValue?)
    ) {
        router.post("/catalog/{id}/\(action)") { request, context in
            let id = try context.parameters.require("id")
            return await console.action(request, context) { visit, form in
                let (method, path, body) = change(id, form)
                switch try await console.change(method, path, body: body, visit) {
                case .success: return .redirect("/catalog/\(ConsoleMarkup.segment(id))")
                case .failure(let problem): return try await listingPage(id, visit, problem: problem)
                }
            }
        }
    }

    static func money(_ micros: JSONValue?) -> String {
        let value = Int64(micros?.numberValue ?? 0)
        let sign = value < 0 ? "−" : ""
        let magnitude = value.magnitude
        return "\(sign)$\(magnitude / 1_000_000).\(String(format: "%06d", magnitude % 1_000_000))"
    }

    private func catalogPage(_ request: Request, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let query = request.uri.queryParameters
        let q = query.get("q").map { String($0) } ?? ""
        let tag = query.get("tag").map { String($0) } ?? ""
        let cursor = query.get("cursor").map { String($0) } ?? ""
        var path = "/v1/catalog/listings?limit=50"
        if !q.isEmpty { path += "&q=\(ConsoleMarkup.query(q))" }
        if !tag.isEmpty { path += "&tag=\(ConsoleMarkup.query(tag))" }
        if !cursor.isEmpty { path += "&cursor=\(ConsoleMarkup.query(cursor))" }
        var data: [String: Any] = ["q": q, "tag": tag, "problem": false, "canAdmin": visit.can("admin")]
        do {
            let page = try await console.read(path, visit)
            data["items"] = (page["items"]?.arrayValue ?? []).map { Self.row($0, own: visit.organization?.id) }
            data["empty"] = page["items"]?.arrayValue?.isEmpty ?? true
            data["next"] =
                page["next_cursor"]?.stringValue.map {
                    "/catalog?q=\(ConsoleMarkup.query(q))&tag=\(ConsoleMarkup.query(tag))&cursor=\(ConsoleMarkup.query($0))"
                } ?? false
        } catch let problem as ConsoleProblem where problem.status == 422 {
            data["problem"] = ConsoleViews.problem(problem)
            data["items"] = [[String: Any]]()
            data["empty"] = true
            data["next"] = false
        }
        let installs = try await console.readAll("/v1/catalog/installs", visit)
        data["installs"] = installs.map { install -> [String: Any] in
            [
                "name": install["name"]?.stringValue ?? "", "kind": install["kind"]?.stringValue ?? "",
                "version": Int(install["version"]?.numberValue ?? 0),
                "href": "/catalog/\(ConsoleMarkup.segment(install["listing_id"]?.stringValue ?? ""))",
            ]
        }
        data["hasInstalls"] = !installs.isEmpty
        return console.views.page("catalog", title: "Catalog", visit: visit, data)
    }

    static func row(_ listing: JSONValue, own orgID: String?) -> [String: Any] {
        let reputation = listing["reputation"] ?? [:]
        let rate = reputation["success_rate"]?.numberValue
        return [
            "name": listing["name"]?.stringValue ?? "",
            "href": "/catalog/\(ConsoleMarkup.segment(listing["id"]?.stringValue ?? ""))",
            "kind": listing["kind"]?.stringValue ?? "",
            "description": listing["description"]?.stringValue ?? "",
            "tags": (listing["tags"]?.arrayValue ?? []).compactMap(\.stringValue),
            "price": listing["price_micros"].flatMap { $0.isNull ? nil : money($0) } ?? "—",
            "unit": listing["price_unit"]?.stringValue ?? "run",
            "uses": SettingsKit.grouped(Int64(reputation["uses"]?.numberValue ?? 0)),
            "success": rate.map { "\(Int(($0 * 100).rounded())) %" } ?? "—",
            "stars": reputation["average_stars"]?.numberValue.map { String(format: "%.1f", $0) } ?? "—",
            "mine": listing["publisher_org_id"]?.stringValue == orgID,
        ]
    }

    private func listingPage(
        _ id: String,
        _ visit: ConsoleVisit,
        problem: ConsoleProblem? = nil
    ) async throws
        -> ConsoleAnswer
    {
        let listing = try await console.read("/v1/catalog/listings/\(ConsoleMarkup.segment(id))", visit)
        let installs = try await console.readAll("/v1/catalog/installs", visit)
        let install = installs.first { $0["listing_id"]?.stringValue == id }
        let own = listing["publisher_org_id"]?.stringValue == visit.organization?.id
        let current = listing["versions"]?.arrayValue?.first { $0["deprecated"] == false }
        let required = (current?["requires"]?["secrets"]?.arrayValue ?? []).compactMap(\.stringValue)
        var data = Self.row(listing, own: visit.organization?.id)
        data["listingID"] = id
        data["publisher"] = listing["publisher_org_id"]?.stringValue ?? ""
        data["versions"] = (listing["versions"]?.arrayValue ?? []).map { version -> [String: Any] in
            [
                "number": Int(version["version"]?.numberValue ?? 0), "price": Self.money(version["price_micros"]),
                "deprecated": version["deprecated"] == true, "published": ConsoleTime.element(version["published_at"]),
                "secrets": (version["requires"]?["secrets"]?.arrayValue ?? []).compactMap(\.stringValue)
                    .joined(separator: ", "),
                "providers": (version["requires"]?["providers"]?.arrayValue ?? []).compactMap(\.stringValue)
                    .joined(separator: ", "),
                "modules": (version["modules"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
            ]
        }
        let reputation = listing["reputation"] ?? [:]
        data["installCount"] = Int(reputation["installs"]?.numberValue ?? 0)
        data["median"] = reputation["median_latency_ms"]?.numberValue.map { "\(Int($0)) ms" } ?? "—"
        data["ratings"] = (listing["ratings"]?.arrayValue ?? []).map { rating -> [String: Any] in
            [
                "stars": String(repeating: "★", count: Int(rating["stars"]?.numberValue ?? 0)),
                "review": rating["review"]?.stringValue ?? "", "when": ConsoleTime.element(rating["updated_at"]),
            ]
        }
        data["own"] = own
        data["canAdmin"] = visit.can("admin")
        data["canWrite"] = visit.can("developer")
        data["canInstall"] = !own && install == nil && current != nil && visit.can("admin")
        data["required"] = required.map { ["name": $0] }
        data["secretNames"] = required.joined(separator: ",")
        data["install"] =
            install.map { install -> [String: Any] in
                let version = Int(install["version"]?.numberValue ?? 0)
                let newest = Int(current?["version"]?.numberValue ?? 0)
                return [
                    "id": install["id"]?.stringValue ?? "", "name": install["name"]?.stringValue ?? "",
                    "kind": install["kind"]?.stringValue ?? "", "version": version, "upgradable": newest > version,
                    "newest": newest,
                ]
            } ?? false
        data["problem"] = problem.map { ConsoleViews.problem($0) as Any } ?? false
        return console.views.page(
            "listing",
            title: listing["name"]?.stringValue ?? "Listing",
            visit: visit,
            data,
            status: problem?.status ?? 200
        )
    }

    private func ledgerPage(_ request: Request, _ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        let month = request.uri.queryParameters.get("month").map { String($0) } ?? ""
        let query = month.isEmpty ? "" : "?month=\(ConsoleMarkup.query(month))"
        let statement = try await console.read("/v1/ledger/statement\(query)", visit)
        let entries = try await console.read(
            "/v1/ledger?limit=100" + (month.isEmpty ? "" : "&month=\(ConsoleMarkup.query(month))"),
            visit
        )
        let accounts = (statement["accounts"]?.objectValue ?? [:]).sorted { $0.key < $1.key }
        let data: [String: Any] = [
            "month": statement["month"]?.stringValue ?? month,
            "balance": Self.money(statement["balance_micros"]),
            "accounts": accounts.map { ["account": $0.key, "total": Self.money($0.value)] },
            "listings": (statement["listings"]?.arrayValue ?? []).map { line -> [String: Any] in
                [
                    "name": line["name"]?.stringValue ?? line["listing_id"]?.stringValue ?? "",
                    "href": "/catalog/\(ConsoleMarkup.segment(line["listing_id"]?.stringValue ?? ""))",
                    "account": line["account"]?.stringValue ?? "", "total": Self.money(line["total_micros"]),
                    "entries": Int(line["entries"]?.numberValue ?? 0),
                ]
            },
            "entries": (entries["items"]?.arrayValue ?? []).map { entry -> [String: Any] in
                [
                    "when": ConsoleTime.element(entry["at"]), "account": entry["account"]?.stringValue ?? "",
                    "amount": Self.money(entry["amount_micros"]), "kind": entry["kind"]?.stringValue ?? "",
                    "outcome": entry["outcome"]?.stringValue ?? "",
                    "run": entry["run_id"]?.stringValue.map {
                        ["id": $0, "href": "/runs/\(ConsoleMarkup.segment($0))"]
                    }
                        ?? false,
                ]
            },
            "empty": accounts.isEmpty,
        ]
        return console.views.page("ledger", title: "Ledger", visit: visit, data)
    }

    static let templates: [String: String] = [
        "catalog": """
        <h1>Catalog</h1>
        <p>Agents, workflows and modules that organizations publish for others to install and run as their own, priced per run or call.{{#canAdmin}} <a href="/ledger">Your ledger</a>.{{/canAdmin}}</p>
        <form method="get" action="/catalog" class="inline" role="search">
        <label for="catalog-q">Search</label> <input id="catalog-q" name="q" value="{{q}}">
        <label for="catalog-tag">Tag</label> <input id="catalog-tag" name="tag" value="{{tag}}">
        <button type="submit">Search</button>
        </form>
        {{> problem}}
        {{#hasInstalls}}
        <section class="card"><h2>Installed here</h2>
        <ul>{{#installs}}<li><a href="{{href}}">{{name}}</a> ({{kind}}, version {{version}})</li>{{/installs}}</ul>
        </section>
        {{/hasInstalls}}
        {{#empty}}<div class="empty"><p><strong>No listings found.</strong> Publish one of your agents, workflows or modules with <code>POST /v1/catalog/listings</code> and <code>{"kind": "agent", "source": "NAME", "price_micros": 1000}</code>.</p></div>{{/empty}}
        {{^empty}}
        <div class="scroll"><table>
        <caption>Listings</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Price</th><th scope="col">Uses</th><th scope="col">Success</th><th scope="col">Stars</th><th scope="col">Description</th></tr></thead>
        <tbody>{{#items}}<tr><th scope="row"><a href="{{href}}">{{name}}</a>{{#mine}} <span class="muted">(yours)</span>{{/mine}}</th><td>{{kind}}</td><td>{{price}} a {{unit}}</td><td>{{uses}}</td><td>{{success}}</td><td>{{stars}}</td><td>{{description}}{{#tags}} <span class="tag">{{.}}</span>{{/tags}}</td></tr>{{/items}}</tbody>
        </table></div>
        {{#next}}<p><a href="{{next}}">Next page</a></p>{{/next}}
        {{/empty}}
        """,
        "listing": """
        <p><a href="/catalog">Catalog</a></p>
        <h1>{{name}} <span class="muted">{{kind}}</span></h1>
        {{#description}}<p>{{description}}</p>{{/description}}
        <dl class="facts">
        <dt>Price</dt><dd id="listing-price">{{price}} a {{unit}}</dd>
        <dt>Publisher</dt><dd><code>{{publisher}}</code>{{#own}} (this organization){{/own}}</dd>
        <dt>Installs</dt><dd>{{installCount}}</dd>
        <dt>Uses</dt><dd id="listing-uses">{{uses}}</dd>
        <dt>Success</dt><dd>{{success}}</dd>
        <dt>Median time</dt><dd>{{median}}</dd>
        <dt>Stars</dt><dd>{{stars}}</dd>
        </dl>
        {{> problem}}
        {{#install}}
        <section class="card" aria-labelledby="install-heading">
        <h2 id="install-heading">Installed</h2>
        <p>As the {{kind}} <strong>{{name}}</strong>, version {{version}}.</p>
        {{#canAdmin}}
        {{#upgradable}}<form method="post" action="/catalog/{{listingID}}/upgrade" class="inline"><input type="hidden" name="_csrf" value="{{csrf}}"><input type="hidden" name="install" value="{{id}}"><button type="submit">Upgrade to version {{newest}}</button></form>{{/upgradable}}
        <form method="post" action="/catalog/{{listingID}}/remove" class="inline"><input type="hidden" name="_csrf" value="{{csrf}}"><input type="hidden" name="install" value="{{id}}"><button type="submit" class="danger">Remove</button></form>
        {{/canAdmin}}
        </section>
        {{/install}}
        {{#canInstall}}
        <section class="card" aria-labelledby="install-form-heading">
        <h2 id="install-form-heading">Install</h2>
        <form method="post" action="/catalog/{{listingID}}/install">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <input type="hidden" name="secret_names" value="{{secretNames}}">
        <label for="install-name">Name here (optional)</label>
        <input id="install-name" name="name" placeholder="{{name}}">
        {{#required}}<label for="secret-{{name}}">Secret {{name}} (leave empty to use the one stored)</label>
        <input id="secret-{{name}}" name="secret_{{name}}" type="password" autocomplete="off">{{/required}}
        <button type="submit">Install</button>
        </form>
        </section>
        {{/canInstall}}
        <div class="scroll"><table>
        <caption>Versions</caption>
        <thead><tr><th scope="col">Version</th><th scope="col">Price</th><th scope="col">Needs secrets</th><th scope="col">Needs providers</th><th scope="col">Modules</th><th scope="col">Published</th><th scope="col">State</th></tr></thead>
        <tbody>{{#versions}}<tr><th scope="row">{{number}}</th><td>{{price}}</td><td>{{secrets}}</td><td>{{providers}}</td><td>{{modules}}</td><td>{{{published}}}</td><td>{{#deprecated}}deprecated{{/deprecated}}{{^deprecated}}offered{{#own}}{{#canAdmin}} <form method="post" action="/catalog/{{listingID}}/deprecate" class="inline"><input type="hidden" name="_csrf" value="{{csrf}}"><input type="hidden" name="version" value="{{number}}"><button type="submit">Deprecate</button></form>{{/canAdmin}}{{/own}}{{/deprecated}}</td></tr>{{/versions}}</tbody>
        </table></div>
        <section class="card" aria-labelledby="ratings-heading">
        <h2 id="ratings-heading">Ratings</h2>
        {{#ratings}}<p><span aria-label="stars">{{stars}}</span> {{review}} <span class="muted">{{{when}}}</span></p>{{/ratings}}
        {{^ratings}}<p class="muted">No ratings yet.</p>{{/ratings}}
        {{#install}}{{#canWrite}}
        <form method="post" action="/catalog/{{listingID}}/rate">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="rate-stars">Stars</label>
        <select id="rate-stars" name="stars"><option>5</option><option>4</option><option>3</option><option>2</option><option>1</option></select>
        <label for="rate-review">Review (optional)</label>
        <textarea id="rate-review" name="review" rows="2"></textarea>
        <button type="submit">Rate</button>
        </form>
        {{/canWrite}}{{/install}}
        </section>
        """,
        "ledger": """
        <p><a href="/catalog">Catalog</a></p>
        <h1>Ledger <span class="muted">{{month}}</span></h1>
        <form method="get" action="/ledger" class="inline">
        <label for="ledger-month">Month</label> <input id="ledger-month" name="month" value="{{month}}" pattern="[0-9]{4}-[0-9]{2}">
        <button type="submit">Show</button>
        </form>
        {{#empty}}<div class="empty"><p><strong>Nothing this month.</strong> Runs and calls of listings you installed are charged here; those of your listings credit you.</p></div>{{/empty}}
        {{^empty}}
        <dl class="facts"><dt>Balance</dt><dd id="ledger-balance">{{balance}}</dd></dl>
        <div class="scroll"><table>
        <caption>Accounts</caption>
        <thead><tr><th scope="col">Account</th><th scope="col">Total</th></tr></thead>
        <tbody>{{#accounts}}<tr><th scope="row">{{account}}</th><td>{{total}}</td></tr>{{/accounts}}</tbody>
        </table></div>
        <div class="scroll"><table>
        <caption>By listing</caption>
        <thead><tr><th scope="col">Listing</th><th scope="col">Account</th><th scope="col">Entries</th><th scope="col">Total</th></tr></thead>
        <tbody>{{#listings}}<tr><th scope="row"><a href="{{href}}">{{name}}</a></th><td>{{account}}</td><td>{{entries}}</td><td>{{total}}</td></tr>{{/listings}}</tbody>
        </table></div>
        <div class="scroll"><table>
        <caption>Latest entries</caption>
        <thead><tr><th scope="col">When</th><th scope="col">Account</th><th scope="col">Amount</th><th scope="col">Use</th><th scope="col">Run</th></tr></thead>
        <tbody>{{#entries}}<tr><td>{{{when}}}</td><td>{{account}}</td><td>{{amount}}</td><td>{{kind}}, {{outcome}}</td><td>{{#run}}<a href="{{href}}">{{id}}</a>{{/run}}</td></tr>{{/entries}}</tbody>
        </table></div>
        {{/empty}}
        """,
    ]
}
