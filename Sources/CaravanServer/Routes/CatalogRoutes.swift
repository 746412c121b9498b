import CaravanCatalog
import CaravanCore
import CaravanIdentity
import Hummingbird

/// `/v1/catalog…` and `/v1/ledger…`: listings every organization can browse, publishing and deprecating one's own,
/// installing and upgrading others', ratings, and the ledger that charges installers and credits publishers.
struct CatalogRoutes {
    let catalog: Catalog
    let bodies: RequestBodyReader

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        let listingID = QueryParameter("listing", "A listing's id.", schema: ["type": "string"])
        routes.add(
            EndpointDescription(
                .post,
                "/v1/catalog/listings",
                operationID: "publishListing",
                summary:
                    "Publish a version of one of your agents, workflows or modules: `{kind, source, source_version?, name?, description?, tags?, price_micros?, requires?: {secrets?, providers?}}`. A version is immutable.",
                tag: "catalog",
                access: .organization(.manageOrganization),
                requestSchema: object,
                responses: [
                    201: ("A new version", object, "application/json"),
                    200: ("The same version as the latest", object, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let published = try await catalog.publish(
                orgID: orgID,
                PublishRequest.parse(try await bodies.json(of: request))
            )
            context.audit.target("listing:\(published.listing.id)")
            return .json(
                Self.json(published.listing, version: published.version),
                status: published.created ? .created : .ok
            )
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/catalog/listings",
                operationID: "searchListings",
                summary: "Browse and search the catalog: `?q=` words, `?tag=`, `?kind=`, `?mine=true` for your own.",
                tag: "catalog",
                access: .organization(.read),
                query: APISchemas.page + [
                    QueryParameter("q", "Words to find in the name, description or tags.", schema: ["type": "string"]),
                    QueryParameter("tag", "A tag.", schema: ["type": "string"]),
                    QueryParameter(
                        "kind",
                        "agent, workflow or module.",
                        schema: ["type": "string", "enum": ["agent", "workflow", "module"]]
                    ),
                    QueryParameter("mine", "Only your organization's listings.", schema: ["type": "boolean"]),
                ],
                responses: [200: ("A page of listings", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let query = request.uri.queryParameters
            let limit = try APIRequest.limit(request)
            if let q = query.get("q"), q.utf8.count > 200 {
                throw CaravanError.validation("/q", "must be at most 200 bytes")
            }
            var kind: ListingKind?
            if let text = query.get("kind") {
                guard let parsed = ListingKind(rawValue: text) else {
                    throw CaravanError.validation("/kind", "must be agent, workflow or module")
                }
                kind = parsed
            }
            if let tag = query.get("tag"), !PublishRequest.isValidName(tag) {
                throw CaravanError.validation("/tag", "must match [a-z0-9-]{1,64}")
            }
            let page = try await catalog.store.search(
                query: query.get("q"),
                tag: query.get("tag"),
                kind: kind,
                publisherOrgID: query.get("mine") == "true" ? orgID : nil,
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.id, json: \.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/catalog/listings/{id}",
                operationID: "getListing",
                summary: "A listing: its versions, price, requirements and reputation (from the ledger), and ratings.",
                tag: "catalog",
                access: .organization(.read),
                responses: [200: ("The listing", object, "application/json")]
            )
        ) { _, context in
            _ = try context.organizationID()
            let id = try context.parameters.require("id")
            guard let listing = try await catalog.store.listing(id: id) else {
                throw CaravanError.notFound("The listing")
            }
            guard case .object(var fields) = listing.json else { return .json(listing.json) }
            fields["ratings"] = .array(try await catalog.store.ratings(listingID: id, limit: 50).map(\.json))
            return .json(.object(fields))
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/catalog/listings/{id}/versions/{version}/deprecate",
                operationID: "deprecateListingVersion",
                summary:
                    "Deprecate a version of your listing: no new installs or upgrades to it; installs keep running.",
                tag: "catalog",
                access: .organization(.manageOrganization),
                responses: [200: ("The listing", object, "application/json")]
            )
        ) { _, context in
            let id = try context.parameters.require("id")
            guard let version = Int(try context.parameters.require("version")), version >= 1 else {
                throw CaravanError.notFound("Your listing's version")
            }
            let listing = try await catalog.deprecate(
                orgID: try context.organizationID(),
                listingID: id,
                version: version
            )
            context.audit.target("listing:\(id)")
            return .json(listing.json)
        }
        routes.add(
            EndpointDescription(
                .put,
                "/v1/catalog/listings/{id}/rating",
                operationID: "rateListing",
                summary:
                    "Rate a listing your organization installed: `{stars: 1–5, review?}` (one rating per organization).",
                tag: "catalog",
                access: .organization(.write),
                requestSchema: object,
                responses: [200: ("The listing", object, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let id = try context.parameters.require("id")
            guard try await catalog.store.listing(id: id) != nil else { throw CaravanError.notFound("The listing") }
            let fields = try BodyFields(try await bodies.json(of: request), allowed: ["stars", "review"])
            guard let stars = try fields.integer("stars") else {
                throw CaravanError.validation("/stars", "is required: an integer from 1 to 5")
            }
            try await catalog.rate(orgID: orgID, listingID: id, stars: stars, review: try fields.string("review"))
            context.audit.target("listing:\(id)")
            guard let listing = try await catalog.store.listing(id: id) else {
                throw CaravanError.notFound("The listing")
            }
            return .json(listing.json)
        }
        registerInstalls(in: routes, listing: listingID)
        registerLedger(in: routes)
    }

    private func registerInstalls(in routes: RouteRegistrar, listing: QueryParameter) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .post,
                "/v1/catalog/installs",
                operationID: "installListing",
                summary:
                    "Install a listing in your organization: `{listing, version?, name?, secrets?: {NAME: value}}`. It becomes an agent, workflow or module of yours, pinned to the version.",
                tag: "catalog",
                access: .organization(.manageOrganization),
                requestSchema: object,
                responses: [201: ("The install", object, "application/json")]
            )
        ) { request, context in
            let install = try await catalog.install(
                orgID: try context.organizationID(),
                InstallRequest.parse(try await bodies.json(of: request))
            )
            context.audit.target("install:\(install.id)")
            return .json(install.json, status: .created)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/catalog/installs",
                operationID: "listInstalls",
                summary: "The listings your organization installed.",
                tag: "catalog",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("A page of installs", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await catalog.store.installs(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.id, json: \.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/catalog/installs/{id}",
                operationID: "getInstall",
                summary: "One of your organization's installs.",
                tag: "catalog",
                access: .organization(.read),
                responses: [200: ("The install", object, "application/json")]
            )
        ) { _, context in
            guard
                let install = try await catalog.store.install(
                    orgID: try context.organizationID(),
                    id: try context.parameters.require("id")
                )
            else { throw CaravanError.notFound("The install") }
            return .json(install.json)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/catalog/installs/{id}/upgrade",
                operationID: "upgradeInstall",
                summary: "Move an install to another version (the current one by default): `{version?, secrets?}`.",
                tag: "catalog",
                access: .organization(.manageOrganization),
                requestSchema: object,
                responses: [200: ("The install", object, "application/json")]
            )
        ) { request, context in
            let id = try context.parameters.require("id")
            let orgID = try context.organizationID()
            guard try await catalog.store.install(orgID: orgID, id: id) != nil else {
                throw CaravanError.notFound("The install")
            }
            let install = try await catalog.upgrade(
                orgID: orgID,
                installID: id,
                InstallRequest.parse(try await bodies.json(of: request), upgrade: true)
            )
            context.audit.target("install:\(id)")
            return .json(install.json)
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/catalog/installs/{id}",
                operationID: "uninstall",
                summary:
                    "Remove an install: its agent or workflow is archived, its modules deleted; the ledger keeps its entries.",
                tag: "catalog",
                access: .organization(.manageOrganization),
                responses: [204: ("Removed", nil, "application/json")]
            )
        ) { _, context in
            let id = try context.parameters.require("id")
            guard try await catalog.uninstall(orgID: try context.organizationID(), installID: id) else {
                throw CaravanError.notFound("The install")
            }
            context.audit.target("install:\(id)")
            return Response(status: .noContent)
        }
    }

    private func registerLedger(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        let month = QueryParameter(
            "month",
            "A month as YYYY-MM (UTC); the current one by default.",
            schema: ["type": "string"]
        )
        routes.add(
            EndpointDescription(
                .get,
                "/v1/ledger",
                operationID: "listLedgerEntries",
                summary:
                    "Your organization's ledger entries of a month, in micro-dollars: purchases and model costs of listings you installed (negative), sales of yours (positive).",
                tag: "catalog",
                access: .organization(.readAudit),
                query: APISchemas.page + [month],
                responses: [200: ("A page of entries", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let entries = try await catalog.store.ledger(
                orgID: try context.organizationID(),
                month: try Self.month(request),
                after: try APIRequest.numericCursor(request),
                limit: limit
            )
            return .json(
                APIRequest.page(
                    entries,
                    limit: limit,
                    cursor: { entry in if case .int(let id)? = entry["id"] { String(id) } else { "" } },
                    json: { $0 }
                )
            )
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/ledger/statement",
                operationID: "getLedgerStatement",
                summary: "Your organization's statement of a month: the total of each account and of each listing.",
                tag: "catalog",
                access: .organization(.readAudit),
                query: [month],
                responses: [200: ("The statement", object, "application/json")]
            )
        ) { request, context in
            .json(
                try await catalog.store.statement(orgID: try context.organizationID(), month: try Self.month(request))
            )
        }
    }

    static func json(_ listing: Listing, version: ListingVersion) -> JSONValue {
        guard case .object(var fields) = listing.json else { return listing.json }
        fields["version"] = version.summary
        return .object(fields)
    }

    /// `?month=YYYY-MM`, the current month by default.
    static func month(_ request: Request) throws -> String {
        guard let text = request.uri.queryParameters.get("month") else {
            return Ledger.month(of: WallClock.system.nowMilliseconds())
        }
        guard Ledger.isMonth(text) else { throw CaravanError.validation("/month", "must be a month as YYYY-MM") }
        return text
    }
}
