import ArgumentParser
import CaravanCore
import CaravanEngine
import CaravanServer
import CaravanStorage
import Configuration
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `caravan serve`: the API, console, engine workers and scheduler in one process.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run Caravan: the HTTP API and everything behind it.",
        discussion: """
            Every option is read, in order of precedence, from its flag, its environment variable \
            (CARAVAN_PORT, CARAVAN_DATABASE_URL, ...), the config file (--config), then the default. \
            SIGTERM or SIGINT stop taking new work, finish what is in flight and exit 0.
            """
    )

    @Option(help: "Address to listen on. [env: CARAVAN_HOST] (default: 127.0.0.1)")
    var host: String?

    @Option(help: "Port to listen on; 0 picks a free one. [env: CARAVAN_PORT] (default: 8080)")
    var port: Int?

    @Option(help: "Largest request body accepted, in bytes. [env: CARAVAN_MAX_BODY_BYTES] (default: 1048576)")
    var maxBodyBytes: Int?

    @Option(
        help: """
            Time a client has to send one whole request once it has begun, e.g. 30s. \
            [env: CARAVAN_REQUEST_READ_TIMEOUT] (default: 30s)
            """
    )
    var requestReadTimeout: String?

    @Option(
        help: "Time a connection may wait for its next request. [env: CARAVAN_IDLE_TIMEOUT] (default: 60s)"
    )
    var idleTimeout: String?

    @Option(help: "Size of the PostgreSQL connection pool. [env: CARAVAN_DATABASE_POOL_SIZE] (default: 20)")
    var databasePoolSize: Int?

    @Option(
        help: """
            Internal destinations that steps may call anyway: comma-separated host, host:port or CIDR entries, \
            e.g. 127.0.0.1:9000,10.1.0.0/16. [env: CARAVAN_EGRESS_ALLOW]
            """
    )
    var egressAllow: String?

    @Option(
        help: """
            Commands that agents' MCP servers may run over stdio, exactly as listed: comma-separated entries, each a \
            program and its arguments separated by spaces, e.g. 'mcp-server-files /srv/docs'. None by default. \
            [env: CARAVAN_MCP_COMMAND_ALLOW]
            """
    )
    var mcpCommandAllow: String?

    @Option(
        help:
            "How long the LLM gateway answers the same temperature-0 chat completion again without calling the provider, e.g. 5m. [env: CARAVAN_GATEWAY_CACHE_TTL] (default: 0, no cache)"
    )
    var gatewayCacheTTL: String?

    @Option(
        help:
            "The platform's fee on every catalog price, in hundredths of a percent (1000 = 10 %). [env: CARAVAN_CATALOG_FEE_BASIS_POINTS] (default: 1000)"
    )
    var catalogFeeBasisPoints: Int?

    @Option(help: "Largest run input or step output, in bytes. [env: CARAVAN_MAX_PAYLOAD_BYTES] (default: 2097152)")
    var maxPayloadBytes: Int?

    @Option(
        help:
            "How long a graceful shutdown may take before what is left is cancelled. [env: CARAVAN_SHUTDOWN_TIMEOUT] (default: 10s)"
    )
    var shutdownTimeout: String?

    @Option(
        help:
            "How deep runs may start runs (workflow and agent steps and tools). [env: CARAVAN_MAX_RUN_DEPTH] (default: 16)"
    )
    var maxRunDepth: Int?

    @Option(help: "How long finished runs are kept, e.g. 30d. [env: CARAVAN_RUN_RETENTION] (default: 30d)")
    var runRetention: String?

    @Option(help: "Most runs this node executes at once. [env: CARAVAN_MAX_ACTIVE_RUNS] (default: 4096)")
    var maxActiveRuns: Int?

    @Option(
        help:
            "Most runs one organization may have executing at once. [env: CARAVAN_ORG_MAX_ACTIVE_RUNS] (default: 10000)"
    )
    var orgMaxActiveRuns: Int?

    @Option(
        help: """
            This node's name in run leases. Give each node a stable one so that after a crash it takes back its own \
            runs at once instead of waiting for their leases to lapse. [env: CARAVAN_NODE_ID] (default: random)
            """
    )
    var nodeID: String?

    @Option(
        help: "How long a node holds a run without renewing, e.g. 30s. [env: CARAVAN_LEASE_DURATION] (default: 30s)"
    )
    var leaseDuration: String?

    @Option(
        help: """
            Master key sealing secrets: 32 bytes in base64 (openssl rand -base64 32). Default: generated into \
            <data>/master.key on first start. [env: CARAVAN_MASTER_KEY]
            """
    )
    var masterKey: String?

    @Option(
        help: """
            Earlier master keys (comma-separated base64) to re-seal secrets from, after a key rotation. \
            [env: CARAVAN_PREVIOUS_MASTER_KEYS]
            """
    )
    var previousMasterKeys: String?

    @Flag(help: "Let anyone sign up, not only the first user and the invited. [env: CARAVAN_OPEN_SIGNUP]")
    var openSignup = false

    @Option(
        help: """
            Requests per minute per API key or user (organizations may set their own); 0: no limit. \
            [env: CARAVAN_RATE_LIMIT] (default: 6000)
            """
    )
    var rateLimit: Int?

    @Option(
        help: """
            Sign-in attempts per minute per client address; 0: no limit. [env: CARAVAN_AUTH_ATTEMPTS_PER_MINUTE] \
            (default: 30)
            """
    )
    var authAttemptsPerMinute: Int?

    @Option(help: "bcrypt cost of password hashes, 4...16. [env: CARAVAN_PASSWORD_HASH_COST] (default: 11)")
    var passwordHashCost: Int?

    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        let reader = try await options.reader()
        var configuration = ServerConfiguration()
        try options.apply(to: &configuration, from: reader)
        configuration.host = host ?? reader.string(forKey: "host") ?? configuration.host
        configuration.port = port ?? reader.int(forKey: "port") ?? configuration.port
        configuration.maxBodyBytes = maxBodyBytes ?? reader.int(forKey: "max_body_bytes") ?? configuration.maxBodyBytes
        configuration.databasePoolSize =
            databasePoolSize ?? reader.int(forKey: "database_pool_size") ?? configuration.databasePoolSize
        if let timeout = try parseDuration(
            requestReadTimeout ?? reader.string(forKey: "request_read_timeout"),
            flag: "--request-read-timeout"
        ) {
            configuration.requestReadTimeout = timeout
        }
        if let timeout = try parseDuration(idleTimeout ?? reader.string(forKey: "idle_timeout"), flag: "--idle-timeout")
        {
            configuration.idleTimeout = timeout
        }
        configuration.egressAllow = egressAllow ?? reader.string(forKey: "egress_allow") ?? ""
        configuration.mcpCommandAllow = mcpCommandAllow ?? reader.string(forKey: "mcp_command_allow") ?? ""
        configuration.engine.maxPayloadBytes =
            maxPayloadBytes ?? reader.int(forKey: "max_payload_bytes") ?? configuration.engine.maxPayloadBytes
        configuration.engine.maxRunDepth =
            maxRunDepth ?? reader.int(forKey: "max_run_depth") ?? configuration.engine.maxRunDepth
        configuration.engine.maxActiveRuns =
            maxActiveRuns ?? reader.int(forKey: "max_active_runs") ?? configuration.engine.maxActiveRuns
        configuration.engine.maxActiveRunsPerOrganization =
            orgMaxActiveRuns ?? reader.int(forKey: "org_max_active_runs")
            ?? configuration.engine.maxActiveRunsPerOrganization
        if let node = nodeID ?? reader.string(forKey: "node_id"), !node.isEmpty { configuration.engine.nodeID = node }
        if let lease = try parseDuration(
            leaseDuration ?? reader.string(forKey: "lease_duration"),
            flag: "--lease-duration"
        ) {
            guard lease.milliseconds >= 1_000 else { throw ValidationError("--lease-duration must be at least 1s.") }
            configuration.engine.leaseDuration = lease
            configuration.engine.leaseRenewInterval = .init(milliseconds: lease.milliseconds / 3)
        }
        if let timeout = try parseDuration(
            shutdownTimeout ?? reader.string(forKey: "shutdown_timeout"),
            flag: "--shutdown-timeout"
        ) {
            configuration.shutdownTimeout = timeout
        }
        if let ttl = try parseDuration(
            gatewayCacheTTL ?? reader.string(forKey: "gateway_cache_ttl"),
            flag: "--gateway-cache-ttl"
        ) {
            configuration.gatewayCacheTTL = ttl
        }
        let fee =
            catalogFeeBasisPoints ?? reader.int(forKey: "catalog_fee_basis_points")
            ?? configuration.catalogFeeBasisPoints
        guard (0...10_000).contains(fee) else {
            throw ValidationError("--catalog-fee-basis-points must be from 0 to 10000.")
        }
        configuration.catalogFeeBasisPoints = fee
        if let retention = try parseDuration(
            runRetention ?? reader.string(forKey: "run_retention"),
            flag: "--run-retention"
        ) {
            configuration.engine.retention = retention
        }
        configuration.masterKey = masterKey ?? reader.string(forKey: "master_key", isSecret: true)
        if let previous = previousMasterKeys ?? reader.string(forKey: "previous_master_keys", isSecret: true) {
            configuration.previousMasterKeys = previous.split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            }
        }
        configuration.openSignup = openSignup || (reader.bool(forKey: "open_signup") ?? false)
        configuration.rateLimitPerMinute =
            rateLimit ?? reader.int(forKey: "rate_limit") ?? configuration.rateLimitPerMinute
        configuration.authAttemptsPerMinute =
            authAttemptsPerMinute ?? reader.int(forKey: "auth_attempts_per_minute")
            ?? configuration.authAttemptsPerMinute
        let cost = passwordHashCost ?? reader.int(forKey: "password_hash_cost") ?? Int(configuration.passwordHashCost)
        guard (4...16).contains(cost) else { throw ValidationError("--password-hash-cost must be 4...16.") }
        configuration.passwordHashCost = UInt8(cost)
        guard configuration.rateLimitPerMinute >= 0, configuration.authAttemptsPerMinute >= 0 else {
            throw ValidationError("--rate-limit and --auth-attempts-per-minute must be 0 or more.")
        }
        guard configuration.engine.maxPayloadBytes > 0, configuration.engine.maxActiveRuns > 0,
            configuration.engine.maxActiveRunsPerOrganization > 0
        else {
            throw ValidationError("--max-payload-bytes, --max-active-runs and --org-max-active-runs must be positive.")
        }
        guard (0...65535).contains(configuration.port) else { throw ValidationError("--port must be 0...65535.") }
        guard configuration.maxBodyBytes > 0 else { throw ValidationError("--max-body-bytes must be positive.") }

        guard configuration.engine.maxRunDepth >= 1 else {
            throw ValidationError("--max-run-depth must be at least 1.")
        }
        // Whatever Caravan writes (database, keys, exports) is for its own user only.
        umask(0o077)
        let logger = try options.bootstrapLogging(level: configuration.logLevel, reader: reader)
        do {
            let (application, _) = try await buildApplication(configuration, logger: logger)
            // On SIGTERM or SIGINT: stop taking requests, end event streams, finish requests in flight, hand runs
            // back; whatever is still going after the shutdown timeout is cancelled (runs are durable: the next
            // node resumes them).
            let announcer = ShutdownAnnouncer(logger: logger, timeout: configuration.shutdownTimeout)
            var group = ServiceGroupConfiguration(
                services: [.init(service: application), .init(service: announcer)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
            group.maximumGracefulShutdownDuration = configuration.shutdownTimeout.duration
            group.maximumCancellationDuration = .seconds(5)
            do {
                try await ServiceGroup(configuration: group).run()
            } catch  where announcer.isShuttingDown {
                logger.warning(
                    "Shutdown reached its time limit; what was still running was cancelled",
                    metadata: ["error.message": "\(error)"]
                )
            }
            logger.info("Caravan stopped")
        } catch let error as StorageError {
            logger.critical("Caravan cannot start", metadata: ["error.message": "\(error.message)"])
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode.failure
        } catch let error as CaravanError {
            logger.critical("Caravan cannot start", metadata: ["error.message": "\(error.detail)"])
            FileHandle.standardError.write(Data("error: \(error.detail)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// Says when a graceful shutdown begins (it is the last service, so the first told) and what happens next.
final class ShutdownAnnouncer: Service, Sendable {
    let logger: Logger
    let timeout: CaravanDuration
    private let shuttingDown = Atomic<Bool>(false)

    init(logger: Logger, timeout: CaravanDuration) {
        self.logger = logger
        self.timeout = timeout
    }

    var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }

    func run() async throws {
        try? await gracefulShutdown()
        shuttingDown.store(true, ordering: .relaxed)
        logger.info(
            "Shutting down: no new requests; event streams end; requests in flight finish; runs are handed back",
            metadata: ["caravan.shutdown_timeout": "\(timeout.milliseconds) ms"]
        )
    }
}
