public import CaravanCore
public import CaravanIdentity
public import Hummingbird
import Logging
public import NIOCore

/// The request context of every Caravan route: Hummingbird's core context plus the request id, the client's
/// address and, once credentials are checked, the caller.
public struct CaravanRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The id sent back as `Request-Id` and logged as `caravan.request_id` on every line of this request.
    public var requestID: String
    /// The connected client's address (`nil` in router tests).
    public var remoteAddress: SocketAddress?
    /// The caller, for endpoints that need credentials.
    public var principal: Principal?
    /// The caller's request budget after this request, when a rate limit applies (sent as `x-ratelimit-*`).
    public var rateLimit: RateLimitState?
    /// What the audit entry of this request records beyond its endpoint; handlers fill it in.
    public var audit: AuditNote

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.requestID = ""
        self.remoteAddress = source.channel.remoteAddress
        self.audit = AuditNote()
    }

    /// The context of a request the console makes in process on behalf of a browser at `remoteAddress`.
    init(inProcess logger: Logger, remoteAddress: SocketAddress?) {
        self.coreContext = .init(source: InProcessSource(logger: logger))
        self.requestID = ""
        self.remoteAddress = remoteAddress
        self.audit = AuditNote()
    }

    private struct InProcessSource: RequestContextSource {
        var logger: Logger
    }

    /// Bodies are read with `APIBody`, which applies the configured limit; this is a backstop.
    public var maxUploadSize: Int { 1 << 20 }

    /// The organization the caller acts in.
    /// - Throws: `invalid_request` when a user in several organizations names none.
    public func organizationID() throws(CaravanError) -> String {
        guard let orgID = principal?.orgID else {
            throw CaravanError(
                .invalidRequest,
                "You belong to several organizations (or none): name one with the Caravan-Organization header."
            )
        }
        return orgID
    }

    /// The client's address as text, for rate limits and the audit log.
    public var sourceAddress: String {
        remoteAddress?.ipAddress ?? "local"
    }
}
