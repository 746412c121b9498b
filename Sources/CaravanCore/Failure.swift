/// Why an operation that reaches outside Caravan failed — a step attempt, an outbound request, a tool call, a model
/// call: a stable code, a message for people, and whether trying again later may succeed. Each layer names it for
/// what it describes (`StepFailure`, `EgressDenial`, `ToolError`, …), so a failure passes between layers unchanged.
public struct Failure: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var retryable: Bool

    public init(code: String, message: String, retryable: Bool) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }

    public var description: String { "\(code): \(message)" }
}
