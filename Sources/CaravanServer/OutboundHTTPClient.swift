import AsyncHTTPClient
import ServiceLifecycle

/// The HTTP client that steps use, as a service so that it is shut down after the engine stops. Redirects are
/// not followed: every destination must pass the egress policy, and a redirect would slip past it.
final class OutboundHTTPClient: Service, Sendable {
    let client: HTTPClient

    init() {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .enabled(limit: .ratio(20))
        // Steps of many runs often call one host at once (a slow API, a model server): do not queue them 8 deep.
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 512)
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
