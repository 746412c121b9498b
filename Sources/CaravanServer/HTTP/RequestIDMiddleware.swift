import CaravanCore
public import HTTPTypes
import Hummingbird
import Logging

/// Gives every request an id (the client's `Request-Id` when it is sane, else a new `req_…`), puts it on every
/// log line of the request and on the answer, and logs the request's outcome. Being outermost, it also puts the
/// security headers on every answer (`securityHeaders`).
struct RequestIDMiddleware: RouterMiddleware {
    typealias Context = CaravanRequestContext

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var context = context
        let requestID = Identifier.acceptedRequestID(request.headers[.requestID]) ?? Identifier.make("req")
        context.requestID = requestID
        context.logger[metadataKey: "hb.request.id"] = nil
        context.logger[metadataKey: "caravan.request_id"] = .string(requestID)
        var response = try await next(request, context)
        response.headers[.requestID] = requestID
        Self.securityHeaders(&response, path: request.uri.path)
        context.logger.debug(
            "Request handled",
            metadata: [
                "http.request.method": .string(request.method.rawValue),
                "http.route": .string(context.endpointPath ?? "unmatched"),
                "http.response.status_code": .stringConvertible(response.status.code),
            ]
        )
        return response
    }

    /// `X-Content-Type-Options: nosniff` on every answer, so no browser runs an answer as another type than it
    /// says; `Cache-Control: no-store` on every `/v1` (and `/mcp`) answer, so that no cache or browser history keeps one: tokens
    /// (sign-up, login, refresh), API keys, TOTP secrets and invitation tokens are answers of `/v1`, and so is every
    /// organization's data. (A stream's `no-cache` becomes `no-store` too; streams work the same.)
    static func securityHeaders(_ response: inout Response, path: String) {
        response.headers[.xContentTypeOptions] = "nosniff"
        if path == "/v1" || path.hasPrefix("/v1/") || path == "/mcp" {
            response.headers[.cacheControl] = "no-store"
        }
    }
}

extension HTTPField.Name {
    /// `Request-Id`: on every answer.
    public static let requestID = HTTPField.Name("Request-Id")!  // a valid token, cannot fail
    /// `Retry-After`: on 429 and 503 answers.
    static let retryAfter = HTTPField.Name("Retry-After")!  // a valid token, cannot fail
}
