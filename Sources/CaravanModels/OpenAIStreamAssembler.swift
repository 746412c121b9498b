import CaravanCore

/// Builds a `ChatResponse` from the `chat.completion.chunk` objects of a streamed answer, and says which deltas
/// each chunk carries. Tool-call argument fragments are concatenated per `index`.
struct OpenAIStreamAssembler {
    private struct PartialCall {
        var id: String
        var name: String
        var arguments = ""
    }

    private var text = ""
    private var calls: [Int: PartialCall] = [:]
    private var finishReason: String?
    private var usage: TokenUsage?
    private var model: String?
    private var id: String?
    /// Whether a chunk said how the answer ended: a stream cut before that is incomplete.
    private(set) var isFinished = false

    /// Applies one chunk and returns the deltas it carries, in order.
    /// - Throws: `unavailable` for an `error` object sent mid-stream.
    mutating func apply(_ chunk: JSONValue) throws(ProviderError) -> [ChatDelta] {
        if let error = chunk["error"] {
            let message = error["message"]?.stringValue ?? error.stringValue ?? error.canonicalText
            throw ProviderError(.unavailable, "The stream failed: \(ProviderTransport.truncated(message, to: 500))")
        }
        if id == nil { id = chunk["id"]?.stringValue }
        if let name = chunk["model"]?.stringValue, !name.isEmpty { model = name }
        if let usage = OpenAIWireFormat.usage(chunk["usage"]) { self.usage = usage }
        guard let choice = chunk["choices"]?.arrayValue?.first else { return [] }
        var deltas: [ChatDelta] = []
        if let content = OpenAIWireFormat.text(of: choice["delta"]?["content"]), !content.isEmpty {
            text += content
            deltas.append(.text(content))
        }
        for (position, call) in (choice["delta"]?["tool_calls"]?.arrayValue ?? []).enumerated() {
            let index = call["index"].flatMap { $0.numberValue.map { Int($0) } } ?? position
            let function = call["function"]
            if calls[index] == nil {
                let started = PartialCall(
                    id: call["id"]?.stringValue ?? "call_\(index)",
                    name: function?["name"]?.stringValue ?? ""
                )
                calls[index] = started
                deltas.append(.toolCallStarted(index: index, id: started.id, name: started.name))
            } else if let name = function?["name"]?.stringValue, calls[index]?.name.isEmpty == true {
                calls[index]?.name = name
            }
            if let fragment = function?["arguments"]?.stringValue, !fragment.isEmpty {
                calls[index]?.arguments += fragment
                deltas.append(.toolCallArguments(index: index, fragment: fragment))
            }
        }
        if let reason = choice["finish_reason"]?.stringValue {
            finishReason = reason
            isFinished = true
        }
        return deltas
    }

    /// The assembled answer.
    func response(requestedModel: String) -> ChatResponse {
        let toolCalls = calls.keys.sorted().compactMap { index in
            calls[index].map {
                ToolCall(id: $0.id, name: $0.name, arguments: $0.arguments.isEmpty ? "{}" : $0.arguments)
            }
        }
        return ChatResponse(
            message: .assistant(toolCalls.isEmpty || !text.isEmpty ? text : nil, toolCalls: toolCalls),
            finishReason: OpenAIWireFormat.finishReason(finishReason, hasToolCalls: !toolCalls.isEmpty),
            usage: usage ?? .zero,
            model: model ?? requestedModel,
            providerResponseID: id
        )
    }

    /// The deltas a whole (non-streamed) answer amounts to, for servers that answer a streamed request at once.
    static func deltas(of response: ChatResponse) -> [ChatDelta] {
        var deltas: [ChatDelta] = []
        if let text = response.message.content, !text.isEmpty { deltas.append(.text(text)) }
        for (index, call) in response.message.toolCalls.enumerated() {
            deltas.append(.toolCallStarted(index: index, id: call.id, name: call.name))
            deltas.append(.toolCallArguments(index: index, fragment: call.arguments))
        }
        return deltas
    }
}
