import CaravanCore
import CaravanIdentity
import CaravanStorage
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// An RFC 9457 problem document, the body of every error answer.
struct ProblemDetails: Sendable {
    var status: HTTPResponse.Status
    var code: String
    var title: String
    var detail: String
    var errors: [CaravanError.FieldError]
    var headers: HTTPFields = [:]

    /// The HTTP status of a stable code: the one the code carries, with its standard reason phrase.
    static func status(of code: CaravanError.Code) -> HTTPResponse.Status {
        standardStatuses[code.status] ?? HTTPResponse.Status(code: code.status)
    }

    private static let standardStatuses: [Int: HTTPResponse.Status] = Dictionary(
        uniqueKeysWithValues: [
            HTTPResponse.Status.badRequest, .unauthorized,
            HTTPResponse.Status(code: 402, reasonPhrase: "Payment Required"),
            .forbidden, .notFound, .methodNotAllowed, .requestTimeout, .conflict, .contentTooLarge,
            .unsupportedMediaType,
            .unprocessableContent, .tooManyRequests, .internalServerError, .badGateway, .serviceUnavailable,
            .gatewayTimeout,
        ].map { ($0.code, $0) }
    )

    /// The stable code for an HTTP status that a framework error carried.
    static func code(of status: HTTPResponse.Status) -> CaravanError.Code {
        switch status.code {
        case 400: .invalidRequest
        case 401: .unauthenticated
        case 403: .forbidden
        case 404: .notFound
        case 405: .methodNotAllowed
        case 408: .requestTimeout
        case 409: .conflict
        case 413: .payloadTooLarge
        case 415: .unsupportedMediaType
        case 422: .validationFailed
        case 429: .rateLimited
        case 503: .unavailable
        default: .internal
        }
    }

    init(_ error: CaravanError) {
        self.status = Self.status(of: error.code)
        self.code = error.code.rawValue
        self.title = status.reasonPhrase
        self.detail = error.detail
        self.errors = error.fieldErrors
        if let seconds = error.retryAfterSeconds { headers[.retryAfter] = String(seconds) }
    }

    init(status: HTTPResponse.Status, code: CaravanError.Code, detail: String) {
        self.status = status
        self.code = code.rawValue
        self.title = status.reasonPhrase
        self.detail = detail
        self.errors = []
    }

    /// Whether `path` is one of the OpenAI-compatible endpoints, whose clients read `error.message`.
    static func speaksOpenAI(path: String) -> Bool {
        path == "/v1/chat/completions" || path == "/v1/embeddings" || path == "/v1/models"
            || path.hasPrefix("/v1/models/") || path == "/v1/responses" || path.hasPrefix("/v1/responses/")
    }

    /// The problem as OpenAI states an error: `{message, type, code, param}`, `param` the first field at fault
    /// (`messages.0.role`).
    var openAIError: JSONValue {
        let type =
            switch status.code {
            case 401: "authentication_error"
            case 402: "insufficient_quota"
            case 403: "permission_error"
            case 429: "rate_limit_error"
            case 500...: "api_error"
            default: "invalid_request_error"
            }
        let param = errors.first.map { String($0.pointer.dropFirst()).replacingOccurrences(of: "/", with: ".") }
        return [
            "message": .string(detail), "type": .string(type), "code": .string(code),
            "param": param.map(JSONValue.string) ?? .null,
        ]
    }

    /// The answer: the problem document, with OpenAI's `error` member beside its fields when `openAIShape` (an
    /// extension member, as RFC 9457 allows).
    func response(requestID: String, openAIShape: Bool = false) -> Response {
        var object: [String: JSONValue] = [
            "type": .string("https://caravan.dev/problems/\(code)"),
            "title": .string(title),
            "status": .int(Int64(status.code)),
            "code": .string(code),
            "detail": .string(detail),
            "request_id": .string(requestID),
        ]
        if !errors.isEmpty {
            object["errors"] = .array(
                errors.map { .object(["pointer": .string($0.pointer), "detail": .string($0.detail)]) }
            )
        }
        if openAIShape { object["error"] = openAIError }
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        return Response(
            status: status,
            headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(string: JSONValue.object(object).canonicalText))
        )
    }
}
