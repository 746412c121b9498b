public import CaravanCore

/// OpenAI's Responses API (`POST /v1/responses`) at Caravan's front door: its request read into the provider-neutral
/// `ChatRequest`, its answers and stream events written from a `ChatResponse`.
public enum ResponsesWireFormat {
    /// What a request asks beyond the `ChatRequest`.
    public struct Options: Sendable, Hashable {
        public var stream = false
        /// The response whose conversation this one continues.
        public var previousResponseID: String?
        /// Whether to keep the response, so that a later one can continue it (default true, as OpenAI's).
        public var store = true
        /// Echoed in the answer.
        public var instructions: String?
        public var metadata: JSONValue = .object([:])
    }

    /// Reads a request: `model`, `input` (a string, or items: messages of `input_text`/`input_image`/`output_text`
    /// parts, `function_call` and `function_call_output`), `instructions`, `tools` (functions), `tool_choice`,
    /// `text.format` (`text`, `json_object`, `json_schema`), `max_output_tokens`, `temperature`, `top_p`,
    /// `parallel_tool_calls`, `reasoning.effort`, `user`, `metadata`, `store`, `stream`, `previous_response_id`.
    /// Other fields are refused, as OpenAI refuses them.
    public static func decodeRequest(_ json: JSONValue) throws(ChatRequestDecodingError) -> (ChatRequest, Options) {
        guard let body = json.objectValue else { throw fault("", "must be a JSON object") }
        let known: Set<String> = [
            "model", "input", "instructions", "tools", "tool_choice", "text", "max_output_tokens", "temperature",
            "top_p", "parallel_tool_calls", "reasoning", "user", "metadata", "store", "stream", "previous_response_id",
            "truncation", "include",
        ]
        for field in body.keys.sorted() where !known.contains(field) {
            throw fault("/" + field, "is not a parameter of responses (unrecognized request argument)")
        }
        guard let model = body["model"]?.stringValue, !model.isEmpty else {
            throw fault("/model", "is required and must be a non-empty string")
        }
        var options = Options()
        var messages: [ChatMessage] = []
        if let instructions = body["instructions"], !instructions.isNull {
            guard let text = instructions.stringValue else { throw fault("/instructions", "must be a string") }
            options.instructions = text
            messages.append(.system(text))
        }
        switch body["input"] {
        case .string(let text)?: messages.append(.user(text))
        case .array(let items)? where !items.isEmpty:
            for (index, item) in items.enumerated() {
                messages.append(try decodeItem(item, at: "/input/\(index)"))
            }
        default: throw fault("/input", "is required: a string, or a non-empty array of items")
        }
        // Through the chat decoder, which checks what the two APIs share.
        var chat: [String: JSONValue] = [
            "model": .string(model), "messages": .array(messages.map(OpenAIWireFormat.encodeMessage)),
        ]
        if let tools = body["tools"], !tools.isNull {
            guard let list = tools.arrayValue else { throw fault("/tools", "must be an array") }
            chat["tools"] = .array(
                try list.enumerated().map { (index, tool) throws(ChatRequestDecodingError) -> JSONValue in
                    guard tool["type"] == "function" else {
                        throw fault("/tools/\(index)/type", "only function tools are supported")
                    }
                    var function: [String: JSONValue] = ["name": tool["name"] ?? .null]
                    if let description = tool["description"] { function["description"] = description }
                    if let parameters = tool["parameters"] { function["parameters"] = parameters }
                    return ["type": "function", "function": .object(function)]
                }
            )
        }
        switch body["tool_choice"] {
        case nil, .null?: break
        case .string(let text)?: chat["tool_choice"] = .string(text)
        case .object?:
            guard body["tool_choice"]?["type"] == "function", let name = body["tool_choice"]?["name"] else {
                throw fault("/tool_choice", "must be auto, none, required or {type: function, name}")
            }
            chat["tool_choice"] = ["type": "function", "function": ["name": name]]
        default: throw fault("/tool_choice", "must be auto, none, required or {type: function, name}")
        }
        if let format = body["text"]?["format"], !format.isNull {
            switch format["type"]?.stringValue {
            case "text": break
            case "json_object": chat["response_format"] = ["type": "json_object"]
            case "json_schema":
                chat["response_format"] = [
                    "type": "json_schema",
                    "json_schema": ["name": format["name"] ?? "answer", "schema": format["schema"] ?? .null],
                ]
            default: throw fault("/text/format/type", "must be text, json_object or json_schema")
            }
        }
        for (from, to) in [
            ("max_output_tokens", "max_completion_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
            ("parallel_tool_calls", "parallel_tool_calls"), ("user", "user"),
        ] {
            if let value = body[from], !value.isNull { chat[to] = value }
        }
        if let effort = body["reasoning"]?["effort"], !effort.isNull { chat["reasoning_effort"] = effort }
        var request: ChatRequest
        do {
            (request, _, _) = try OpenAIWireFormat.decodeRequest(.object(chat))
        } catch {
            throw fault(responsesPointer(error.pointer), error.detail)
        }
        request.maxTokensField = nil  // chosen by model for the provider
        for (index, message) in messages.enumerated() where message.isDeveloper {
            request.messages[index].isDeveloper = true
        }
        if let metadata = body["metadata"], !metadata.isNull {
            guard metadata.objectValue != nil else { throw fault("/metadata", "must be an object") }
            options.metadata = metadata
        }
        if let flag = body["store"], !flag.isNull {
            guard let value = flag.boolValue else { throw fault("/store", "must be a boolean") }
            options.store = value
        }
        if let flag = body["stream"], !flag.isNull {
            guard let value = flag.boolValue else { throw fault("/stream", "must be a boolean") }
            options.stream = value
        }
        if let previous = body["previous_response_id"], !previous.isNull {
            guard let id = previous.stringValue, !id.isEmpty else {
                throw fault("/previous_response_id", "must be a response id")
            }
            options.previousResponseID = id
        }
        return (request, options)
    }

    /// A pointer of the chat request the decoder saw, as the field of the Responses request it came from.
    static func responsesPointer(_ pointer: String) -> String {
        for (chat, responses) in [
            ("/messages", "/input"), ("/max_completion_tokens", "/max_output_tokens"),
            ("/response_format", "/text/format"), ("/reasoning_effort", "/reasoning/effort"),
        ] where pointer.hasPrefix(chat) {
            return responses + pointer.dropFirst(chat.count)
        }
        if pointer.hasPrefix("/tools/"), pointer.hasSuffix("/function/name") {
            return String(pointer.dropLast("/function/name".count)) + "/name"
        }
        return pointer
    }

    /// One input item as a chat message.
    static func decodeItem(_ item: JSONValue, at pointer: String) throws(ChatRequestDecodingError) -> ChatMessage {
        guard item.objectValue != nil else { throw fault(pointer, "must be an object") }
        switch item["type"]?.stringValue ?? "message" {
        case "message":
            guard let role = item["role"]?.stringValue else { throw fault(pointer + "/role", "is required") }
            var message: ChatMessage
            switch role {
            case "user": message = .user("")
            case "system", "developer":
                message = .system("")
                message.isDeveloper = role == "developer"
            case "assistant": message = .assistant("")
            default: throw fault(pointer + "/role", "must be user, assistant, system or developer")
            }
            switch item["content"] {
            case .string(let text)?: message.content = text
            case .array(let parts)?:
                var text = ""
                var contentParts: [ContentPart] = []
                var images = false
                for (index, part) in parts.enumerated() {
                    switch part["type"]?.stringValue {
                    case "input_text", "output_text", "text":
                        guard let partText = part["text"]?.stringValue else {
                            throw fault("\(pointer)/content/\(index)/text", "must be a string")
                        }
                        text += partText
                        contentParts.append(.text(partText))
                    case "input_image" where role == "user":
                        guard let url = part["image_url"]?.stringValue else {
                            throw fault("\(pointer)/content/\(index)/image_url", "is required (a URL or a data URL)")
                        }
                        contentParts.append(.image(ImagePart(url: url, detail: part["detail"]?.stringValue)))
                        images = true
                    default:
                        throw fault(
                            "\(pointer)/content/\(index)/type",
                            "must be input_text, output_text or input_image"
                        )
                    }
                }
                message.content = text
                if images { message.parts = contentParts }
            default: throw fault(pointer + "/content", "must be a string or an array of parts")
            }
            return message
        case "function_call":
            guard let callID = item["call_id"]?.stringValue, let name = item["name"]?.stringValue else {
                throw fault(pointer, "a function_call needs call_id and name")
            }
            return .assistant(
                nil,
                toolCalls: [ToolCall(id: callID, name: name, arguments: item["arguments"]?.stringValue ?? "{}")]
            )
        case "function_call_output":
            guard let callID = item["call_id"]?.stringValue, let output = item["output"]?.stringValue else {
                throw fault(pointer, "a function_call_output needs call_id and output (a string)")
            }
            return ChatMessage(role: .tool, content: output, toolCallID: callID)
        default:
            throw fault(pointer + "/type", "must be message, function_call or function_call_output")
        }
    }

    /// The output items of an answer: its text as a message, and each tool call as a `function_call`.
    public static func outputItems(_ response: ChatResponse, id: String) -> [JSONValue] {
        var items: [JSONValue] = []
        if let text = response.message.content, !text.isEmpty || response.message.toolCalls.isEmpty {
            items.append(messageItem(id: "msg_" + id, text: text, status: "completed"))
        }
        for (index, call) in response.message.toolCalls.enumerated() {
            items.append(functionCallItem(id: "fc_\(id)_\(index)", call: call, status: "completed"))
        }
        return items
    }

    static func messageItem(id: String, text: String?, status: String) -> JSONValue {
        [
            "type": "message", "id": .string(id), "status": .string(status), "role": "assistant",
            "content": text.map { [outputText($0)] } ?? [],
        ]
    }

    static func outputText(_ text: String) -> JSONValue {
        ["type": "output_text", "text": .string(text), "annotations": []]
    }

    static func functionCallItem(id: String, call: ToolCall, status: String) -> JSONValue {
        [
            "type": "function_call", "id": .string(id), "call_id": .string(call.id), "name": .string(call.name),
            "arguments": .string(call.arguments), "status": .string(status),
        ]
    }

    /// A `response` object.
    public static func response(
        id: String,
        model: String,
        createdAt: Int64,
        status: String,
        output: [JSONValue],
        usage: TokenUsage?,
        request: ChatRequest,
        options: Options
    ) -> JSONValue {
        [
            "id": .string(id), "object": "response", "created_at": .int(createdAt), "status": .string(status),
            "model": .string(model), "output": .array(output),
            "usage": usage.map { usage in
                [
                    "input_tokens": .int(Int64(usage.inputTokens)), "output_tokens": .int(Int64(usage.outputTokens)),
                    "total_tokens": .int(Int64(usage.totalTokens)),
                    "input_tokens_details": ["cached_tokens": 0], "output_tokens_details": ["reasoning_tokens": 0],
                ]
            } ?? .null,
            "previous_response_id": options.previousResponseID.map(JSONValue.string) ?? .null,
            "instructions": options.instructions.map(JSONValue.string) ?? .null,
            "metadata": options.metadata, "error": .null, "incomplete_details": .null,
            "parallel_tool_calls": request.passthrough["parallel_tool_calls"] ?? true,
            "temperature": request.temperature.map(JSONValue.double) ?? .null,
            "top_p": request.topP.map(JSONValue.double) ?? .null,
            "max_output_tokens": request.maxTokens.map { .int(Int64($0)) } ?? .null,
            "tool_choice": request.toolChoice.map(toolChoiceJSON) ?? "auto",
            "tools": .array(
                request.tools.map { tool in
                    [
                        "type": "function", "name": .string(tool.name), "description": .string(tool.description),
                        "parameters": tool.parameters, "strict": false,
                    ]
                }
            ),
            "store": .bool(options.store),
        ]
    }

    static func toolChoiceJSON(_ choice: ToolChoice) -> JSONValue {
        switch choice {
        case .auto: "auto"
        case .none: "none"
        case .required: "required"
        case .tool(let name): ["type": "function", "name": .string(name)]
        }
    }

    private static func fault(_ pointer: String, _ detail: String) -> ChatRequestDecodingError {
        ChatRequestDecodingError(pointer: pointer, detail: detail)
    }
}
