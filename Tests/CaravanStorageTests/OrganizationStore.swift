import CaravanCore
import CaravanStorage

/// Reads and writes the organizations of the storage tests' schema: a small store the conformance checks exercise.
struct OrganizationStore: Sendable {
    private let clock: WallClock

    init(clock: WallClock = .system) {
        self.clock = clock
    }

    /// Creates an organization.
    /// - Throws: `StorageError` `.conflict` when the name is taken.
    func create(name: String, in executor: any SQLExecutor) async throws(StorageError) -> Organization {
        let now = clock.nowMilliseconds()
        let organization = Organization(id: Identifier.make("org"), name: name, createdAt: now, updatedAt: now)
        try await executor.execute(
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4)",
            [.text(organization.id), .text(name), .int(now), .int(now)]
        )
        return organization
    }

    /// The organization with `id`, or `nil`.
    func get(id: String, in executor: any SQLExecutor) async throws(StorageError) -> Organization? {
        guard
            let row = try await executor.queryFirst(
                "SELECT id, name, created_at, updated_at FROM organizations WHERE id = $1",
                [.text(id)]
            )
        else { return nil }
        return try Self.decode(row)
    }

    /// Renames an organization.
    /// - Returns: whether an organization with `id` existed.
    /// - Throws: `StorageError` `.conflict` when the new name is taken.
    func rename(id: String, to name: String, in executor: any SQLExecutor) async throws(StorageError) -> Bool {
        let rows = try await executor.query(
            "UPDATE organizations SET name = $2, updated_at = $3 WHERE id = $1 RETURNING id",
            [.text(id), .text(name), .int(clock.nowMilliseconds())]
        )
        return !rows.isEmpty
    }

    /// Every organization, ordered by id.
    func list(in executor: any SQLExecutor) async throws(StorageError) -> [Organization] {
        let rows = try await executor.query(
            "SELECT id, name, created_at, updated_at FROM organizations ORDER BY id",
            []
        )
        var result: [Organization] = []
        for row in rows { result.append(try Self.decode(row)) }
        return result
    }

    private static func decode(_ row: SQLRow) throws(StorageError) -> Organization {
        Organization(
            id: try row.string("id"),
            name: try row.string("name"),
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
    }
}
