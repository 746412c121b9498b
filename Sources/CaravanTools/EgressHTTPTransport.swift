import AsyncHTTPClient
import CaravanCore
import CaravanOutbound
import Foundation
import Logging
import MCP
import NIOCore
import NIOHTTP1

/// MCP's streamable HTTP transport, client side, through `EgressHTTPClient` (the SDK's `HTTPClientTransport` uses
/// URLSession, which would bypass the egress policy).
///
/// Each message is POSTed to the endpoint with `Accept: application/json, text/event-stream`. The answer is either a
/// JSON body (a message or a batch) or a server-sent event stream whose `data` fields are messages; both are handed
/// to the client. The `Mcp-Session-Id` of the initialize answer is sent on every later request, with the protocol
/// version that the initialize answer named (`MCP-Protocol-Version`). `terminateSession()` DELETEs the session.
///
/// Not supported: the optional GET stream for messages the server starts on its own (server requests such as
/// sampling, and notifications outside an answer), and resuming an answer stream that broke (`Last-Event-ID`).
actor EgressHTTPTransport: Transport {
    nonisolated let logger: Logger
    /// Fires when the server ended the session (404 on a request that carried it) or the transport was closed.
    nonisolated let ended = EndSignal()
    private let name: String
    private let endpoint: String
    private let headers: [String: String]
    private let http: EgressHTTPClient
    private let requestTimeout: Duration
    private let messages: AsyncThrowingStream<Data, any Error>
    private let continuation: AsyncThrowingStream<Data, any Error>.Continuation
    private(set) var sessionID: String?
    private var protocolVersion: String?
    private var inflight: [UUID: Task<Void, any Error>] = [:]

    /// The longest message (a JSON body or one event) accepted from the server.
    static let maxMessageBytes = 16 * 1024 * 1024

    /// - Parameter requestTimeout: the longest one exchange may take, from the POST to the end of its answer.
    init(
        name: String,
        endpoint: String,
        headers: [String: String],
        http: EgressHTTPClient,
        requestTimeout: Duration,
        logger: Logger
    ) {
        var logger = logger
        logger[metadataKey: "mcp.server"] = .string(name)
        self.logger = logger
        self.name = name
        self.endpoint = endpoint
        self.headers = headers
        self.http = http
        self.requestTimeout = requestTimeout
        (messages, continuation) = AsyncThrowingStream<Data, any Error>.makeStream()
    }

    func connect() async throws {}

    func disconnect() async {
        let reason = Failure.unavailable("The connection to the MCP server '\(name)' was closed.")
        continuation.finish(throwing: reason)
        ended.fire(reason)
        for task in inflight.values { task.cancel() }
        inflight = [:]
    }

    func receive() -> AsyncThrowingStream<Data, any Error> { messages }

    func send(_ data: Data) async throws {
        if let reason = ended.reason { throw reason }
        let id = UUID()
        let task = Task { try await self.post(data) }
        inflight[id] = task
        defer { inflight[id] = nil }
        try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }

    /// Ends the session on the server (`DELETE` with its id), if it gave one. Errors are ignored.
    func terminateSession() async {
        guard let sessionID else { return }
        self.sessionID = nil
        var request = HTTPClientRequest(url: endpoint)
        request.method = .DELETE
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        request.headers.replaceOrAdd(name: "Mcp-Session-Id", value: sessionID)
        if let protocolVersion { request.headers.replaceOrAdd(name: "MCP-Protocol-Version", value: protocolVersion) }
        do {
            let response = try await http.execute(request, timeout: .seconds(5), maxBodyBytes: 64 * 1024)
            logger.debug("MCP session ended", metadata: ["http.status": .stringConvertible(response.status.code)])
        } catch {
            logger.debug("Could not end the MCP session", metadata: ["error": .string(error.description)])
        }
    }

    private struct Outgoing: Decodable {
        var method: String?
    }

    private func post(_ data: Data) async throws {
        let isInitialize = (try? JSONDecoder().decode(Outgoing.self, from: data))?.method == Initialize.name
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        request.headers.replaceOrAdd(name: "Accept", value: "application/json, text/event-stream")
        if let sessionID { request.headers.replaceOrAdd(name: "Mcp-Session-Id", value: sessionID) }
        if let protocolVersion { request.headers.replaceOrAdd(name: "MCP-Protocol-Version", value: protocolVersion) }
        request.body = .bytes(ByteBuffer(bytes: data))

        let deadline = ContinuousClock.now + requestTimeout
        let response: HTTPClientResponse
        do {
            response = try await http.stream(request, timeout: .nanoseconds(requestTimeout.nanosecondsClamped))
        } catch {
            throw Self.toolError(error, server: name)
        }
        if let session = response.headers.first(name: "mcp-session-id"), sessionID == nil {
            sessionID = session
        }
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            let body = try? await EgressHTTPTransport.read(
                response.body,
                upTo: 64 * 1024,
                until: .now + .seconds(2),
                server: name
            )
            throw failure(status: status, body: body, hadSession: request.headers.contains(name: "mcp-session-id"))
        }
        let contentType = response.headers.first(name: "content-type")?.lowercased() ?? ""
        if status == 202 || status == 204 {
            _ = try? await Self.read(response.body, upTo: 64 * 1024, until: deadline, server: name)
            return
        }
        if contentType.hasPrefix("text/event-stream") {
            try await readEvents(response.body, until: deadline, isInitialize: isInitialize)
        } else if contentType.hasPrefix("application/json") {
            let body = try await Self.read(response.body, upTo: Self.maxMessageBytes, until: deadline, server: name)
            let message = Data(body.readableBytesView)
            guard !message.isEmpty else { return }
            if isInitialize { noteProtocolVersion(message) }
            continuation.yield(message)
        } else {
            let body = try? await Self.read(response.body, upTo: 64 * 1024, until: deadline, server: name)
            if body?.readableBytes ?? 0 == 0 { return }
            throw Failure.protocolError("The MCP server '\(name)' answered with the content type '\(contentType)'.")
        }
    }

    private func readEvents(
        _ body: HTTPClientResponse.Body,
        until deadline: ContinuousClock.Instant,
        isInitialize: Bool
    ) async throws {
        let name = self.name
        try await Self.withDeadline(deadline, server: name) {
            var parser = ServerSentEventParser(maxEventBytes: Self.maxMessageBytes)
            for try await chunk in body {
                let events: [ServerSentEventParser.Event]
                do {
                    events = try parser.feed(chunk.readableBytesView)
                } catch {
                    throw Failure(
                        code: .responseTooLarge,
                        message: "The MCP server '\(name)' sent an event longer than \(Self.maxMessageBytes) bytes.",
                        retryable: false
                    )
                }
                for event in events where (event.type ?? "message") == "message" && !event.data.isEmpty {
                    await self.deliver(Data(event.data.utf8), isInitialize: isInitialize)
                }
            }
        }
    }

    private func deliver(_ message: Data, isInitialize: Bool) {
        if isInitialize { noteProtocolVersion(message) }
        continuation.yield(message)
    }

    private struct InitializeAnswer: Decodable {
        struct Result: Decodable { var protocolVersion: String? }
        var result: Result?
    }

    private func noteProtocolVersion(_ message: Data) {
        if let version = (try? JSONDecoder().decode(InitializeAnswer.self, from: message))?.result?.protocolVersion {
            protocolVersion = version
        }
    }

    private struct ErrorBody: Decodable {
        struct Detail: Decodable { var message: String? }
        var error: Detail?
    }

    private func failure(status: Int, body: ByteBuffer?, hadSession: Bool) -> Failure {
        let detail = body.flatMap { try? JSONDecoder().decode(ErrorBody.self, from: Data($0.readableBytesView)) }?
            .error?.message
        let suffix = detail.map { ": \($0)" } ?? "."
        if status == 404 && hadSession {
            sessionID = nil
            let reason = Failure.unavailable("The MCP server '\(name)' ended the session\(suffix)")
            ended.fire(reason)
            return reason
        }
        if status == 401 || status == 403 {
            return .unavailable(
                "The MCP server '\(name)' refused the request (HTTP \(status))\(suffix)",
                retryable: false
            )
        }
        return .unavailable(
            "The MCP server '\(name)' answered HTTP \(status)\(suffix)",
            retryable: status == 408 || status == 429 || status >= 500
        )
    }

    // MARK: - Helpers

    static func toolError(_ error: Failure, server: String) -> Failure {
        switch error.code {
        case "egress_denied", "dns_error", "too_many_redirects", "response_too_large":
            return error
        case "timeout":
            return Failure(
                code: "tool_timeout",
                message: "The MCP server '\(server)' did not answer in time.",
                retryable: true
            )
        default:
            return .unavailable(
                "The MCP server '\(server)' cannot be reached: \(error.message)",
                retryable: error.retryable
            )
        }
    }

    static func read(
        _ body: HTTPClientResponse.Body,
        upTo maxBytes: Int,
        until deadline: ContinuousClock.Instant,
        server: String
    )
        async throws -> ByteBuffer
    {
        do {
            return try await withDeadline(deadline, server: server) { try await body.collect(upTo: maxBytes) }
        } catch is NIOTooManyBytesError {
            throw Failure(
                code: .responseTooLarge,
                message: "The MCP server '\(server)' answered more than \(maxBytes) bytes.",
                retryable: false
            )
        }
    }

    static func withDeadline<T: Sendable>(
        _ deadline: ContinuousClock.Instant,
        server: String,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard let value = try await CaravanCore.withDeadline(deadline, body) else {
            throw Failure(
                code: "tool_timeout",
                message: "The MCP server '\(server)' did not answer in time.",
                retryable: true
            )
        }
        return value
    }
}

extension Duration {
    /// The duration in nanoseconds, clamped to `Int64`.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return product.addingReportingOverflow(attoseconds / 1_000_000_000).overflow
            ? .max : product + attoseconds / 1_000_000_000
    }
}

/// Parses a `text/event-stream` body into events (the WHATWG rules: `\n`, `\r\n` or `\r` line ends, `data` lines
/// joined by `\n`, comments and unknown fields ignored).
struct ServerSentEventParser {
    struct Event: Equatable {
        var type: String?
        var data: String
        var id: String?
    }

    struct TooLarge: Error {}

    let maxEventBytes: Int
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var type: String?
    private var id: String?
    private var lastWasCR = false

    init(maxEventBytes: Int) {
        self.maxEventBytes = maxEventBytes
    }

    mutating func feed<Bytes: Sequence>(_ bytes: Bytes) throws -> [Event] where Bytes.Element == UInt8 {
        var events: [Event] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") && lastWasCR {
                lastWasCR = false
                continue
            }
            lastWasCR = byte == UInt8(ascii: "\r")
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                if let event = endLine() { events.append(event) }
            } else {
                line.append(byte)
                if line.count + data.count > maxEventBytes { throw TooLarge() }
            }
        }
        return events
    }

    private mutating func endLine() -> Event? {
        defer { line = [] }
        if line.isEmpty {
            defer {
                data = []
                hasData = false
                type = nil
            }
            guard hasData else { return nil }
            return Event(type: type, data: String(decoding: data, as: UTF8.self), id: id)
        }
        if line.first == UInt8(ascii: ":") { return nil }
        let field: String
        var value: ArraySlice<UInt8>
        if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            field = String(decoding: line[..<colon], as: UTF8.self)
            value = line[(colon + 1)...]
            if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        } else {
            field = String(decoding: line, as: UTF8.self)
            value = []
        }
        switch field {
        case "data":
            if hasData { data.append(UInt8(ascii: "\n")) }
            data.append(contentsOf: value)
            hasData = true
        case "event":
            type = String(decoding: value, as: UTF8.self)
        case "id":
            id = String(decoding: value, as: UTF8.self)
        default:
            break
        }
        return nil
    }
}
