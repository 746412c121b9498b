import CaravanCore
public import CaravanStorage
import Foundation
import GRDB
import GRDBSQLite
public import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The embedded implementation of the storage contract: one SQLite file in WAL mode with full durability.
///
/// Writes go through one connection, one transaction at a time in arrival order (so SQLite never reports
/// "database is locked" to a caller); reads use a pool of read-only connections that run beside the writer.
/// A lock file keeps a second process away from the same data directory.
public final class SQLiteDatabase: CaravanStorage.Database, Sendable {
    public var dialect: SQLDialect { .sqlite }

    private let pool: DatabasePool
    private let checkpointer: WALCheckpointer
    private let writeLock = AsyncSerialLock()
    private let directoryLock: DirectoryLock
    private let logger: Logger

    /// Opens (creating when needed) the database in `directory`.
    /// - Parameters:
    ///   - directory: the data directory; created with mode 0700 when missing.
    ///   - logger: where the database logs.
    /// - Throws: `StorageError` `.locked` when another process holds the directory.
    public init(directory: String, logger: Logger) throws(StorageError) {
        do {
            try FileManager.default.createDirectory(
                atPath: directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw StorageError(.unavailable, "Cannot create the data directory \(directory): \(error)")
        }
        let directoryLock = try DirectoryLock(directory: directory)
        let path = directory + "/caravan.sqlite"
        // Only Caravan's user may read its data: the directory 0700, every file 0600. SQLite gives the -wal and -shm
        // files the database file's mode, so the database file is made 0600 before SQLite first opens it.
        Self.restrictModes(directory: directory, path: path)
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true  // our transactions span several async writer accesses
        configuration.busyMode = .timeout(30)
        configuration.maximumReaderCount = 4
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Checkpoints run beside the writer (WALCheckpointer); the writer's own is a backstop.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(WALCheckpointer.writerBackstopPages)")
        }
        do {
            self.pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw StorageError(.unavailable, "Cannot open the SQLite database at \(path): \(error)", underlying: error)
        }
        do {
            self.checkpointer = try WALCheckpointer(path: path, logger: logger)
        } catch {
            throw StorageError(.unavailable, "Cannot open the SQLite database at \(path): \(error)", underlying: error)
        }
        self.directoryLock = directoryLock
        self.logger = logger
        Self.restrictModes(directory: directory, path: path)
    }

    /// Makes `directory` 0700 and the database's files in it 0600, creating the database file 0600 when missing.
    static func restrictModes(directory: String, path: String) {
        _ = chmod(directory, 0o700)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if descriptor >= 0 { close(descriptor) }
        for file in [path, path + "-wal", path + "-shm", path + "-journal"]
        where FileManager.default.fileExists(atPath: file) {
            _ = chmod(file, 0o600)
        }
    }

    public func withTransaction<T: Sendable>(
        _ body: @Sendable (any SQLExecutor) async throws -> T
    ) async throws -> T {
        try await writeLock.withLock {
            let executor = SQLiteExecutor(access: .write(pool), transaction: TransactionState())
            do {
                let result = try await body(executor)
                if executor.transaction?.begun.withLock({ $0 }) == true {
                    try await run(sql: "COMMIT")
                    checkpointer.committed()
                }
                return result
            } catch {
                rollback()
                throw error
            }
        }
    }

    public func read<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await body(SQLiteExecutor(access: .read(pool)))
    }

    public func migrate(_ migrations: [Migration]) async throws(StorageError) -> [Int] {
        do {
            return try await withTransaction { executor in
                try await Migration.apply(migrations, using: executor)
            }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(.migration, "Migration failed: \(error)", underlying: error)
        }
    }

    public func ping() async throws(StorageError) {
        _ = try await SQLiteExecutor(access: .read(pool)).query("SELECT 1", [])
    }

    private func run(sql: String) async throws(StorageError) {
        do {
            try await pool.writeWithoutTransaction { db in try db.execute(sql: sql) }
        } catch {
            throw SQLiteExecutor.map(error)
        }
    }

    /// Rolls back synchronously: this must happen even when the task was cancelled.
    private func rollback() {
        do {
            try pool.writeWithoutTransaction { db in
                if db.isInsideTransaction { try db.execute(sql: "ROLLBACK") }
            }
        } catch {
            logger.error("SQLite rollback failed", metadata: ["error.message": "\(error)"])
        }
    }
}

/// Runs statements on the writer connection (inside the open transaction) or on a reader.
struct SQLiteExecutor: SQLExecutor {
    enum Access: Sendable {
        case write(DatabasePool)
        case read(DatabasePool)
    }

    let access: Access
    /// For the writer: whether `BEGIN IMMEDIATE` was sent; it goes with the first statement, in the same hop.
    var transaction: TransactionState? = nil
    var dialect: SQLDialect { .sqlite }

    func query(_ sql: String, _ binds: [SQLValue]) async throws(StorageError) -> [SQLRow] {
        let text = SQLiteExecutor.translate(sql)
        let transaction = self.transaction
        let fetch: (GRDB.Database) throws -> [SQLRow] = { db in
            if let transaction,
                transaction.begun.withLock({ begun in
                    defer { begun = true }
                    return !begun
                })
            {
                try db.execute(sql: "BEGIN IMMEDIATE")
            }
            let statement = try db.cachedStatement(sql: text)
            return try SQLiteExecutor.run(statement, binds, connection: db.sqliteConnection, sql: text)
        }
        // Statements run synchronously on the calling thread: libdispatch runs a `sync` block on the caller when
        // the connection's queue is idle, and the writer's queue is idle because `writeLock` admits one
        // transaction at a time. That saves two thread switches a statement; only COMMIT (the disk flush) hops.
        do {
            switch access {
            case .write(let pool): return try pool.writeWithoutTransaction(fetch)
            case .read(let pool): return try pool.read(fetch)
            }
        } catch {
            throw SQLiteExecutor.map(error)
        }
    }

    /// Binds `binds` to a prepared statement and steps it through SQLite's C interface, reading every row.
    /// GRDB prepares and caches the statement; binding and reading here skip its argument and row types, which
    /// cost more than the statement itself for the engine's small writes.
    static func run(
        _ statement: Statement,
        _ binds: [SQLValue],
        connection: SQLiteConnection?,
        sql: String
    ) throws -> [SQLRow] {
        let handle = statement.sqliteStatement
        sqlite3_reset(handle)  // every parameter is bound below, so none keeps an earlier value
        defer { sqlite3_reset(handle) }
        func failure(_ code: Int32) -> DatabaseError {
            let message = connection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
            let extended = connection.map { sqlite3_extended_errcode($0) } ?? code
            return DatabaseError(resultCode: ResultCode(rawValue: extended), message: message, sql: sql)
        }
        guard Int(sqlite3_bind_parameter_count(handle)) == binds.count else {
            throw DatabaseError(
                resultCode: .SQLITE_MISUSE,
                message: "wrong number of statement arguments: \(binds.count)",
                sql: sql
            )
        }
        for (offset, value) in binds.enumerated() {
            let index = Int32(offset + 1)
            let code: Int32
            switch value {
            case .null: code = sqlite3_bind_null(handle, index)
            case .int(let value): code = sqlite3_bind_int64(handle, index, value)
            case .double(let value): code = sqlite3_bind_double(handle, index, value)
            case .text(var value):
                // An empty text is bound as such, never as the null pointer (which SQLite takes for NULL).
                code = value.withUTF8 { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { chars in
                        guard let start = chars.baseAddress else {
                            return sqlite3_bind_text(handle, index, "", 0, transient)
                        }
                        return sqlite3_bind_text(handle, index, start, Int32(chars.count), transient)
                    }
                }
            case .blob(let value):
                code = value.withUnsafeBytes { bytes in
                    guard let start = bytes.baseAddress else { return sqlite3_bind_zeroblob(handle, index, 0) }
                    return sqlite3_bind_blob(handle, index, start, Int32(bytes.count), transient)
                }
            }
            guard code == SQLITE_OK else { throw failure(code) }
        }
        var rows: [SQLRow] = []
        var columns: [String]?
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return rows }
            guard code == SQLITE_ROW else { throw failure(code) }
            let names = columns ?? statement.columnNames
            columns = names
            var values: [SQLValue] = []
            values.reserveCapacity(names.count)
            for column in 0..<Int32(names.count) {
                switch sqlite3_column_type(handle, column) {
                case SQLITE_INTEGER: values.append(.int(sqlite3_column_int64(handle, column)))
                case SQLITE_FLOAT: values.append(.double(sqlite3_column_double(handle, column)))
                case SQLITE_TEXT:
                    let count = Int(sqlite3_column_bytes(handle, column))
                    let start = sqlite3_column_text(handle, column)
                    values.append(
                        .text(String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self))
                    )
                case SQLITE_BLOB:
                    let count = Int(sqlite3_column_bytes(handle, column))
                    let start = sqlite3_column_blob(handle, column)?.assumingMemoryBound(to: UInt8.self)
                    values.append(.blob(Array(UnsafeBufferPointer(start: start, count: count))))
                default: values.append(.null)
                }
            }
            rows.append(SQLRow(columns: names, values: values))
        }
    }

    func execute(_ sql: String, _ binds: [SQLValue]) async throws(StorageError) {
        _ = try await query(sql, binds)
    }

    private static let translations = Mutex<[String: String]>([:])

    /// Turns `$1` placeholders into SQLite's numbered `?1` (cached: statements repeat).
    static func translate(_ sql: String) -> String {
        if let cached = translations.withLock({ $0[sql] }) { return cached }
        let translated = translateUncached(sql)
        translations.withLock { cache in
            if cache.count > 2_000 { cache.removeAll() }
            cache[sql] = translated
        }
        return translated
    }

    /// Turns `$1` placeholders into SQLite's numbered `?1`, leaving string literals and identifiers alone.
    static func translateUncached(_ sql: String) -> String {
        SQLPlaceholders.rewrite(sql) { "?\($0)" }
    }

    static func map(_ error: any Error) -> StorageError {
        if let error = error as? StorageError { return error }
        if let error = error as? DatabaseError {
            switch error.extendedResultCode {
            case .SQLITE_CONSTRAINT_UNIQUE, .SQLITE_CONSTRAINT_PRIMARYKEY:
                return StorageError(.conflict, error.message ?? "unique constraint violated", underlying: error)
            default:
                return StorageError(.other, "\(error)", underlying: error)
            }
        }
        return StorageError(.other, "\(error)", underlying: error)
    }
}

/// SQLite's `SQLITE_TRANSIENT`: it copies a bound value before the call returns.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// Whether a write transaction has begun on the writer connection.
final class TransactionState: Sendable {
    let begun = Mutex(false)
}
