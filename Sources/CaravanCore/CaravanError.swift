/// An error with a stable, documented code: what the API reports as `code` in problem+json.
///
/// Errors compare by code; `detail` is for humans and `fieldErrors` name the fields at fault.
public struct CaravanError: Error, Sendable, CustomStringConvertible {
    /// A stable machine-readable code.
    public struct Code: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let invalidJSON = Code(rawValue: "invalid_json")
        public static let invalidRequest = Code(rawValue: "invalid_request")
        public static let validationFailed = Code(rawValue: "validation_failed")
        public static let unauthenticated = Code(rawValue: "unauthenticated")
        public static let forbidden = Code(rawValue: "forbidden")
        public static let notFound = Code(rawValue: "not_found")
        public static let methodNotAllowed = Code(rawValue: "method_not_allowed")
        public static let conflict = Code(rawValue: "conflict")
        public static let rateLimited = Code(rawValue: "rate_limited")
        public static let payloadTooLarge = Code(rawValue: "payload_too_large")
        /// Something Caravan made (a rendered template, a step's output) would pass the payload limit.
        public static let outputTooLarge = Code(rawValue: "output_too_large")
        /// A request would carry a secret to a host outside the secret's `allowed_hosts`.
        public static let secretHostNotAllowed = Code(rawValue: "secret_host_not_allowed")
        public static let unsupportedMediaType = Code(rawValue: "unsupported_media_type")
        public static let idempotencyConflict = Code(rawValue: "idempotency_conflict")
        public static let unavailable = Code(rawValue: "unavailable")
        public static let `internal` = Code(rawValue: "internal")
        /// A model budget (the run's or the organization's month) is spent.
        public static let budgetExceeded = Code(rawValue: "budget_exceeded")
        /// The model named is not configured (no such provider, or not in its models).
        public static let unknownModel = Code(rawValue: "unknown_model")
        /// Every provider of the route failed; `detail` says how the last one did.
        public static let providerError = Code(rawValue: "provider_error")
        /// Every provider of the route took too long.
        public static let providerTimeout = Code(rawValue: "provider_timeout")
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
