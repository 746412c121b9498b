import CaravanCore
public import CaravanStorage
import Foundation
public import Logging
import NIOCore
public import PostgresNIO
public import ServiceLifecycle
import Synchronization

/// The PostgreSQL implementation of the storage contract, through a PostgresNIO connection pool.
///
/// Several `caravan serve` processes may share one database. It is a `Service`: its pool runs while `run()` runs,
/// so it belongs in the application's `ServiceGroup` ahead of everything that queries it.
public final class PostgresDatabase: Database, Service, Sendable {
    public var dialect: SQLDialect { .postgres }

    /// The pool; exposed for features that need a dedicated connection (e.g. `LISTEN`).
    public let client: PostgresClient
    private let logger: Logger

    /// Creates the pool for `url` (`postgres://user:password@host:port/database`); nothing connects until `run()`.
    /// - Parameters:
    ///   - url: the database URL; `?sslmode=disable|prefer|require` is honoured (default `prefer`).
    ///   - maximumConnections: the pool's size.
    ///   - logger: where the pool logs.
    /// - Throws: `StorageError` `.unavailable` when the URL is malformed.
    public init(url: String, maximumConnections: Int = 20, logger: Logger) throws(StorageError) {
        var configuration = try PostgresDatabase.configuration(from: url)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = .seconds(5)
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.logger = logger
    }

    /// Runs the pool until cancelled or shut down gracefully.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.client.run()
        }
    }

    /// Runs the pool for the duration of `body`; for commands and tests that live outside a `ServiceGroup`.
    public func withRunningPool<T: Sendable>(_ body: @Sendable (PostgresDatabase) async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            defer { group.cancelAll() }
            return try await body(self)
        }
    }

    public func withTransaction<T: Sendable>(
        _ body: @Sendable (any SQLExecutor) async throws -> T
    ) async throws -> T {
        let logger = self.logger
        do {
            return try await withOpenConnection { connection in
                let executor = PostgresExecutor(connection: connection, logger: logger)
                try await executor.execute("BEGIN", [])
                do {
                    let result = try await body(executor)
                    try await executor.execute("COMMIT", [])
                    return result
                } catch {
                    // ROLLBACK must be sent even when the task was cancelled.
                    try? await executor.execute("ROLLBACK", [])
                    throw error
                }
            }
        } catch let error as PSQLError {
            throw PostgresExecutor.map(error)
        }
    }

    public func read<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let logger = self.logger
        do {
            return try await withOpenConnection { connection in
                try await body(PostgresExecutor(connection: connection, logger: logger))
            }
        } catch let error as PSQLError {
            throw PostgresExecutor.map(error)
        }
    }

    public func migrate(_ migrations: [Migration]) async throws(StorageError) -> [Int] {
        do {
            let logger = self.logger
            return try await withOpenConnection { connection in
                let executor = PostgresExecutor(connection: connection, logger: logger)
                // A session-level advisory lock: of several nodes starting together, one migrates, the others
                // wait here and then find nothing left to do.
                try await executor.execute("SELECT pg_advisory_lock(\(PostgresDatabase.migrationLockKey))", [])
                do {
                    try await executor.execute("BEGIN", [])
                    let applied = try await Migration.apply(migrations, using: executor)
                    try await executor.execute("COMMIT", [])
                    try await executor.execute("SELECT pg_advisory_unlock(\(PostgresDatabase.migrationLockKey))", [])
                    return applied
                } catch {
                    try? await executor.execute("ROLLBACK", [])
                    try? await executor.execute("SELECT pg_advisory_unlock(\(PostgresDatabase.migrationLockKey))", [])
                    throw error
                }
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.unavailable, "PostgreSQL migration failed: \(error)", underlying: error)
        }
    }

    public func ping() async throws(StorageError) {
        // The answer must come within 2 s whatever happens below: a query whose answer does not come (a network
        // that drops packets) does not heed cancellation, so it is cancelled and left to end on its own, not awaited.
        let logger = self.logger
        let outcome = PingOutcome()
        let answered = WakeFlag()
        let query = Task {
            do {
                try await self.withOpenConnection {
                    try await PostgresExecutor(connection: $0, logger: logger).execute("SELECT 1", [])
                }
                outcome.set(nil)
            } catch {
                outcome.set(error)
            }
            answered.signal()
        }
        await answered.wait(timeout: .seconds(2))
        guard let failure = outcome.value else {
            query.cancel()
            throw StorageError(.unavailable, "PostgreSQL did not answer within 2 s")
        }
        switch failure {
        case nil: return
        case let error as StorageError: throw error
        case let error as PSQLError: throw PostgresExecutor.map(error)
        case let error?: throw StorageError(.unavailable, "PostgreSQL is unreachable: \(error)", underlying: error)
        }
    }

    /// Leases a connection for `body`, passing over connections that closed before the pool noticed.
    ///
    /// PostgresNIO can hand out a connection whose server process has just gone away (`pg_terminate_backend`, a
    /// restart, a failover). Its statements would fail (see `PostgresExecutor.query`); instead it is given back
    /// and another leased (meanwhile the pool learns of the close), a few times, so that the call can still
    /// succeed; then it fails as unavailable.
    /// Holds one pooled connection listening on `channel` for as long as the task runs; after a lost connection
    /// (a restarted server, a network fault) it reports `listening(false)`, waits (up to 2 s, growing) and
    /// listens again.
    public func listen(
        channel: String,
        listening: @escaping @Sendable (Bool) -> Void,
        received: @escaping @Sendable (String) -> Void
    ) async {
        var delay = 100
        while !Task.isCancelled {
            do {
                try await withOpenConnection { connection in
                    try await connection.listen(on: channel) { notifications in
                        listening(true)
                        delay = 100
                        for try await notification in notifications { received(notification.payload) }
                    }
                }
            } catch {
                if !Task.isCancelled {
                    logger.debug(
                        "Listening for notifications failed",
                        metadata: ["error.message": "\(error)", "caravan.channel": "\(channel)"]
                    )
                }
            }
            listening(false)
            try? await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 2, 2_000)
        }
    }

    func withOpenConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        for attempt in 1...4 {
            do {
                return try await client.withConnection { connection in
                    guard !connection.isClosed else { throw ClosedConnection() }
                    return try await body(connection)
                }
            } catch is ClosedConnection {
                if attempt < 4 { try await Task.sleep(for: .milliseconds(5 * attempt)) }
            }
        }
        throw StorageError(.unavailable, "PostgreSQL closed every connection the pool offered")
    }

    /// An arbitrary constant naming Caravan's migration lock among the database's advisory locks.
    static let migrationLockKey: Int64 = 0x4341_5241_5641_4e01

    /// Parses a `postgres://` URL into a client configuration.
    static func configuration(from url: String) throws(StorageError) -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
            components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty
        else {
            throw StorageError(
                .unavailable,
                "The database URL must look like postgres://user:password@host:port/database"
            )
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let sslMode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case "disable": tls = .disable
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default: tls = .prefer(.makeClientConfiguration())
        }
        return PostgresClient.Configuration(
            host: host,
            port: components.port ?? 5432,
            username: components.user?.removingPercentEncoding ?? "postgres",
            password: components.password?.removingPercentEncoding,
            database: database.isEmpty ? nil : database,
            tls: tls
        )
    }
}

/// Runs statements on one leased connection.
struct PostgresExecutor: SQLExecutor {
    let connection: PostgresConnection
    let logger: Logger
    var dialect: SQLDialect { .postgres }

    func query(_ sql: String, _ binds: [SQLValue]) async throws(StorageError) -> [SQLRow] {
        var bindings = PostgresBindings(capacity: binds.count)
        for value in binds {
            switch value {
            case .null: bindings.appendNull()
            case .int(let value): bindings.append(value)
            case .double(let value): bindings.append(value)
            case .text(let value): bindings.append(value)
            case .blob(let value): bindings.append(ByteBuffer(bytes: value))
            }
        }
        let query = PostgresQuery(unsafeSQL: sql, binds: bindings)
        let (connection, logger) = (self.connection, self.logger)
        do {
            // PostgresNIO drops a statement written to a connection that has closed, and its caller then waits
            // forever. So the statement is written from the connection's event loop, in the same turn that finds
            // the connection open: from then on a close fails it.
            let result = try await connection.eventLoop.flatSubmit { () -> EventLoopFuture<PostgresQueryResult> in
                guard !connection.isClosed else {
                    return connection.eventLoop.makeFailedFuture(
                        StorageError(.unavailable, "The connection to PostgreSQL was closed.")
                    )
                }
                return connection.query(query, logger: logger)
            }.get()
            var rows: [SQLRow] = []
            rows.reserveCapacity(result.rows.count)
            var columns: [String]?
            for row in result.rows {
                let names = columns ?? row.map(\.columnName)
                columns = names
                var values: [SQLValue] = []
                values.reserveCapacity(names.count)
                for cell in row { values.append(try PostgresExecutor.decode(cell)) }
                rows.append(SQLRow(columns: names, values: values))
            }
            return rows
        } catch let error as PSQLError {
            throw PostgresExecutor.map(error)
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.other, "\(error)", underlying: error)
        }
    }

    func execute(_ sql: String, _ binds: [SQLValue]) async throws(StorageError) {
        _ = try await query(sql, binds)
    }

    static func decode(_ cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int8, .int4, .int2: return .int(try cell.decode(Int64.self))
        case .float8, .float4: return .double(try cell.decode(Double.self))
        case .numeric: return .double(Double(try cell.decode(String.self)) ?? 0)
        case .bool: return .int(try cell.decode(Bool.self) ? 1 : 0)
        case .bytea:
            var buffer = try cell.decode(ByteBuffer.self)
            return .blob(buffer.readBytes(length: buffer.readableBytes) ?? [])
        case .void: return .null
        default: return .text(try cell.decode(String.self))
        }
    }

    static func map(_ error: PSQLError) -> StorageError {
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            let message = error.serverInfo?[.message] ?? "server error"
            if state == "23505" { return StorageError(.conflict, message, underlying: error) }
            // deadlock_detected, serialization_failure: the server rolled the transaction back.
            if state == "40P01" || state == "40001" { return StorageError(.rolledBack, message, underlying: error) }
            if state.hasPrefix("08") || state == "57P01" || state == "57P03" {
                return StorageError(.unavailable, message, underlying: error)
            }
            return StorageError(.other, "\(message) (SQLSTATE \(state))", underlying: error)
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .connectionClosed:
            return StorageError(.unavailable, "PostgreSQL connection failed", underlying: error)
        default:
            return StorageError(.other, "PostgreSQL error: \(error.code)", underlying: error)
        }
    }
}

/// A leased connection that had already closed.
private struct ClosedConnection: Error {}

/// What the readiness query came to: `nil` while it has not answered, `.some(nil)` for success, or its error.
private final class PingOutcome: Sendable {
    private let state = Mutex<(any Error)??>(nil)

    func set(_ failure: (any Error)?) { state.withLock { $0 = .some(failure) } }
    var value: (any Error)?? { state.withLock { $0 } }
}
