import CaravanCore
import HTTPTypes
public import Hummingbird
public import Logging
public import NIOCore

/// Where a console request's context comes from: the server hands over its logger and the client's address.
public struct ConsoleContextSource: RequestContextSource {
    public var logger: Logger
    public var remoteAddress: SocketAddress?

    public init(logger: Logger, remoteAddress: SocketAddress?) {
        self.logger = logger
        self.remoteAddress = remoteAddress
    }
}

/// The request context of every console page.
public struct ConsoleRequestContext: RequestContext, RemoteAddressRequestContext {
    public typealias Source = ConsoleContextSource

    public var coreContext: CoreRequestContextStorage
    public var remoteAddress: SocketAddress?
    /// The id sent back as `Request-Id`, passed on to every API call the page makes, and on every log line.
    var requestID: String

    public init(source: ConsoleContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.remoteAddress
        self.requestID = ""
    }

    /// Forms are read with their own limit (`ConsoleForm.maxBytes`); this is a backstop.
    public var maxUploadSize: Int { ConsoleForm.maxBytes }

    /// The client's address as text, for the API's rate limits and sign-in throttles.
    var sourceAddress: String { remoteAddress?.ipAddress ?? "local" }
}

/// Gives every console answer its request id and the headers that keep pages from being framed, sniffed,
/// cached or made to run script from anywhere but the console's own files.
struct ConsoleHeadersMiddleware: RouterMiddleware {
    typealias Context = ConsoleRequestContext

    let console: Console

    /// Script and style only from the console's own files, never inline; nothing from another origin; never in a
    /// frame; forms post only back to the console.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var context = context
        context.requestID = Identifier.acceptedRequestID(request.headers[.requestID]) ?? Identifier.make("req")
        context.logger[metadataKey: "hb.request.id"] = nil
        context.logger[metadataKey: "caravan.request_id"] = .string(context.requestID)
        var response: Response
        do { response = try await next(request, context) } catch let error as any HTTPResponseError {
            // No page here (404), or a method a page does not take (405): the console's error page, not an empty
            // answer without the headers below.
            let status = Int(error.status.code)
            response = console.errorPage(
                ConsoleProblem(
                    status: status,
                    code: status == 404 ? "not_found" : "invalid_request",
                    detail: status == 404
                        ? "There is no page at this address." : "This page does not take that request."
                ),
                request: request,
                context: context
            )
        }
        response.headers[.requestID] = context.requestID
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.frameOptions] = "DENY"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.referrerPolicyName] = "same-origin"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }
}

extension HTTPField.Name {
    static let frameOptions = HTTPField.Name("X-Frame-Options")!  // a valid token, cannot fail
    static let referrerPolicyName = HTTPField.Name("Referrer-Policy")!  // a valid token, cannot fail
}
