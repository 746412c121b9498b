public import CaravanCore
import Synchronization

/// A wall clock that a test moves by hand, starting from the system's time: what an expiry, a throttle or a due
/// timer decides follows it, so a test sets the time instead of sleeping until it comes.
public final class ManualTime: Sendable {
    private let now: Mutex<Int64>

    public init(_ start: Int64 = WallClock.system.nowMilliseconds()) {
        now = Mutex(start)
    }

    /// The clock to inject.
    public var clock: WallClock { WallClock { self.now.withLock { $0 } } }

    /// Now, in Unix milliseconds.
    public var milliseconds: Int64 { now.withLock { $0 } }

    /// Moves the time on by `duration`.
    public func advance(by duration: Duration) {
        let (seconds, attoseconds) = duration.components
        now.withLock { $0 += seconds * 1_000 + attoseconds / 1_000_000_000_000_000 }
    }

    /// Sets the time to `milliseconds`.
    public func set(_ milliseconds: Int64) { now.withLock { $0 = milliseconds } }
}
