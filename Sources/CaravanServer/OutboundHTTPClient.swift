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
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
