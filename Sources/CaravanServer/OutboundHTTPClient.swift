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
        // A refused connection fails at once (the step's retry policy, or the gateway's fallback, decides what
        // next) instead of being retried silently until the deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
