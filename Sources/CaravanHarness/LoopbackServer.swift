public import Hummingbird
import Logging
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
