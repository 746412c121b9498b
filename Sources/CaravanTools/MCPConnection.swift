public import CaravanCore
public import CaravanModels
public import CaravanOutbound
import Foundation
public import Logging
import MCP
import Synchronization

/// A live session with one MCP server, over stdio (a child process) or streamable HTTP (through the egress client).
///
/// Every request is bounded by a timeout. When the server goes away (the process exits or closes its output, the
/// HTTP session ends), pending calls fail at once with `mcp_unavailable` and `isAlive` turns false, so that a cache
/// can open a new connection. `close()` ends the child process or the HTTP session.
public final class MCPConnection: Sendable {
    private enum Channel: Sendable {
        case stdio(StdioProcessTransport)
        case http(EgressHTTPTransport)

        var transport: any Transport {
            switch self {
            case .stdio(let transport): transport
            case .http(let transport): transport
            }
        }

        var ended: EndSignal {
            switch self {
            case .stdio(let transport): transport.ended
            case .http(let transport): transport.ended
            }
        }
    }

    /// How the server was configured.
    public let config: MCPServerConfig
    /// The server's name and version, from its answer to `initialize`.
    public let serverName: String
    public let serverVersion: String
    /// The server's instructions for the model, if it gave any.
    public let instructions: String?
    /// The child's process id, for stdio servers.
    public var processIdentifier: Int32? {
        if case .stdio(let transport) = channel { return transport.pid }
        return nil
    }

    private let client: Client
    private let channel: Channel
    private let logger: Logger
    private let timeout: Duration
    private let closed = Mutex(false)

    /// The longest a call may wait for an HTTP answer, whatever timeout it asked for.
    static let maxHTTPExchange: Duration = .seconds(600)

    private init(
        config: MCPServerConfig,
        client: Client,
        channel: Channel,
        logger: Logger,
        timeout: Duration,
        initialize: Initialize.Result
    ) {
        self.config = config
        self.client = client
        self.channel = channel
        self.logger = logger
        self.timeout = timeout
        self.serverName = initialize.serverInfo.name
        self.serverVersion = initialize.serverInfo.version
        self.instructions = initialize.instructions
    }

    deinit {
        // Dropped without `close()`: do not leave a child process behind.
        guard !closed.withLock({ $0 }) else { return }
        channel.ended.fire(.unavailable("The connection to the MCP server '\(config.name)' was dropped."))
        if case .stdio(let transport) = channel { Task { await transport.terminate() } }
    }

    /// Starts (stdio) or reaches (HTTP) the server and completes the MCP handshake.
    /// - Parameters:
    ///   - http: the client through which HTTP servers are reached; its policy decides which URLs may be.
    ///   - timeout: for the handshake, and the default for each later request.
    /// - Throws: `invalid_config`, `mcp_unavailable` (the program is missing, the server exits, does not answer the
    ///   handshake in time, or answers HTTP errors), `mcp_protocol_error`, and for HTTP `egress_denied`/`dns_error`.
    public static func connect(
        _ config: MCPServerConfig,
        http: EgressHTTPClient,
        logger: Logger,
        timeout: Duration
    )
        async throws(Failure) -> MCPConnection
    {
        if let problem = config.problems.first {
            throw Failure(
                code: "invalid_config",
                message: "The MCP server '\(config.name)' is misconfigured: \(problem).",
                retryable: false
            )
        }
        let channel: Channel
        if let command = config.command {
            channel = .stdio(
                try await StdioProcessTransport.launch(
                    name: config.name,
                    command: command,
                    environment: config.env,
                    logger: logger
                )
            )
        } else if let url = config.url {
            guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
                ["http", "https"].contains(scheme)
            else {
                throw Failure(
                    code: "invalid_config",
                    message: "The MCP server '\(config.name)' has an invalid URL.",
                    retryable: false
                )
            }
            channel = .http(
                EgressHTTPTransport(
                    name: config.name,
                    endpoint: url,
                    headers: config.headers,
                    http: http,
                    requestTimeout: max(timeout, maxHTTPExchange),
                    logger: logger
                )
            )
        } else {
            throw Failure(
                code: "invalid_config",
                message: "The MCP server '\(config.name)' has no command and no URL.",
                retryable: false
            )
        }

        let client = Client(name: "caravan", version: "1.0")
        let ended = channel.ended
        // When the server goes away, fail what is pending now rather than at its timeout.
        Task {
            let reason = await ended.wait()
            logger.debug(
                "MCP connection ended",
                metadata: ["mcp.server": .string(config.name), "reason": .string(reason.message)]
            )
            await client.disconnect()
        }

        let transport = channel.transport
        let outcome: Initialize.Result?
        do {
            outcome = try await withTimeout(timeout) {
                try await client.connect(transport: transport)
            } abort: {
                await client.disconnect()
            }
        } catch {
            // A child that is dying (a write failed, its output ended) says best why: give its reader a moment.
            if case .stdio = channel {
                let deadline = ContinuousClock.now + .milliseconds(500)
                while ended.reason == nil && ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            var mapped = map(error, server: config.name, ended: ended, during: "the MCP handshake")
            if case .stdio = channel, let reason = ended.reason, mapped.code == "mcp_unavailable" { mapped = reason }
            if mapped.code == "tool_timeout" {
                mapped = .unavailable("The MCP server '\(config.name)' did not complete the MCP handshake in time.")
            }
            await shutdown(channel, client: client, reason: mapped)
            throw mapped
        }
        guard let result = outcome else {
            let error = Failure.unavailable(
                "The MCP server '\(config.name)' did not complete the MCP handshake within \(timeout)."
            )
            await shutdown(channel, client: client, reason: error)
            throw error
        }
        logger.debug(
            "Connected to MCP server",
            metadata: [
                "mcp.server": .string(config.name), "mcp.server.name": .string(result.serverInfo.name),
                "mcp.protocol": .string(result.protocolVersion),
            ]
        )
        return MCPConnection(
            config: config,
            client: client,
            channel: channel,
            logger: logger,
            timeout: timeout,
            initialize: result
        )
    }

    /// Whether the server is still there: not closed, its process running and its output open, its session alive.
    public var isAlive: Bool {
        if closed.withLock({ $0 }) || channel.ended.reason != nil { return false }
        if case .stdio(let transport) = channel { return transport.isRunning }
        return true
    }

    /// The server's tools, as tools for models (every page of `tools/list`).
    /// - Throws: `mcp_unavailable`, `mcp_error`, `mcp_protocol_error`, `tool_timeout`.
    public func listTools(timeout: Duration? = nil) async throws(Failure) -> [ToolSpec] {
        var tools: [ToolSpec] = []
        var cursor: String?
        for _ in 0..<100 {
            let request = cursor.map { ListTools.request(.init(cursor: $0)) } ?? ListTools.request(.init())
            let page = try await perform(request, timeout: timeout ?? self.timeout, what: "tools/list")
            tools += page.tools.map(ToolSpec.init(mcp:))
            guard let next = page.nextCursor, !next.isEmpty, next != cursor else { break }
            cursor = next
        }
        return tools
    }

    /// Calls the tool `name` with `arguments` (a JSON object, or null for none).
    ///
    /// A tool that fails in its own terms answers normally with `isError` set; errors are thrown only when the call
    /// could not be made or answered.
    /// - Parameter timeout: defaults to the connection's; on expiry the server is told to cancel the call.
    /// - Throws: `invalid_arguments`, `tool_timeout`, `mcp_unavailable`, `mcp_error`, `mcp_protocol_error`.
    public func callTool(
        name: String,
        arguments: JSONValue,
        timeout: Duration? = nil
    ) async throws(Failure) -> ToolOutput {
        let parameters: [String: MCP.Value]?
        switch arguments {
        case .null: parameters = nil
        case .object(let object): parameters = object.mapValues(\.mcpValue)
        default:
            throw Failure(
                code: "invalid_arguments",
                message: "The arguments of the tool '\(name)' must be a JSON object.",
                retryable: false
            )
        }
        let result = try await perform(
            CallTool.request(.init(name: name, arguments: parameters)),
            timeout: timeout ?? self.timeout,
            what: name
        )
        return ToolOutput(mcp: result)
    }

    /// Ends the session: the child process is stopped (its stdin closed, then `SIGTERM`, then `SIGKILL` after a
    /// grace), the HTTP session deleted. Pending calls fail with `mcp_unavailable`. Idempotent.
    public func close() async {
        let first = closed.withLock { closed in
            defer { closed = true }
            return !closed
        }
        guard first else { return }
        await Self.shutdown(
            channel,
            client: client,
            reason: .unavailable("The connection to the MCP server '\(config.name)' was closed.")
        )
    }

    private static func shutdown(_ channel: Channel, client: Client, reason: Failure) async {
        switch channel {
        case .stdio(let transport):
            channel.ended.fire(reason)
            await client.disconnect()
            await transport.terminate()
        case .http(let transport):
            await transport.terminateSession()
            channel.ended.fire(reason)
            await client.disconnect()
        }
    }

    // MARK: - Requests

    private func perform<M: MCP.Method>(
        _ request: Request<M>,
        timeout: Duration,
        what: String
    ) async throws(Failure) -> M.Result {
        if closed.withLock({ $0 }) {
            throw .unavailable("The connection to the MCP server '\(config.name)' is closed.")
        }
        if let reason = channel.ended.reason { throw reason }
        let client = self.client
        let name = config.name
        do {
            let context = try await client.send(request)
            let outcome = try await withTimeout(timeout) {
                try await context.value
            } abort: {
                // Fails the pending request at once, then tells the server (which may take a while over HTTP).
                Task {
                    try? await client.cancelRequest(
                        context.requestID,
                        reason: "Caravan stopped waiting after \(timeout)."
                    )
                }
            }
            guard let outcome else {
                throw Failure(
                    code: "tool_timeout",
                    message: "The MCP server '\(name)' did not answer \(what) within \(timeout).",
                    retryable: true
                )
            }
            return outcome
        } catch {
            let mapped = Self.map(error, server: name, ended: channel.ended, during: what)
            logger.debug(
                "MCP request failed",
                metadata: [
                    "mcp.server": .string(name), "mcp.request": .string(what), "error": .string(mapped.description),
                ]
            )
            throw mapped
        }
    }

    static func map(_ error: any Error, server: String, ended: EndSignal, during what: String) -> Failure {
        if let error = error as? Failure { return error }
        // The server went away: say why rather than how the SDK noticed.
        if let reason = ended.reason { return reason }
        if error is CancellationError || Task.isCancelled {
            return Failure(
                code: "tool_cancelled",
                message: "The call to the MCP server '\(server)' was cancelled.",
                retryable: false
            )
        }
        if let error = error as? MCPError {
            switch error {
            case .connectionClosed, .transportError:
                return .unavailable(
                    "The connection to the MCP server '\(server)' failed: \(error.errorDescription ?? "\(error)")."
                )
            case .parseError:
                return .protocolError("The MCP server '\(server)' answered \(what) with something that is not MCP.")
            default:
                return Failure(
                    code: "mcp_error",
                    message:
                        "The MCP server '\(server)' refused \(what): \(error.errorDescription ?? "\(error)") (code \(error.code)).",
                    retryable: false
                )
            }
        }
        if error is DecodingError {
            return .protocolError(
                "The MCP server '\(server)' answered \(what) with something that is not MCP: \(error)."
            )
        }
        return .unavailable("The MCP server '\(server)' failed during \(what): \(error).")
    }
}
