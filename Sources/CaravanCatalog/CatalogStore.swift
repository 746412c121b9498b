public import CaravanCore
public import CaravanStorage
import Foundation

/// The catalog's rows: listings, their versions, installs and ratings, and what the ledger says of a listing.
/// Knows nothing of agents, workflows or modules beyond the JSON it keeps; `Catalog` does the rest.
public struct CatalogStore: Sendable {
    let database: any Database
    /// Each organization's installed modules by name (what a module call asks before it is metered), emptied on
    /// every node by every change of an install.
    let installedModules: ClusterCache<[String: ListingInstall]>

    public init(database: any Database, signals: ClusterSignals?) {
        self.database = database
        self.installedModules = ClusterCache(signals: signals, topic: "catalog-installs")
    }

    // MARK: Listings

    /// The listing `id` with its versions (newest first) and its reputation.
    public func listing(id: String) async throws -> Listing? {
        try await database.read { executor in
            guard let row = try await executor.queryFirst("SELECT * FROM catalog_listings WHERE id = $1", [.text(id)])
            else { return nil }
            return try await Self.complete(Self.listing(row), in: executor)
        }
    }

    /// The publisher's listing named `name`, if any.
    func listing(publisherOrgID: String, name: String, in executor: any SQLExecutor) async throws -> Listing? {
        guard
            let row = try await executor.queryFirst(
                "SELECT * FROM catalog_listings WHERE publisher_org_id = $1 AND name = $2",
                [.text(publisherOrgID), .text(name)]
            )
        else { return nil }
        return try await Self.complete(Self.listing(row), in: executor)
    }

    /// A page of listings matching the search, by id after `cursor`.
    /// - Parameters:
    ///   - query: words to find in the name, description or tags (all of them, any case).
    ///   - publisherOrgID: only this organization's.
    public func search(
        query: String?,
        tag: String?,
        kind: ListingKind?,
        publisherOrgID: String?,
        after cursor: String?,
        limit: Int
    ) async throws -> [Listing] {
        var conditions = ["id > $1"]
        var binds: [SQLValue] = [.text(cursor ?? "")]
        for word in (query ?? "").lowercased().split(whereSeparator: \.isWhitespace).prefix(8) {
            binds.append(.text("%" + Self.escapeLike(String(word)) + "%"))
            conditions.append("search LIKE $\(binds.count) ESCAPE '\\'")
        }
        if let tag {
            binds.append(.text("%," + Self.escapeLike(tag) + ",%"))
            conditions.append("tags LIKE $\(binds.count) ESCAPE '\\'")
        }
        if let kind {
            binds.append(.text(kind.rawValue))
            conditions.append("kind = $\(binds.count)")
        }
        if let publisherOrgID {
            binds.append(.text(publisherOrgID))
            conditions.append("publisher_org_id = $\(binds.count)")
        }
        binds.append(.int(Int64(limit)))
        let sql =
            "SELECT * FROM catalog_listings WHERE \(conditions.joined(separator: " AND ")) ORDER BY id LIMIT $\(binds.count)"
        let values = binds
        return try await database.read { executor in
            var listings: [Listing] = []
            for row in try await executor.query(sql, values) {
                listings.append(try await Self.complete(Self.listing(row), in: executor))
            }
            return listings
        }
    }

    /// Adds `version` to the publisher's listing `name` (creating the listing), unless its latest version froze the
    /// same source at the same price and requirements: then that version is the answer.
    /// - Returns: the listing, the version, and whether it is new.
    /// - Throws: `conflict` when the publisher's listing of that name offers another kind.
    func publish(
        publisherOrgID: String,
        name: String,
        kind: ListingKind,
        description: String?,
        tags: [String]?,
        version draft: ListingVersion,
        now: Int64
    ) async throws -> (listing: Listing, version: ListingVersion, created: Bool) {
        try await database.withTransaction { executor in
            var listing = try await listing(publisherOrgID: publisherOrgID, name: name, in: executor)
            if let existing = listing {
                guard existing.kind == kind else {
                    throw CaravanError(
                        .conflict,
                        "Your listing '\(name)' offers a\(existing.kind == .agent ? "n" : "") \(existing.kind.rawValue); publish the \(kind.rawValue) under another name."
                    )
                }
                if let latest = existing.versions.first, latest.sourceVersion == draft.sourceVersion,
                    latest.priceMicros == draft.priceMicros, latest.requires == draft.requires,
                    latest.definition == draft.definition, latest.modules == draft.modules, latest.deprecatedAt == nil,
                    description == nil || description == existing.description, tags == nil || tags == existing.tags
                {
                    return (existing, latest, false)
                }
            }
            var version = draft
            version.version = (listing?.latestVersion ?? 0) + 1
            version.publishedAt = now
            let description = description ?? listing?.description ?? ""
            let tags = tags ?? listing?.tags ?? []
            let search = ([name, description] + tags).joined(separator: " ").lowercased()
            let taglist = "," + tags.joined(separator: ",") + ","
            if let existing = listing {
                try await executor.execute(
                    """
                    UPDATE catalog_listings SET description = $2, tags = $3, search = $4, latest_version = $5,
                        updated_at = $6
                    WHERE id = $1
                    """,
                    [
                        .text(existing.id), .text(description), .text(taglist), .text(search),
                        .int(Int64(version.version)), .int(now),
                    ]
                )
            } else {
                let id = Identifier.make("lst", milliseconds: now)
                try await executor.execute(
                    """
                    INSERT INTO catalog_listings (id, publisher_org_id, name, kind, description, tags, search,
                        latest_version, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                    """,
                    [
                        .text(id), .text(publisherOrgID), .text(name), .text(kind.rawValue), .text(description),
                        .text(taglist), .text(search), .int(Int64(version.version)), .int(now),
                    ]
                )
                listing = Listing(
                    id: id,
                    publisherOrgID: publisherOrgID,
                    name: name,
                    kind: kind,
                    description: description,
                    tags: tags,
                    latestVersion: version.version,
                    createdAt: now,
                    updatedAt: now
                )
            }
            guard let listingID = listing?.id else { throw CaravanError(.internal, "The listing was not stored.") }
            try await executor.execute(
                """
                INSERT INTO catalog_listing_versions (listing_id, version, source_version, definition, modules,
                    price_micros, requires, published_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """,
                [
                    .text(listingID), .int(Int64(version.version)), .int(Int64(version.sourceVersion)),
                    .json(version.definition), .json(.array(version.modules.map(\.json))), .int(version.priceMicros),
                    .json(version.requires.json), .int(now),
                ]
            )
            guard
                let row = try await executor.queryFirst(
                    "SELECT * FROM catalog_listings WHERE id = $1",
                    [.text(listingID)]
                )
            else { throw CaravanError(.internal, "The listing was not stored.") }
            return (try await Self.complete(Self.listing(row), in: executor), version, true)
        }
    }

    /// Marks a version deprecated: it can no longer be installed or upgraded to; installs of it keep running.
    /// - Returns: the listing, or `nil` when the publisher has no such listing or version.
    func deprecate(publisherOrgID: String, listingID: String, version: Int, now: Int64) async throws -> Listing? {
        try await database.withTransaction { executor in
            guard
                let row = try await executor.queryFirst(
                    "SELECT * FROM catalog_listings WHERE id = $1 AND publisher_org_id = $2",
                    [.text(listingID), .text(publisherOrgID)]
                )
            else { return nil }
            let changed = try await executor.query(
                """
                UPDATE catalog_listing_versions SET deprecated_at = COALESCE(deprecated_at, $3)
                WHERE listing_id = $1 AND version = $2 RETURNING version
                """,
                [.text(listingID), .int(Int64(version)), .int(now)]
            )
            guard !changed.isEmpty else { return nil }
            try await executor.execute(
                "UPDATE catalog_listings SET updated_at = $2 WHERE id = $1",
                [.text(listingID), .int(now)]
            )
            return try await Self.complete(Self.listing(row), in: executor)
        }
    }

    // MARK: Installs

    public func installs(orgID: String, after cursor: String?, limit: Int) async throws -> [ListingInstall] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM catalog_installs WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                [.text(orgID), .text(cursor ?? ""), .int(Int64(limit))]
            ).map(Self.install)
        }
    }

    public func install(orgID: String, id: String) async throws -> ListingInstall? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM catalog_installs WHERE org_id = $1 AND id = $2",
                [.text(orgID), .text(id)]
            ).map(Self.install)
        }
    }

    /// The install of `kind` whose agent, workflow or module is `target` in `orgID` (an agent's target is
    /// `agent:NAME`).
    public func install(orgID: String, kind: ListingKind, target: String) async throws -> ListingInstall? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM catalog_installs WHERE org_id = $1 AND kind = $2 AND target = $3",
                [.text(orgID), .text(kind.rawValue), .text(target)]
            ).map(Self.install)
        }
    }

    /// The organization's installed module called `name`, if it is one.
    func installedModule(orgID: String, name: String) async throws -> ListingInstall? {
        let database = self.database
        return try await installedModules.value(orgID) {
            try await database.read { executor in
                try await executor.query(
                    "SELECT * FROM catalog_installs WHERE org_id = $1 AND kind = 'module'",
                    [.text(orgID)]
                ).map(Self.install)
            }.reduce(into: [:]) { $0[$1.target] = $1 }
        }?[name]
    }

    /// Claims the install's names and opens its first terms; `false` when the organization installed this listing
    /// already or an install holds the name.
    func insert(_ install: ListingInstall) async throws -> Bool {
        do {
            try await installedModules.change(in: database) { executor in
                try await executor.execute(
                    """
                    INSERT INTO catalog_installs (id, org_id, listing_id, version, kind, name, target, installed_at,
                        updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                    """,
                    [
                        .text(install.id), .text(install.orgID), .text(install.listingID), .int(Int64(install.version)),
                        .text(install.kind.rawValue), .text(install.name), .text(install.target),
                        .int(install.installedAt),
                    ]
                )
                try await Self.openTerms(of: install, at: install.installedAt, in: executor)
            }
            return true
        } catch let error as StorageError where error.code == .conflict {
            return false
        }
    }

    /// Moves the install to `install.version` from `install.updatedAt` on: runs that started before keep the terms
    /// they started under.
    func setVersion(_ install: ListingInstall) async throws {
        try await installedModules.change(in: database) { executor in
            try await executor.execute(
                "UPDATE catalog_installs SET version = $2, updated_at = $3 WHERE id = $1",
                [.text(install.id), .int(Int64(install.version)), .int(install.updatedAt)]
            )
            try await Self.closeTerms(installID: install.id, at: install.updatedAt, in: executor)
            try await Self.openTerms(of: install, at: install.updatedAt, in: executor)
        }
    }

    /// Removes the install; its terms end now (runs under way are still charged by them).
    func delete(installID: String, now: Int64) async throws {
        try await installedModules.change(in: database) { executor in
            try await executor.execute("DELETE FROM catalog_installs WHERE id = $1", [.text(installID)])
            try await Self.closeTerms(installID: installID, at: now, in: executor)
        }
    }

    private static func openTerms(of install: ListingInstall, at now: Int64, in executor: any SQLExecutor) async throws
    {
        try await executor.execute(
            """
            INSERT INTO catalog_install_terms (install_id, org_id, kind, name, target, listing_id, version, from_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (install_id, from_at) DO UPDATE SET version = $7, until_at = NULL
            """,
            [
                .text(install.id), .text(install.orgID), .text(install.kind.rawValue), .text(install.name),
                .text(install.target), .text(install.listingID), .int(Int64(install.version)), .int(now),
            ]
        )
    }

    private static func closeTerms(installID: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "UPDATE catalog_install_terms SET until_at = $2 WHERE install_id = $1 AND until_at IS NULL",
            [.text(installID), .int(now)]
        )
    }

    // MARK: Ratings

    /// Stores the organization's rating of a listing it installed. - Returns: whether it may rate it.
    func rate(listingID: String, orgID: String, stars: Int, review: String?, now: Int64) async throws -> Bool {
        try await database.withTransaction { executor in
            guard
                try await executor.queryFirst(
                    "SELECT id FROM catalog_installs WHERE org_id = $1 AND listing_id = $2",
                    [.text(orgID), .text(listingID)]
                ) != nil
            else { return false }
            try await executor.execute(
                """
                INSERT INTO catalog_ratings (listing_id, org_id, stars, review, updated_at) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (listing_id, org_id) DO UPDATE SET stars = $3, review = $4, updated_at = $5
                """,
                [.text(listingID), .text(orgID), .int(Int64(stars)), .text(review), .int(now)]
            )
            return true
        }
    }

    /// The newest ratings of a listing (who rated is not told).
    public func ratings(listingID: String, limit: Int) async throws -> [ListingRating] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM catalog_ratings WHERE listing_id = $1 ORDER BY updated_at DESC LIMIT $2",
                [.text(listingID), .int(Int64(limit))]
            ).map { row in
                ListingRating(
                    stars: Int(try row.int("stars")),
                    review: try row.optionalString("review"),
                    updatedAt: try row.int("updated_at")
                )
            }
        }
    }

    // MARK: The ledger, as one organization sees it

    /// The organization's ledger entries of `month`, by position after `cursor`. The installer sees the run or
    /// call its entry charged; the publisher only which listing earned it.
    public func ledger(orgID: String, month: String, after cursor: Int64?, limit: Int) async throws -> [JSONValue] {
        try await database.read { executor in
            try await executor.query(
                """
                SELECT e.id, e.account, e.amount_micros, e.listing_id, e.at, t.id AS transaction_id, t.kind,
                    t.outcome, t.version, t.install_id, t.installer_org_id, t.run_id
                FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
                WHERE e.org_id = $1 AND e.month = $2 AND e.id > $3
                ORDER BY e.id LIMIT $4
                """,
                [.text(orgID), .text(month), .int(cursor ?? 0), .int(Int64(limit))]
            ).map { row in
                let installer = try row.string("installer_org_id") == orgID
                return [
                    "id": .int(try row.int("id")), "transaction_id": .string(try row.string("transaction_id")),
                    "account": .string(try row.string("account")), "amount_micros": .int(try row.int("amount_micros")),
                    "listing_id": .string(try row.string("listing_id")), "version": .int(try row.int("version")),
                    "kind": .string(try row.string("kind")), "outcome": .string(try row.string("outcome")),
                    "install_id": installer ? .string(try row.string("install_id")) : .null,
                    "run_id": installer ? (try row.optionalString("run_id")).map(JSONValue.string) ?? .null : .null,
                    "at": .string(Clock.rfc3339(try row.int("at"))),
                ]
            }
        }
    }

    /// The organization's statement of `month`: the total of each account, and of each listing's entries.
    public func statement(orgID: String, month: String) async throws -> JSONValue {
        try await database.read { executor in
            let accounts = try await executor.query(
                """
                SELECT account, CAST(SUM(amount_micros) AS BIGINT) AS total, COUNT(*) AS entries FROM ledger_entries
                WHERE org_id = $1 AND month = $2 GROUP BY account ORDER BY account
                """,
                [.text(orgID), .text(month)]
            )
            let listings = try await executor.query(
                """
                SELECT e.listing_id, l.name, e.account, CAST(SUM(e.amount_micros) AS BIGINT) AS total, COUNT(*) AS entries
                FROM ledger_entries e LEFT JOIN catalog_listings l ON l.id = e.listing_id
                WHERE e.org_id = $1 AND e.month = $2 GROUP BY e.listing_id, l.name, e.account
                ORDER BY e.listing_id, e.account
                """,
                [.text(orgID), .text(month)]
            )
            var balance: Int64 = 0
            var totals: [String: JSONValue] = [:]
            for row in accounts {
                let total = try row.int("total")
                balance += total
                totals[try row.string("account")] = .int(total)
            }
            return [
                "month": .string(month), "accounts": .object(totals), "balance_micros": .int(balance),
                "listings": .array(
                    try listings.map { row in
                        [
                            "listing_id": .string(try row.string("listing_id")),
                            "name": (try row.optionalString("name")).map(JSONValue.string) ?? .null,
                            "account": .string(try row.string("account")),
                            "total_micros": .int(try row.int("total")),
                            "entries": .int(try row.int("entries")),
                        ]
                    }
                ),
            ]
        }
    }

    // MARK: Rows

    static func escapeLike(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_")
    }

    static func listing(_ row: SQLRow) throws -> Listing {
        Listing(
            id: try row.string("id"),
            publisherOrgID: try row.string("publisher_org_id"),
            name: try row.string("name"),
            kind: ListingKind(rawValue: try row.string("kind")) ?? .agent,
            description: try row.string("description"),
            tags: try row.string("tags").split(separator: ",").map(String.init),
            latestVersion: Int(try row.int("latest_version")),
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
    }

    /// Reads a listing's versions and reputation: how many installs, uses and successes the ledger counted, the
    /// median duration of its latest 1,000 uses, its ratings.
    static func complete(_ listing: Listing, in executor: any SQLExecutor) async throws -> Listing {
        var listing = listing
        listing.versions = try await executor.query(
            "SELECT * FROM catalog_listing_versions WHERE listing_id = $1 ORDER BY version DESC",
            [.text(listing.id)]
        ).map { row in
            ListingVersion(
                version: Int(try row.int("version")),
                sourceVersion: Int(try row.int("source_version")),
                definition: try row.json("definition") ?? [:],
                modules: (try row.json("modules")?.arrayValue ?? []).compactMap(BundledModule.init(json:)),
                priceMicros: try row.int("price_micros"),
                requires: ListingRequirements(json: try row.json("requires")),
                deprecatedAt: try row.optionalInt("deprecated_at"),
                publishedAt: try row.int("published_at")
            )
        }
        let id: [SQLValue] = [.text(listing.id)]
        if let row = try await executor.queryFirst(
            """
            SELECT (SELECT COUNT(*) FROM catalog_installs WHERE listing_id = $1) AS installs,
                COALESCE((SELECT uses FROM catalog_listing_stats WHERE listing_id = $1), 0) AS uses,
                COALESCE((SELECT succeeded FROM catalog_listing_stats WHERE listing_id = $1), 0) AS succeeded,
                (SELECT COUNT(*) FROM catalog_ratings WHERE listing_id = $1) AS ratings,
                (SELECT CAST(COALESCE(SUM(stars), 0) AS BIGINT) FROM catalog_ratings WHERE listing_id = $1) AS stars
            """,
            id
        ) {
            listing.reputation.installs = try row.int("installs")
            listing.reputation.uses = try row.int("uses")
            listing.reputation.succeeded = try row.int("succeeded")
            listing.reputation.ratings = try row.int("ratings")
            if listing.reputation.ratings > 0 {
                listing.reputation.averageStars =
                    Double(try row.int("stars")) / Double(listing.reputation.ratings)
            }
        }
        if listing.reputation.uses > 0 {
            let durations = try await executor.query(
                "SELECT duration_ms FROM ledger_transactions WHERE listing_id = $1 ORDER BY at DESC LIMIT 1000",
                id
            ).map { try $0.int("duration_ms") }.sorted()
            if !durations.isEmpty { listing.reputation.medianMilliseconds = durations[durations.count / 2] }
        }
        return listing
    }

    static func install(_ row: SQLRow) throws -> ListingInstall {
        ListingInstall(
            id: try row.string("id"),
            orgID: try row.string("org_id"),
            listingID: try row.string("listing_id"),
            version: Int(try row.int("version")),
            kind: ListingKind(rawValue: try row.string("kind")) ?? .agent,
            name: try row.string("name"),
            target: try row.string("target"),
            installedAt: try row.int("installed_at"),
            updatedAt: try row.int("updated_at")
        )
    }
}
