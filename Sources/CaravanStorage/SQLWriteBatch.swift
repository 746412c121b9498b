/// Writes whose rows are not needed, gathered during a transaction and sent together at its end: on PostgreSQL as
/// one statement (each write a data-modifying `WITH` query, with its placeholders renumbered), so that a commit
/// batch's inserts cost one round trip instead of one each; on SQLite one after the other, in order.
///
/// The writes of one batch run against the same snapshot and must be independent: none may touch a row that
/// another writes or read what another writes (an insert into a table and an insert into another that
/// references rows written before the batch are fine; two updates of one row are not).
public struct SQLWriteBatch: Sendable {
    private var statements: [(sql: String, binds: [SQLValue])] = []

    public init() {}

    /// Whether nothing was added.
    public var isEmpty: Bool { statements.isEmpty }

    /// Adds an `INSERT`, `UPDATE` or `DELETE` without `RETURNING` or `WITH`.
    public mutating func add(_ sql: String, _ binds: [SQLValue]) {
        statements.append((sql, binds))
    }

    /// Runs every write added, in as few statements as the dialect allows, and empties the batch.
    public mutating func execute(in executor: any SQLExecutor) async throws(StorageError) {
        defer { statements.removeAll() }
        guard executor.dialect == .postgres, statements.count > 1 else {
            for statement in statements { try await executor.execute(statement.sql, statement.binds) }
            return
        }
        for (sql, binds) in Self.combined(statements) { try await executor.execute(sql, binds) }
    }

    /// PostgreSQL's bound on a statement's parameters.
    static var maxBinds: Int { 65_535 }

    /// The statements joined into as few as fit under `maxBinds`: all but the last of a group as `WITH` queries.
    static func combined(_ statements: [(sql: String, binds: [SQLValue])]) -> [(sql: String, binds: [SQLValue])] {
        var groups: [[(sql: String, binds: [SQLValue])]] = [[]]
        var count = 0
        for statement in statements {
            if count + statement.binds.count > maxBinds, !groups[groups.count - 1].isEmpty {
                groups.append([])
                count = 0
            }
            groups[groups.count - 1].append(statement)
            count += statement.binds.count
        }
        return groups.map { group in
            guard group.count > 1 else { return group[0] }
            var sql = "WITH "
            var binds: [SQLValue] = []
            for (index, statement) in group.enumerated() {
                let text = renumbered(statement.sql, by: binds.count)
                binds += statement.binds
                if index == group.count - 1 {
                    sql += " " + text
                } else {
                    sql += (index == 0 ? "" : ", ") + "w\(index) AS (" + text + ")"
                }
            }
            return (sql, binds)
        }
    }

    /// `sql` with every placeholder `$n` made `$(n + offset)`.
    public static func renumbered(_ sql: String, by offset: Int) -> String {
        guard offset > 0 else { return sql }
        return SQLPlaceholders.rewrite(sql) { "$\($0 + offset)" }
    }
}
