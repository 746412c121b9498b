public import CaravanCore

/// The OpenAI Chat Completions wire format, both ways: what `OpenAIProvider` sends and reads, and what
/// Caravan's own OpenAI-compatible endpoint (`POST /v1/chat/completions`) reads and answers.
public enum OpenAIWireFormat {
    // MARK: Requests

    /// The request body for `request`. With `stream`, asks for server-sent events and a final usage chunk.
    ///
    /// Assistant messages that only call tools carry `"content": ""` rather than `null` (llama.cpp's server
    /// refuses `null`). `maxTokens` goes out as `max_completion_tokens` for the reasoning models (`o1`, `o3`,
    /// `o4`, `gpt-5` families), which refuse `max_tokens`, and as `max_tokens` for every other model and server.
    public static func encodeRequest(_ request: ChatRequest, stream: Bool) -> JSONValue {
        var body: [String: JSONValue] = [
            "model": .string(request.model),
            "messages": .array(request.messages.map(encodeMessage)),
        ]
        if !request.tools.isEmpty {
            body["tools"] = .array(
                request.tools.map { tool in
                    [
                        "type": "function",
                        "function": [
                            "name": .string(tool.name), "description": .string(tool.description),
                            "parameters": tool.parameters,
                        ],
                    ]
                }
            )
        }
        if let choice = request.toolChoice { body["tool_choice"] = encodeToolChoice(choice) }
        if let maxTokens = request.maxTokens {
            let field =
                request.maxTokensField
                ?? (usesCompletionTokens(request.model) ? "max_completion_tokens" : "max_tokens")
            body[field] = .int(Int64(maxTokens))
        }
        if let temperature = request.temperature { body["temperature"] = .double(temperature) }
        if let topP = request.topP { body["top_p"] = .double(topP) }
        if !request.stop.isEmpty { body["stop"] = .array(request.stop.map(JSONValue.string)) }
        switch request.responseFormat {
        case .text: break
        case .jsonObject: body["response_format"] = ["type": "json_object"]
        case .jsonSchema(let name, let schema):
            body["response_format"] = [
                "type": "json_schema", "json_schema": ["name": .string(name), "schema": schema, "strict": true],
            ]
        }
        if let user = request.user { body["user"] = .string(user) }
        if stream {
            body["stream"] = true
            body["stream_options"] = ["include_usage": true]
        }
        for (field, value) in request.passthrough where body[field] == nil { body[field] = value }
        return .object(body)
    }

    public static func encodeMessage(_ message: ChatMessage) -> JSONValue {
        var object: [String: JSONValue] = ["role": .string(message.isDeveloper ? "developer" : message.role.rawValue)]
        switch message.role {
        case .user where message.parts != nil:
            object["content"] = .array(
                (message.parts ?? []).map { part in
                    switch part {
                    case .text(let text): ["type": "text", "text": .string(text)]
                    case .image(let image):
                        [
                            "type": "image_url",
                            "image_url": .object(
                                ["url": .string(image.url)].merging(
                                    image.detail.map { ["detail": .string($0)] } ?? [:]
                                ) { $1 }
                            ),
                        ]
                    }
                }
            )
        case .system, .user:
            object["content"] = .string(message.content ?? "")
        case .assistant:
            object["content"] = .string(message.content ?? "")
            if !message.toolCalls.isEmpty {
                object["tool_calls"] = .array(message.toolCalls.map(encodeToolCall))
            }
        case .tool:
            object["content"] = .string(message.content ?? "")
            object["tool_call_id"] = .string(message.toolCallID ?? "")
            if let name = message.name { object["name"] = .string(name) }
        }
        return .object(object)
    }

    static func encodeToolCall(_ call: ToolCall) -> JSONValue {
        [
            "id": .string(call.id), "type": "function",
            "function": ["name": .string(call.name), "arguments": .string(call.arguments)],
        ]
    }

    static func encodeToolChoice(_ choice: ToolChoice) -> JSONValue {
        switch choice {
        case .auto: "auto"
        case .none: "none"
        case .required: "required"
        case .tool(let name): ["type": "function", "function": ["name": .string(name)]]
        }
    }

    static func usesCompletionTokens(_ model: String) -> Bool {
        let model = model.lowercased()
        return ["o1", "o3", "o4", "gpt-5"].contains {
            model == $0 || model.hasPrefix($0 + "-") || model.hasPrefix($0 + ".")
        }
    }

    // MARK: Responses

    /// Reads a `chat.completion` object: the first choice's message, finish reason, usage (0 when absent),
    /// model and id.
    /// - Throws: `malformedResponse` when there is no choice or the message is not as the protocol says.
    public static func decodeResponse(_ json: JSONValue) throws(ProviderError) -> ChatResponse {
        guard let choice = json["choices"]?.arrayValue?.first, let message = choice["message"],
            message.objectValue != nil
        else {
            let detail = json["error"]?["message"]?.stringValue.map { ": \($0)" } ?? "."
            throw ProviderError(.malformedResponse, "The answer has no choices\(detail)")
        }
        var toolCalls: [ToolCall] = []
        for (index, call) in (message["tool_calls"]?.arrayValue ?? []).enumerated() {
            guard let function = call["function"], let name = function["name"]?.stringValue else {
                throw ProviderError(.malformedResponse, "Tool call \(index) of the answer has no function name.")
            }
            let arguments = function["arguments"].map { $0.stringValue ?? $0.canonicalText } ?? "{}"
            toolCalls.append(ToolCall(id: call["id"]?.stringValue ?? "call_\(index)", name: name, arguments: arguments))
        }
        var content = text(of: message["content"]) ?? message["refusal"]?.stringValue
        // A message that only calls tools has no text, whether the server wrote null or "".
        if !toolCalls.isEmpty, content?.isEmpty ?? true { content = nil } else if content == nil { content = "" }
        var response = ChatResponse(
            message: .assistant(content, toolCalls: toolCalls),
            finishReason: finishReason(choice["finish_reason"]?.stringValue, hasToolCalls: !toolCalls.isEmpty),
            usage: usage(json["usage"]) ?? .zero,
            model: json["model"]?.stringValue ?? "",
            providerResponseID: json["id"]?.stringValue
        )
        if let logprobs = choice["logprobs"], !logprobs.isNull { response.logprobs = logprobs }
        return response
    }

    /// Content as a string: a string, or the `text` of an array of parts joined; `nil` for null or absent.
    static func text(of content: JSONValue?) -> String? {
        switch content {
        case .string(let text): return text
        case .array(let parts): return parts.compactMap { $0["text"]?.stringValue }.joined()
        default: return nil
        }
    }

    static func usage(_ json: JSONValue?) -> TokenUsage? {
        guard let json, json.objectValue != nil else { return nil }
        return TokenUsage(
            inputTokens: Int(json["prompt_tokens"]?.numberValue ?? 0),
            outputTokens: Int(json["completion_tokens"]?.numberValue ?? 0)
        )
    }

    static func finishReason(_ text: String?, hasToolCalls: Bool) -> FinishReason {
        switch text {
        case "length": .length
        case "content_filter": .contentFilter
        case "tool_calls", "function_call": .toolCalls
        case "stop": hasToolCalls ? .toolCalls : .stop
        default: hasToolCalls ? .toolCalls : .stop
        }
    }

    /// The `chat.completion` object for `response`, with `usage`.
    public static func encodeResponse(_ response: ChatResponse, id: String, model: String, created: Int64) -> JSONValue
    {
        encodeResponse([response], id: id, model: model, created: created)
    }

    /// A `chat.completion` of several choices (`n > 1`), indexed in order, with their usage summed.
    public static func encodeResponse(
        _ responses: [ChatResponse],
        id: String,
        model: String,
        created: Int64
    )
        -> JSONValue
    {
        var choices: [JSONValue] = []
        var total = TokenUsage.zero
        for (index, response) in responses.enumerated() {
            var message: [String: JSONValue] = [
                "role": "assistant", "content": response.message.content.map(JSONValue.string) ?? .null,
            ]
            if !response.message.toolCalls.isEmpty {
                message["tool_calls"] = .array(response.message.toolCalls.map(encodeToolCall))
            }
            choices.append([
                "index": .int(Int64(index)), "message": .object(message),
                "finish_reason": .string(response.finishReason.rawValue), "logprobs": response.logprobs ?? .null,
            ])
            total.inputTokens += response.usage.inputTokens
            total.outputTokens += response.usage.outputTokens
        }
        return [
            "id": .string(id),
            "object": "chat.completion",
            "created": .int(created),
            "model": .string(model),
            "choices": .array(choices),
            "usage": encodeUsage(total),
        ]
    }

    static func encodeUsage(_ usage: TokenUsage) -> JSONValue {
        [
            "prompt_tokens": .int(Int64(usage.inputTokens)),
            "completion_tokens": .int(Int64(usage.outputTokens)),
            "total_tokens": .int(Int64(usage.totalTokens)),
        ]
    }

    // MARK: Stream chunks

    /// The first `chat.completion.chunk` of a stream, which names the role (`delta: {role: assistant, content: ""}`).
    public static func roleChunk(id: String, model: String, created: Int64) -> JSONValue {
        chunk(delta: ["role": "assistant", "content": ""], finishReason: nil, id: id, model: model, created: created)
    }

    /// The `chat.completion.chunk` carrying `delta`. Write it as `data: <json>\n\n`.
    public static func encodeChunk(_ delta: ChatDelta, id: String, model: String, created: Int64) -> JSONValue {
        let body: JSONValue
        switch delta {
        case .text(let text):
            body = ["content": .string(text)]
        case .toolCallStarted(let index, let callID, let name):
            body = [
                "tool_calls": [
                    [
                        "index": .int(Int64(index)), "id": .string(callID), "type": "function",
                        "function": ["name": .string(name), "arguments": ""],
                    ]
                ]
            ]
        case .toolCallArguments(let index, let fragment):
            body = ["tool_calls": [["index": .int(Int64(index)), "function": ["arguments": .string(fragment)]]]]
        }
        return chunk(delta: body, finishReason: nil, id: id, model: model, created: created)
    }

    /// The last chunk: an empty delta with `finish_reason`, and `usage` when given (OpenAI clients read usage
    /// from whichever chunk carries it). Follow it with `data: [DONE]\n\n`.
    public static func finalChunk(
        finishReason: FinishReason,
        usage: TokenUsage?,
        id: String,
        model: String,
        created: Int64
    ) -> JSONValue {
        var object =
            chunk(delta: [:], finishReason: finishReason, id: id, model: model, created: created).objectValue ?? [:]
        if let usage { object["usage"] = encodeUsage(usage) }
        return .object(object)
    }

    /// A chunk with no choices and only `usage`, as OpenAI sends after the finish chunk when the request asked
    /// for `stream_options.include_usage`.
    public static func usageChunk(_ usage: TokenUsage, id: String, model: String, created: Int64) -> JSONValue {
        [
            "id": .string(id), "object": "chat.completion.chunk", "created": .int(created), "model": .string(model),
            "choices": [], "usage": encodeUsage(usage),
        ]
    }

    static func chunk(
        delta: JSONValue,
        finishReason: FinishReason?,
        id: String,
        model: String,
        created: Int64
    ) -> JSONValue {
        [
            "id": .string(id),
            "object": "chat.completion.chunk",
            "created": .int(created),
            "model": .string(model),
            "choices": [
                ["index": 0, "delta": delta, "finish_reason": finishReason.map { .string($0.rawValue) } ?? .null]
            ],
        ]
    }
}
