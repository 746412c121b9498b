public import CaravanCore
import CaravanEngine
public import CaravanServer
import CaravanStorage
import Foundation
public import HTTPTypes
import Hummingbird
public import HummingbirdTesting
import Logging
public import NIOCore

/// Builds the real application on a fresh database of `backend` and runs `body` against it, in-process
/// (`.router`) or over a real socket on loopback (`.live`).
/// - Parameters:
///   - backend: SQLite in a temporary directory, or a fresh PostgreSQL database.
///   - mode: `.router` (no socket) or `.live` (a real server on a free loopback port).
///   - logOutput: where the application's JSON log lines go; pass `.memory()` to assert on them.
///   - configure: changes to the test configuration.
///   - clock: the application's wall clock (a `ManualTime`'s, to set the time).
///   - signUp: whether to sign up the first user and hand `body` a client that sends their owner API key (an
///     `AuthenticatedClient`); otherwise `body` gets a client without credentials on an empty database.
///   - body: the test, given a client and the application's parts.
public func withTestApplication<T: Sendable>(
    _ backend: TestBackend,
    mode: TestingSetup = .router,
    logOutput: JSONLogOutput? = nil,
    signUp: Bool = true,
    configure: @Sendable (inout ServerConfiguration) -> Void = { _ in },
    clock: WallClock = .system,
    _ body: @escaping @Sendable (any TestClientProtocol, CaravanApplication) async throws -> T
) async throws -> T {
    let run: @Sendable (ServerConfiguration) async throws -> T = { configuration in
        var logger = Logger(label: "caravan") { label in
            if let logOutput { return JSONLogHandler(label: label, level: .trace, output: logOutput) }
            return SwiftLogNoOpLogHandler()
        }
        logger.logLevel = logOutput == nil ? .critical : .debug
        let (application, parts) = try await buildApplication(configuration, clock: clock, logger: logger)
        return try await application.test(mode) { client in
            try await body(signUp ? try await AuthenticatedClient.bootstrap(client) : client, parts)
        }
    }
    switch backend {
    case .sqlite:
        return try await withTemporaryDirectory { directory in
            var configuration = ServerConfiguration()
            configuration.port = 0
            configuration.dataDirectory = directory
            configuration.applyTestDefaults()
            configure(&configuration)
            return try await run(configuration)
        }
    case .postgres:
        return try await PostgresTestServer.withFreshDatabase { url in
            var configuration = ServerConfiguration()
            configuration.port = 0
            configuration.databaseURL = url
            configuration.databasePoolSize = 8
            configuration.masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            configuration.applyTestDefaults()
            configure(&configuration)
            return try await run(configuration)
        }
    }
}

/// Builds two applications (two nodes) on one fresh PostgreSQL database, as two `caravan serve` processes sharing
/// it would be, and runs `body` with a client of each: the first signed up (its owner's API key), the second
/// without credentials.
public func withTwoPostgresNodes<T: Sendable>(
    configure: @Sendable (inout ServerConfiguration) -> Void = { _ in },
    _ body: @escaping @Sendable (AuthenticatedClient, any TestClientProtocol, [CaravanApplication]) async throws -> T
) async throws -> T {
    try await PostgresTestServer.withFreshDatabase { url in
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.databaseURL = url
        configuration.databasePoolSize = 8
        configuration.masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        configuration.applyTestDefaults()
        configure(&configuration)
        var second = configuration
        second.engine.nodeID = Identifier.make("node")
        var logger = Logger(label: "caravan") { _ in SwiftLogNoOpLogHandler() }
        logger.logLevel = .critical
        let (firstApplication, firstParts) = try await buildApplication(configuration, logger: logger)
        let (secondApplication, secondParts) = try await buildApplication(second, logger: logger)
        return try await firstApplication.test(.router) { firstClient in
            let owner = try await AuthenticatedClient.bootstrap(firstClient)
            return try await secondApplication.test(.router) { secondClient in
                try await body(owner, secondClient, [firstParts, secondParts])
            }
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
        try await send(method, uri, bytes: body.map { Array($0.utf8) }, contentType: contentType, headers: headers)
    }

    /// Sends a request with a body of bytes and returns the status and the parsed JSON answer.
    @discardableResult
    public func send(
        _ method: HTTPRequest.Method,
        _ uri: String,
        bytes body: [UInt8]?,
        contentType: String,
        headers: HTTPFields = [:]
    ) async throws -> (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields) {
        var allHeaders = headers
        if body != nil { allHeaders[.contentType] = contentType }
        let response = try await execute(
            uri: uri,
            method: method,
            headers: allHeaders,
            body: body.map { ByteBuffer(bytes: $0) }
        )
        let bytes = Array(response.body.readableBytesView)
        let parsed =
            bytes.isEmpty
            ? JSONValue.null
            : ((try? JSONValue(parsing: bytes, maxDepth: 512)) ?? .string(String(decoding: bytes, as: UTF8.self)))
        return (response.status, parsed, response.headers)
    }
}

/// A test client that sends an API key with every request that carries no `Authorization` of its own.
public struct AuthenticatedClient: TestClientProtocol {
    /// The client without credentials.
    public let anonymous: any TestClientProtocol
    /// The owner's API key of the test organization.
    public let apiKey: String
    /// The test organization.
    public let orgID: String
    /// The first user's session access token.
    public let accessToken: String

    public var port: Int? { anonymous.port }

    public func executeRequest(
        uri: String,
        method: HTTPRequest.Method,
        headers: HTTPFields,
        body: ByteBuffer?
    ) async throws -> TestResponse {
        var headers = headers
        if headers[.authorization] == nil { headers[.authorization] = "Bearer \(apiKey)" }
        return try await anonymous.executeRequest(uri: uri, method: method, headers: headers, body: body)
    }

    /// The password of the test organization's first user (`owner@example.com`).
    public static let ownerPassword = ownerAccountPassword

    /// Signs up the first user (who owns the default organization) through the API and creates an owner API key.
    public static func bootstrap(_ client: any TestClientProtocol) async throws -> AuthenticatedClient {
        let signup = try await client.send(
            .post,
            "/v1/auth/signup",
            json: #"{"email": "owner@example.com", "password": "\#(ownerPassword)", "organization": "Acme"}"#
        )
        guard signup.status == .created, let token = signup.json["access_token"]?.stringValue,
            let orgID = signup.json["organization"]?["id"]?.stringValue
        else { throw TestSetupError.failed("signup answered \(signup.status): \(signup.json)") }
        let key = try await client.send(
            .post,
            "/v1/api-keys",
            json: #"{"name": "tests", "role": "owner"}"#,
            headers: [.authorization: "Bearer \(token)"]
        )
        guard key.status == .created, let apiKey = key.json["key"]?.stringValue else {
            throw TestSetupError.failed("creating an API key answered \(key.status): \(key.json)")
        }
        return AuthenticatedClient(anonymous: client, apiKey: apiKey, orgID: orgID, accessToken: token)
    }
}

extension TestClientProtocol {
    /// The `Authorization` header of an `AuthenticatedClient`, for requests sent with `fetch`.
    public var authorization: [(String, String)] {
        (self as? AuthenticatedClient).map { [("Authorization", "Bearer \($0.apiKey)")] } ?? []
    }
}

extension ServerConfiguration {
    /// Cheap password hashing and no sign-in throttle, except where a test sets them.
    mutating func applyTestDefaults() {
        passwordHashCost = 4
        authAttemptsPerMinute = 0
    }
}
