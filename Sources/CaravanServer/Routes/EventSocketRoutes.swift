import CaravanCore
import CaravanEngine
import CaravanIdentity
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket
import Synchronization

/// `GET /v1/events/ws`: the organization's events as a WebSocket, for clients that cannot keep an SSE stream (or
/// prefer one socket). The upgrade request passes the API's own router, guard included, before anything is
/// upgraded: `EventSocketServer` hands it over with a slot in which the handler below leaves the stream to run.
struct EventSocketRoutes {
    let engine: Engine

    static let path = "/v1/events/ws"

    func register(in routes: RouteRegistrar) {
        routes.add(
            EndpointDescription(
                .get,
                Self.path,
                operationID: "streamEventsWebSocket",
                summary:
                    "The organization's events as a WebSocket (one text message per event: `{id, event}`), with the filters of `/v1/events` and `?after=`. Credentials: `Authorization: Bearer`, or the subprotocols `caravan.v1, bearer.<token>`; never in the URL. One-way: a data message from the client closes the socket (1008).",
                tag: "runs",
                access: .organization(.read),
                query: [APISchemas.after] + EventQuery.parameters,
                responses: [101: ("Switching to the WebSocket protocol", ["type": "object"], "application/json")]
            )
        ) { request, context in
            guard let slot = EventSocketSlot.current else {
                throw CaravanError(
                    .invalidRequest,
                    "This path is a WebSocket: open it with Upgrade: websocket (or read /v1/events as text/event-stream)."
                )
            }
            if slot.refusedProtocols {
                throw CaravanError.validation(
                    "/Sec-WebSocket-Protocol",
                    "offer the subprotocol caravan.v1 (with bearer.<token> to authenticate)"
                )
            }
            let orgID = try context.organizationID()
            let filter = try EventQuery.filter(request)
            var start = try RunRoutes.optionalPosition(request) ?? -1
            if start < 0 { start = try await engine.latestEventID(orgID: orgID) }
            slot.follower.withLock {
                $0 = EventFollower.organization(engine: engine, orgID: orgID, filter: filter, after: start)
            }
            return Response(status: .ok)
        }
    }
}

/// Where the handler of an upgrade request leaves the stream it allowed; set (as a task local) only around the
/// upgrade's pass through the router, so a plain HTTP request to the path finds none.
final class EventSocketSlot: Sendable {
    @TaskLocal static var current: EventSocketSlot?

    /// Whether the client offered subprotocols, none of them `caravan.v1`.
    let refusedProtocols: Bool
    let follower = Mutex<EventFollower?>(nil)

    init(refusedProtocols: Bool) {
        self.refusedProtocols = refusedProtocols
    }
}

/// The HTTP/1 server with the event WebSocket beside it: every request is served as before (the same channel
/// handlers), and an upgrade request to `/v1/events/ws` is authorized by the API before it is upgraded; a refusal
/// is the API's own answer (401, 403, 422 as problem+json).
enum EventSocketServer {
    /// The subprotocol spoken on the socket.
    static let subprotocol = "caravan.v1"
    /// The prefix of the subprotocol that carries a credential, for browsers (which cannot set headers).
    static let bearerPrefix = "bearer."

    static func builder(
        http1: HTTP1Channel.Configuration,
        idleTimeout: TimeAmount,
        api: @escaping @Sendable (Request, CaravanRequestContext) async throws -> Response
    ) -> HTTPServerBuilder {
        let configuration = HTTP1WebSocketUpgradeChannel.Configuration(
            http1: http1,
            ws: WebSocketServerConfiguration(autoPing: .enabled(timePeriod: .seconds(15)))
        )
        return HTTPServerBuilder { responder in
            EventSocketChannel(
                inner: HTTP1WebSocketUpgradeChannel(responder: responder, configuration: configuration) {
                    head,
                    channel,
                    logger in
                    try await shouldUpgrade(head, channel: channel, logger: logger, api: api)
                },
                idleTimeout: idleTimeout
            )
        }
    }

    /// Runs the upgrade request through the API; upgrades when the handler left a stream, else writes the API's
    /// answer and closes.
    static func shouldUpgrade(
        _ head: HTTPRequest,
        channel: any Channel,
        logger: Logger,
        api: @escaping @Sendable (Request, CaravanRequestContext) async throws -> Response
    ) async throws -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        guard let path = head.path,
            path.split(separator: "?", maxSplits: 1).first.map(String.init) == EventSocketRoutes.path
        else { return .dontUpgrade }
        var head = head
        let offered = head.headerFields[values: .secWebSocketProtocol]
            .flatMap { $0.split(separator: ",") }
            .map { String($0.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
        var answer: HTTPFields = [:]
        if offered.contains(subprotocol) {
            answer[.secWebSocketProtocol] = subprotocol
            if head.headerFields[.authorization] == nil,
                let token = offered.first(where: { $0.hasPrefix(bearerPrefix) })?.dropFirst(bearerPrefix.count)
            {
                head.headerFields[.authorization] = "Bearer " + token
            }
        }
        let slot = EventSocketSlot(refusedProtocols: !offered.isEmpty && answer.isEmpty)
        let request = Request(head: head, body: RequestBody(buffer: ByteBuffer()))
        let context = CaravanRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: logger))
        let response: Response
        do {
            response = try await EventSocketSlot.$current.withValue(slot) { try await api(request, context) }
        } catch {
            response = Response(status: .internalServerError)
        }
        guard response.status == .ok, let follower = slot.follower.withLock({ $0 }) else {
            await refuse(with: response, on: channel)
            return .dontUpgrade
        }
        return .upgrade(answer) { inbound, outbound, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // One-way: the first data frame from the client ends the socket (pings are answered below us).
                    for try await _ in inbound {
                        try await outbound.close(.policyViolation, reason: "This stream is one-way: send nothing.")
                        return
                    }
                }
                group.addTask {
                    try await follower.run { item in
                        switch item {
                        case .events(let events):
                            for (position, event) in events {
                                var text = "{\"id\":\(position),\"event\":"
                                APIRequest.json(event).write(to: &text)
                                try await outbound.writeTextMessage(text + "}")
                            }
                        case .live, .quiet:
                            break  // no live events in the organization's stream; pings keep the socket alive
                        case .shutdown:
                            try await outbound.close(
                                .goingAway,
                                reason: "The server is shutting down; reconnect with after=<last id>."
                            )
                        }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Writes the API's refusal on the connection still speaking HTTP/1, then ends the output: the library's own
    /// answer to an upgrade it does not make (an empty 400) then finds the connection closed and is not sent.
    static func refuse(with response: Response, on channel: any Channel) async {
        let collector = BodyCollector()
        try? await response.body.write(collector)
        let body: ByteBuffer = collector.buffer.withLock { $0 }
        var headers = HTTPHeaders()
        for field in response.headers
        where field.name != .contentLength && field.name != .connection && field.name != .transferEncoding {
            headers.add(name: field.name.rawName, value: field.value)
        }
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(
            version: .http1_1,
            status: HTTPResponseStatus(statusCode: Int(response.status.code)),
            headers: headers
        )
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(body)), promise: nil)
        try? await channel.writeAndFlush(HTTPServerResponsePart.end(nil)).get()
        try? await channel.close(mode: .output).get()
    }

    /// Collects a response body in memory (a refusal's problem+json: small).
    private final class BodyCollector: ResponseBodyWriter, Sendable {
        let buffer = Mutex(ByteBuffer())

        func write(_ buffer: ByteBuffer) async throws {
            self.buffer.withLock { _ = $0.writeImmutableBuffer(buffer) }
        }

        func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}

/// The HTTP/1 channel with WebSocket upgrade, plus the deadline of the first request head: until a request head
/// has arrived, the channel handlers that bound slow clients (`RequestReadTimeoutHandler`) are not yet in the
/// pipeline (the upgrade decision comes first), so this one closes a connection whose first head takes longer than
/// the idle timeout.
struct EventSocketChannel: ServerChildChannel {
    let inner: HTTP1WebSocketUpgradeChannel
    let idleTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1WebSocketUpgradeChannel.Value> {
        let idleTimeout = idleTimeout
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let upgrader = try channel.pipeline.syncOperations.handler(
                type: NIOTypedHTTPServerUpgradeHandler<HTTP1WebSocketUpgradeChannel.UpgradeResult>.self
            )
            try channel.pipeline.syncOperations.addHandler(
                FirstRequestDeadline(timeout: idleTimeout),
                position: .before(upgrader)
            )
            return value
        }
    }

    func handle(value: HTTP1WebSocketUpgradeChannel.Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Closes the connection unless a request head arrives within `timeout`; leaves the pipeline with the first head.
final class FirstRequestDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        timer?.cancel()
        timer = nil
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// A first request the decoder refuses (a head over the size limits, not HTTP) is answered here: before the
    /// upgrade decision no other handler answers it. `431` for oversized headers, else `400`; then the connection
    /// closes.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        timer?.cancel()
        timer = nil
        let status: HTTPResponseStatus =
            (error as? HTTPParserError) == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        let head = HTTPResponseHead(
            version: .http1_1,
            status: status,
            headers: ["Content-Length": "0", "Connection": "close"]
        )
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete {
            [context = NIOLoopBound(context, eventLoop: context.eventLoop)] _ in
            context.value.close(promise: nil)
        }
    }

    private func arm(context: ChannelHandlerContext) {
        timer?.cancel()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            bound.value.close(promise: nil)
        }
    }
}
