import ArgumentParser
import CaravanServer
import CaravanStorage
import Configuration
import Foundation
import Logging

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
        if let timeout = try parseDuration(idleTimeout ?? reader.string(forKey: "idle_timeout"), flag: "--idle-timeout") {
            configuration.idleTimeout = timeout
        }
        guard (0...65535).contains(configuration.port) else { throw ValidationError("--port must be 0...65535.") }
        guard configuration.maxBodyBytes > 0 else { throw ValidationError("--max-body-bytes must be positive.") }

        let logger = try options.bootstrapLogging(level: configuration.logLevel, reader: reader)
        do {
            let (application, _) = try buildApplication(configuration, logger: logger)
            try await application.runService()
            logger.info("Caravan stopped")
        } catch let error as StorageError {
            logger.critical("Caravan cannot start", metadata: ["error.message": "\(error.message)"])
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }
}
