import HTTPTypes
public import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Serves `router` on a free loopback port for the duration of `body`, which is given the port.
public func withLoopbackServer<T: Sendable>(
    _ router: Router<BasicRequestContext>,
    _ body: @Sendable (Int) async throws -> T
) async throws -> T {
    let ready = WakeSignal()
    let port = PortBox()
    let application = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in
            port.set(channel.localAddress?.port ?? 0)
            ready.fire()
        },
        logger: TestLogging.quiet
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        let serviceGroup = ServiceGroup(configuration: .init(services: [application], logger: TestLogging.quiet))
        group.addTask { try await serviceGroup.run() }
        await ready.wait()
        defer { group.cancelAll() }
        let result = try await body(port.value)
        await serviceGroup.triggerGracefulShutdown()
        return result
    }
}

private final class PortBox: Sendable {
    private let port = Mutex(0)
    func set(_ value: Int) { port.withLock { $0 = value } }
    var value: Int { port.withLock { $0 } }
}

/// A file that `withLoopbackSite` serves: its media type and its text.
public struct LoopbackFile: Sendable {
    /// The `Content-Type` it is served with.
    public var contentType: String
    /// Its content.
    public var body: String

    /// A file of type `contentType` holding `body`.
    public init(_ contentType: String, _ body: String) {
        self.contentType = contentType
        self.body = body
    }
}

/// Serves fixed files on a free loopback port for the duration of `body`, which is given the port: a `GET` of a
/// path in `files` (`/`, `/app.js`) answers 200 with that file, any other path 404. `headers` (e.g. a
/// `Content-Security-Policy`) go on every file.
public func withLoopbackSite<T: Sendable>(
    _ files: [String: LoopbackFile],
    headers: [(String, String)] = [],
    _ body: @Sendable (Int) async throws -> T
) async throws -> T {
    var fields = HTTPFields()
    for (name, value) in headers {
        guard let name = HTTPField.Name(name) else { throw TestSetupError.failed("not a header name: \(name)") }
        fields.append(HTTPField(name: name, value: value))
    }
    let router = Router()
    for (path, file) in files {
        var answerHeaders = fields
        answerHeaders[.contentType] = file.contentType
        router.get(RouterPath(path)) { [answerHeaders] _, _ in
            Response(status: .ok, headers: answerHeaders, body: .init(byteBuffer: ByteBuffer(string: file.body)))
        }
    }
    return try await withLoopbackServer(router, body)
}
