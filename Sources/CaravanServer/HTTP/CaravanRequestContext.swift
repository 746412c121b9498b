import Hummingbird
import Logging

/// The request context of every Caravan route: Hummingbird's core context plus the request id.
public struct CaravanRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The id sent back as `Request-Id` and logged as `caravan.request_id` on every line of this request.
    public var requestID: String

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.requestID = ""
    }

    /// Bodies are read with `APIBody`, which applies the configured limit; this is a backstop.
    public var maxUploadSize: Int { 1 << 20 }
}
