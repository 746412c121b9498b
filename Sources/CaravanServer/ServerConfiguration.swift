import CaravanCore
import CaravanEngine
import Logging

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
    /// The engine's settings (node id, limits, leases, retention).
    public var engine = EngineConfiguration()

    public init() {}
}
