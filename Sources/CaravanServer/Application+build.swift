import CaravanAgents
public import CaravanAudit
import CaravanCatalog
import CaravanConsole
public import CaravanCore
public import CaravanEngine
public import CaravanIdentity
import CaravanKnowledge
import CaravanModels
import CaravanNotify
import CaravanOutbound
import CaravanPostgres
import CaravanSQLite
public import CaravanStorage
import CaravanTools
import CaravanTriggers
public import CaravanVault
import CaravanWasm
import CaravanWebhooks
import Foundation
public import Hummingbird
import HummingbirdCore
public import Logging
import NIOCore
public import ServiceLifecycle

/// The version of this build, as `caravan version` and `/healthz` report it.
public let caravanVersion = "0.1.0"

/// The parts of a built application that tests and commands reach into.
public struct CaravanApplication: Sendable {
    /// The database, with metrics around it.
    public let database: any Database
    /// The execution engine.
    public let engine: Engine
    /// Every HTTP endpoint, as the OpenAPI document lists it.
    public let catalog: RouteCatalog
    /// Accounts, sessions, organizations, API keys.
    public let identity: IdentityService
    /// The audit log.
    public let audit: AuditLog
    /// Sealed secrets.
    public let secrets: SecretStore
}

/// Opens the configured database: PostgreSQL when a URL is given, else SQLite in the data directory.
/// - Returns: the database and, for PostgreSQL, the pool service that must run while it is used.
/// - Throws: `StorageError` (e.g. `.locked` when another process holds the SQLite data directory).
public func openDatabase(
    _ configuration: ServerConfiguration,
    logger: Logger
) throws(StorageError) -> (database: any Database, service: (any Service)?) {
    if let url = configuration.databaseURL, !url.isEmpty {
        let postgres = try PostgresDatabase(
            url: url,
            maximumConnections: configuration.databasePoolSize,
            logger: logger
        )
        return (postgres, postgres)
    }
    return (try SQLiteDatabase(directory: configuration.dataDirectory, logger: logger), nil)
}

/// Builds the whole Caravan application: database, routes, middleware and services. `caravan serve` runs what
/// this returns; tests build the same thing from a test configuration.
/// - Parameters:
///   - configuration: what to listen on and where to store data.
///   - logger: the root logger; every request adds its request id.
///   - clock: the wall clock of every stored time and every decision taken from it.
/// - Returns: the Hummingbird application (run it with `runService()`) and its parts.
/// - Throws: `StorageError` when the database cannot be opened.
public func buildApplication(
    _ configuration: ServerConfiguration,
    clock: WallClock = .system,
    logger: Logger
) async throws -> (application: some ApplicationProtocol, parts: CaravanApplication) {
    Telemetry.bootstrapMetrics()
    let opened = try openDatabase(configuration, logger: logger)
    let database = MeteredDatabase(
        opened.database,
        poolSize: opened.database.dialect == .sqlite ? 1 : configuration.databasePoolSize
    )

    let keyring = try MasterKeyring.load(
        configured: configuration.masterKey,
        previous: configuration.previousMasterKeys,
        dataDirectory: configuration.dataDirectory,
        logger: logger
    )
    let box = SecretBox(keyring: keyring)
    let secrets = SecretStore(database: database, box: box, clock: clock)
    // Audit chains are linked with a key derived from the master key; their signed heads are exported to the log
    // and, with SQLite, to <data>/audit-heads.json.
    let audit = AuditLog(
        database: database,
        logger: logger,
        keys: AuditKeys(current: keyring.current, previous: Array(keyring.previous.values)),
        headsFile: opened.database.dialect == .sqlite
            ? URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("audit-heads.json").path : nil,
        clock: clock
    )
    // A `WakeFlag` wakes one waiter: one flag for each service that waits for the schema.
    // One flag for each service that waits for the schema (a flag wakes one waiter).
    let schemaReady = WakeFlag()
    let webhooksReady = WakeFlag()
    let usageReady = WakeFlag()
    let catalogReady = WakeFlag()
    // Changes other nodes must hear of at once (credentials revoked, roles changed) travel as signals.
    let signals = ClusterSignals(database: database, logger: logger)
    var identitySettings = IdentityService.Settings()
    identitySettings.openSignup = configuration.openSignup
    identitySettings.rateLimitCeiling = configuration.rateLimitPerMinute
    let identity = IdentityService(
        database: database,
        hasher: PasswordHasher(cost: configuration.passwordHashCost),
        tokens: await AccessTokens(
            signingKey: keyring.derivedKey(purpose: "session tokens"),
            lifetime: .milliseconds(configuration.accessTokenLifetime.milliseconds)
        ),
        box: box,
        throttle: AuthThrottle(
            database: database,
            attemptsPerMinute: configuration.authAttemptsPerMinute,
            clock: clock
        ),
        signals: signals,
        settings: identitySettings,
        clock: clock
    )

    let egress = try EgressPolicy(allowList: configuration.egressAllow)
    let httpClient = OutboundHTTPClient()
    let secretResolver = VaultSecretResolver(secrets: secrets, audit: audit)
    // The one door for every request a user or a model can steer (http steps and tools, MCP over HTTP, model
    // providers): every refusal is audited in the organization it was made for, with secrets masked.
    let egressClient = EgressHTTPClient(client: httpClient.client, policy: egress) { url, denial in
        let attribution = EgressAttribution.current
        let redact = attribution?.redact ?? { $0 }
        _ = try? await audit.record(
            AuditRecord(
                orgID: attribution?.orgID,
                actor: AuditActor(.system, "egress"),
                action: "egress.denied",
                target: attribution?.runID.map { "run:\($0)" } ?? "gateway",
                outcome: "failure",
                details: [
                    "url": .string(String(redact(url.absoluteString).prefix(2048))),
                    "reason": .string(redact(denial.message)),
                ]
            )
        )
    }

    // The LLM gateway and agents.
    let meter = UsageMeter(
        database: database,
        clock: clock,
        logger: logger,
        ready: { await usageReady.wait(timeout: nil) }
    )
    let gateway = ModelGateway(
        router: ProviderRouter(
            openAI: OpenAIProvider(client: egressClient),
            anthropic: AnthropicProvider(client: egressClient),
            breakers: CircuitBreakers(),
            logger: logger
        ),
        providers: ProviderStore(
            database: database,
            clock: clock,
            secret: { orgID, name in
                try await secrets.resolve(orgID: orgID, names: [name])[name]
            }
        ),
        meter: meter,
        prices: PriceTable(),
        clock: clock,
        cache: configuration.gatewayCacheTTL.milliseconds > 0
            ? ResponseCache(timeToLive: configuration.gatewayCacheTTL.milliseconds, clock: clock) : nil,
        routes: ModelRouteStore(database: database, clock: clock),
        logger: logger
    )
    let threads = ThreadStore(database: database, clock: clock)
    let mcpCommands: MCPCommandPolicy
    do { mcpCommands = try MCPCommandPolicy(parsing: configuration.mcpCommandAllow) } catch {
        throw CaravanError(.validationFailed, "--mcp-command-allow: \(error)")
    }
    let mcpConnections = MCPConnectionCache(http: egressClient, logger: logger, commands: mcpCommands)
    // The catalog's meter charges the uses of installed listings: the runs of agents and workflows as they
    // finish, the calls of modules as the runner ends them.
    let catalogStore = CatalogStore(database: database, signals: signals)
    let catalogMeter = CatalogMeter(
        store: catalogStore,
        feeBasisPoints: configuration.catalogFeeBasisPoints,
        clock: clock,
        logger: logger,
        ready: { await catalogReady.wait(timeout: nil) }
    )
    // WebAssembly modules run in a sandbox of this node's, as many calls at once as it has cores.
    let modules = WasmModuleRunner(
        store: WasmModuleStore(database: database, clock: clock),
        sandbox: WasmSandbox(maxConcurrentCalls: max(1, ProcessInfo.processInfo.activeProcessorCount)),
        http: egressClient,
        meter: catalogMeter,
        logger: logger
    )
    let knowledge = KnowledgeStore(database: database, gateway: gateway, clock: clock)
    let artifacts = ArtifactStore(database: database, clock: clock)
    let toolbox = AgentToolbox(
        http: egressClient,
        mcp: mcpConnections,
        secrets: secretResolver,
        modules: modules,
        knowledge: knowledge
    )

    // Notifications to people (Slack-compatible and JSON webhooks, email through the organization's SMTP server).
    let smtpSettings = SMTPSettingsStore(database: database, clock: clock)
    let notifier = NotificationRoutes.notifier(
        http: egressClient,
        settings: smtpSettings,
        secrets: secrets,
        audit: audit,
        clock: clock
    )
    let engine = Engine(
        database: database,
        executors: [
            TemplateStep(), HTTPStep(client: egressClient), LLMStep(gateway: gateway),
            AgentLoopStep(gateway: gateway, toolbox: toolbox, threads: threads), NotifyStep(notifier: notifier),
            WasmStep(runner: modules, secrets: secretResolver),
            SearchStep(knowledge: knowledge), IngestStep(knowledge: knowledge), DocumentStep(artifacts: artifacts),
        ],
        configuration: configuration.engine,
        secrets: secretResolver,
        auditKeys: audit.keys,
        signals: signals,
        clock: clock,
        logger: logger
    )
    // Outbound webhooks: every node delivers the webhooks it holds, from the organizations' event feeds.
    let webhooks = WebhookStore(database: database, box: box, engine: engine, clock: clock)
    let webhookDispatcher = WebhookDispatcher(
        store: webhooks,
        engine: engine,
        http: egressClient,
        messenger: { orgID, target, messageID, title, text, data in
            let destination: NotificationTarget
            switch target {
            case .slack(let url): destination = .slack(url: url.absoluteString)
            case .email(let to): destination = .email(to: to, subject: nil)
            case .standard(let url): destination = .json(url: url.absoluteString)
            }
            do {
                try await notifier.send(
                    CaravanNotify.Notification(title: title, text: text, data: data),
                    to: destination,
                    orgID: orgID,
                    timeout: .milliseconds(configuration.webhooks.attemptTimeout),
                    idempotencyKey: messageID
                )
            } catch let error as NotifyError {
                throw Failure(code: error.code, message: error.message, retryable: error.retryable)
            }
        },
        settings: configuration.webhooks,
        clock: clock,
        logger: logger,
        ready: { await webhooksReady.wait(timeout: nil) },
        onDisabled: { webhook, reason in
            // The organization's owners and admins hear of it by email, when it has SMTP settings.
            let admins =
                (try? await identity.members(orgID: webhook.orgID, after: nil, limit: 500))?
                .filter { $0.role >= .admin }.map(\.email) ?? []
            var notified: JSONValue = .array(admins.map(JSONValue.string))
            do {
                try await notifier.send(
                    CaravanNotify.Notification(
                        title: "Webhook \(webhook.name) was disabled",
                        text:
                            "Caravan stopped delivering the webhook \(webhook.name): \(reason)\nIts pending deliveries wait; enable it again once the receiver is mended.",
                        data: ["webhook": .string(webhook.name)]
                    ),
                    to: .email(to: admins, subject: nil),
                    orgID: webhook.orgID
                )
            } catch let error as NotifyError {
                notified = .string(error.code.rawValue)
            } catch {
                notified = .string("\(error)")
            }
            await audit.recordLogged(
                AuditRecord(
                    orgID: webhook.orgID,
                    actor: AuditActor(.system, "webhooks"),
                    action: "webhook.disabled",
                    target: "webhook:\(webhook.name)",
                    outcome: "success",
                    details: ["reason": .string(reason), "notified": notified]
                )
            )
        }
    )
    // Inbound triggers: public hooks whose verified deliveries start runs; every node flushes buffered batches.
    let triggers = TriggerRoutes.service(
        database: database,
        engine: engine,
        agents: AgentStore(engine: engine, threads: threads),
        secrets: secrets,
        signals: signals,
        logger: logger
    )
    let bodies = RequestBodyReader(maxBytes: configuration.maxBodyBytes)
    let access = AccessControl(
        identity: identity,
        limiter: RequestRateLimiter(defaultPerMinute: configuration.rateLimitPerMinute),
        audit: audit
    )

    let router = Router(context: CaravanRequestContext.self, options: .autoGenerateHeadEndpoints)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: ProblemMiddleware())
    let catalog = RouteCatalog()
    let routes = RouteRegistrar(router: router, catalog: catalog, access: access)
    SystemRoutes(database: database, version: caravanVersion).register(in: routes)
    IdentityRoutes(identity: identity, bodies: bodies, audit: audit).register(in: routes)
    OrganizationRoutes(identity: identity, bodies: bodies).register(in: routes)
    SecretRoutes(secrets: secrets, bodies: bodies).register(in: routes)
    AuditRoutes(audit: audit, verifier: audit.verifier).register(in: routes)
    RunRoutes(engine: engine, bodies: bodies).register(in: routes)
    TriggerRoutes(triggers: triggers, secrets: secrets, bodies: bodies).register(in: routes)
    EventSocketRoutes(engine: engine).register(in: routes)
    NotificationRoutes(settings: smtpSettings, notifier: notifier, bodies: bodies).register(in: routes)
    WebhookRoutes(webhooks: webhooks, egress: egress, bodies: bodies).register(in: routes)
    let modelRoutes = ModelRoutes(gateway: gateway, egress: egress, bodies: bodies) { orgID, id in
        var cursor: String?
        while true {
            let page = try await identity.apiKeys(orgID: orgID, after: cursor, limit: 500)
            if page.contains(where: { $0.id == id }) { return true }
            guard page.count == 500 else { return false }
            cursor = page.last?.id
        }
    }
    modelRoutes.register(in: routes)
    ModelRequestLogRoutes(meter: gateway.meter, bodies: bodies).register(in: routes)
    ResponsesRoutes(gateway: gateway, store: ResponseStore(database: database), models: modelRoutes, bodies: bodies)
        .register(in: routes)
    let agentStore = AgentStore(engine: engine, threads: threads)
    MCPServerRoutes(engine: engine, agents: agentStore, bodies: bodies).register(in: routes)
    let listingCatalog = Catalog(
        store: catalogStore,
        engine: engine,
        agents: agentStore,
        modules: modules.store,
        secrets: secrets,
        providers: gateway.providers,
        clock: clock
    )
    AgentRoutes(
        agents: agentStore,
        threads: threads,
        engine: engine,
        bodies: bodies,
        mcpCommands: mcpCommands,
        catalog: listingCatalog
    ).register(in: routes)
    WorkflowRoutes(engine: engine, bodies: bodies, catalog: listingCatalog).register(in: routes)
    CatalogRoutes(catalog: listingCatalog, bodies: bodies).register(in: routes)
    DocumentRoutes(artifacts: artifacts, engine: engine).register(in: routes)
    KnowledgeRoutes(
        knowledge: knowledge,
        ingestion: DocumentIngestion(knowledge: knowledge, engine: engine),
        egress: egressClient
    ).register(in: routes)
    ModuleRoutes(runner: modules, secrets: secretResolver, bodies: bodies, catalog: listingCatalog).register(in: routes)

    // The console calls the API in process, through the same router, with the signed-in user's session.
    let api = router.buildResponder()
    let console = try Console(
        api: ConsoleAPI { request, remoteAddress in
            let address = remoteAddress == "local" ? nil : try? SocketAddress(ipAddress: remoteAddress, port: 0)
            return try await api.respond(
                to: request,
                context: CaravanRequestContext(inProcess: logger, remoteAddress: address)
            )
        }
    ).router().buildResponder()
    // `/v1`, `/mcp`, `/healthz`, `/readyz`, `/metrics` and `/openapi.json` are the API's; every other path is the
    // console's.
    let responder = CallbackResponder<CaravanRequestContext> { request, context in
        guard Console.serves(path: request.uri.path) else {
            return try await api.respond(to: request, context: context)
        }
        return try await console.respond(
            to: request,
            context: ConsoleRequestContext(
                source: ConsoleContextSource(logger: context.logger, remoteAddress: context.remoteAddress)
            )
        )
    }

    let rotation = KeyRotation(
        database: database,
        box: box,
        columns: [.secrets, IdentityService.sealedTOTPColumn, WebhookStore.sealedColumn],
        logger: logger,
        ready: { await schemaReady.wait(timeout: nil) }
    )
    // Started in this order, stopped in reverse: the database outlives the audit log, the audit log the engine
    // (which records secret use), the engine the HTTP client.
    let services: [any Service] =
        [opened.service].compactMap { $0 } + [
            signals, audit, meter, httpClient, mcpConnections, engine, triggers, webhookDispatcher, rotation,
            catalogMeter,
        ]
    let readTimeout = TimeAmount.milliseconds(configuration.requestReadTimeout.milliseconds)
    let idleTimeout = TimeAmount.milliseconds(configuration.idleTimeout.milliseconds)
    var application = Application(
        responder: responder,
        // HTTP/1 with the event WebSocket (`/v1/events/ws`), whose upgrade requests pass the API's guard first.
        server: EventSocketServer.builder(
            http1: HTTP1Channel.Configuration(
                additionalChannelHandlers: [
                    RequestReadTimeoutHandler(readTimeout: readTimeout, idleTimeout: idleTimeout)
                ]
            ),
            idleTimeout: idleTimeout,
            api: { request, context in try await api.respond(to: request, context: context) }
        ),
        configuration: ApplicationConfiguration(
            address: .hostname(configuration.host, port: configuration.port),
            serverName: "Caravan"
        ),
        services: services,
        onServerRunning: { channel in
            logger.info(
                "Caravan is listening",
                metadata: [
                    "server.address": "\(configuration.host)",
                    "server.port": "\(channel.localAddress?.port ?? configuration.port)",
                    "db.system": "\(database.dialect == .sqlite ? "sqlite" : "postgresql")",
                ]
            )
        },
        logger: logger
    )
    application.beforeServerStarts {
        let applied = try await database.migrate(Schema.migrations)
        if !applied.isEmpty {
            logger.info("Applied database migrations", metadata: ["caravan.migrations": "\(applied)"])
        }
        engine.schemaIsReady()
        triggers.schemaIsReady()
        schemaReady.signal()
        webhooksReady.signal()
        usageReady.signal()
        catalogReady.signal()
    }
    return (
        application,
        CaravanApplication(
            database: database,
            engine: engine,
            catalog: catalog,
            identity: identity,
            audit: audit,
            secrets: secrets
        )
    )
}
