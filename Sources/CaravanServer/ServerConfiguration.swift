public import CaravanCore
public import CaravanEngine
public import CaravanWebhooks
public import Logging

/// Everything `caravan serve` can be told, with the defaults of the public contract.
public struct ServerConfiguration: Sendable {
    /// The address to listen on.
    public var host: String = "127.0.0.1"
    /// The port to listen on; 0 picks a free one.
    public var port: Int = 8080
    /// The data directory for the embedded SQLite database and generated files.
    public var dataDirectory: String = "./caravan-data"
    /// A `postgres://` URL; when set, PostgreSQL is used instead of SQLite.
    public var databaseURL: String?
    /// The largest request body accepted, in bytes.
    public var maxBodyBytes: Int = 1 << 20
    /// How long a client may take to send one whole request (head and body) once it has begun.
    public var requestReadTimeout: CaravanDuration = .seconds(30)
    /// How long a connection may stay open without a request in progress.
    public var idleTimeout: CaravanDuration = .seconds(60)
    /// The size of the PostgreSQL connection pool.
    public var databasePoolSize: Int = 20
    /// The least important log level written.
    public var logLevel: Logger.Level = .info
    /// Internal destinations steps may call anyway: `host`, `host:port` or CIDR entries.
    public var egressAllow: String = ""
    /// The commands agents' MCP servers may run over stdio (see `MCPCommandPolicy(parsing:)`); none when empty.
    public var mcpCommandAllow: String = ""
    /// The master key (32 bytes, base64) that seals secrets; when unset, `<data>/master.key`, generated on first
    /// start. Every node of a cluster needs the same key.
    public var masterKey: String?
    /// Earlier master keys (base64), still opened; what they sealed is re-sealed under `masterKey` in the background.
    public var previousMasterKeys: [String] = []
    /// Whether anyone may sign up after the first user (else only with an invitation).
    public var openSignup = false
    /// Requests per minute per API key or user, unless the organization sets its own; 0 is no limit.
    public var rateLimitPerMinute = 6000
    /// How long the gateway answers the same `temperature: 0` chat completion again without calling a provider;
    /// zero (the default) caches nothing.
    public var gatewayCacheTTL: CaravanDuration = .seconds(0)
    /// The platform's fee on every catalog price, in hundredths of a percent.
    public var catalogFeeBasisPoints = 1_000
    /// Attempts per minute per client address on the endpoints that take passwords and codes; 0 is no limit.
    public var authAttemptsPerMinute = 30
    /// bcrypt's cost for password hashes (4...31).
    public var passwordHashCost: UInt8 = 11
    /// How long a session access token lives.
    public var accessTokenLifetime: CaravanDuration = .seconds(900)
    /// How long a graceful shutdown may take before what is left is cancelled.
    public var shutdownTimeout: CaravanDuration = .seconds(10)
    /// The engine's settings (node id, limits, leases, retention).
    public var engine = EngineConfiguration()
    /// How webhooks are delivered (retry schedule, attempt timeout).
    public var webhooks = WebhookSettings()

    public init() {}
}
