public import CaravanCore
public import CaravanModels
public import CaravanOutbound
import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// Live MCP connections, one per (organization, server configuration), reused across tool calls.
///
/// A connection that died (its process exited, its session ended) is replaced on the next use; concurrent first
/// uses share one connection attempt. A failed attempt is not remembered: the next use tries again. `shutdown()`
/// closes every connection and refuses new uses.
///
/// As a `Service`, it closes connections idle for `idleTimeout` (checked every minute) and, on graceful shutdown,
/// all of them.
public final class MCPConnectionCache: Service, Sendable {
    public struct Key: Hashable, Sendable {
        public var orgID: String
        public var config: MCPServerConfig

        public init(orgID: String, config: MCPServerConfig) {
            self.orgID = orgID
            self.config = config
        }
    }

    private enum Slot {
        case connecting(Task<Result<MCPConnection, Failure>, Never>, attempt: UInt64)
        case ready(MCPConnection, lastUsed: ContinuousClock.Instant)
    }

    private struct State {
        var slots: [Key: Slot] = [:]
        var attempts: UInt64 = 0
        var isShutDown = false
    }

    private let state = Mutex(State())
    private let http: EgressHTTPClient
    private let logger: Logger
    private let timeout: Duration
    private let idleTimeout: Duration?
    private let commands: MCPCommandPolicy

    /// - Parameters:
    ///   - http: the client through which HTTP servers are reached.
    ///   - commands: the commands stdio servers may run (the operator's list); none by default.
    ///   - timeout: for each handshake, and the default for each request.
    ///   - idleTimeout: `run()` closes connections unused for this long (`nil`: never).
    public init(
        http: EgressHTTPClient,
        logger: Logger,
        commands: MCPCommandPolicy = .none,
        timeout: Duration = .seconds(30),
        idleTimeout: Duration? = .seconds(900)
    ) {
        self.http = http
        self.commands = commands
        self.logger = logger
        self.timeout = timeout
        self.idleTimeout = idleTimeout
    }

    /// Closes idle and dead connections every minute until graceful shutdown, then closes them all.
    public func run() async throws {
        let idleTimeout = self.idleTimeout
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(60))
                guard !Task.isCancelled else { break }
                if let idleTimeout { await self.closeIdle(olderThan: idleTimeout) }
            }
        }
        await shutdown()
    }

    /// How many connections are open or opening.
    public var count: Int { state.withLock { $0.slots.count } }

    /// A live connection to `config` for the organization `orgID`: the cached one, or a new one.
    /// - Parameter logger: for this use (the connection itself logs with the cache's logger, as it outlives the use).
    /// - Throws: what `MCPConnection.connect` throws; `mcp_command_not_allowed` for a command the operator did not
    ///   allow; `mcp_unavailable` after `shutdown()`.
    public func connection(
        orgID: String,
        config: MCPServerConfig,
        logger: Logger? = nil
    ) async throws(Failure) -> MCPConnection {
        if let command = config.command, !commands.permits(command) {
            (logger ?? self.logger).warning(
                "Refused an MCP server command that is not allowed",
                metadata: ["mcp.server": .string(config.name), "caravan.org_id": .string(orgID)]
            )
            throw MCPCommandPolicy.refusal(server: config.name)
        }
        let server = config
        let useLogger = logger ?? self.logger
        let key = Key(orgID: orgID, config: config)
        enum Step {
            case use(MCPConnection)
            case wait(Task<Result<MCPConnection, Failure>, Never>, attempt: UInt64)
        }
        var dead: MCPConnection?
        let step = try state.withLock { state throws(Failure) -> Step in
            guard !state.isShutDown else { throw .unavailable("MCP connections are shutting down.") }
            switch state.slots[key] {
            case .ready(let connection, _) where connection.isAlive:
                state.slots[key] = .ready(connection, lastUsed: .now)
                return .use(connection)
            case .ready(let connection, _):
                dead = connection
            case .connecting(let task, let attempt):
                return .wait(task, attempt: attempt)
            case nil:
                break
            }
            state.attempts += 1
            let attempt = state.attempts
            let (http, logger, timeout) = (self.http, self.logger, self.timeout)
            useLogger.debug("Connecting to MCP server", metadata: ["mcp.server": .string(server.name)])
            let task = Task { () -> Result<MCPConnection, Failure> in
                do throws(Failure) {
                    return .success(
                        try await MCPConnection.connect(server, http: http, logger: logger, timeout: timeout)
                    )
                } catch {
                    return .failure(error)
                }
            }
            state.slots[key] = .connecting(task, attempt: attempt)
            return .wait(task, attempt: attempt)
        }
        if let dead {
            useLogger.debug("Replacing a dead MCP connection", metadata: ["mcp.server": .string(server.name)])
            Task { await dead.close() }
        }
        switch step {
        case .use(let connection):
            return connection
        case .wait(let task, let attempt):
            let result = await task.value
            let discard = state.withLock { state -> Bool in
                guard case .connecting(_, let current) = state.slots[key], current == attempt else {
                    // Another waiter settled it already, or shutdown or invalidation took it.
                    return state.isShutDown
                }
                switch result {
                case .success(let connection):
                    if state.isShutDown { return true }
                    state.slots[key] = .ready(connection, lastUsed: .now)
                case .failure:
                    state.slots[key] = nil
                }
                return false
            }
            let connection = try result.get()
            if discard {
                await connection.close()
                throw .unavailable("MCP connections are shutting down.")
            }
            return connection
        }
    }

    /// The tools of `config`. A connection found dead is replaced and the listing tried once more.
    public func listTools(
        orgID: String,
        config: MCPServerConfig,
        logger: Logger? = nil
    ) async throws(Failure) -> [ToolSpec] {
        let connection = try await connection(orgID: orgID, config: config, logger: logger)
        do {
            return try await connection.listTools()
        } catch  where error.code == "mcp_unavailable" && !connection.isAlive {
            return try await self.connection(orgID: orgID, config: config, logger: logger).listTools()
        }
    }

    /// Calls a tool of `config`. Not retried on another connection: a call may have had effects before it failed.
    public func callTool(
        orgID: String,
        config: MCPServerConfig,
        name: String,
        arguments: JSONValue,
        timeout: Duration? = nil,
        logger: Logger? = nil
    ) async throws(Failure) -> ToolOutput {
        try await connection(orgID: orgID, config: config, logger: logger).callTool(
            name: name,
            arguments: arguments,
            timeout: timeout
        )
    }

    /// Closes and forgets the connection to `config` for `orgID` (after its configuration changed, say).
    public func invalidate(orgID: String, config: MCPServerConfig) async {
        let slot = state.withLock { $0.slots.removeValue(forKey: Key(orgID: orgID, config: config)) }
        await Self.close(slot)
    }

    /// Closes and forgets the connections of `orgID`.
    public func invalidate(orgID: String) async {
        let slots = state.withLock { state -> [Slot] in
            let keys = state.slots.keys.filter { $0.orgID == orgID }
            return keys.compactMap { state.slots.removeValue(forKey: $0) }
        }
        for slot in slots { await Self.close(slot) }
    }

    /// Closes the connections unused for `idle` or dead.
    public func closeIdle(olderThan idle: Duration) async {
        let now = ContinuousClock.now
        let stale = state.withLock { state -> [Slot] in
            let keys = state.slots.compactMap { key, slot -> Key? in
                if case .ready(let connection, let lastUsed) = slot, now - lastUsed > idle || !connection.isAlive {
                    return key
                }
                return nil
            }
            return keys.compactMap { state.slots.removeValue(forKey: $0) }
        }
        for slot in stale { await Self.close(slot) }
    }

    /// Closes every connection (waiting for attempts in flight) and refuses new uses.
    public func shutdown() async {
        let slots = state.withLock { state -> [Slot] in
            state.isShutDown = true
            defer { state.slots = [:] }
            return Array(state.slots.values)
        }
        await withTaskGroup(of: Void.self) { group in
            for slot in slots { group.addTask { await Self.close(slot) } }
        }
    }

    private static func close(_ slot: Slot?) async {
        switch slot {
        case .ready(let connection, _):
            await connection.close()
        case .connecting(let task, _):
            if case .success(let connection) = await task.value { await connection.close() }
        case nil:
            break
        }
    }
}
