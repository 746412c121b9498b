/// The SQL dialect of a database: statements are written once, with `$1`-style placeholders, and where the two
/// dialects differ a store asks for the dialect.
public enum SQLDialect: String, Sendable {
    case sqlite
    case postgres
}

/// Runs statements inside one transaction (or one connection).
///
/// Statements use `$1`, `$2`, … placeholders in both dialects; values are always bound, never spliced into text.
public protocol SQLExecutor: Sendable {
    /// The dialect of the database behind this executor.
    var dialect: SQLDialect { get }

    /// Runs a statement and returns the rows it produced (e.g. a `SELECT`, or an `INSERT … RETURNING`).
    /// - Throws: `StorageError`; a unique violation is `.conflict`.
    func query(_ sql: String, _ binds: [SQLValue]) async throws(StorageError) -> [SQLRow]

    /// Runs a statement whose rows are not needed.
    /// - Throws: `StorageError`; a unique violation is `.conflict`.
    func execute(_ sql: String, _ binds: [SQLValue]) async throws(StorageError)
}

extension SQLExecutor {
    /// Runs a statement and returns its first row, if any.
    public func queryFirst(_ sql: String, _ binds: [SQLValue]) async throws(StorageError) -> SQLRow? {
        try await query(sql, binds).first
    }
}

/// The storage contract: a transactional SQL database. Caravan has two implementations, `SQLiteDatabase`
/// (embedded, the default) and `PostgresDatabase` (several nodes), and one conformance suite that runs against both.
public protocol Database: Sendable {
    /// The dialect of this database.
    var dialect: SQLDialect { get }

    /// Runs `body` in one transaction: committed when `body` returns, rolled back when it throws.
    ///
    /// On SQLite, transactions are serialized (one writer at a time, in arrival order); on PostgreSQL they run
    /// concurrently at read-committed isolation.
    /// - Returns: what `body` returned, after the commit is durable.
    func withTransaction<T: Sendable>(
        _ body: @Sendable (any SQLExecutor) async throws -> T
    ) async throws -> T

    /// Runs `body` with a read-only view; it may run concurrently with writers and other readers.
    func read<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T

    /// Applies the migrations not yet applied, exactly once even when several processes start together.
    /// - Returns: the versions that this call applied.
    func migrate(_ migrations: [Migration]) async throws(StorageError) -> [Int]

    /// Checks that the database answers.
    func ping() async throws(StorageError)

    /// Follows the notifications that the nodes sharing this database send on `channel` (see
    /// `SQLExecutor.notify`), until the task is cancelled. Calls `listening(true)` each time it starts listening
    /// (again) and `listening(false)` when it stops: notifications sent in between are lost, so whatever depends on
    /// them must not trust what it learned before. `received` gets each payload once its transaction committed,
    /// this node's own included. SQLite has one node: it reports listening and waits.
    func listen(
        channel: String,
        listening: @escaping @Sendable (Bool) -> Void,
        received: @escaping @Sendable (String) -> Void
    ) async
}

extension Database {
    public func listen(
        channel: String,
        listening: @escaping @Sendable (Bool) -> Void,
        received: @escaping @Sendable (String) -> Void
    ) async {
        listening(true)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
        listening(false)
    }
}

extension SQLExecutor {
    /// Sends `payload` on `channel` to every node listening, when (and only if) this transaction commits
    /// (PostgreSQL's `pg_notify`); nothing on SQLite, whose one node learns of its own writes directly.
    public func notify(channel: String, payload: String) async throws(StorageError) {
        guard dialect == .postgres else { return }
        try await execute("SELECT pg_notify($1, $2)", [.text(channel), .text(payload)])
    }
}
