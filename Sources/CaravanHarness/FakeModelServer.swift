public import CaravanCore
public import Hummingbird

/// How a fake model server speaks: the path it serves and how it answers one request from its script.
public protocol FakeModelProtocol: Sendable {
    static var path: String { get }
    static func handle(_ request: Request, script: FakeModelScript, requiredAPIKey: String?) async throws -> Response
    /// Adds the wire's routes besides `path` (none by default).
    static func addOtherRoutes(to router: Router<BasicRequestContext>, script: FakeModelScript, requiredAPIKey: String?)
}

extension FakeModelProtocol {
    public static func addOtherRoutes(
        to router: Router<BasicRequestContext>,
        script: FakeModelScript,
        requiredAPIKey: String?
    ) {}
}

/// A fake OpenAI Chat Completions server (see `OpenAIFakeWire`).
public typealias FakeOpenAIServer = FakeModelServer<OpenAIFakeWire>
/// A fake Anthropic Messages server (see `AnthropicFakeWire`).
public typealias FakeAnthropicServer = FakeModelServer<AnthropicFakeWire>

/// A fake model provider on a free loopback port, answering from a `FakeModelScript` in the wire format `Wire`.
///
/// ```swift
/// try await FakeOpenAIServer.with { server in
///     server.enqueue(.toolCall("search", arguments: #"{"q":"x"}"#), .text("done"))
///     // point an endpoint at server.baseURL …
/// }
/// ```
public final class FakeModelServer<Wire: FakeModelProtocol>: Sendable {
    /// The replies and the requests received.
    public let script: FakeModelScript
    public let port: Int
    private let host: FakeServerHost

    /// `http://127.0.0.1:<port>/v1`: the base URL of an endpoint of the wire's kind.
    public var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    private init(script: FakeModelScript, host: FakeServerHost) {
        self.script = script
        self.host = host
        self.port = host.port
    }

    /// Starts a server; `stop()` it at the end of the test. With `requiredAPIKey` it refuses other keys (401).
    public static func start(requiredAPIKey: String? = nil) async throws -> FakeModelServer {
        let script = FakeModelScript()
        let router = Router()
        router.post(RouterPath(Wire.path)) { request, _ in
            try await Wire.handle(request, script: script, requiredAPIKey: requiredAPIKey)
        }
        Wire.addOtherRoutes(to: router, script: script, requiredAPIKey: requiredAPIKey)
        return FakeModelServer(script: script, host: try await FakeServerHost.start(router: router))
    }

    /// Stops the server; hanging replies end at once.
    public func stop() async {
        script.stop()
        await host.stop()
    }

    /// Starts a server, runs `body`, and stops the server.
    public static func with<T: Sendable>(
        requiredAPIKey: String? = nil,
        _ body: (FakeModelServer) async throws -> T
    ) async throws -> T {
        let server = try await start(requiredAPIKey: requiredAPIKey)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// Queues replies (see `FakeModelScript.enqueue`).
    public func enqueue(_ replies: FakeModelReply...) { script.enqueue(contentsOf: replies) }
    /// Answers with `responder` when nothing is queued.
    public func respond(with responder: FakeModelResponder?) { script.respond(with: responder) }
    /// Every request received.
    public var requests: [FakeModelRequest] { script.requests }
    /// The last request body received.
    public var lastBody: JSONValue? { script.lastBody }
    /// How many requests arrived.
    public var callCount: Int { script.callCount }
}
