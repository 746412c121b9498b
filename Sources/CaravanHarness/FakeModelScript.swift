public import CaravanCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Token counts a fake model reports.
public struct FakeUsage: Sendable, Hashable {
    public var input: Int
    public var output: Int

    public init(input: Int = 10, output: Int = 5) {
        self.input = input
        self.output = output
    }

    public static let `default` = FakeUsage()
}

/// A tool call a fake model makes: the tool's name and its arguments as JSON text. Without an `id` the server
/// makes one up (`call_…` for OpenAI, `toolu_…` for Anthropic).
public struct FakeToolCall: Sendable, Hashable {
    public var id: String?
    public var name: String
    public var arguments: String

    public init(name: String, arguments: String = "{}", id: String? = nil) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// One scripted answer of a fake model server. Every kind works for streamed and non-streamed requests.
public enum FakeModelReply: Sendable, Hashable {
    /// A text answer.
    case text(String, usage: FakeUsage = .default)
    /// Tool calls, after an optional text.
    case toolCalls([FakeToolCall], text: String? = nil, usage: FakeUsage = .default)
    /// A JSON-mode answer: the JSON text as content (OpenAI), or as the input of the forced tool when the request
    /// forces one (Anthropic's structured-output technique), else as text.
    case json(String, usage: FakeUsage = .default)
    /// An HTTP error in the provider's error format, with `Retry-After` when given (e.g. `"2"` or an HTTP date).
    case error(status: Int, message: String = "scripted failure", retryAfter: String? = nil)
    /// No answer for that long (or until the server stops): for timeout tests.
    case hang(milliseconds: Int = 10_000)
    /// 200 with a JSON content type and a body that is not JSON.
    case malformed
    /// Streamed: `text` as a delta, then an error event and the end of the stream. Not streamed: a 500.
    case failMidStream(text: String)
    /// Exactly this answer.
    case raw(status: Int, contentType: String, body: String)

    /// One tool call.
    public static func toolCall(_ name: String, arguments: String = "{}", id: String? = nil) -> FakeModelReply {
        .toolCalls([FakeToolCall(name: name, arguments: arguments, id: id)])
    }
}

/// A request a fake model server received, with helpers that read it whichever the wire format.
public struct FakeModelRequest: Sendable {
    public enum Format: Sendable { case openAI, anthropic }

    public var format: Format
    public var path: String
    /// Header names lowercased.
    public var headers: [String: String]
    /// The body (`null` when it did not parse).
    public var body: JSONValue

    public var model: String? { body["model"]?.stringValue }
    public var messages: [JSONValue] { body["messages"]?.arrayValue ?? [] }
    /// Whether the client asked for a streamed answer.
    public var isStreaming: Bool { body["stream"] == .bool(true) }

    /// The system prompt: OpenAI's system messages joined, or Anthropic's `system`.
    public var systemPrompt: String? {
        switch format {
        case .openAI:
            let parts = messages.filter { $0["role"]?.stringValue == "system" }.compactMap {
                Self.text(of: $0["content"])
            }
            return parts.isEmpty ? nil : parts.joined(separator: "\n\n")
        case .anthropic:
            return Self.text(of: body["system"])
        }
    }

    /// The text of the last user message (tool results aside).
    public var lastUserText: String? {
        for message in messages.reversed() where message["role"]?.stringValue == "user" {
            if let text = Self.text(of: message["content"]), !text.isEmpty { return text }
        }
        return nil
    }

    /// When the conversation ends with tool results (OpenAI `role: tool` messages, Anthropic `tool_result`
    /// blocks): the last one's content. `nil` otherwise.
    public var lastToolResult: String? {
        toolResults.last
    }

    /// The contents of the tool results that end the conversation, in order.
    public var toolResults: [String] {
        switch format {
        case .openAI:
            return Array(messages.reversed().prefix { $0["role"]?.stringValue == "tool" }.reversed()).map {
                Self.text(of: $0["content"]) ?? ""
            }
        case .anthropic:
            guard let last = messages.last, last["role"]?.stringValue == "user",
                let blocks = last["content"]?.arrayValue
            else { return [] }
            return blocks.filter { $0["type"]?.stringValue == "tool_result" }.map { Self.text(of: $0["content"]) ?? "" }
        }
    }

    /// The names of the tools offered.
    public var toolNames: [String] {
        (body["tools"]?.arrayValue ?? []).compactMap {
            format == .openAI ? $0["function"]?["name"]?.stringValue : $0["name"]?.stringValue
        }
    }

    /// The tool the request forces, if any.
    public var forcedToolName: String? {
        switch format {
        case .openAI: return body["tool_choice"]?["function"]?["name"]?.stringValue
        case .anthropic: return body["tool_choice"]?["type"] == "tool" ? body["tool_choice"]?["name"]?.stringValue : nil
        }
    }

    /// A string, or the `text` of an array of text blocks joined.
    static func text(of content: JSONValue?) -> String? {
        switch content {
        case .string(let text)?: return text
        case .array(let parts)?:
            return parts.compactMap { $0["type"] == "text" ? $0["text"]?.stringValue : nil }.joined()
        default: return nil
        }
    }
}

/// Decides a fake model's answer from the request (used when no scripted reply is queued).
public typealias FakeModelResponder = @Sendable (FakeModelRequest) -> FakeModelReply

/// What a fake model server answers and what it received: a queue of scripted replies, then a responder, then
/// the default reply `ok: <last user message>`. Shared by `FakeOpenAIServer` and `FakeAnthropicServer`.
public final class FakeModelScript: Sendable {
    private struct State {
        var queue: [FakeModelReply] = []
        var responder: FakeModelResponder?
        var requests: [FakeModelRequest] = []
        var served = 0
        var stopped = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Queues replies, answered in order, one per request.
    public func enqueue(_ replies: FakeModelReply...) {
        state.withLock { $0.queue += replies }
    }

    /// Queues replies, answered in order, one per request.
    public func enqueue(contentsOf replies: [FakeModelReply]) {
        state.withLock { $0.queue += replies }
    }

    /// Answers requests with `responder` whenever the queue is empty (`nil`: the default reply again).
    public func respond(with responder: FakeModelResponder?) {
        state.withLock { $0.responder = responder }
    }

    /// Every request received, in order (refused ones included).
    public var requests: [FakeModelRequest] { state.withLock { $0.requests } }
    /// Every request body received, in order.
    public var bodies: [JSONValue] { requests.map(\.body) }
    /// The last body received.
    public var lastBody: JSONValue? { state.withLock { $0.requests.last?.body } }
    /// How many requests arrived.
    public var callCount: Int { state.withLock { $0.requests.count } }
    /// How many scripted replies are still queued.
    public var pendingCount: Int { state.withLock { $0.queue.count } }

    func record(_ request: FakeModelRequest) {
        state.withLock { $0.requests.append(request) }
    }

    /// The reply to `request`, and a number for its ids.
    func reply(to request: FakeModelRequest) -> (reply: FakeModelReply, serial: Int) {
        let (reply, responder, serial) = state.withLock { state -> (FakeModelReply?, FakeModelResponder?, Int) in
            state.served += 1
            return (state.queue.isEmpty ? nil : state.queue.removeFirst(), state.responder, state.served)
        }
        if let reply { return (reply, serial) }
        if let responder { return (responder(request), serial) }
        return (.text("ok: \(request.lastUserText ?? "")"), serial)
    }

    var isStopped: Bool { state.withLock { $0.stopped } }

    func stop() {
        state.withLock { $0.stopped = true }
    }

    /// Waits `milliseconds`, or less if the server stops.
    func hang(milliseconds: Int) async {
        let deadline = ContinuousClock.now + .milliseconds(milliseconds)
        while ContinuousClock.now < deadline && !isStopped {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// A Hummingbird server on a free loopback port, run outside any one task so that it can live across a test.
final class FakeServerHost: Sendable {
    let port: Int
    private let serviceGroup: ServiceGroup
    private let task: Task<Void, Never>

    private init(port: Int, serviceGroup: ServiceGroup, task: Task<Void, Never>) {
        self.port = port
        self.serviceGroup = serviceGroup
        self.task = task
    }

    static func start(router: Router<BasicRequestContext>) async throws -> FakeServerHost {
        let port = Mutex(0)
        let failure = Mutex<(any Error)?>(nil)
        let ready = WakeSignal()
        let application = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                port.withLock { $0 = channel.localAddress?.port ?? 0 }
                ready.fire()
            },
            logger: TestLogging.quiet
        )
        let serviceGroup = ServiceGroup(configuration: .init(services: [application], logger: TestLogging.quiet))
        let task = Task {
            do {
                try await serviceGroup.run()
            } catch {
                failure.withLock { $0 = error }
            }
            ready.fire()
        }
        await ready.wait()
        let bound = port.withLock { $0 }
        guard bound != 0 else {
            throw failure.withLock { $0 } ?? CaravanError(.internal, "The fake server did not start.")
        }
        return FakeServerHost(port: bound, serviceGroup: serviceGroup, task: task)
    }

    func stop() async {
        await serviceGroup.triggerGracefulShutdown()
        await task.value
    }
}

/// Helpers the fake servers share to read requests and write answers.
enum FakeWire {
    static func headers(_ request: Request) -> [String: String] {
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
        return headers
    }

    static func json(_ value: JSONValue, status: Int = 200, headers extra: [String: String] = [:]) -> Response {
        var response = Response(
            status: .init(code: status),
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: value.canonicalText))
        )
        for (name, value) in extra { response.headers[HTTPField.Name(name)!] = value }
        return response
    }

    static func raw(status: Int, contentType: String, body: String) -> Response {
        Response(
            status: .init(code: status),
            headers: [.contentType: contentType],
            body: .init(byteBuffer: ByteBuffer(string: body))
        )
    }

    /// A `text/event-stream` answer writing each frame in two writes, split mid-frame, so that clients must
    /// reassemble events across reads.
    static func eventStream(_ frames: [String]) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                for frame in frames {
                    let bytes = Array(frame.utf8)
                    let middle = bytes.count / 2
                    try await writer.write(ByteBuffer(bytes: bytes[..<middle]))
                    try await writer.write(ByteBuffer(bytes: bytes[middle...]))
                }
                try await writer.finish(nil)
            }
        )
    }

    /// `text` in about three pieces (never splitting a character).
    static func pieces(_ text: String) -> [String] {
        guard text.count > 2 else { return text.isEmpty ? [] : [text] }
        let size = (text.count + 2) / 3
        var pieces: [String] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            pieces.append(String(rest.prefix(size)))
            rest = rest.dropFirst(size)
        }
        return pieces
    }

    static func parse(_ text: String) -> JSONValue? {
        try? JSONValue(parsing: Array(text.utf8))
    }
}
