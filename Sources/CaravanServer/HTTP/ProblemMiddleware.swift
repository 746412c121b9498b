import CaravanCore
import CaravanStorage
import Hummingbird
import Logging

/// Turns every error thrown below it into an `application/problem+json` answer with a stable code (on the
/// OpenAI-compatible endpoints with OpenAI's `error` member too). Errors that are not Caravan's own become a 500
/// with no internal detail; they are logged with the request id.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = CaravanRequestContext

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let problem = Self.problem(for: error, context: context)
            return problem.response(
                requestID: context.requestID,
                openAIShape: ProblemDetails.speaksOpenAI(path: request.uri.path)
            )
        }
    }

    static func problem(for error: any Error, context: Context) -> ProblemDetails {
        switch error {
        case let error as CaravanError:
            if error.code == .internal {
                context.logger.error("Request failed", metadata: ["error.message": "\(error.detail)"])
            }
            return ProblemDetails(error)
        case let error as StorageError where error.code == .conflict:
            return ProblemDetails(status: .conflict, code: .conflict, detail: "The resource already exists.")
        case let error as StorageError where error.code == .unavailable:
            context.logger.warning("Database unavailable", metadata: ["error.message": "\(error.message)"])
            var problem = ProblemDetails(
                status: .serviceUnavailable,
                code: .unavailable,
                detail: "The database is unavailable; try again shortly."
            )
            problem.headers[.retryAfter] = "1"
            return problem
        case let error as HTTPError:
            let code = ProblemDetails.code(of: error.status)
            let detail: String
            switch error.status.code {
            case 404: detail = "No resource at this path."
            case 413: detail = "The request body is larger than the server accepts."
            default: detail = error.body ?? error.status.reasonPhrase
            }
            var problem = ProblemDetails(status: error.status, code: code, detail: detail)
            problem.headers = error.headers
            return problem
        case let error as any HTTPResponseError:
            return ProblemDetails(
                status: error.status,
                code: ProblemDetails.code(of: error.status),
                detail: error.status.reasonPhrase
            )
        default:
            context.logger.error(
                "Request failed with an unexpected error",
                metadata: ["error.type": "\(type(of: error))", "error.message": "\(error)"]
            )
            return ProblemDetails(
                status: .internalServerError,
                code: .internal,
                detail: "An internal error occurred; quote the request id when reporting it."
            )
        }
    }
}
