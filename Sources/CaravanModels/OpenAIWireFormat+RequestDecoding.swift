public import CaravanCore
import Foundation

/// Why a Chat Completions request body was refused: the JSON pointer of the field at fault and what is wrong.
public struct ChatRequestDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// e.g. `/messages/2/role`; empty for the body itself.
    public var pointer: String
    public var detail: String

    public init(pointer: String, detail: String) {
        self.pointer = pointer
        self.detail = detail
    }

    public var description: String { "\(pointer.isEmpty ? "body" : pointer): \(detail)" }

    /// As a `validation_failed` error naming the field, for problem+json answers.
    public var caravanError: CaravanError {
        CaravanError(
            .validationFailed,
            "The chat completion request is invalid: \(description)",
            fieldErrors: [.init(pointer: pointer, detail: detail)]
        )
    }
}

extension OpenAIWireFormat {
    /// Reads and validates a Chat Completions request body, as clients of Caravan's OpenAI-compatible endpoint
    /// send it. `model` is returned as given (the caller resolves `provider/model` or an alias).
    ///
    /// Checked: `model` a non-empty string; `messages` a non-empty array of objects whose `role` is `system`,
    /// `developer` (a system message, kept as `developer` for OpenAI-format providers), `user`, `assistant` or
    /// `tool`; `content` a string or an array of `{type: text, text}` parts (joined); assistant `tool_calls` as
    /// `{id, type: function, function: {name, arguments}}`; tool messages with `tool_call_id`; `tools`,
    /// `tool_choice` (naming an offered tool), `max_tokens`/`max_completion_tokens` (1…1,048,576), `temperature`
    /// (0…2), `top_p` (0…1), `stop`, `response_format`, `user`, `stream`, `stream_options`, `n` (1…8) and
    /// `models` (fallbacks of `model`, 1…8 names, checked only for their form here). The
    /// parameters of `passthroughParameters` are checked and kept in `passthrough`. Any other field is refused,
    /// as OpenAI refuses an argument it does not know.
    /// - Throws: the first fault found, with its JSON pointer.
    public static func decodeRequest(
        _ json: JSONValue
    ) throws(ChatRequestDecodingError) -> (request: ChatRequest, stream: Bool, choices: Int) {
        guard let body = json.objectValue else { throw fault("", "must be a JSON object") }
        for field in body.keys.sorted() where !modelledParameters.contains(field) && passthroughParameters[field] == nil
        {
            if unsupportedParameters.contains(field) {
                throw fault("/" + field, "is not supported by Caravan's gateway")
            }
            throw fault("/" + field, "is not a parameter of chat completions (unrecognized request argument)")
        }
        guard let model = body["model"]?.stringValue, !model.isEmpty else {
            throw fault("/model", "is required and must be a non-empty string")
        }
        guard let rawMessages = body["messages"]?.arrayValue, !rawMessages.isEmpty else {
            throw fault("/messages", "is required and must be a non-empty array")
        }
        var messages: [ChatMessage] = []
        for (index, message) in rawMessages.enumerated() {
            messages.append(try decodeMessage(message, at: "/messages/\(index)"))
        }
        var request = ChatRequest(model: model, messages: messages)
        request.tools = try decodeTools(body["tools"])
        request.toolChoice = try decodeToolChoice(body["tool_choice"], tools: request.tools)
        for field in ["max_completion_tokens", "max_tokens"] {
            guard let value = body[field], !value.isNull else { continue }
            guard let number = integer(value), (1...1_048_576).contains(number) else {
                throw fault("/" + field, "must be an integer from 1 to 1048576")
            }
            request.maxTokens = number
            request.maxTokensField = field
            break
        }
        request.temperature = try number(body["temperature"], at: "/temperature", in: 0...2)
        request.topP = try number(body["top_p"], at: "/top_p", in: 0...1)
        request.stop = try decodeStop(body["stop"])
        request.responseFormat = try decodeResponseFormat(body["response_format"])
        if let user = body["user"], !user.isNull {
            guard let text = user.stringValue else { throw fault("/user", "must be a string") }
            request.user = text
        }
        for (field, check) in passthroughParameters.sorted(by: { $0.key < $1.key }) {
            guard let value = body[field], !value.isNull else { continue }
            if let problem = check(value) { throw fault("/" + field, problem) }
            request.passthrough[field] = value
        }
        if request.passthrough["top_logprobs"] != nil, body["logprobs"] != .bool(true) {
            throw fault("/top_logprobs", "needs logprobs: true")
        }
        if let models = body["models"], !models.isNull {
            guard let list = models.arrayValue, (1...8).contains(list.count),
                list.allSatisfy({ !($0.stringValue ?? "").isEmpty })
            else { throw fault("/models", "must be an array of 1 to 8 model names, the fallbacks of model") }
        }
        var choices = 1
        if let n = body["n"], !n.isNull {
            guard let count = integer(n), (1...8).contains(count) else {
                throw fault("/n", "must be an integer from 1 to 8")
            }
            choices = count
        }
        var stream = false
        if let value = body["stream"], !value.isNull {
            guard case .bool(let flag) = value else { throw fault("/stream", "must be a boolean") }
            stream = flag
        }
        if let options = body["stream_options"], !options.isNull {
            guard options.objectValue != nil else { throw fault("/stream_options", "must be an object") }
            if let include = options["include_usage"], !include.isNull, include.boolValue == nil {
                throw fault("/stream_options/include_usage", "must be a boolean")
            }
        }
        if stream, choices > 1 { throw fault("/n", "must be 1 when streaming") }
        if stream, request.passthrough["logprobs"] == .bool(true) {
            throw fault("/logprobs", "is not supported when streaming")
        }
        return (request, stream, choices)
    }

    /// The fields `decodeRequest` reads into `ChatRequest` itself (or into its other answers).
    static let modelledParameters: Set<String> = [
        "model", "messages", "tools", "tool_choice", "max_tokens", "max_completion_tokens", "temperature", "top_p",
        "stop", "response_format", "user", "n", "stream", "stream_options", "models",
    ]

    /// OpenAI's parameters whose answers Caravan does not carry (audio output, web search annotations, the
    /// legacy `functions`): refused rather than sent and then lost.
    static let unsupportedParameters: Set<String> = [
        "audio", "modalities", "web_search_options", "functions", "function_call",
    ]

    /// OpenAI's parameters that Caravan passes on as they are, each with its check (`nil`: valid).
    static let passthroughParameters: [String: @Sendable (JSONValue) -> String?] = [
        "seed": { integer($0) == nil ? "must be an integer" : nil },
        "presence_penalty": { inRange($0, -2...2) },
        "frequency_penalty": { inRange($0, -2...2) },
        "logprobs": { $0.boolValue == nil ? "must be a boolean" : nil },
        "top_logprobs": { value in
            integer(value).map { (0...20).contains($0) } == true ? nil : "must be an integer from 0 to 20"
        },
        "logit_bias": { value in
            guard let biases = value.objectValue, biases.count <= 300 else {
                return "must be an object of token id → bias (at most 300)"
            }
            for (token, bias) in biases {
                guard Int(token) != nil, let number = bias.numberValue, (-100...100).contains(number) else {
                    return "must map token ids to biases from -100 to 100"
                }
            }
            return nil
        },
        "parallel_tool_calls": { $0.boolValue == nil ? "must be a boolean" : nil },
        "reasoning_effort": { value in
            ["none", "minimal", "low", "medium", "high"].contains(value.stringValue ?? "")
                ? nil : "must be one of none, minimal, low, medium, high"
        },
        "metadata": { value in
            guard let pairs = value.objectValue, pairs.count <= 16,
                pairs.allSatisfy({ $0.key.utf8.count <= 64 && ($0.value.stringValue?.utf8.count ?? 513) <= 512 })
            else { return "must be an object of at most 16 string values (keys up to 64, values up to 512 characters)" }
            return nil
        },
        "store": { $0.boolValue == nil ? "must be a boolean" : nil },
        "service_tier": { $0.stringValue == nil ? "must be a string" : nil },
        "verbosity": { value in
            ["low", "medium", "high"].contains(value.stringValue ?? "") ? nil : "must be one of low, medium, high"
        },
        "prompt_cache_key": { $0.stringValue == nil ? "must be a string" : nil },
        "safety_identifier": { $0.stringValue == nil ? "must be a string" : nil },
        "prediction": { $0.objectValue == nil ? "must be an object" : nil },
    ]

    private static func inRange(_ value: JSONValue, _ range: ClosedRange<Double>) -> String? {
        guard let number = value.numberValue, range.contains(number) else {
            return "must be a number from \(Int(range.lowerBound)) to \(Int(range.upperBound))"
        }
        return nil
    }

    private static func decodeMessage(
        _ json: JSONValue,
        at pointer: String
    ) throws(ChatRequestDecodingError) -> ChatMessage {
        guard json.objectValue != nil else { throw fault(pointer, "must be an object") }
        guard let roleText = json["role"]?.stringValue else {
            throw fault(pointer + "/role", "is required and must be a string")
        }
        let role: ChatRole
        switch roleText {
        case "system", "developer": role = .system
        case "user": role = .user
        case "assistant": role = .assistant
        case "tool": role = .tool
        default: throw fault(pointer + "/role", "must be one of system, developer, user, assistant, tool")
        }
        let (content, parts) = try decodeContent(
            json["content"],
            at: pointer + "/content",
            imagesAllowed: role == .user
        )
        var message = ChatMessage(role: role, content: content)
        message.parts = parts
        message.isDeveloper = roleText == "developer"
        if let name = json["name"], !name.isNull {
            guard let text = name.stringValue else { throw fault(pointer + "/name", "must be a string") }
            message.name = text
        }
        switch role {
        case .system, .user:
            guard content != nil else { throw fault(pointer + "/content", "is required") }
        case .assistant:
            message.toolCalls = try decodeToolCalls(json["tool_calls"], at: pointer + "/tool_calls")
            if content == nil && message.toolCalls.isEmpty {
                throw fault(pointer + "/content", "is required unless the message has tool_calls")
            }
        case .tool:
            guard let id = json["tool_call_id"]?.stringValue, !id.isEmpty else {
                throw fault(pointer + "/tool_call_id", "is required and must be a non-empty string")
            }
            guard content != nil else { throw fault(pointer + "/content", "is required") }
            message.toolCallID = id
        }
        return message
    }

    /// A message's content: its text, and for a user message with images its parts in order.
    private static func decodeContent(
        _ json: JSONValue?,
        at pointer: String,
        imagesAllowed: Bool
    ) throws(ChatRequestDecodingError) -> (text: String?, parts: [ContentPart]?) {
        switch json {
        case nil, .null?: return (nil, nil)
        case .string(let text)?: return (text, nil)
        case .array(let items)?:
            var text = ""
            var parts: [ContentPart] = []
            var images = false
            for (index, item) in items.enumerated() {
                let here = "\(pointer)/\(index)"
                switch item["type"]?.stringValue {
                case "text":
                    guard let partText = item["text"]?.stringValue else {
                        throw fault(here + "/text", "must be a string")
                    }
                    text += partText
                    parts.append(.text(partText))
                case "image_url" where imagesAllowed:
                    parts.append(.image(try decodeImage(item["image_url"], at: here + "/image_url")))
                    images = true
                case "image_url":
                    throw fault(here + "/type", "images are allowed in user messages only")
                default:
                    throw fault(here + "/type", "must be text or image_url")
                }
            }
            return (text, images ? parts : nil)
        default: throw fault(pointer, "must be a string or an array of content parts")
        }
    }

    /// `{url, detail?}`: an http(s) URL, or a data URL of a PNG, JPEG, GIF or WebP image in base64.
    private static func decodeImage(
        _ json: JSONValue?,
        at pointer: String
    ) throws(ChatRequestDecodingError)
        -> ImagePart
    {
        guard let url = json?["url"]?.stringValue else {
            throw fault(pointer + "/url", "is required and must be a string")
        }
        var image = ImagePart(url: url)
        if url.hasPrefix("data:") {
            guard image.inline != nil else {
                throw fault(pointer + "/url", "must be data:image/(png|jpeg|gif|webp);base64,<data> with valid base64")
            }
        } else {
            let lowered = url.lowercased()
            guard lowered.hasPrefix("https://") || lowered.hasPrefix("http://"), url.utf8.count <= 8192,
                let parsed = URLComponents(string: url), parsed.host?.isEmpty == false
            else { throw fault(pointer + "/url", "must be an http(s) URL or a data URL") }
        }
        if let detail = json?["detail"], !detail.isNull {
            guard let text = detail.stringValue, ["auto", "low", "high"].contains(text) else {
                throw fault(pointer + "/detail", "must be auto, low or high")
            }
            image.detail = text
        }
        return image
    }

    private static func decodeToolCalls(
        _ json: JSONValue?,
        at pointer: String
    ) throws(ChatRequestDecodingError) -> [ToolCall] {
        guard let json, !json.isNull else { return [] }
        guard let calls = json.arrayValue else { throw fault(pointer, "must be an array") }
        var result: [ToolCall] = []
        for (index, call) in calls.enumerated() {
            let here = "\(pointer)/\(index)"
            guard call.objectValue != nil else { throw fault(here, "must be an object") }
            guard let id = call["id"]?.stringValue, !id.isEmpty else {
                throw fault(here + "/id", "is required and must be a non-empty string")
            }
            if let type = call["type"], type.stringValue != "function" {
                throw fault(here + "/type", "must be \"function\"")
            }
            guard let function = call["function"], function.objectValue != nil else {
                throw fault(here + "/function", "is required and must be an object")
            }
            guard let name = function["name"]?.stringValue, !name.isEmpty else {
                throw fault(here + "/function/name", "is required and must be a non-empty string")
            }
            let arguments: String
            switch function["arguments"] {
            case .string(let text)?: arguments = text
            case .object?: arguments = function["arguments"]!.canonicalText  // lenient: some clients send an object
            case nil, .null?: arguments = "{}"
            default: throw fault(here + "/function/arguments", "must be a string of JSON")
            }
            result.append(ToolCall(id: id, name: name, arguments: arguments))
        }
        return result
    }

    private static func decodeTools(_ json: JSONValue?) throws(ChatRequestDecodingError) -> [ToolSpec] {
        guard let json, !json.isNull else { return [] }
        guard let tools = json.arrayValue else { throw fault("/tools", "must be an array") }
        var result: [ToolSpec] = []
        for (index, tool) in tools.enumerated() {
            let here = "/tools/\(index)"
            guard tool["type"]?.stringValue == "function" else { throw fault(here + "/type", "must be \"function\"") }
            guard let function = tool["function"], function.objectValue != nil else {
                throw fault(here + "/function", "is required and must be an object")
            }
            guard let name = function["name"]?.stringValue, isToolName(name) else {
                throw fault(here + "/function/name", "is required: 1 to 64 letters, digits, '_' or '-'")
            }
            if let description = function["description"], !description.isNull, description.stringValue == nil {
                throw fault(here + "/function/description", "must be a string")
            }
            let parameters = function["parameters"] ?? ["type": "object", "properties": [:]]
            guard parameters.objectValue != nil else {
                throw fault(here + "/function/parameters", "must be a JSON Schema object")
            }
            result.append(
                ToolSpec(name: name, description: function["description"]?.stringValue ?? "", parameters: parameters)
            )
        }
        return result
    }

    private static func decodeToolChoice(
        _ json: JSONValue?,
        tools: [ToolSpec]
    ) throws(ChatRequestDecodingError) -> ToolChoice? {
        switch json {
        case nil, .null?: return nil
        case .string("auto")?: return .auto
        case .string("none")?: return ToolChoice.none  // not `.none`: that would be Optional.none, no choice at all
        case .string("required")?: return .required
        case .object?:
            guard json?["type"]?.stringValue == "function", let name = json?["function"]?["name"]?.stringValue else {
                throw fault("/tool_choice", "must be auto, none, required or {type: function, function: {name}}")
            }
            guard tools.contains(where: { $0.name == name }) else {
                throw fault("/tool_choice/function/name", "names no tool in tools")
            }
            return .tool(name)
        default: throw fault("/tool_choice", "must be auto, none, required or {type: function, function: {name}}")
        }
    }

    private static func decodeStop(_ json: JSONValue?) throws(ChatRequestDecodingError) -> [String] {
        switch json {
        case nil, .null?: return []
        case .string(let text)?: return [text]
        case .array(let items)?:
            guard items.count <= 16 else { throw fault("/stop", "must have at most 16 sequences") }
            var result: [String] = []
            for (index, item) in items.enumerated() {
                guard let text = item.stringValue else { throw fault("/stop/\(index)", "must be a string") }
                result.append(text)
            }
            return result
        default: throw fault("/stop", "must be a string or an array of strings")
        }
    }

    private static func decodeResponseFormat(_ json: JSONValue?) throws(ChatRequestDecodingError) -> ResponseFormat {
        guard let json, !json.isNull else { return .text }
        switch json["type"]?.stringValue {
        case "text": return .text
        case "json_object": return .jsonObject
        case "json_schema":
            guard let name = json["json_schema"]?["name"]?.stringValue, !name.isEmpty else {
                throw fault("/response_format/json_schema/name", "is required and must be a non-empty string")
            }
            guard let schema = json["json_schema"]?["schema"], schema.objectValue != nil else {
                throw fault("/response_format/json_schema/schema", "is required and must be a JSON Schema object")
            }
            return .jsonSchema(name: name, schema: schema)
        default: throw fault("/response_format/type", "must be text, json_object or json_schema")
        }
    }

    private static func number(
        _ json: JSONValue?,
        at pointer: String,
        in range: ClosedRange<Double>
    ) throws(ChatRequestDecodingError) -> Double? {
        guard let json, !json.isNull else { return nil }
        guard let value = json.numberValue, range.contains(value) else {
            throw fault(pointer, "must be a number from \(Int(range.lowerBound)) to \(Int(range.upperBound))")
        }
        return value
    }

    private static func integer(_ json: JSONValue) -> Int? {
        switch json {
        case .int(let value): return Int(exactly: value)
        case .double(let value) where value == value.rounded() && abs(value) < 1e15: return Int(value)
        default: return nil
        }
    }

    static func isToolName(_ name: String) -> Bool {
        (1...64).contains(name.count)
            && name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_"
                    || $0 == "-"
            }
    }

    private static func fault(_ pointer: String, _ detail: String) -> ChatRequestDecodingError {
        ChatRequestDecodingError(pointer: pointer, detail: detail)
    }
}
