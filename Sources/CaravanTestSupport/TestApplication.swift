import CaravanCore
import CaravanServer
import HTTPTypes
import NIOCore
import CaravanStorage
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging

/// Builds the real application on a fresh database of `backend` and runs `body` against it, in-process
/// (`.router`) or over a real socket on loopback (`.live`).
/// - Parameters:
///   - backend: SQLite in a temporary directory, or a fresh PostgreSQL database.
///   - mode: `.router` (no socket) or `.live` (a real server on a free loopback port).
///   - logOutput: where the application's JSON log lines go; pass `.memory()` to assert on them.
///   - configure: changes to the test configuration.
///   - body: the test, given a client and the application's parts.
public func withTestApplication<T: Sendable>(
    _ backend: TestBackend,
    mode: TestingSetup = .router,
    logOutput: JSONLogOutput? = nil,
    configure: @Sendable (inout ServerConfiguration) -> Void = { _ in },
    _ body: @escaping @Sendable (any TestClientProtocol, CaravanApplication) async throws -> T
) async throws -> T {
    let run: @Sendable (ServerConfiguration) async throws -> T = { configuration in
        var logger = Logger(label: "caravan") { label in
            if let logOutput { return JSONLogHandler(label: label, level: .trace, output: logOutput) }
            return SwiftLogNoOpLogHandler()
        }
        logger.logLevel = logOutput == nil ? .critical : .debug
        let (application, parts) = try buildApplication(configuration, logger: logger)
        return try await application.test(mode) { client in
            try await body(client, parts)
        }
    }
    switch backend {
    case .sqlite:
        return try await withTemporaryDirectory { directory in
            var configuration = ServerConfiguration()
            configuration.port = 0
            configuration.dataDirectory = directory
            configure(&configuration)
            return try await run(configuration)
        }
    case .postgres:
        return try await PostgresTestServer.withFreshDatabase { url in
            var configuration = ServerConfiguration()
            configuration.port = 0
            configuration.databaseURL = url
            configuration.databasePoolSize = 8
            configure(&configuration)
            return try await run(configuration)
        }
    }
}

extension TestClientProtocol {
    /// Sends a request with a JSON (or other) body and returns the status and the parsed JSON answer.
    @discardableResult
    public func send(
        _ method: HTTPRequest.Method,
        _ uri: String,
        json body: String? = nil,
        contentType: String = "application/json",
        headers: HTTPFields = [:]
    ) async throws -> (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields) {
        var allHeaders = headers
        if body != nil { allHeaders[.contentType] = contentType }
        let response = try await execute(
            uri: uri, method: method, headers: allHeaders, body: body.map { ByteBuffer(string: $0) }
        )
        let bytes = Array(response.body.readableBytesView)
        let parsed = bytes.isEmpty ? JSONValue.null : ((try? JSONValue(parsing: bytes, maxDepth: 512)) ?? .string(String(decoding: bytes, as: UTF8.self)))
        return (response.status, parsed, response.headers)
    }
}
