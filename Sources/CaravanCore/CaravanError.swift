/// An error with a stable, documented code: what the API reports as `code` in problem+json.
///
/// Errors compare by code; `detail` is for humans and `fieldErrors` name the fields at fault.
public struct CaravanError: Error, Sendable, CustomStringConvertible {
    /// A stable machine-readable code, and the HTTP status an API answer with it carries.
    public struct Code: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
        public var rawValue: String
        /// The HTTP status of an answer with this code (500 for a code that names none).
        public let status: Int

        public init(rawValue: String) { self.init(rawValue, status: 500) }
        public init(_ rawValue: String, status: Int) {
            self.rawValue = rawValue
            self.status = status
        }

        public var description: String { rawValue }
        public static func == (lhs: Code, rhs: Code) -> Bool { lhs.rawValue == rhs.rawValue }
        public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

        public static let invalidJSON = Code("invalid_json", status: 400)
        public static let invalidRequest = Code("invalid_request", status: 400)
        public static let validationFailed = Code("validation_failed", status: 422)
        public static let unauthenticated = Code("unauthenticated", status: 401)
        public static let forbidden = Code("forbidden", status: 403)
        public static let notFound = Code("not_found", status: 404)
        public static let methodNotAllowed = Code("method_not_allowed", status: 405)
        public static let requestTimeout = Code("request_timeout", status: 408)
        public static let conflict = Code("conflict", status: 409)
        public static let rateLimited = Code("rate_limited", status: 429)
        public static let payloadTooLarge = Code("payload_too_large", status: 413)
        /// Something Caravan made (a rendered template, a step's output) would pass the payload limit.
        public static let outputTooLarge = Code("output_too_large", status: 422)
        /// A request would carry a secret to a host outside the secret's `allowed_hosts`.
        public static let secretHostNotAllowed = Code("secret_host_not_allowed", status: 422)
        /// A URL the egress policy refuses (an internal address the operator has not allowed).
        public static let egressDenied = Code("egress_denied", status: 422)
        public static let unsupportedMediaType = Code("unsupported_media_type", status: 415)
        public static let idempotencyConflict = Code("idempotency_conflict", status: 409)
        public static let unavailable = Code("unavailable", status: 503)
        public static let `internal` = Code("internal", status: 500)
        /// A model budget (the run's or the organization's month) is spent.
        public static let budgetExceeded = Code("budget_exceeded", status: 402)
        /// The model named is not configured (no such provider, or not in its models).
        public static let unknownModel = Code("unknown_model", status: 404)
        /// The API key may not call the model (its model allowlist).
        public static let modelNotAllowed = Code("model_not_allowed", status: 403)
        /// A model call's parameter that no provider of its route can honour.
        public static let unsupportedParameter = Code("unsupported_parameter", status: 422)
        /// Every provider of the route failed; `detail` says how the last one did.
        public static let providerError = Code("provider_error", status: 502)
        /// Every provider of the route took too long.
        public static let providerTimeout = Code("provider_timeout", status: 504)
    }

    /// One field at fault, named by a JSON pointer into the request body.
    public struct FieldError: Sendable, Hashable, Codable {
        public var pointer: String
        public var detail: String
        public init(pointer: String, detail: String) {
            self.pointer = pointer
            self.detail = detail
        }
    }

    public var code: Code
    public var detail: String
    public var fieldErrors: [FieldError]
    /// For `rate_limited`: when to try again, in seconds (sent as `Retry-After`).
    public var retryAfterSeconds: Int?

    /// Creates an error.
    /// - Parameters:
    ///   - code: the stable code.
    ///   - detail: a sentence for a human.
    ///   - fieldErrors: the fields at fault, for validation errors.
    public init(_ code: Code, _ detail: String, fieldErrors: [FieldError] = []) {
        self.code = code
        self.detail = detail
        self.fieldErrors = fieldErrors
    }

    public var description: String { "\(code.rawValue): \(detail)" }

    /// Too many requests; try again after `seconds`.
    public static func rateLimited(_ detail: String, retryAfter seconds: Int) -> CaravanError {
        var error = CaravanError(.rateLimited, detail)
        error.retryAfterSeconds = max(1, seconds)
        return error
    }

    public static func notFound(_ what: String) -> CaravanError {
        CaravanError(.notFound, "\(what) was not found.")
    }

    public static func validation(_ pointer: String, _ detail: String) -> CaravanError {
        CaravanError(.validationFailed, detail, fieldErrors: [FieldError(pointer: pointer, detail: detail)])
    }
}
