public import CaravanStorage
public import Logging
import ServiceLifecycle

/// Opens the configured database, runs its service (the PostgreSQL pool) for the duration of `body`, and closes
/// it: for commands that use the database without serving.
public func withDatabase<T: Sendable>(
    _ configuration: ServerConfiguration,
    logger: Logger,
    _ body: @Sendable (any Database) async throws -> T
) async throws -> T {
    let opened = try openDatabase(configuration, logger: logger)
    guard let service = opened.service else { return try await body(opened.database) }
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await service.run() }
        defer { group.cancelAll() }
        return try await body(opened.database)
    }
}
