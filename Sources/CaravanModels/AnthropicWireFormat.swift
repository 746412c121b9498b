import CaravanCore

/// The Anthropic Messages API wire format, as `AnthropicProvider` sends and reads it.
///
/// Structured output uses the forced-tool technique: for `.jsonSchema(name, schema)` (or `.jsonObject`) the
/// request offers one extra tool named after the schema (`json_object` for `.jsonObject`), whose
/// `input_schema` is the schema, and forces it with `tool_choice: {type: tool, name}`. The model's input to that
/// tool is the answer: it comes back as the message's text content (finish reason `stop`), not as a tool call.
enum AnthropicWireFormat {
    static let version = "2023-06-01"
    static let defaultMaxTokens = 4096

    /// The forced tool's name for a structured-output request, or `nil` when the answer is free text.
    static func structuredToolName(_ format: ResponseFormat) -> String? {
        switch format {
        case .text: return nil
        case .jsonObject: return "json_object"
        case .jsonSchema(let name, _):
            let cleaned = String(
                name.unicodeScalars.map { OpenAIWireFormat.isToolName(String($0)) ? Character($0) : "_" }.prefix(64)
            )
            return cleaned.isEmpty ? "json_answer" : cleaned
        }
    }

    /// The request body. System messages become the top-level `system`; tool calls become `tool_use` blocks
    /// and tool results `tool_result` blocks in a user message (consecutive ones merged into one message).
    /// `temperature` is capped at 1, the API's maximum.
    static func encodeRequest(_ request: ChatRequest, stream: Bool) -> JSONValue {
        var body: [String: JSONValue] = [
            "model": .string(request.model),
            "max_tokens": .int(Int64(request.maxTokens ?? defaultMaxTokens)),
            "messages": .array(encodeMessages(request.messages)),
        ]
        let system = request.messages.filter { $0.role == .system }.compactMap(\.content).joined(separator: "\n\n")
        if !system.isEmpty { body["system"] = .string(system) }

        var tools = request.tools.map { tool -> JSONValue in
            ["name": .string(tool.name), "description": .string(tool.description), "input_schema": tool.parameters]
        }
        var toolChoice = request.toolChoice
        if let name = structuredToolName(request.responseFormat) {
            let schema: JSONValue
            if case .jsonSchema(_, let given) = request.responseFormat {
                schema = given
            } else {
                schema = ["type": "object"]
            }
            tools.append([
                "name": .string(name), "description": "Answer with JSON that matches this schema.",
                "input_schema": schema,
            ])
            toolChoice = .tool(name)
        }
        if !tools.isEmpty {
            body["tools"] = .array(tools)
            var choice: [String: JSONValue]?
            switch toolChoice {
            case nil: break
            case .auto?: choice = ["type": "auto"]
            case .none?: choice = ["type": "none"]
            case .required?: choice = ["type": "any"]
            case .tool(let name)?: choice = ["type": "tool", "name": .string(name)]
            }
            if request.passthrough["parallel_tool_calls"] == .bool(false), choice?["type"] != .string("none") {
                choice = (choice ?? ["type": "auto"]).merging(["disable_parallel_tool_use": true]) { $1 }
            }
            if let choice { body["tool_choice"] = .object(choice) }
        }
        if let temperature = request.temperature { body["temperature"] = .double(min(temperature, 1)) }
        if let topP = request.topP { body["top_p"] = .double(topP) }
        if !request.stop.isEmpty { body["stop_sequences"] = .array(request.stop.map(JSONValue.string)) }
        if let user = request.user { body["metadata"] = ["user_id": .string(user)] }
        if stream { body["stream"] = true }
        return .object(body)
    }

    /// The first of `request`'s passed-through OpenAI parameters this format cannot honour (in name order), or
    /// `nil`. Honoured: `parallel_tool_calls` (as `disable_parallel_tool_use`), and the values that ask for what
    /// Anthropic does anyway (`store: false`, `service_tier: auto|default`, `reasoning_effort: none`).
    static func unsupportedParameter(_ request: ChatRequest) -> String? {
        request.passthrough.keys.sorted().first { field in
            let value = request.passthrough[field]
            switch field {
            case "parallel_tool_calls": return false
            case "store": return value != .bool(false)
            case "service_tier": return !["auto", "default"].contains(value?.stringValue ?? "")
            case "reasoning_effort": return value != .string("none")
            default: return true
            }
        }
    }

    /// Non-system messages as alternating user/assistant messages of content blocks; consecutive messages of one
    /// role (tool results, or a user message after them) are merged. A message of one text block is sent as a string.
    static func encodeMessages(_ messages: [ChatMessage]) -> [JSONValue] {
        var turns: [(role: String, blocks: [JSONValue])] = []
        for message in messages {
            let role: String
            var blocks: [JSONValue] = []
            switch message.role {
            case .system:
                continue
            case .user:
                role = "user"
                if let parts = message.parts {
                    blocks = parts.map { part in
                        switch part {
                        case .text(let text): ["type": "text", "text": .string(text)]
                        case .image(let image):
                            if let inline = image.inline {
                                [
                                    "type": "image",
                                    "source": [
                                        "type": "base64", "media_type": .string(inline.mediaType),
                                        "data": .string(inline.data),
                                    ],
                                ]
                            } else {
                                ["type": "image", "source": ["type": "url", "url": .string(image.url)]]
                            }
                        }
                    }
                } else {
                    blocks = [["type": "text", "text": .string(message.content ?? "")]]
                }
            case .assistant:
                role = "assistant"
                if let text = message.content, !text.isEmpty { blocks.append(["type": "text", "text": .string(text)]) }
                for call in message.toolCalls {
                    blocks.append([
                        "type": "tool_use", "id": .string(call.id), "name": .string(call.name),
                        "input": toolInput(call.arguments),
                    ])
                }
                if blocks.isEmpty { continue }  // the API refuses empty text
            case .tool:
                role = "user"
                blocks = [
                    [
                        "type": "tool_result", "tool_use_id": .string(message.toolCallID ?? ""),
                        "content": .string(message.content ?? ""),
                    ]
                ]
            }
            if let last = turns.last, last.role == role {
                turns[turns.count - 1].blocks += blocks
            } else {
                turns.append((role, blocks))
            }
        }
        return turns.map { turn in
            if turn.blocks.count == 1, turn.blocks[0]["type"] == "text", let text = turn.blocks[0]["text"] {
                return ["role": .string(turn.role), "content": text]
            }
            return ["role": .string(turn.role), "content": .array(turn.blocks)]
        }
    }

    /// A tool call's arguments as the object Anthropic wants; arguments that are not a JSON object become `{}`.
    static func toolInput(_ arguments: String) -> JSONValue {
        guard let value = try? JSONValue(parsing: Array(arguments.utf8)), value.objectValue != nil else { return [:] }
        return value
    }

    /// Reads a `message` object.
    /// - Parameter structuredTool: the forced tool of a structured-output request, whose input is the answer.
    /// - Throws: `malformedResponse` when `content` is missing or a block is not as the protocol says.
    static func decodeResponse(
        _ json: JSONValue,
        structuredTool: String?,
        requestedModel: String
    ) throws(ProviderError) -> ChatResponse {
        guard let blocks = json["content"]?.arrayValue else {
            let detail = json["error"]?["message"]?.stringValue.map { ": \($0)" } ?? "."
            throw ProviderError(.malformedResponse, "The answer has no content\(detail)")
        }
        var text = ""
        var toolCalls: [ToolCall] = []
        var structured: String?
        for block in blocks {
            switch block["type"]?.stringValue {
            case "text":
                text += block["text"]?.stringValue ?? ""
            case "tool_use":
                guard let id = block["id"]?.stringValue, let name = block["name"]?.stringValue else {
                    throw ProviderError(.malformedResponse, "A tool_use block of the answer has no id or name.")
                }
                let input = (block["input"] ?? [:]).canonicalText
                if name == structuredTool {
                    structured = input
                } else {
                    toolCalls.append(ToolCall(id: id, name: name, arguments: input))
                }
            default:
                continue  // thinking and other blocks carry nothing Caravan uses
            }
        }
        var reason = finishReason(json["stop_reason"]?.stringValue)
        var content: String? = toolCalls.isEmpty || !text.isEmpty ? text : nil
        if let structured {
            content = structured
            toolCalls = []
            reason = .stop
        }
        return ChatResponse(
            message: .assistant(content, toolCalls: toolCalls),
            finishReason: reason,
            usage: TokenUsage(
                inputTokens: inputTokens(json["usage"]),
                outputTokens: Int(json["usage"]?["output_tokens"]?.numberValue ?? 0)
            ),
            model: json["model"]?.stringValue ?? requestedModel,
            providerResponseID: json["id"]?.stringValue
        )
    }

    /// Input tokens, cache writes and reads included.
    static func inputTokens(_ usage: JSONValue?) -> Int {
        ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"].reduce(0) { total, key in
            total + Int(usage?[key]?.numberValue ?? 0)
        }
    }

    static func finishReason(_ stopReason: String?) -> FinishReason {
        switch stopReason {
        case "tool_use": .toolCalls
        case "max_tokens": .length
        case "refusal": .contentFilter
        default: .stop  // end_turn, stop_sequence, pause_turn
        }
    }

    /// Classifies an `error` object (in a streamed `error` event) by its `type`.
    static func streamError(_ json: JSONValue) -> ProviderError {
        let message =
            "The stream failed: "
            + ProviderTransport.truncated(json["error"]?["message"]?.stringValue ?? json.canonicalText, to: 500)
        switch json["error"]?["type"]?.stringValue {
        case "rate_limit_error": return ProviderError(.rateLimited, message)
        case "invalid_request_error": return ProviderError(.badRequest, message)
        case "authentication_error", "permission_error": return ProviderError(.unauthorized, message)
        case "not_found_error": return ProviderError(.unknownModel, message)
        default: return ProviderError(.unavailable, message)  // overloaded_error, api_error
        }
    }
}
