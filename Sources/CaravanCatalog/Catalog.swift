public import CaravanAgents
public import CaravanCore
public import CaravanEngine
import CaravanModels
import CaravanStorage
import CaravanTools
public import CaravanVault
public import CaravanWasm
import CaravanWorkflow

/// The catalog: organizations publish versions of their agents, workflows and modules; other organizations install
/// a version into their own organization, where it becomes an agent, workflow or module of theirs (its modules
/// copied along as `NAME.MODULE`), run under their budgets, egress policy, secrets and providers. The publisher's
/// secrets never travel (a listing names the secrets it needs; the installer brings its own), and the publisher sees
/// only the ledger's counts of its listings' uses, never the installer's runs.
public final class Catalog: Sendable {
    public let store: CatalogStore
    let engine: Engine
    let agents: AgentStore
    let modules: WasmModuleStore
    let secrets: SecretStore?
    let providers: ProviderStore
    let clock: WallClock

    public init(
        store: CatalogStore,
        engine: Engine,
        agents: AgentStore,
        modules: WasmModuleStore,
        secrets: SecretStore?,
        providers: ProviderStore,
        clock: WallClock = .system
    ) {
        self.store = store
        self.engine = engine
        self.agents = agents
        self.modules = modules
        self.secrets = secrets
        self.providers = providers
        self.clock = clock
    }

    /// The code of a listing's requirement that the installer did not meet.
    public static let requirementMissing = CaravanError.Code("requirement_missing", status: 422)

    // MARK: Publishing

    /// Publishes a version of one of the organization's agents, workflows or modules, frozen as it is now with the
    /// modules it calls.
    /// - Throws: `validation_failed` (the source does not exist, or names what a listing cannot carry: other
    ///   agents or workflows, MCP servers run as commands), `conflict`.
    public func publish(
        orgID: String,
        _ request: PublishRequest
    ) async throws -> (
        listing: Listing, version: ListingVersion, created: Bool
    ) {
        let frozen = try await freeze(orgID: orgID, request)
        return try await store.publish(
            publisherOrgID: orgID,
            name: request.name,
            kind: request.kind,
            description: request.description,
            tags: request.tags,
            version: frozen,
            now: clock.nowMilliseconds()
        )
    }

    private func freeze(orgID: String, _ request: PublishRequest) async throws -> ListingVersion {
        let missing = CaravanError.validation(
            request.sourceVersion == nil ? "/source" : "/source_version",
            "names no \(request.kind.rawValue) of yours"
                + (request.sourceVersion.map { " at version \($0)" } ?? "")
        )
        // What an install brought is the publisher's, not this organization's, to publish.
        let installed = try await store.install(
            orgID: orgID,
            kind: request.kind,
            target: Self.target(kind: request.kind, name: request.source)
        )
        if installed != nil || (request.kind == .module && request.source.contains(".")) {
            throw CaravanError.validation("/source", "was installed from the catalog; only its publisher publishes it")
        }
        var definition: JSONValue
        var sourceVersion: Int
        var moduleRefs: [(name: String, version: Int?)] = []
        var references = DefinitionReferences()
        var requires = request.requires
        switch request.kind {
        case .agent:
            guard let agent = try await agents.get(orgID: orgID, name: request.source, version: request.sourceVersion),
                !agent.archived
            else { throw missing }
            definition = agent.definition.source
            sourceVersion = agent.version
            references = agent.definition.references
            for tool in agent.definition.tools {
                switch tool.kind {
                case .wasm(let module, let version): moduleRefs.append((module, version))
                case .mcp(let server, _) where server.command != nil:
                    throw CaravanError.validation(
                        "/source",
                        "the agent's tool '\(tool.name)' runs a command on the host; a listing cannot carry one"
                    )
                default: break
                }
            }
            requires.providers += agent.definition.route.map(\.provider)
        case .workflow:
            guard
                let workflow = try await engine.workflows.get(
                    orgID: orgID,
                    name: request.source,
                    version: request.sourceVersion
                ),
                workflow.archivedAt == nil
            else { throw missing }
            definition = workflow.definition.source
            sourceVersion = workflow.version
            references = DefinitionReferences(workflow: workflow.definition)
            for step in workflow.definition.steps {
                if step.kind == WasmStep.name, let module = step.config["module"]?.stringValue {
                    var version: Int?
                    if case .int(let number)? = step.config["version"] { version = Int(number) }
                    moduleRefs.append((module, version))
                }
                if let route = try? ModelGateway.route(step.config["model"], at: "") {
                    requires.providers += route.map(\.provider)
                }
            }
        case .module:
            guard let module = try await modules.get(orgID: orgID, name: request.source, version: request.sourceVersion)
            else { throw missing }
            definition = module.declared
            sourceVersion = module.version
            moduleRefs.append((module.name, module.version))
        }
        if let child = references.children.first {
            throw CaravanError.validation(
                "/source",
                "the \(request.kind.rawValue) calls the \(child.kind.name) '\(child.name)'; a listing cannot carry another agent or workflow"
            )
        }
        var bundled: [BundledModule] = []
        for (name, version) in moduleRefs where !bundled.contains(where: { $0.name == name }) {
            guard !name.contains("."),
                try await store.install(orgID: orgID, kind: .module, target: name) == nil
            else {
                throw CaravanError.validation(
                    "/source",
                    "the \(request.kind.rawValue) calls the module '\(name)', which was installed from the catalog; a listing carries only the publisher's own modules"
                )
            }
            guard let module = try await modules.get(orgID: orgID, name: name, version: version) else {
                throw CaravanError.validation(
                    "/source",
                    "the \(request.kind.rawValue) calls the module '\(name)', which does not exist"
                )
            }
            bundled.append(
                BundledModule(name: name, version: module.version, sha256: module.sha256, declared: module.declared)
            )
            requires.secrets += module.permissions.secrets
        }
        requires.secrets += references.secrets.map(\.name)
        return ListingVersion(
            version: 0,
            sourceVersion: sourceVersion,
            definition: definition,
            modules: bundled,
            priceMicros: request.priceMicros,
            requires: ListingRequirements(secrets: requires.secrets, providers: requires.providers),
            deprecatedAt: nil,
            publishedAt: 0
        )
    }

    /// Deprecates a version of one of the organization's listings.
    /// - Throws: `not_found`.
    public func deprecate(orgID: String, listingID: String, version: Int) async throws -> Listing {
        guard
            let listing = try await store.deprecate(
                publisherOrgID: orgID,
                listingID: listingID,
                version: version,
                now: clock.nowMilliseconds()
            )
        else { throw CaravanError.notFound("Your listing's version \(version)") }
        return listing
    }

    // MARK: Installing

    /// Installs a listing's version (its current one unless named) in the organization.
    /// - Throws: `not_found`, `conflict` (own listing, installed already, the name taken, a deprecated version),
    ///   `requirement_missing` (a secret or provider the listing needs).
    public func install(orgID: String, _ request: InstallRequest) async throws -> ListingInstall {
        let (listing, version) = try await installable(request.listingID, version: request.version, by: orgID)
        let name = request.name ?? listing.name
        let target = Self.target(kind: listing.kind, name: name)
        try await checkNameIsFree(orgID: orgID, kind: listing.kind, name: name)
        try await checkRequirements(of: version, listing: listing, orgID: orgID, supplied: request.secrets)
        let now = clock.nowMilliseconds()
        let install = ListingInstall(
            id: Identifier.make("ins", milliseconds: now),
            orgID: orgID,
            listingID: listing.id,
            version: version.version,
            kind: listing.kind,
            name: name,
            target: target,
            installedAt: now,
            updatedAt: now
        )
        guard try await store.insert(install) else {
            throw CaravanError(
                .conflict,
                "The listing is installed in this organization already, or '\(name)' is taken; upgrade the install or choose another name."
            )
        }
        do {
            try await storeSecrets(request.secrets, orgID: orgID)
            try await materialize(version, of: listing, as: name, orgID: orgID)
        } catch {
            try? await store.delete(installID: install.id, now: clock.nowMilliseconds())
            throw error
        }
        return install
    }

    /// Moves an install to another version (the current one unless named): an explicit act, never automatic.
    public func upgrade(orgID: String, installID: String, _ request: InstallRequest) async throws -> ListingInstall {
        guard var install = try await store.install(orgID: orgID, id: installID) else {
            throw CaravanError.notFound("The install")
        }
        let (listing, version) = try await installable(install.listingID, version: request.version, by: orgID)
        try await checkRequirements(of: version, listing: listing, orgID: orgID, supplied: request.secrets)
        try await storeSecrets(request.secrets, orgID: orgID)
        try await materialize(version, of: listing, as: install.name, orgID: orgID)
        install.version = version.version
        install.updatedAt = clock.nowMilliseconds()
        try await store.setVersion(install)
        return install
    }

    /// Removes an install: its agent or workflow is archived and its modules deleted (runs under way finish); the
    /// ledger keeps what it recorded.
    public func uninstall(orgID: String, installID: String) async throws -> Bool {
        guard let install = try await store.install(orgID: orgID, id: installID) else { return false }
        try await store.delete(installID: install.id, now: clock.nowMilliseconds())
        let listing = try await store.listing(id: install.listingID)
        switch install.kind {
        case .agent: _ = try await agents.archive(orgID: orgID, name: install.name)
        case .workflow: _ = try await engine.workflows.archive(orgID: orgID, name: install.name)
        case .module: _ = try await modules.delete(orgID: orgID, name: install.name)
        }
        if install.kind != .module {
            let bundled = listing?.versions.flatMap(\.modules).map(\.name) ?? []
            for name in Set(bundled) {
                _ = try await modules.delete(orgID: orgID, name: Self.moduleName(name, of: install.target))
            }
        }
        return true
    }

    /// Rates a listing the organization installed: 1 to 5 stars and an optional review.
    /// - Throws: `forbidden` when it has not installed it, `validation_failed`.
    public func rate(orgID: String, listingID: String, stars: Int, review: String?) async throws {
        guard (1...5).contains(stars) else { throw CaravanError.validation("/stars", "must be an integer from 1 to 5") }
        if let review, review.utf8.count > 4_000 {
            throw CaravanError.validation("/review", "must be at most 4,000 bytes")
        }
        guard
            try await store.rate(
                listingID: listingID,
                orgID: orgID,
                stars: stars,
                review: review,
                now: clock.nowMilliseconds()
            )
        else { throw CaravanError(.forbidden, "Only an organization that installed the listing may rate it.") }
    }

    /// Refuses a change to an agent, workflow or module that an install keeps (a module an install brought, named
    /// `TARGET.MODULE`, included): it changes by upgrading the install.
    public func refuseChange(orgID: String, kind: ListingKind, name: String) async throws {
        if kind == .module, name.contains(".") {
            throw CaravanError(.conflict, "'\(name)' was brought by an install; upgrade or remove the install instead.")
        }
        if let install = try await store.install(orgID: orgID, kind: kind, target: Self.target(kind: kind, name: name))
        {
            throw CaravanError(
                .conflict,
                "'\(install.name)' is installed from the catalog (install \(install.id)); upgrade or remove the install instead."
            )
        }
    }

    /// The workflow an install's runs are runs of, or its module's name.
    static func target(kind: ListingKind, name: String) -> String {
        switch kind {
        case .agent: AgentStepKind.workflowName(forAgent: name)
        case .workflow, .module: name
        }
    }

    /// The name an install gives a module its agent or workflow brings, after the install's target (`agent:NAME`
    /// or the workflow's name): not a name a user can give (`.`), so it collides with none of the organization's own
    /// modules nor another install's, and the module runner lets only the target's runs call it.
    static func moduleName(_ module: String, of target: String) -> String { target + "." + module }

    private func installable(
        _ listingID: String,
        version: Int?,
        by orgID: String
    ) async throws -> (
        Listing, ListingVersion
    ) {
        guard let listing = try await store.listing(id: listingID) else { throw CaravanError.notFound("The listing") }
        guard listing.publisherOrgID != orgID else {
            throw CaravanError(.conflict, "This organization publishes the listing; it runs its own definition.")
        }
        let chosen = version.map { number in listing.versions.first { $0.version == number } } ?? listing.current
        guard let chosen else {
            throw CaravanError.notFound(
                version.map { "The listing's version \($0)" } ?? "A current version of the listing"
            )
        }
        guard chosen.deprecatedAt == nil else {
            throw CaravanError(
                .conflict,
                "Version \(chosen.version) of the listing is deprecated; install a newer one."
            )
        }
        return (listing, chosen)
    }

    private func checkNameIsFree(orgID: String, kind: ListingKind, name: String) async throws {
        let taken: Bool
        switch kind {
        case .agent: taken = try await agents.get(orgID: orgID, name: name).map { !$0.archived } ?? false
        case .workflow:
            taken = try await engine.workflows.get(orgID: orgID, name: name).map { $0.archivedAt == nil } ?? false
        case .module: taken = try await modules.get(orgID: orgID, name: name) != nil
        }
        if taken {
            throw CaravanError.init(
                .conflict,
                "This organization has a\(kind == .agent ? "n" : "") \(kind.rawValue) named '\(name)'; install under another name.",
                fieldErrors: [.init(pointer: "/name", detail: "is taken")]
            )
        }
    }

    private func checkRequirements(
        of version: ListingVersion,
        listing: Listing,
        orgID: String,
        supplied: [String: String]
    ) async throws {
        var errors: [CaravanError.FieldError] = []
        for name in supplied.keys.sorted() where !version.requires.secrets.contains(name) {
            errors.append(.init(pointer: "/secrets/" + name, detail: "is not a secret the listing needs"))
        }
        let needed = Set(version.requires.secrets).subtracting(supplied.keys)
        if !needed.isEmpty {
            let existing = Set(try await secrets?.resolve(orgID: orgID, names: needed).keys.map { $0 } ?? [])
            for name in needed.sorted() where !existing.contains(name) {
                errors.append(
                    .init(
                        pointer: "/secrets/" + name,
                        detail: "is needed by the listing: give its value, or store the secret first"
                    )
                )
            }
        }
        for name in version.requires.providers where try await providers.get(orgID: orgID, name: name) == nil {
            errors.append(
                .init(
                    pointer: "/providers/" + name,
                    detail: "is needed by the listing: configure the provider '\(name)' first"
                )
            )
        }
        if !errors.isEmpty {
            throw CaravanError(
                Self.requirementMissing,
                "The listing needs what this organization does not have.",
                fieldErrors: errors
            )
        }
    }

    private func storeSecrets(_ values: [String: String], orgID: String) async throws {
        guard !values.isEmpty else { return }
        guard let secrets else { throw CaravanError(.unavailable, "Secrets are not available on this node.") }
        for (name, value) in values.sorted(by: { $0.key < $1.key }) {
            _ = try await secrets.put(orgID: orgID, name: name, value: value)
        }
    }

    /// Stores the version's definition and modules in the installer's organization under `name`.
    private func materialize(
        _ version: ListingVersion,
        of listing: Listing,
        as name: String,
        orgID: String
    ) async throws {
        var copies: [String: WasmModuleDefinition] = [:]
        for bundled in version.modules {
            let module = WasmModuleDefinition(
                declared: bundled.declared,
                name: bundled.name,
                version: bundled.version,
                sha256: bundled.sha256,
                createdAt: version.publishedAt
            )
            let copyName =
                listing.kind == .module
                ? name : Self.moduleName(bundled.name, of: Self.target(kind: listing.kind, name: name))
            copies[bundled.name] = try await modules.copy(module, toOrgID: orgID, name: copyName)
        }
        switch listing.kind {
        case .module:
            return
        case .agent:
            var document = version.definition.with("name", .string(name))
            if case .array(var tools)? = document["tools"] {
                for index in tools.indices {
                    tools[index] = Self.pointing(tools[index], kind: "wasm", at: copies)
                }
                document = document.with("tools", .array(tools))
            }
            _ = try await agents.put(orgID: orgID, try AgentDefinition.validate(document, nameFromPath: name))
        case .workflow:
            var document = version.definition.with("name", .string(name))
            if case .array(var steps)? = document["steps"] {
                for index in steps.indices {
                    steps[index] = Self.pointing(steps[index], kind: WasmStep.name, at: copies)
                }
                document = document.with("steps", .array(steps))
            }
            let workflow = try DefinitionParser.validate(document, nameFromPath: name, kinds: engine.kinds)
            _ = try await engine.workflows.put(orgID: orgID, definition: workflow)
        }
    }

    /// A tool or step (`{KIND: {module, version?, …}, …}`) that calls a bundled module, made to call its copy.
    static func pointing(_ item: JSONValue, kind: String, at copies: [String: WasmModuleDefinition]) -> JSONValue {
        guard let config = item[kind], let module = config["module"]?.stringValue, let copy = copies[module] else {
            return item
        }
        return item.with(kind, config.with("module", .string(copy.name)).with("version", .int(Int64(copy.version))))
    }
}

extension JSONValue {
    /// This object with `value` at `key`; anything else unchanged.
    func with(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case .object(var fields) = self else { return self }
        fields[key] = value
        return .object(fields)
    }
}
