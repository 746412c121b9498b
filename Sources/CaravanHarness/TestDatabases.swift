import CaravanCore
import CaravanPostgres
import CaravanSQLite
public import CaravanStorage
import Foundation
public import Logging

/// The storage backends a test can run against.
public enum TestBackend: String, Sendable, CustomStringConvertible {
    case sqlite
    case postgres

    public var description: String { rawValue }

    /// The backends this run can test: SQLite always, PostgreSQL when a test server is configured
    /// (`CARAVAN_TEST_POSTGRES_URL`, which `scripts/test` sets). A check that must hold on every backend is one test
    /// with `@Test(arguments: TestBackend.available)`: one test case per backend.
    public static var available: [TestBackend] { PostgresTestServer.isConfigured ? [.sqlite, .postgres] : [.sqlite] }
}

/// The throwaway PostgreSQL server that `scripts/test` starts: its URL is in `CARAVAN_TEST_POSTGRES_URL`.
/// Every test gets a database of its own, created from that URL and dropped afterwards.
public enum PostgresTestServer {
    /// The admin URL, when a test server is configured.
    public static var url: String? {
        let value = ProcessInfo.processInfo.environment["CARAVAN_TEST_POSTGRES_URL"]
        return value?.isEmpty == false ? value : nil
    }

    /// Whether PostgreSQL tests can run.
    public static var isConfigured: Bool { url != nil }

    /// Creates a fresh, empty database, passes its URL to `body`, then drops it.
    public static func withFreshDatabase<T: Sendable>(_ body: @Sendable (String) async throws -> T) async throws -> T {
        guard let adminURL = url, var components = URLComponents(string: adminURL) else {
            throw StorageError(.unavailable, "CARAVAN_TEST_POSTGRES_URL is not set; run the tests with scripts/test")
        }
        let name = "caravan_test_" + Identifier.make("db").dropFirst(3).lowercased()
        let admin = try PostgresDatabase(url: adminURL, maximumConnections: 2, logger: TestLogging.quiet)
        try await admin.withRunningPool { admin in
            try await admin.read { try await $0.execute("CREATE DATABASE \(name)", []) }
        }
        components.path = "/" + name
        let testURL = components.string ?? adminURL
        do {
            let result = try await body(testURL)
            try await drop(name, adminURL: adminURL)
            return result
        } catch {
            try? await drop(name, adminURL: adminURL)
            throw error
        }
    }

    private static func drop(_ name: String, adminURL: String) async throws {
        let admin = try PostgresDatabase(url: adminURL, maximumConnections: 1, logger: TestLogging.quiet)
        try await admin.withRunningPool { admin in
            try await admin.read { try await $0.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)", []) }
        }
    }
}

/// Loggers for tests.
public enum TestLogging {
    /// A logger that writes nothing.
    public static var quiet: Logger {
        var logger = Logger(label: "caravan.test", factory: { _ in SwiftLogNoOpLogHandler() })
        logger.logLevel = .critical
        return logger
    }
}

/// A temporary directory, removed after `body`.
public func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = NSTemporaryDirectory() + "caravan-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Opens a fresh database of `backend` with `migrations` applied, passes it to `body`, and removes it afterwards.
public func withTestDatabase<T: Sendable>(
    _ backend: TestBackend,
    migrations: [Migration],
    _ body: @Sendable (any Database) async throws -> T
) async throws -> T {
    switch backend {
    case .sqlite:
        return try await withTemporaryDirectory { directory in
            let database = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
            _ = try await database.migrate(migrations)
            return try await body(database)
        }
    case .postgres:
        return try await PostgresTestServer.withFreshDatabase { url in
            let database = try PostgresDatabase(url: url, maximumConnections: 10, logger: TestLogging.quiet)
            return try await database.withRunningPool { database in
                _ = try await database.migrate(migrations)
                return try await body(database)
            }
        }
    }
}
