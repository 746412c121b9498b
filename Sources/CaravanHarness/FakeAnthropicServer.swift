import CaravanCore
import HTTPTypes
public import Hummingbird
import NIOCore

/// A fake Anthropic Messages server on a free loopback port: `POST /v1/messages`, streamed (`event: …` /
/// `data: …` frames from `message_start` to `message_stop`) or not, answering from a `FakeModelScript`. It
/// refuses (400) what the real API refuses and tests could get wrong: no `anthropic-version` header, no `model`,
/// `max_tokens` or `messages`, a role other than user/assistant, a `tool_result` that answers no `tool_use` of
/// the assistant message just before. With `requiredAPIKey` it checks `x-api-key` (401).
///
/// A `.json` reply to a request that forces a tool (the structured-output technique) is that tool's input.
public enum AnthropicFakeWire: FakeModelProtocol {
    public static let path = "/v1/messages"

    public static func handle(
        _ request: Request,
        script: FakeModelScript,
        requiredAPIKey: String?
    ) async throws -> Response {
        let bytes = try await request.body.collect(upTo: 16 << 20)
        let body = (try? JSONValue(parsing: bytes.readableBytesView)) ?? .null
        let received = FakeModelRequest(
            format: .anthropic,
            path: request.uri.path,
            headers: FakeWire.headers(request),
            body: body
        )
        script.record(received)
        if let key = requiredAPIKey, received.headers["x-api-key"] != key {
            return errorResponse(401, "invalid x-api-key", type: "authentication_error")
        }
        if let problem = validate(body, headers: received.headers) {
            return errorResponse(400, problem, type: "invalid_request_error")
        }
        let (reply, serial) = script.reply(to: received)
        let id = "msg_fake_\(serial)"
        let model = received.model ?? "fake"
        switch reply {
        case .hang(let milliseconds):
            await script.hang(milliseconds: milliseconds)
            return errorResponse(504, "The fake model hung.", type: "api_error")
        case .error(let status, let message, let retryAfter):
            var response = errorResponse(status, message, type: errorType(status))
            if let retryAfter { response.headers[.retryAfter] = retryAfter }
            return response
        case .malformed:
            return FakeWire.raw(
                status: 200,
                contentType: "application/json",
                body: #"{"id":"msg_broken","content":[{"type":"te"#
            )
        case .raw(let status, let contentType, let text):
            return FakeWire.raw(status: status, contentType: contentType, body: text)
        case .failMidStream(let text):
            guard received.isStreaming else { return errorResponse(500, "The fake model failed.", type: "api_error") }
            return FakeWire.eventStream([
                frame("message_start", messageStart(id: id, model: model, usage: .default)),
                frame(
                    "content_block_start",
                    ["type": "content_block_start", "index": 0, "content_block": ["type": "text", "text": ""]]
                ),
                frame(
                    "content_block_delta",
                    [
                        "type": "content_block_delta", "index": 0,
                        "delta": ["type": "text_delta", "text": .string(text)],
                    ]
                ),
                frame("error", ["type": "error", "error": ["type": "overloaded_error", "message": "Overloaded"]]),
            ])
        case .text, .toolCalls, .json:
            let blocks = contentBlocks(reply, serial: serial, forcedTool: received.forcedToolName)
            let usage = usage(of: reply)
            let stopReason: JSONValue = blocks.contains { $0["type"] == "tool_use" } ? "tool_use" : "end_turn"
            if received.isStreaming {
                return FakeWire.eventStream(
                    streamFrames(blocks, id: id, model: model, stopReason: stopReason, usage: usage)
                )
            }
            return FakeWire.json([
                "id": .string(id), "type": "message", "role": "assistant", "model": .string(model),
                "content": .array(blocks),
                "stop_reason": stopReason, "stop_sequence": nil,
                "usage": ["input_tokens": .int(Int64(usage.input)), "output_tokens": .int(Int64(usage.output))],
            ])
        }
    }

    private static func usage(of reply: FakeModelReply) -> FakeUsage {
        switch reply {
        case .text(_, let usage), .json(_, let usage), .toolCalls(_, _, let usage): usage
        default: .default
        }
    }

    private static func contentBlocks(_ reply: FakeModelReply, serial: Int, forcedTool: String?) -> [JSONValue] {
        switch reply {
        case .text(let text, _):
            return [["type": "text", "text": .string(text)]]
        case .json(let text, _):
            if let forcedTool {
                return [
                    [
                        "type": "tool_use", "id": .string("toolu_fake_\(serial)_0"), "name": .string(forcedTool),
                        "input": FakeWire.parse(text) ?? [:],
                    ]
                ]
            }
            return [["type": "text", "text": .string(text)]]
        case .toolCalls(let calls, let text, _):
            var blocks: [JSONValue] = []
            if let text, !text.isEmpty { blocks.append(["type": "text", "text": .string(text)]) }
            for (index, call) in calls.enumerated() {
                blocks.append([
                    "type": "tool_use", "id": .string(call.id ?? "toolu_fake_\(serial)_\(index)"),
                    "name": .string(call.name),
                    "input": FakeWire.parse(call.arguments) ?? [:],
                ])
            }
            return blocks
        default:
            return []
        }
    }

    private static func messageStart(id: String, model: String, usage: FakeUsage) -> JSONValue {
        [
            "type": "message_start",
            "message": [
                "id": .string(id), "type": "message", "role": "assistant", "model": .string(model), "content": [],
                "stop_reason": nil, "stop_sequence": nil,
                "usage": ["input_tokens": .int(Int64(usage.input)), "output_tokens": 1],
            ],
        ]
    }

    private static func streamFrames(
        _ blocks: [JSONValue],
        id: String,
        model: String,
        stopReason: JSONValue,
        usage: FakeUsage
    ) -> [String] {
        var frames = [
            frame("message_start", messageStart(id: id, model: model, usage: usage)), frame("ping", ["type": "ping"]),
        ]
        for (index, block) in blocks.enumerated() {
            let position = JSONValue.int(Int64(index))
            if block["type"] == "text" {
                frames.append(
                    frame(
                        "content_block_start",
                        [
                            "type": "content_block_start", "index": position,
                            "content_block": ["type": "text", "text": ""],
                        ]
                    )
                )
                for piece in FakeWire.pieces(block["text"]?.stringValue ?? "") {
                    frames.append(
                        frame(
                            "content_block_delta",
                            [
                                "type": "content_block_delta", "index": position,
                                "delta": ["type": "text_delta", "text": .string(piece)],
                            ]
                        )
                    )
                }
            } else {
                let start: JSONValue = [
                    "type": "tool_use", "id": block["id"] ?? "", "name": block["name"] ?? "", "input": [:],
                ]
                frames.append(
                    frame(
                        "content_block_start",
                        ["type": "content_block_start", "index": position, "content_block": start]
                    )
                )
                for piece in FakeWire.pieces((block["input"] ?? [:]).canonicalText) {
                    frames.append(
                        frame(
                            "content_block_delta",
                            [
                                "type": "content_block_delta", "index": position,
                                "delta": ["type": "input_json_delta", "partial_json": .string(piece)],
                            ]
                        )
                    )
                }
            }
            frames.append(frame("content_block_stop", ["type": "content_block_stop", "index": position]))
        }
        frames.append(
            frame(
                "message_delta",
                [
                    "type": "message_delta", "delta": ["stop_reason": stopReason, "stop_sequence": nil],
                    "usage": ["output_tokens": .int(Int64(usage.output))],
                ]
            )
        )
        frames.append(frame("message_stop", ["type": "message_stop"]))
        return frames
    }

    private static func frame(_ event: String, _ data: JSONValue) -> String {
        "event: \(event)\ndata: \(data.canonicalText)\n\n"
    }

    private static func errorType(_ status: Int) -> String {
        switch status {
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 429: "rate_limit_error"
        case 529: "overloaded_error"
        case 500...: "api_error"
        default: "invalid_request_error"
        }
    }

    private static func errorResponse(_ status: Int, _ message: String, type: String) -> Response {
        FakeWire.json(
            ["type": "error", "error": ["type": .string(type), "message": .string(message)]],
            status: status
        )
    }

    /// What the real API refuses that a client under test could get wrong; `nil` when the body is fine.
    private static func validate(_ body: JSONValue, headers: [String: String]) -> String? {
        guard headers["anthropic-version"] != nil else { return "anthropic-version: header is required" }
        guard body["model"]?.stringValue?.isEmpty == false else { return "model: Field required" }
        guard case .int(let maxTokens)? = body["max_tokens"], maxTokens >= 1 else {
            return "max_tokens: Field required"
        }
        guard let messages = body["messages"]?.arrayValue, !messages.isEmpty else {
            return "messages: at least one message is required"
        }
        var previousToolUses: Set<String> = []
        for (index, message) in messages.enumerated() {
            let role = message["role"]?.stringValue
            guard role == "user" || role == "assistant" else {
                return "messages.\(index).role: Input should be 'user' or 'assistant'"
            }
            let blocks = message["content"]?.arrayValue ?? []
            guard message["content"]?.stringValue != nil || !blocks.isEmpty else {
                return "messages.\(index).content: Field required"
            }
            for block in blocks where block["type"] == "tool_result" {
                guard let id = block["tool_use_id"]?.stringValue, previousToolUses.contains(id) else {
                    return
                        "messages.\(index): tool_result block(s) provided when previous message does not have tool_use blocks"
                }
            }
            previousToolUses = Set(blocks.filter { $0["type"] == "tool_use" }.compactMap { $0["id"]?.stringValue })
        }
        return nil
    }
}
