import CaravanCore
public import CaravanStorage
public import Logging
public import ServiceLifecycle

/// A column of sealed values, and how to name the context each was sealed with.
public struct SealedColumn: Sendable {
    public var table: String
    /// The columns that identify a row, in order.
    public var keyColumns: [String]
    public var column: String
    /// The sealing context of a row, from its key columns' values.
    public var context: @Sendable ([String]) -> String

    public init(table: String, keyColumns: [String], column: String, context: @escaping @Sendable ([String]) -> String)
    {
        self.table = table
        self.keyColumns = keyColumns
        self.column = column
        self.context = context
    }

    /// The secrets table.
    public static let secrets = SealedColumn(table: "secrets", keyColumns: ["org_id", "name"], column: "sealed") {
        SecretStore.context(orgID: $0[0], name: $0[1])
    }
}

/// Re-seals, in the background after start, every value sealed under an earlier master key, in small
/// transactions; then waits for shutdown. Rotating the key is: start with the new key as the master key and the
/// old one among the previous keys; once the log says rotation finished, the old key may be dropped.
public struct KeyRotation: Service {
    let database: any Database
    let box: SecretBox
    let columns: [SealedColumn]
    let logger: Logger
    /// Called once the database schema exists; rotation starts after it.
    let ready: @Sendable () async -> Void

    public init(
        database: any Database,
        box: SecretBox,
        columns: [SealedColumn],
        logger: Logger,
        ready: @escaping @Sendable () async -> Void
    ) {
        self.database = database
        self.box = box
        self.columns = columns
        self.logger = logger
        self.ready = ready
    }

    public func run() async throws {
        await ready()
        if !box.keyring.previous.isEmpty {
            do {
                let count = try await resealAll()
                logger.info("Master key rotation finished", metadata: ["caravan.resealed": "\(count)"])
            } catch {
                logger.error(
                    "Master key rotation failed; it resumes at the next start",
                    metadata: ["error.message": "\(error)"]
                )
            }
        }
        try? await gracefulShutdown()
    }

    /// Re-seals every value not sealed under the current key.
    /// - Returns: how many values were re-sealed.
    public func resealAll(batchSize: Int = 100) async throws -> Int {
        var total = 0
        for column in columns {
            let keys = column.keyColumns.joined(separator: ", ")
            let prefix = "v1.\(box.keyring.currentID).%"
            while !Task.isCancelled {
                let count = try await database.withTransaction { executor in
                    let rows = try await executor.query(
                        "SELECT \(keys), \(column.column) FROM \(column.table) WHERE \(column.column) IS NOT NULL AND \(column.column) NOT LIKE $1 LIMIT $2",
                        [.text(prefix), .int(Int64(batchSize))]
                    )
                    for row in rows {
                        var values: [String] = []
                        for key in column.keyColumns { values.append(try row.string(key)) }
                        let context = column.context(values)
                        let plaintext = try box.open(try row.string(column.column), context: context)
                        let conditions = column.keyColumns.enumerated().map { "\($0.element) = $\($0.offset + 2)" }
                            .joined(separator: " AND ")
                        try await executor.execute(
                            "UPDATE \(column.table) SET \(column.column) = $1 WHERE \(conditions)",
                            [.text(box.seal(plaintext, context: context))] + values.map { .text($0) }
                        )
                    }
                    return rows.count
                }
                total += count
                if count < batchSize { break }
            }
        }
        return total
    }
}
