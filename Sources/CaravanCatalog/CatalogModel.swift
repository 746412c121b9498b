public import CaravanCore

/// What a listing offers: one of the publisher's agents, workflows or modules.
public enum ListingKind: String, Sendable, CaseIterable {
    case agent, workflow, module

    /// What one charge of the listing's price buys: a run of an agent or workflow, a call of a module.
    public var priceUnit: String { self == .module ? "call" : "run" }
}

/// What an installer must bring for a listing to run: secrets and model providers of its own, by name.
public struct ListingRequirements: Sendable, Hashable {
    public var secrets: [String]
    public var providers: [String]

    public init(secrets: [String] = [], providers: [String] = []) {
        self.secrets = Array(Set(secrets)).sorted()
        self.providers = Array(Set(providers)).sorted()
    }

    public var json: JSONValue {
        ["secrets": .array(secrets.map(JSONValue.string)), "providers": .array(providers.map(JSONValue.string))]
    }

    init(json: JSONValue?) {
        self.init(
            secrets: json?["secrets"]?.arrayValue?.compactMap(\.stringValue) ?? [],
            providers: json?["providers"]?.arrayValue?.compactMap(\.stringValue) ?? []
        )
    }
}

/// A module a listing version carries with it (its own, or one its agent or workflow calls), as it was when the
/// version was published: the binary by digest and the declarations.
public struct BundledModule: Sendable, Hashable {
    /// The module's name in the publisher's organization.
    public var name: String
    public var version: Int
    public var sha256: String
    public var declared: JSONValue

    public var json: JSONValue {
        ["name": .string(name), "version": .int(Int64(version)), "sha256": .string(sha256), "declared": declared]
    }

    init?(json: JSONValue) {
        guard let name = json["name"]?.stringValue, case .int(let version)? = json["version"],
            let sha256 = json["sha256"]?.stringValue
        else { return nil }
        self.init(name: name, version: Int(version), sha256: sha256, declared: json["declared"] ?? [:])
    }

    public init(name: String, version: Int, sha256: String, declared: JSONValue) {
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.declared = declared
    }
}

/// One published version of a listing. Immutable, except that its publisher may deprecate it.
public struct ListingVersion: Sendable {
    public var version: Int
    /// The version of the publisher's agent, workflow or module that it froze.
    public var sourceVersion: Int
    /// The definition as published: an agent's or workflow's document, a module's declarations.
    public var definition: JSONValue
    public var modules: [BundledModule]
    /// What one run or call costs the installer, in micro-dollars.
    public var priceMicros: Int64
    public var requires: ListingRequirements
    public var deprecatedAt: Int64?
    public var publishedAt: Int64

    /// The fields every organization may read (the definition is the installer's once installed).
    public var summary: JSONValue {
        [
            "version": .int(Int64(version)), "price_micros": .int(priceMicros), "requires": requires.json,
            "deprecated": .bool(deprecatedAt != nil),
            "deprecated_at": deprecatedAt.map { .string(Clock.rfc3339($0)) } ?? .null,
            "published_at": .string(Clock.rfc3339(publishedAt)),
            "modules": .array(modules.map { .string($0.name) }),
        ]
    }
}

/// What the runs and calls of a listing's installs show, computed from the ledger (never self-reported), and its
/// ratings.
public struct ListingReputation: Sendable {
    public var installs: Int64 = 0
    /// Runs (agents, workflows) or calls (modules) metered.
    public var uses: Int64 = 0
    public var succeeded: Int64 = 0
    public var medianMilliseconds: Int64?
    public var ratings: Int64 = 0
    public var averageStars: Double?

    public var json: JSONValue {
        [
            "installs": .int(installs), "uses": .int(uses), "succeeded": .int(succeeded),
            "success_rate": uses == 0 ? .null : .double((Double(succeeded) / Double(uses) * 1000).rounded() / 1000),
            "median_latency_ms": medianMilliseconds.map(JSONValue.int) ?? .null,
            "ratings": .int(ratings),
            "average_stars": averageStars.map { .double(($0 * 100).rounded() / 100) } ?? .null,
        ]
    }
}

/// A listing of the catalog: a name under its publisher, and its versions.
public struct Listing: Sendable {
    public var id: String
    public var publisherOrgID: String
    public var name: String
    public var kind: ListingKind
    public var description: String
    public var tags: [String]
    public var latestVersion: Int
    public var createdAt: Int64
    public var updatedAt: Int64
    /// Newest first.
    public var versions: [ListingVersion] = []
    public var reputation = ListingReputation()

    /// The newest version that is not deprecated.
    public var current: ListingVersion? { versions.first { $0.deprecatedAt == nil } }

    public var json: JSONValue {
        let current = self.current
        return [
            "id": .string(id), "publisher_org_id": .string(publisherOrgID), "name": .string(name),
            "kind": .string(kind.rawValue), "description": .string(description),
            "tags": .array(tags.map(JSONValue.string)), "latest_version": .int(Int64(latestVersion)),
            "current_version": current.map { .int(Int64($0.version)) } ?? .null,
            "price_micros": current.map { .int($0.priceMicros) } ?? .null,
            "price_unit": .string(kind.priceUnit),
            "versions": .array(versions.map(\.summary)), "reputation": reputation.json,
            "created_at": .string(Clock.rfc3339(createdAt)), "updated_at": .string(Clock.rfc3339(updatedAt)),
        ]
    }
}

/// A listing installed in an organization: the agent, workflow or module it became there, at a pinned version.
public struct ListingInstall: Sendable {
    public var id: String
    public var orgID: String
    public var listingID: String
    public var version: Int
    public var kind: ListingKind
    /// The agent's, workflow's or module's name in the installer's organization.
    public var name: String
    /// The workflow its runs are runs of (`agent:NAME` for an agent), or the module's name.
    public var target: String
    public var installedAt: Int64
    public var updatedAt: Int64

    public var json: JSONValue {
        [
            "id": .string(id), "listing_id": .string(listingID), "version": .int(Int64(version)),
            "kind": .string(kind.rawValue), "name": .string(name),
            "installed_at": .string(Clock.rfc3339(installedAt)), "updated_at": .string(Clock.rfc3339(updatedAt)),
        ]
    }
}

/// One organization's rating of a listing it installed.
public struct ListingRating: Sendable {
    public var stars: Int
    public var review: String?
    public var updatedAt: Int64

    public var json: JSONValue {
        [
            "stars": .int(Int64(stars)), "review": review.map(JSONValue.string) ?? .null,
            "updated_at": .string(Clock.rfc3339(updatedAt)),
        ]
    }
}

/// `POST /v1/catalog/listings`, checked.
public struct PublishRequest: Sendable {
    public var kind: ListingKind
    /// The publisher's agent, workflow or module.
    public var source: String
    /// Its version to freeze; the latest when `nil`.
    public var sourceVersion: Int?
    /// The listing's name (the source's by default).
    public var name: String
    public var description: String?
    public var tags: [String]?
    public var priceMicros: Int64
    /// Requirements beyond those read from the definition.
    public var requires: ListingRequirements

    /// The most a price may be: a thousand dollars a run or call.
    public static let maxPriceMicros: Int64 = 1_000_000_000

    /// - Throws: `validation_failed` naming the field.
    public static func parse(_ body: JSONValue) throws(CaravanError) -> PublishRequest {
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        let allowed: Set<String> = [
            "kind", "source", "source_version", "name", "description", "tags", "price_micros", "requires",
        ]
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw CaravanError.validation("/" + key, "is not a field of a listing")
        }
        guard let kind = object["kind"]?.stringValue.flatMap(ListingKind.init(rawValue:)) else {
            throw CaravanError.validation("/kind", "must be agent, workflow or module")
        }
        guard let source = object["source"]?.stringValue, isValidName(source) else {
            throw CaravanError.validation("/source", "must name one of your \(kind.rawValue)s ([a-z0-9-]{1,64})")
        }
        var sourceVersion: Int?
        if let value = object["source_version"] {
            guard case .int(let number) = value, number >= 1 else {
                throw CaravanError.validation("/source_version", "must be an integer ≥ 1")
            }
            sourceVersion = Int(number)
        }
        let name = object["name"]?.stringValue ?? source
        guard isValidName(name) else { throw CaravanError.validation("/name", "must match [a-z0-9-]{1,64}") }
        var description: String?
        if let value = object["description"] {
            guard let text = value.stringValue, text.utf8.count <= 4_000 else {
                throw CaravanError.validation("/description", "must be a string of at most 4,000 bytes")
            }
            description = text
        }
        var tags: [String]?
        if let value = object["tags"] {
            guard let list = value.arrayValue, list.count <= 16,
                let names = Optional(list.compactMap(\.stringValue)), names.count == list.count,
                names.allSatisfy(isValidName)
            else {
                throw CaravanError.validation("/tags", "must be a list of up to 16 tags, each [a-z0-9-]{1,64}")
            }
            tags = Array(Set(names)).sorted()
        }
        var price: Int64 = 0
        if let value = object["price_micros"] {
            guard case .int(let number) = value, (0...maxPriceMicros).contains(number) else {
                throw CaravanError.validation(
                    "/price_micros",
                    "must be an integer number of micro-dollars from 0 to \(maxPriceMicros)"
                )
            }
            price = number
        }
        var requires = ListingRequirements()
        if let value = object["requires"] {
            guard let fields = value.objectValue, Set(fields.keys).isSubset(of: ["secrets", "providers"]) else {
                throw CaravanError.validation("/requires", "must be an object of secrets and providers")
            }
            for key in ["secrets", "providers"] {
                guard let list = fields[key] else { continue }
                guard let items = list.arrayValue, items.count <= 32,
                    items.allSatisfy({ $0.stringValue.map { !$0.isEmpty && $0.count <= 128 } == true })
                else { throw CaravanError.validation("/requires/" + key, "must be a list of up to 32 names") }
            }
            requires = ListingRequirements(json: value)
        }
        return PublishRequest(
            kind: kind,
            source: source,
            sourceVersion: sourceVersion,
            name: name,
            description: description,
            tags: tags,
            priceMicros: price,
            requires: requires
        )
    }

    /// Names of listings, tags and installs: `[a-z0-9-]{1,64}`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }
}

/// `POST /v1/catalog/installs` and `POST /v1/catalog/installs/{id}/upgrade`, checked.
public struct InstallRequest: Sendable {
    /// The listing to install (empty in an upgrade, whose install names it).
    public var listingID: String
    /// The version to install; the current one when `nil`.
    public var version: Int?
    /// The name of the agent, workflow or module in the installer's organization (the listing's by default).
    public var name: String?
    /// Values of required secrets to store in the installer's organization (encrypted, like any secret).
    public var secrets: [String: String]

    /// - Parameter upgrade: whether this is an upgrade's body, which names neither the listing nor a name.
    /// - Throws: `validation_failed` naming the field.
    public static func parse(_ body: JSONValue, upgrade: Bool = false) throws(CaravanError) -> InstallRequest {
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        let allowed: Set<String> = upgrade ? ["version", "secrets"] : ["listing", "version", "name", "secrets"]
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw CaravanError.validation("/" + key, "is not a field here")
        }
        let listing = object["listing"]?.stringValue ?? ""
        guard upgrade || (!listing.isEmpty && listing.count <= 64) else {
            throw CaravanError.validation("/listing", "is required: the id of a listing")
        }
        var version: Int?
        if let value = object["version"] {
            guard case .int(let number) = value, number >= 1 else {
                throw CaravanError.validation("/version", "must be an integer ≥ 1")
            }
            version = Int(number)
        }
        var name: String?
        if let value = object["name"] {
            guard let text = value.stringValue, PublishRequest.isValidName(text) else {
                throw CaravanError.validation("/name", "must match [a-z0-9-]{1,64}")
            }
            name = text
        }
        var secrets: [String: String] = [:]
        if let value = object["secrets"] {
            guard let fields = value.objectValue, fields.count <= 32 else {
                throw CaravanError.validation("/secrets", "must be an object of up to 32 secret names and values")
            }
            for (key, item) in fields {
                guard let text = item.stringValue, text.utf8.count <= 65_536 else {
                    throw CaravanError.validation("/secrets/" + key, "must be a string of at most 64 KiB")
                }
                secrets[key] = text
            }
        }
        return InstallRequest(listingID: listing, version: version, name: name, secrets: secrets)
    }
}
