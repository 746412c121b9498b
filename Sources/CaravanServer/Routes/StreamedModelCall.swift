import CaravanAgents
import CaravanCore
import CaravanModels
import Synchronization

/// A streamed model call whose answer's status waits for its first token: a call that fails before one (a budget
/// spent, a provider's 429 or 5xx once retries and fallbacks are spent) answers with its own status, as OpenAI's
/// does, not with a 200 and an error in the stream. The response's body owns the call from then: it reads
/// `deltas`, then `result`, and cancels the call if the client leaves.
struct StreamedModelCall: Sendable {
    /// The answer's pieces as they arrive; finished when the call ends.
    let deltas: AsyncStream<ChatDelta>
    private let call: Task<Result<ModelAnswer, Failure>, Never>

    /// Starts the call and returns at its first token.
    /// - Throws: the call's failure as an API error, when it failed before a token.
    static func start(
        gateway: ModelGateway,
        _ request: ChatRequest,
        route: [ModelRef],
        context: ModelCallContext
    ) async throws -> StreamedModelCall {
        let (deltas, sink) = AsyncStream.makeStream(of: ChatDelta.self, bufferingPolicy: .unbounded)
        let started = FirstSignal()
        let call = Task { () -> Result<ModelAnswer, Failure> in
            defer {
                sink.finish()
                started.fire()
            }
            do throws(Failure) {
                return .success(
                    try await gateway.complete(
                        request,
                        route: route,
                        context: context,
                        onDelta: { delta in
                            sink.yield(delta)
                            started.fireForDelta()
                        }
                    )
                )
            } catch {
                return .failure(error)
            }
        }
        await withTaskCancellationHandler {
            await started.wait()
        } onCancel: {
            call.cancel()
        }
        if !started.sawDelta, case .failure(let error) = await call.value {
            throw ModelRoutes.apiError(error)
        }
        return StreamedModelCall(deltas: deltas, call: call)
    }

    /// The call's end: its answer or its failure.
    var result: Result<ModelAnswer, Failure> {
        get async { await call.value }
    }

    /// Ends the call (the client left).
    func cancel() { call.cancel() }
}

/// Fires once: when a streamed call's first token arrives, or when the call ends without one.
private final class FirstSignal: Sendable {
    private struct State {
        var fired = false
        var sawDelta = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Whether a token arrived before it fired.
    var sawDelta: Bool { state.withLock(\.sawDelta) }

    /// Fires (a token, or the end); later calls do nothing.
    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.fired else { return [] }
            state.fired = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Fires as a token arrives.
    func fireForDelta() {
        state.withLock { if !$0.fired { $0.sawDelta = true } }
        fire()
    }

    /// Returns once it has fired.
    func wait() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.fired { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}
