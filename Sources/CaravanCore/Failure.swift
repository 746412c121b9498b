/// Why an operation that reaches outside Caravan failed — a step attempt, an outbound request, a tool call, a model
/// call: a stable code, a message for people, and whether trying again later may succeed. Every layer throws this
/// one type, so a failure passes between layers unchanged.
public struct Failure: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable code, as runs' events and errors report it. The common ones are statics; a code built from data
    /// (`http_404`) is written as a string.
    public struct Code: Sendable, Hashable, RawRepresentable, ExpressibleByStringInterpolation, CustomStringConvertible
    {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public init(stringInterpolation: DefaultStringInterpolation) {
            self.rawValue = String(stringInterpolation: stringInterpolation)
        }
        public var description: String { rawValue }

        /// The egress policy refused the destination (or a redirect's); not retryable.
        public static let egressDenied: Code = "egress_denied"
        /// The host does not resolve; retryable.
        public static let dnsError: Code = "dns_error"
        /// A connection refused or reset, a TLS failure; retryable.
        public static let networkError: Code = "network_error"
        /// The deadline passed; retryable.
        public static let timeout: Code = "timeout"
        /// The answer is larger than allowed; not retryable.
        public static let responseTooLarge: Code = "response_too_large"
        public static let tooManyRedirects: Code = "too_many_redirects"
        /// The run or request was cancelled.
        public static let cancelled: Code = "cancelled"
    }

    public var code: Code
    public var message: String
    public var retryable: Bool
    /// How long the other side asked to be left alone (a `Retry-After`), when it said.
    public var retryAfterMilliseconds: Int64?

    public init(code: Code, message: String, retryable: Bool, retryAfterMilliseconds: Int64? = nil) {
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retryAfterMilliseconds = retryAfterMilliseconds
    }

    public var description: String { "\(code): \(message)" }
}
