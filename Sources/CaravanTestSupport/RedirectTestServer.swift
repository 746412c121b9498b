import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real HTTP server on a free loopback port for the tests of the egress client. Routes (any method):
/// - `/chain/{n}`: a 302 to `/chain/{n-1}`, and at 0 a 200 with `{"ok": true}` — a chain of `n` redirects;
/// - `/redirect?status=…&to=…`: a redirect with that status (default 302) to that `Location`;
/// - `/big/{bytes}`: 200 with a body of that many bytes;
/// - `/echo`: 200 with `{"method", "host", "body", "authorization"}` of the request.
///
/// It counts the requests by path and remembers the last request of each.
public final class RedirectTestServer: Sendable {
    /// What a request carried.
    public struct Seen: Sendable, Hashable {
        public var method: String
        public var host: String?
        public var authorization: String?
        public var body: String
    }

    private struct State {
        var calls: [String: Int] = [:]
        var last: [String: Seen] = [:]
    }

    private let state = Mutex(State())
    private let portBox = Mutex(0)

    /// The port it listens on.
    public var port: Int { portBox.withLock { $0 } }
    /// `http://127.0.0.1:<port>`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    /// How many requests `path` received.
    public func calls(_ path: String) -> Int { state.withLock { $0.calls[path] ?? 0 } }
    /// The last request `path` received.
    public func lastRequest(_ path: String) -> Seen? { state.withLock { $0.last[path] } }

    private func record(_ request: Request, body: ByteBuffer) {
        let seen = Seen(
            method: request.method.rawValue,
            host: request.head.authority,
            authorization: request.headers[.authorization],
            body: String(buffer: body)
        )
        state.withLock { state in
            state.calls[request.uri.path, default: 0] += 1
            state.last[request.uri.path] = seen
        }
    }

    /// Starts the server, runs `body`, and stops it.
    public static func with<T: Sendable>(_ body: @Sendable (RedirectTestServer) async throws -> T) async throws -> T {
        let server = RedirectTestServer()
        let router = Router()
        let methods: [HTTPRequest.Method] = [.get, .post, .put, .delete, .head]
        for method in methods {
            router.on("/chain/:n", method: method) { request, context in
                var request = request
                server.record(request, body: try await request.collectBody(upTo: 1 << 20))
                let n = Int(context.parameters.get("n") ?? "0") ?? 0
                if n <= 0 { return TestHTTPServer.json(#"{"ok":true}"#) }
                return Response(status: .found, headers: [.location: "/chain/\(n - 1)"])
            }
            router.on("/redirect", method: method) { request, _ in
                var request = request
                server.record(request, body: try await request.collectBody(upTo: 1 << 20))
                let status = Int(request.uri.queryParameters.get("status") ?? "302") ?? 302
                let target = request.uri.queryParameters.get("to").map { String($0) } ?? "/echo"
                return Response(status: .init(code: status), headers: [.location: target])
            }
            router.on("/big/:bytes", method: method) { request, context in
                var request = request
                server.record(request, body: try await request.collectBody(upTo: 1 << 20))
                let bytes = Int(context.parameters.get("bytes") ?? "0") ?? 0
                return Response(
                    status: .ok,
                    headers: [.contentType: "application/octet-stream"],
                    body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "x"), count: bytes))
                )
            }
            router.on("/echo", method: method) { request, _ in
                var request = request
                let body = try await request.collectBody(upTo: 1 << 20)
                server.record(request, body: body)
                let seen = server.lastRequest("/echo")
                let object: [String: String?] = [
                    "method": seen?.method, "host": seen?.host, "body": seen?.body,
                    "authorization": seen?.authorization,
                ]
                let data = try JSONEncoder().encode(object)
                return Response(
                    status: .ok,
                    headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data))
                )
            }
        }
        return try await withLoopbackServer(router) { port in
            server.portBox.withLock { $0 = port }
            return try await body(server)
        }
    }
}
