import AsyncHTTPClient
import CaravanOutbound
import ServiceLifecycle

/// The HTTP client that steps use, as a service so that it is shut down after the engine stops. Redirects are
/// not followed: every destination must pass the egress policy, and a redirect would slip past it.
final class OutboundHTTPClient: Service, Sendable {
    let client: HTTPClient

    init() {
        // Redirects disallowed (the egress client follows them, checking each), connection failures reported at once.
        self.client = EgressHTTPClient.makeHTTPClient()
    }

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
