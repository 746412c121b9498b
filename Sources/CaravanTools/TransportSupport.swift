import CaravanCore
import Synchronization

/// A one-shot event that many may wait for: a transport's end, with the reason it ended.
final class EndSignal: Sendable {
    private struct State {
        var reason: Failure?
        var waiters: [CheckedContinuation<Failure, Never>] = []
    }

    private let state = Mutex(State())

    init() {}

    /// Records the end (the first reason wins) and wakes every waiter.
    func fire(_ reason: Failure) {
        let waiters = state.withLock { state -> [CheckedContinuation<Failure, Never>] in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: reason) }
    }

    /// Why it ended, or `nil` while it has not.
    var reason: Failure? { state.withLock { $0.reason } }

    /// Returns the reason once it has ended.
    func wait() async -> Failure {
        await withCheckedContinuation { continuation in
            let reason = state.withLock { state -> Failure? in
                if let reason = state.reason { return reason }
                state.waiters.append(continuation)
                return nil
            }
            if let reason { continuation.resume(returning: reason) }
        }
    }
}

/// A FIFO lock for actors whose critical sections await (writes that must not interleave).
struct AsyncFIFOLock {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Whether the caller got the lock at once; if not, it must `await` the returned registration.
    mutating func tryAcquire() -> Bool {
        if busy { return false }
        busy = true
        return true
    }

    mutating func enqueue(_ continuation: CheckedContinuation<Void, Never>) {
        waiters.append(continuation)
    }

    /// Hands the lock to the next waiter, or frees it.
    mutating func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
