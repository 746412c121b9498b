import Foundation

/// The wall clock that stamps stored times (Unix milliseconds): injected into every component that reads the time,
/// so that a test can set it instead of waiting for it.
///
/// Durations waited for (timeouts, backoff sleeps) still pass in real time; only the stamps and the decisions
/// taken from them (expiry, due timers, throttles) follow this clock.
public struct WallClock: Sendable {
    private let read: @Sendable () -> Int64

    /// A clock that reads `read` for the time.
    public init(_ read: @escaping @Sendable () -> Int64) {
        self.read = read
    }

    /// The system's clock.
    public static let system = WallClock { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// Now, in Unix milliseconds.
    public func nowMilliseconds() -> Int64 { read() }
}
