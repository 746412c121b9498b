import CaravanCore

/// Builds a `ChatResponse` from the events of a streamed Messages answer (`message_start`,
/// `content_block_start`, `content_block_delta`, `message_delta`, `message_stop`, `error`), and says which deltas
/// each event carries. Tool calls are numbered in the order they start, from 0, whatever their block index.
///
/// For structured output the forced tool's `input_json_delta` fragments are passed on as text, and the answer's
/// text is their concatenation: exactly what the caller saw stream.
struct AnthropicStreamAssembler {
    private enum Block {
        case text
        case toolCall(Int)
        case structured
        case other
    }

    let structuredTool: String?
    private var blocks: [Int: Block] = [:]
    private var text = ""
    private var calls: [ToolCall] = []
    private var inputTokens = 0
    private var outputTokens = 0
    private var stopReason: String?
    private var model: String?
    private var id: String?
    private var sawStructured = false
    /// Whether `message_stop` arrived: a stream cut before that is incomplete.
    private(set) var isFinished = false

    init(structuredTool: String?) {
        self.structuredTool = structuredTool
    }

    /// Applies one event's data and returns the deltas it carries.
    /// - Throws: the classified error of an `error` event.
    mutating func apply(_ event: JSONValue) throws(ProviderError) -> [ChatDelta] {
        switch event["type"]?.stringValue {
        case "message_start":
            let message = event["message"]
            id = message?["id"]?.stringValue
            model = message?["model"]?.stringValue
            inputTokens = AnthropicWireFormat.inputTokens(message?["usage"])
            outputTokens = Int(message?["usage"]?["output_tokens"]?.numberValue ?? 0)
        case "content_block_start":
            return startBlock(index: blockIndex(event), event["content_block"] ?? [:])
        case "content_block_delta":
            return applyDelta(index: blockIndex(event), event["delta"] ?? [:])
        case "message_delta":
            if let reason = event["delta"]?["stop_reason"]?.stringValue { stopReason = reason }
            if let tokens = event["usage"]?["output_tokens"]?.numberValue { outputTokens = Int(tokens) }
            if event["usage"]?["input_tokens"] != nil { inputTokens = AnthropicWireFormat.inputTokens(event["usage"]) }
        case "message_stop":
            isFinished = true
        case "error":
            throw AnthropicWireFormat.streamError(event)
        default:
            break  // ping, content_block_stop
        }
        return []
    }

    private func blockIndex(_ event: JSONValue) -> Int {
        Int(event["index"]?.numberValue ?? 0)
    }

    private mutating func startBlock(index: Int, _ block: JSONValue) -> [ChatDelta] {
        switch block["type"]?.stringValue {
        case "text":
            blocks[index] = .text
            let initial = block["text"]?.stringValue ?? ""
            text += initial
            return initial.isEmpty ? [] : [.text(initial)]
        case "tool_use":
            let name = block["name"]?.stringValue ?? ""
            if let structuredTool, name == structuredTool {
                blocks[index] = .structured
                sawStructured = true
                return []
            }
            let call = ToolCall(id: block["id"]?.stringValue ?? "toolu_\(index)", name: name, arguments: "")
            blocks[index] = .toolCall(calls.count)
            calls.append(call)
            return [.toolCallStarted(index: calls.count - 1, id: call.id, name: call.name)]
        default:
            blocks[index] = .other
            return []
        }
    }

    private mutating func applyDelta(index: Int, _ delta: JSONValue) -> [ChatDelta] {
        switch (blocks[index], delta["type"]?.stringValue) {
        case (.text?, "text_delta"):
            let fragment = delta["text"]?.stringValue ?? ""
            text += fragment
            return fragment.isEmpty ? [] : [.text(fragment)]
        case (.toolCall(let position)?, "input_json_delta"):
            let fragment = delta["partial_json"]?.stringValue ?? ""
            calls[position].arguments += fragment
            return fragment.isEmpty ? [] : [.toolCallArguments(index: position, fragment: fragment)]
        case (.structured?, "input_json_delta"):
            let fragment = delta["partial_json"]?.stringValue ?? ""
            text += fragment
            return fragment.isEmpty ? [] : [.text(fragment)]
        default:
            return []
        }
    }

    /// The assembled answer.
    func response(requestedModel: String) -> ChatResponse {
        let toolCalls: [ToolCall] =
            sawStructured
            ? []
            : calls.map { call in
                ToolCall(id: call.id, name: call.name, arguments: call.arguments.isEmpty ? "{}" : call.arguments)
            }
        return ChatResponse(
            message: .assistant(toolCalls.isEmpty || !text.isEmpty ? text : nil, toolCalls: toolCalls),
            finishReason: sawStructured ? .stop : AnthropicWireFormat.finishReason(stopReason),
            usage: TokenUsage(inputTokens: inputTokens, outputTokens: outputTokens),
            model: model ?? requestedModel,
            providerResponseID: id
        )
    }
}
