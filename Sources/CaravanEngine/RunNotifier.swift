import Synchronization

/// In-process wake-ups: a run's execution is poked when a signal or a cancel arrives for it; `?wait=` requests
/// and event streams wait for a run (or an organization's runs) to change.
final class RunNotifier: Sendable {
    private struct State {
        var pokes: [String: WakeFlag] = [:]
        var waiters: [String: [UInt64: CheckedContinuation<Void, Never>]] = [:]
        var nextWaiter: UInt64 = 0
        /// Waiters cancelled before they were registered.
        var cancelled: Set<UInt64> = []
    }

    private let state = Mutex(State())

    /// Registers a running execution; its flag is signalled on every poke.
    func register(runID: String) -> WakeFlag {
        let flag = WakeFlag()
        state.withLock { $0.pokes[runID] = flag }
        return flag
    }

    /// Forgets an execution.
    func unregister(runID: String) {
        _ = state.withLock { $0.pokes.removeValue(forKey: runID) }
    }

    /// Pokes the execution of `runID`, if this node has one. Returns whether it did.
    @discardableResult
    func poke(runID: String) -> Bool {
        guard let flag = state.withLock({ $0.pokes[runID] }) else { return false }
        flag.signal()
        return true
    }

    /// Tells waiters that `key` (a run id or `org:<id>`) changed.
    func changed(_ key: String) {
        let waiting = state.withLock { $0.waiters.removeValue(forKey: key) }
        for continuation in waiting?.values ?? [:].values { continuation.resume() }
    }

    /// Waits until `key` changes or `timeout` passes (whichever first); cancellation ends the wait too.
    func wait(for key: String, timeout: Duration) async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let alreadyCancelled = self.state.withLock { state -> Bool in
                            if state.cancelled.remove(id) != nil { return true }
                            state.waiters[key, default: [:]][id] = continuation
                            return false
                        }
                        if alreadyCancelled { continuation.resume() }
                    }
                } onCancel: {
                    let continuation = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                        if let continuation = state.waiters[key]?.removeValue(forKey: id) {
                            if state.waiters[key]?.isEmpty == true { state.waiters[key] = nil }
                            return continuation
                        }
                        state.cancelled.insert(id)
                        return nil
                    }
                    continuation?.resume()
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }
}
