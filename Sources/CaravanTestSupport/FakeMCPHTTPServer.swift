import CaravanMCPFixtureTools
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MCP
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real MCP server over streamable HTTP on a free loopback port (`/mcp`), with the tools of the stdio fixture:
/// `add {a, b}`, `echo {text}`, `fail {}` (a tool error), `slow {ms}`. It runs the MCP SDK's server transports
/// behind a Hummingbird route:
/// - `.sessions`: `StatefulHTTPServerTransport`, one per session (`Mcp-Session-Id`); answers are event streams;
/// - `.stateless`: `StatelessHTTPServerTransport`, a fresh server per request; answers are JSON bodies.
///
/// It counts tool calls, sessions opened and deleted, and remembers the headers of the last request.
public final class FakeMCPHTTPServer: Sendable {
    public enum Mode: Sendable {
        case sessions
        case stateless
    }

    private struct State {
        var calls: [String: Int] = [:]
        var sessionsOpened = 0
        var sessionsDeleted = 0
        var lastHeaders: [String: String] = [:]
    }

    private let state = Mutex(State())
    private let portBox = Mutex(0)
    private let router: SessionRouter

    /// The port it listens on.
    public var port: Int { portBox.withLock { $0 } }
    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    public var url: String { "http://127.0.0.1:\(port)/mcp" }
    /// How many times the tool `name` was called.
    public func calls(_ name: String) -> Int { state.withLock { $0.calls[name] ?? 0 } }
    /// How many sessions were opened (initialize requests, in `.sessions` mode).
    public var sessionsOpened: Int { state.withLock { $0.sessionsOpened } }
    /// How many sessions clients ended with `DELETE`.
    public var sessionsDeleted: Int { state.withLock { $0.sessionsDeleted } }
    /// The headers of the last request (names lowercased).
    public var lastHeaders: [String: String] { state.withLock { $0.lastHeaders } }
    /// Forgets every session: later requests with their ids get 404.
    public func dropSessions() async { await router.dropSessions() }

    private init(mode: Mode) {
        self.router = SessionRouter(mode: mode)
    }

    /// Starts the server, runs `body`, and stops it.
    public static func with<T: Sendable>(
        mode: Mode = .sessions,
        _ body: @Sendable (FakeMCPHTTPServer) async throws -> T
    ) async throws -> T {
        let server = FakeMCPHTTPServer(mode: mode)
        await server.router.attach(server)
        let router = Router()
        for method in [HTTPTypes.HTTPRequest.Method.post, .get, .delete] {
            router.on("/mcp", method: method) { request, context in
                try await server.handle(request)
            }
        }
        return try await withLoopbackServer(router) { port in
            server.portBox.withLock { $0 = port }
            let result = try await body(server)
            await server.router.dropSessions()
            return result
        }
    }

    private func handle(_ request: Request) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 4 << 20)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        if let authority = request.head.authority { headers["host"] = authority }
        state.withLock { $0.lastHeaders = headers }
        let mcpRequest = MCP.HTTPRequest(
            method: request.method.rawValue,
            headers: headers,
            body: body.readableBytes > 0 ? Data(body.readableBytesView) : nil,
            path: request.uri.path
        )
        let answer = await router.handle(mcpRequest)
        if request.method == .delete && answer.statusCode == 200 {
            state.withLock { $0.sessionsDeleted += 1 }
        }
        var fields = HTTPFields()
        for (name, value) in answer.headers {
            if let name = HTTPField.Name(name) { fields[name] = value }
        }
        switch answer {
        case .stream(let stream, _):
            return Response(
                status: .ok,
                headers: fields,
                body: ResponseBody { writer in
                    for try await chunk in stream { try await writer.write(ByteBuffer(bytes: chunk)) }
                    try await writer.finish(nil)
                }
            )
        default:
            let data = answer.bodyData ?? Data()
            return Response(
                status: .init(code: answer.statusCode),
                headers: fields,
                body: .init(byteBuffer: ByteBuffer(bytes: data))
            )
        }
    }

    fileprivate func recordCall(_ name: String) {
        state.withLock { $0.calls[name, default: 0] += 1 }
    }

    fileprivate func recordSession() {
        state.withLock { $0.sessionsOpened += 1 }
    }

    fileprivate static func makeServer(for fake: FakeMCPHTTPServer) async -> MCP.Server {
        let server = MCP.Server(
            name: "caravan-fake-mcp",
            version: "1.0.0",
            capabilities: .init(tools: .init(listChanged: false))
        )
        await server.withMethodHandler(ListTools.self) { _ in ListTools.Result(tools: FixtureTools.tools) }
        await server.withMethodHandler(CallTool.self) { parameters in
            fake.recordCall(parameters.name)
            guard let result = try await FixtureTools.call(parameters) else {
                throw MCPError.invalidParams("Unknown tool: \(parameters.name)")
            }
            return result
        }
        return server
    }
}

/// Routes requests to the session they name (or, stateless, to a server of their own).
private actor SessionRouter {
    struct Session {
        let server: MCP.Server
        let transport: StatefulHTTPServerTransport
    }

    struct FixedSessionID: SessionIDGenerator {
        let id: String
        func generateSessionID() -> String { id }
    }

    let mode: FakeMCPHTTPServer.Mode
    private weak var fake: FakeMCPHTTPServer?
    private var sessions: [String: Session] = [:]

    init(mode: FakeMCPHTTPServer.Mode) {
        self.mode = mode
    }

    func attach(_ fake: FakeMCPHTTPServer) {
        self.fake = fake
    }

    func dropSessions() async {
        let dropped = sessions.values
        sessions = [:]
        for session in dropped { await session.server.stop() }
    }

    func handle(_ request: MCP.HTTPRequest) async -> MCP.HTTPResponse {
        guard let fake else { return .error(statusCode: 500, .internalError("gone")) }
        if mode == .stateless {
            // A server per request: nothing is remembered between requests (the SDK server, not strict, answers
            // requests that no initialize preceded).
            let transport = StatelessHTTPServerTransport()
            let server = await FakeMCPHTTPServer.makeServer(for: fake)
            do {
                try await server.start(transport: transport)
            } catch {
                return .error(statusCode: 500, .internalError("\(error)"))
            }
            let response = await transport.handleRequest(request)
            await server.stop()
            return response
        }
        let sessionID = request.header(HTTPHeaderName.sessionID)
        if let sessionID, let session = sessions[sessionID] {
            let response = await session.transport.handleRequest(request)
            if request.method.uppercased() == "DELETE" && response.statusCode == 200 {
                sessions[sessionID] = nil
                await session.server.stop()
            }
            return response
        }
        if sessionID == nil, request.method.uppercased() == "POST", let body = request.body, Self.isInitialize(body) {
            let id = UUID().uuidString
            let transport = StatefulHTTPServerTransport(sessionIDGenerator: FixedSessionID(id: id))
            let server = await FakeMCPHTTPServer.makeServer(for: fake)
            do {
                try await server.start(transport: transport)
            } catch {
                return .error(statusCode: 500, .internalError("\(error)"))
            }
            sessions[id] = Session(server: server, transport: transport)
            fake.recordSession()
            return await transport.handleRequest(request)
        }
        if sessionID != nil {
            return .error(statusCode: 404, .invalidRequest("Not Found: Session not found or expired"))
        }
        return .error(statusCode: 400, .invalidRequest("Bad Request: Missing \(HTTPHeaderName.sessionID) header"))
    }

    private struct Probe: Decodable { var method: String? }

    static func isInitialize(_ body: Data) -> Bool {
        (try? JSONDecoder().decode(Probe.self, from: body))?.method == Initialize.name
    }
}
