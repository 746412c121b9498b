/// Runs `operation` until it returns or `deadline` passes, whichever comes first: the one way Caravan bounds a
/// wait (a step, a model call, an MCP request, a streamed body).
///
/// - When the deadline passes, `abort` runs, then the operation is cancelled and `nil` is answered without
///   waiting for it further.
/// - When the caller is cancelled, `abort` runs and the operation's own answer (its value or its error) is
///   awaited: an operation that heeds cancellation ends at once; for one that does not (a request to a server
///   that never answers), `abort` must make it return.
/// - Parameters:
///   - deadline: when to stop waiting.
///   - operation: the work.
///   - abort: what makes the operation return, for operations that do not heed cancellation.
/// - Returns: the operation's value, or `nil` when the deadline passed first.
/// - Throws: what the operation threw.
public func withDeadline<T: Sendable>(
    _ deadline: ContinuousClock.Instant,
    _ operation: @escaping @Sendable () async throws -> T,
    abort: @escaping @Sendable () async -> Void = {}
) async throws -> T? {
    try await withThrowingTaskGroup(of: DeadlineRace<T>.self) { group in
        group.addTask { .finished(try await operation()) }
        group.addTask {
            do {
                try await Task.sleep(until: deadline, clock: .continuous)
                return .passed
            } catch {
                return .callerCancelled
            }
        }
        defer { group.cancelAll() }
        while let next = try await group.next() {
            switch next {
            case .finished(let value): return value
            case .passed:
                await abort()
                return nil
            case .callerCancelled:
                await abort()
            }
        }
        return nil
    }
}

/// `withDeadline` for a wait of `timeout` from now.
public func withTimeout<T: Sendable>(
    _ timeout: Duration,
    _ operation: @escaping @Sendable () async throws -> T,
    abort: @escaping @Sendable () async -> Void = {}
) async throws -> T? {
    try await withDeadline(.now + timeout, operation, abort: abort)
}

private enum DeadlineRace<T: Sendable>: Sendable {
    case finished(T)
    case passed
    case callerCancelled
}
