public import CaravanCore
import Foundation

/// How a failed step is retried: exponential backoff with jitter, capped.
public struct RetryPolicy: Sendable, Hashable {
    public var maxAttempts: Int
    public var initialInterval: CaravanDuration
    public var backoff: Double
    public var maxInterval: CaravanDuration

    public init(
        maxAttempts: Int = 3,
        initialInterval: CaravanDuration = .seconds(1),
        backoff: Double = 2.0,
        maxInterval: CaravanDuration = .seconds(60)
    ) {
        self.maxAttempts = maxAttempts
        self.initialInterval = initialInterval
        self.backoff = backoff
        self.maxInterval = maxInterval
    }

    /// The policy when a workflow names none.
    public static let `default` = RetryPolicy()

    /// The wait before the attempt after `attempt` (1-based): `initial × backoff^(attempt-1)`, capped at
    /// `maxInterval`, with equal jitter (half fixed, half random) so that many failing runs do not retry in step.
    public func delay(afterAttempt attempt: Int, random: inout some RandomNumberGenerator) -> CaravanDuration {
        let exponent = Double(max(0, attempt - 1))
        let raw = Double(initialInterval.milliseconds) * pow(backoff, min(exponent, 64))
        let capped = min(raw, Double(maxInterval.milliseconds))
        let half = capped / 2
        let jitter = half > 0 ? Double.random(in: 0...half, using: &random) : 0
        return CaravanDuration(milliseconds: Int64(half + jitter))
    }
}
