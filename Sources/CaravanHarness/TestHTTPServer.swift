import CaravanCore
import Foundation
import HTTPTypes
public import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real HTTP server on a free loopback port that steps call in tests. It counts calls by path and remembers
/// every `Idempotency-Key` it saw. Routes:
/// - `/ok`, `/count/{name}`: 200 with a JSON body `{"ok": true, "path": …}`;
/// - `/fail/{times}/{status}`: answers `status` for the first `times` calls of a key, then 200;
/// - `/status/{code}`: always that status;
/// - `/slow/{milliseconds}`: 200 after a delay;
/// - `/switch`: 500 until `switchOn()` is called, then 200.
public final class TestHTTPServer: Sendable {
    struct State {
        var calls: [String: Int] = [:]
        var keys: [String: [String]] = [:]
        var switchedOn = false
        var lastAuthorization: String?
    }

    private let state = Mutex(State())
    private let portBox = Mutex(0)

    /// The port it listens on.
    public var port: Int { portBox.withLock { $0 } }
    /// `http://127.0.0.1:<port>`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    /// How many calls `path` received.
    public func calls(_ path: String) -> Int { state.withLock { $0.calls[path] ?? 0 } }
    /// The `Idempotency-Key` headers `path` received, in order.
    public func keys(_ path: String) -> [String] { state.withLock { $0.keys[path] ?? [] } }
    /// Makes `/switch` succeed from now on.
    public func switchOn() { state.withLock { $0.switchedOn = true } }
    /// The `Authorization` header `/echo` last received.
    public var lastAuthorization: String? { state.withLock { $0.lastAuthorization } }

    private func record(_ request: Request) -> (count: Int, keyCount: Int) {
        let path = request.uri.path
        let key = request.headers[HTTPField.Name("Idempotency-Key")!] ?? ""
        return state.withLock { state in
            state.calls[path, default: 0] += 1
            state.keys[path, default: []].append(key)
            return (state.calls[path] ?? 0, state.keys[path]?.filter { $0 == key }.count ?? 0)
        }
    }

    /// Starts the server, runs `body`, and stops it.
    public static func with<T: Sendable>(_ body: @Sendable (TestHTTPServer) async throws -> T) async throws -> T {
        let server = TestHTTPServer()
        let router = Router()
        router.on("/ok", method: .post) { request, _ in server.ok(request) }
        router.on("/ok", method: .get) { request, _ in server.ok(request) }
        router.post("/fail/:times/:status") { request, context in
            let (_, keyCount) = server.record(request)
            let times = Int(context.parameters.get("times") ?? "0") ?? 0
            let status = Int(context.parameters.get("status") ?? "500") ?? 500
            if keyCount <= times { return Response(status: .init(code: status)) }
            return Self.json(#"{"ok":true,"attempt":\#(keyCount)}"#)
        }
        router.post("/count/:name") { request, _ in server.ok(request) }
        router.post("/status/:code") { request, context in
            _ = server.record(request)
            return Response(status: .init(code: Int(context.parameters.get("code") ?? "500") ?? 500))
        }
        router.post("/slow/:ms") { request, context in
            _ = server.record(request)
            try await Task.sleep(for: .milliseconds(Int(context.parameters.get("ms") ?? "0") ?? 0))
            return Self.json(#"{"slow":true}"#)
        }
        // Echoes the Authorization header back, as an upstream that reflects what it was sent would.
        router.post("/echo") { request, _ in
            _ = server.record(request)
            server.state.withLock { $0.lastAuthorization = request.headers[.authorization] }
            let value = JSONValue.string(request.headers[.authorization] ?? "")
            return Self.json(#"{"authorization":\#(value.canonicalText)}"#)
        }
        // Answers the path and query exactly as they arrived (still percent-encoded), to check how URLs were built.
        router.get("/reflect/**") { request, _ in
            _ = server.record(request)
            let path = JSONValue.string(request.uri.path).canonicalText
            let query = JSONValue.string(request.uri.query ?? "").canonicalText
            return Self.json(#"{"path":\#(path),"query":\#(query)}"#)
        }
        router.post("/switch") { request, _ in
            _ = server.record(request)
            return server.state.withLock { $0.switchedOn }
                ? Self.json(#"{"switched":true}"#) : Response(status: .internalServerError)
        }
        return try await withLoopbackServer(router) { port in
            server.portBox.withLock { $0 = port }
            return try await body(server)
        }
    }

    private func ok(_ request: Request) -> Response {
        _ = record(request)
        return Self.json(#"{"ok":true,"path":"\#(request.uri.path)"}"#)
    }

    public static func json(_ text: String) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: text))
        )
    }
}

/// A one-shot signal for tests.
final class WakeSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let fired = state.withLock { state -> Bool in
                if state.fired { return true }
                state.waiters.append(continuation)
                return false
            }
            if fired { continuation.resume() }
        }
    }
}
