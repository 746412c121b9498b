import CaravanCore
import Foundation
import HTTPTypes
public import Hummingbird
import NIOCore

/// A fake OpenAI Chat Completions server on a free loopback port: `POST /v1/chat/completions`, streamed
/// (`data: {chunk}` … `data: [DONE]`, with a usage chunk when `stream_options.include_usage`) or not, answering
/// from a `FakeModelScript`. It refuses (400) what the real servers refuse and tests could get wrong: a body
/// without `model` or `messages`, an unknown role, an assistant message with tool calls whose `content` is not
/// a string (llama.cpp), a tool message that answers no earlier tool call. With `requiredAPIKey` it checks
/// `Authorization: Bearer …` (401).
///
/// ```swift
/// try await FakeOpenAIServer.with { server in
///     server.enqueue(.toolCall("search", arguments: #"{"q":"x"}"#), .text("done"))
///     // point an endpoint at server.baseURL …
/// }
/// ```
public enum OpenAIFakeWire: FakeModelProtocol {
    public static let path = "/v1/chat/completions"

    public static func handle(
        _ request: Request,
        script: FakeModelScript,
        requiredAPIKey: String?
    ) async throws -> Response {
        let (received, refusal) = try await receive(request, script: script, requiredAPIKey: requiredAPIKey)
        if let refusal { return refusal }
        let body = received.body
        if let problem = validate(body) { return errorResponse(400, problem, type: "invalid_request_error") }
        let (reply, serial) = script.reply(to: received)
        let id = "chatcmpl-fake-\(serial)"
        let model = received.model ?? "fake"
        let includeUsage = body["stream_options"]?["include_usage"] == .bool(true)
        switch reply {
        case .hang(let milliseconds):
            await script.hang(milliseconds: milliseconds)
            return errorResponse(504, "The fake model hung.", type: "server_error")
        case .error(let status, let message, let retryAfter):
            var response = errorResponse(
                status,
                message,
                type: status == 429 ? "rate_limit_exceeded" : status >= 500 ? "server_error" : "invalid_request_error"
            )
            if let retryAfter { response.headers[.retryAfter] = retryAfter }
            return response
        case .malformed:
            return FakeWire.raw(
                status: 200,
                contentType: "application/json",
                body: #"{"id":"chatcmpl-broken","choices":[{"index":0,"message":"#
            )
        case .raw(let status, let contentType, let text):
            return FakeWire.raw(status: status, contentType: contentType, body: text)
        case .failMidStream(let text):
            guard received.isStreaming else {
                return errorResponse(500, "The fake model failed.", type: "server_error")
            }
            return FakeWire.eventStream([
                frame(chunk(id, model, delta: ["role": "assistant", "content": ""])),
                frame(chunk(id, model, delta: ["content": .string(text)])),
                frame(["error": ["message": "The fake model failed mid-stream.", "type": "server_error"]]),
            ])
        case .text, .toolCalls, .json:
            let answer = Answer(reply)
            if received.isStreaming {
                return FakeWire.eventStream(streamFrames(answer, id: id, model: model, includeUsage: includeUsage))
            }
            return FakeWire.json(completion(answer, id: id, model: model))
        }
    }

    public static func addOtherRoutes(
        to router: Router<BasicRequestContext>,
        script: FakeModelScript,
        requiredAPIKey: String?
    ) {
        router.post("/v1/embeddings") { request, _ in
            try await embeddings(request, script: script, requiredAPIKey: requiredAPIKey)
        }
    }

    /// `POST /v1/embeddings`: a vector of `dimensions` (8 by default) numbers for each input, the same for the
    /// same text (so tests can compare), as numbers or, with `encoding_format: base64`, as little-endian float32s in
    /// base64 (what OpenAI's Python SDK asks for); usage counts four characters a token. A model named `…-delay-N`
    /// answers after N milliseconds, to stand for a slow embedding service; one named `…-dims-N` answers N numbers.
    static func embeddings(
        _ request: Request,
        script: FakeModelScript,
        requiredAPIKey: String?
    ) async throws
        -> Response
    {
        let (received, refusal) = try await receive(request, script: script, requiredAPIKey: requiredAPIKey)
        if let refusal { return refusal }
        let body = received.body
        if let model = received.model, let marker = model.range(of: "-delay-"),
            let milliseconds = Int(model[marker.upperBound...])
        {
            try await Task.sleep(for: .milliseconds(milliseconds))
        }
        let inputs: [String]
        switch body["input"] {
        case .string(let text)?: inputs = [text]
        case .array(let items)?: inputs = items.map { $0.stringValue ?? $0.canonicalText }
        default: return errorResponse(400, "'input' is required.", type: "invalid_request_error")
        }
        var dimensions = 8
        if case .int(let count)? = body["dimensions"] {
            dimensions = Int(count)
        } else if let model = received.model, let marker = model.range(of: "-dims-"),
            let count = Int(model[marker.upperBound...].prefix { $0.isNumber }), (1...4_096).contains(count)
        {
            dimensions = count
        }
        let base64 = body["encoding_format"] == "base64"
        var data: [JSONValue] = []
        for (index, text) in inputs.enumerated() {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            let vector = (0..<dimensions).map { position -> Float in
                hash = (hash ^ UInt64(position)) &* 0x100_0000_01b3
                return Float(hash % 2000) / 1000 - 1
            }
            let embedding: JSONValue
            if base64 {
                var raw: [UInt8] = []
                for value in vector { withUnsafeBytes(of: value.bitPattern.littleEndian) { raw += $0 } }
                embedding = .string(Data(raw).base64EncodedString())
            } else {
                embedding = .array(vector.map { .double(Double($0)) })
            }
            data.append(["object": "embedding", "index": .int(Int64(index)), "embedding": embedding])
        }
        let tokens = Int64(inputs.reduce(0) { $0 + ($1.count + 3) / 4 })
        return FakeWire.json([
            "object": "list", "data": .array(data), "model": .string(received.model ?? "fake"),
            "usage": ["prompt_tokens": .int(tokens), "total_tokens": .int(tokens)],
        ])
    }

    /// Reads and records a request; the refusal to answer instead when its key is not `requiredAPIKey`.
    static func receive(
        _ request: Request,
        script: FakeModelScript,
        requiredAPIKey: String?
    ) async throws
        -> (FakeModelRequest, Response?)
    {
        let bytes = try await request.body.collect(upTo: 16 << 20)
        let received = FakeModelRequest(
            format: .openAI,
            path: request.uri.path,
            headers: FakeWire.headers(request),
            body: (try? JSONValue(parsing: bytes.readableBytesView)) ?? .null
        )
        script.record(received)
        guard let key = requiredAPIKey, received.headers["authorization"] != "Bearer \(key)" else {
            return (received, nil)
        }
        let refusal = errorResponse(
            401,
            "Incorrect API key provided.",
            type: "invalid_request_error",
            code: "invalid_api_key"
        )
        return (received, refusal)
    }

    /// What a text, tool-call or JSON reply amounts to.
    private struct Answer {
        var text: String?
        var calls: [FakeToolCall] = []
        var usage: FakeUsage

        init(_ reply: FakeModelReply) {
            switch reply {
            case .text(let text, let usage), .json(let text, let usage):
                self.text = text
                self.usage = usage
            case .toolCalls(let calls, let text, let usage):
                self.text = text
                self.calls = calls
                self.usage = usage
            default:
                self.usage = .default
            }
        }

        func callID(_ index: Int, serial: String) -> String { calls[index].id ?? "call_\(serial)_\(index)" }
        var finishReason: JSONValue { calls.isEmpty ? "stop" : "tool_calls" }
        var usageJSON: JSONValue {
            [
                "prompt_tokens": .int(Int64(usage.input)), "completion_tokens": .int(Int64(usage.output)),
                "total_tokens": .int(Int64(usage.input + usage.output)),
            ]
        }
    }

    private static func completion(_ answer: Answer, id: String, model: String) -> JSONValue {
        var message: [String: JSONValue] = ["role": "assistant", "content": answer.text.map(JSONValue.string) ?? .null]
        if !answer.calls.isEmpty {
            message["tool_calls"] = .array(
                answer.calls.indices.map { index in
                    [
                        "id": .string(answer.callID(index, serial: id)), "type": "function",
                        "function": [
                            "name": .string(answer.calls[index].name),
                            "arguments": .string(answer.calls[index].arguments),
                        ],
                    ]
                }
            )
        }
        return [
            "id": .string(id), "object": "chat.completion", "created": 1_700_000_000, "model": .string(model),
            "choices": [
                ["index": 0, "message": .object(message), "finish_reason": answer.finishReason, "logprobs": nil]
            ],
            "usage": answer.usageJSON,
        ]
    }

    private static func streamFrames(_ answer: Answer, id: String, model: String, includeUsage: Bool) -> [String] {
        var frames = [frame(chunk(id, model, delta: ["role": "assistant", "content": ""]))]
        for piece in FakeWire.pieces(answer.text ?? "") {
            frames.append(frame(chunk(id, model, delta: ["content": .string(piece)])))
        }
        for (index, call) in answer.calls.enumerated() {
            let start: JSONValue = [
                "index": .int(Int64(index)), "id": .string(answer.callID(index, serial: id)), "type": "function",
                "function": ["name": .string(call.name), "arguments": ""],
            ]
            frames.append(frame(chunk(id, model, delta: ["tool_calls": [start]])))
            for piece in FakeWire.pieces(call.arguments) {
                frames.append(
                    frame(
                        chunk(
                            id,
                            model,
                            delta: [
                                "tool_calls": [
                                    ["index": .int(Int64(index)), "function": ["arguments": .string(piece)]]
                                ]
                            ]
                        )
                    )
                )
            }
        }
        frames.append(frame(chunk(id, model, delta: [:], finishReason: answer.finishReason)))
        if includeUsage {
            frames.append(
                frame([
                    "id": .string(id), "object": "chat.completion.chunk", "created": 1_700_000_000,
                    "model": .string(model), "choices": [], "usage": answer.usageJSON,
                ])
            )
        }
        frames.append("data: [DONE]\n\n")
        return frames
    }

    private static func chunk(
        _ id: String,
        _ model: String,
        delta: JSONValue,
        finishReason: JSONValue = nil
    ) -> JSONValue {
        [
            "id": .string(id), "object": "chat.completion.chunk", "created": 1_700_000_000, "model": .string(model),
            "choices": [["index": 0, "delta": delta, "finish_reason": finishReason]],
        ]
    }

    private static func frame(_ json: JSONValue) -> String { "data: \(json.canonicalText)\n\n" }

    private static func errorResponse(_ status: Int, _ message: String, type: String, code: String? = nil) -> Response {
        FakeWire.json(
            [
                "error": [
                    "message": .string(message), "type": .string(type), "param": nil,
                    "code": code.map(JSONValue.string) ?? .null,
                ]
            ],
            status: status
        )
    }

    /// What the real servers refuse that a client under test could get wrong; `nil` when the body is fine.
    private static func validate(_ body: JSONValue) -> String? {
        guard body["model"]?.stringValue?.isEmpty == false else { return "you must provide a model parameter" }
        guard let messages = body["messages"]?.arrayValue, !messages.isEmpty else {
            return "'messages' must be a non-empty array"
        }
        var callIDs: Set<String> = []
        for (index, message) in messages.enumerated() {
            switch message["role"]?.stringValue {
            case "system", "developer", "user":
                guard message["content"]?.isNull == false else { return "messages[\(index)].content is required" }
            case "assistant":
                let calls = message["tool_calls"]?.arrayValue ?? []
                if !calls.isEmpty && message["content"]?.stringValue == nil {
                    return "messages[\(index)].content must be a string when the message has tool_calls"
                }
                for call in calls {
                    guard let id = call["id"]?.stringValue, call["function"]?["name"]?.stringValue != nil,
                        call["function"]?["arguments"]?.stringValue != nil
                    else { return "messages[\(index)].tool_calls is malformed" }
                    callIDs.insert(id)
                }
            case "tool":
                guard let id = message["tool_call_id"]?.stringValue, callIDs.contains(id) else {
                    return
                        "messages[\(index)] with role 'tool' must be a response to a preceding message with 'tool_calls'"
                }
            default:
                return "messages[\(index)].role is invalid"
            }
        }
        for (index, tool) in (body["tools"]?.arrayValue ?? []).enumerated()
        where tool["function"]?["name"]?.stringValue == nil {
            return "tools[\(index)].function.name is required"
        }
        return nil
    }
}
