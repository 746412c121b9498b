import CaravanCore
import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// Tells the other nodes sharing the database that something they may hold in memory changed: an API key
/// revoked, a member removed, a run released. A signal is sent inside the transaction that made the change, so it
/// reaches the other nodes (PostgreSQL `NOTIFY`) only once that change is committed and visible; with SQLite, the
/// one node learns of its own changes directly.
///
/// Subscribers register by topic before `run()` starts. Each is also told, through `.resync`, whenever
/// listening starts or stops: notifications sent while this node was not listening are lost, so a subscriber
/// must then drop what it learned (a cache) or look again (a poll).
public final class ClusterSignals: Service, Sendable {
    /// What a subscriber is told.
    public enum Event: Sendable, Equatable {
        /// A signal on the subscriber's topic, with the payload that follows `topic:`.
        case signal(String)
        /// Listening started or stopped: signals may have been missed.
        case resync
    }

    public typealias Handler = @Sendable (Event) -> Void

    /// The notification channel all of Caravan's signals share.
    public static let channel = "caravan_signals"

    private struct Echo {
        var sent: ContinuousClock.Instant
        var arrived = false
        let flag = WakeFlag()
    }

    private struct State {
        var handlers: [String: [Handler]] = [:]
        var listening = false
        /// Signals this node sent, by token, until they come back.
        var echoes: [String: Echo] = [:]
    }

    private let database: any Database
    private let logger: Logger
    private let state = Mutex(State())

    public init(database: any Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    /// Whether other nodes may share the database (PostgreSQL).
    public var isShared: Bool { database.dialect == .postgres }

    /// Whether this node hears every signal now: what it learned from the database can be kept in memory.
    public var isListening: Bool { state.withLock { $0.listening } }

    /// Calls `handler` for every signal on `topic` and on every resync. Register before `run()`.
    public func subscribe(_ topic: String, _ handler: @escaping Handler) {
        state.withLock { $0.handlers[topic, default: []].append(handler) }
    }

    /// Sends a signal on `topic`, to be delivered when the transaction of `executor` commits.
    /// - Parameter awaited: whether the caller will `awaitDelivery` (only then is its echo watched for).
    /// - Returns: a token to pass to `awaitDelivery` (`nil` on SQLite, where there is no other node, or when not
    ///   `awaited`).
    @discardableResult
    public func send(
        _ topic: String,
        payload: String = "",
        awaited: Bool = false,
        in executor: any SQLExecutor
    ) async throws(StorageError) -> String? {
        guard executor.dialect == .postgres else { return nil }
        guard awaited else {
            try await executor.notify(channel: Self.channel, payload: "\(topic):\(payload)")
            return nil
        }
        let token = UUID().uuidString
        let now = ContinuousClock.now
        state.withLock { state in
            // Tokens of transactions that rolled back are never delivered: forget them after a while.
            if state.echoes.count > 256 { state.echoes = state.echoes.filter { now - $0.value.sent < .seconds(10) } }
            state.echoes[token] = Echo(sent: now)
        }
        try await executor.notify(channel: Self.channel, payload: "\(topic):\(payload)|\(token)")
        return token
    }

    /// Waits (at most `timeout`) until this node's own listener has received the signal of `token`. PostgreSQL
    /// delivers a notification to every listening session at the same commit, so once it is back here the other
    /// nodes have it too, give or take their scheduling: a change committed on this node then takes effect on the
    /// others before the request that made it is answered.
    public func awaitDelivery(_ token: String?, timeout: Duration = .seconds(1)) async {
        guard let token else { return }
        let flag = state.withLock { state -> WakeFlag? in
            guard state.listening, let echo = state.echoes[token], !echo.arrived else {
                state.echoes.removeValue(forKey: token)
                return nil
            }
            return echo.flag
        }
        guard let flag else { return }
        await flag.wait(timeout: timeout)
        state.withLock { _ = $0.echoes.removeValue(forKey: token) }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.database.listen(
                channel: Self.channel,
                listening: { self.setListening($0) },
                received: { self.deliver($0) }
            )
        }
        setListening(false)
    }

    private func setListening(_ listening: Bool) {
        let handlers = state.withLock { state -> [Handler] in
            guard state.listening != listening else { return [] }
            state.listening = listening
            return state.handlers.values.flatMap { $0 }
        }
        if !handlers.isEmpty, isShared {
            logger.info(
                listening
                    ? "Listening for other nodes' changes" : "Not listening for other nodes' changes; caches are off"
            )
        }
        for handler in handlers { handler(.resync) }
    }

    private func deliver(_ notification: String) {
        // `topic:payload`, or `topic:payload|token` for a signal its sender awaits
        guard let colon = notification.firstIndex(of: ":") else { return }
        let topic = String(notification[..<colon])
        var payload = notification[notification.index(after: colon)...]
        var token: String?
        if let bar = payload.lastIndex(of: "|") {
            token = String(payload[payload.index(after: bar)...])
            payload = payload[..<bar]
        }
        let (handlers, echo) = state.withLock { state -> ([Handler], WakeFlag?) in
            guard let token, state.echoes[token] != nil else { return (state.handlers[topic] ?? [], nil) }
            state.echoes[token]?.arrived = true
            return (state.handlers[topic] ?? [], state.echoes[token]?.flag)
        }
        for handler in handlers { handler(.signal(String(payload))) }
        echo?.signal()
    }
}
