public import CaravanCore

/// The events of a streamed Responses API answer, made as the answer arrives: `response.created` and
/// `response.in_progress`, then for each output item its `output_item.added`, its text or arguments in deltas as
/// they come, its `done` events; then `response.completed` (or `response.failed`). Each event has its
/// `sequence_number`.
///
/// Text goes to one message item (id `msg_<id>`), each tool call to a `function_call` item (`fc_<id>_<index>`), as
/// in `ResponsesWireFormat.outputItems`; an item opens at its first delta, and an answer that sent none has its
/// items whole at the end.
public struct ResponsesStreamEncoder: Sendable {
    public typealias Event = (type: String, data: JSONValue)

    private let id: String
    private var sequence = 0
    /// Output indices given out, in the order the items opened.
    private var nextIndex = 0
    /// The message item's output index and text so far, while it is open; whether it was closed.
    private var message: (index: Int, text: String)?
    private var messageClosed = false
    /// Each tool call's output index, by its position in the answer; their arguments so far.
    private var calls: [Int: (index: Int, arguments: String)] = [:]

    /// - Parameter id: the suffix of the response's id, shared by its items' ids.
    public init(id: String) {
        self.id = id
    }

    /// `response.created` and `response.in_progress`, of `response` (the response object as it starts).
    public mutating func start(_ response: JSONValue) -> [Event] {
        [event("response.created", ["response": response]), event("response.in_progress", ["response": response])]
    }

    /// The events of one piece of the answer.
    public mutating func events(of delta: ChatDelta) -> [Event] {
        var events: [Event] = []
        switch delta {
        case .text(let text):
            // Text after a tool call began is in the final response only: its message item was done.
            guard !messageClosed else { return [] }
            if message == nil { events += openMessage() }
            message?.text += text
            events.append(event("response.output_text.delta", textPart(delta: text)))
        case .toolCallStarted(let position, let callID, let name):
            events += closeMessage(text: message?.text ?? "")
            guard calls[position] == nil else { return events }
            let index = takeIndex()
            calls[position] = (index, "")
            let item = ResponsesWireFormat.functionCallItem(
                id: callItemID(position),
                call: ToolCall(id: callID, name: name, arguments: ""),
                status: "in_progress"
            )
            events.append(event("response.output_item.added", ["output_index": .int(Int64(index)), "item": item]))
        case .toolCallArguments(let position, let fragment):
            guard let call = calls[position] else { return [] }
            calls[position]?.arguments += fragment
            events.append(
                event(
                    "response.function_call_arguments.delta",
                    [
                        "item_id": .string(callItemID(position)), "output_index": .int(Int64(call.index)),
                        "delta": .string(fragment),
                    ]
                )
            )
        }
        return events
    }

    /// The events that end the answer: each item done (with the answer's final text and arguments), whole for
    /// those that sent no delta, then `response.completed` with `completed`, the final response object.
    public mutating func finish(_ response: ChatResponse, completed: JSONValue) -> [Event] {
        var ending: [Event] = []
        if let text = response.message.content, !text.isEmpty || response.message.toolCalls.isEmpty,
            !messageClosed
        {
            if message == nil {
                ending += openMessage()
                ending.append(event("response.output_text.delta", textPart(delta: text)))
            }
            ending += closeMessage(text: text)
        }
        for (position, call) in response.message.toolCalls.enumerated() {
            if calls[position] == nil {
                ending += events(of: .toolCallStarted(index: position, id: call.id, name: call.name))
                ending += events(of: .toolCallArguments(index: position, fragment: call.arguments))
            }
            guard let index = calls[position]?.index else { continue }
            let base: [String: JSONValue] = [
                "item_id": .string(callItemID(position)), "output_index": .int(Int64(index)),
            ]
            ending.append(
                event(
                    "response.function_call_arguments.done",
                    base.merging(["arguments": .string(call.arguments)]) { $1 }
                )
            )
            let item = ResponsesWireFormat.functionCallItem(id: callItemID(position), call: call, status: "completed")
            ending.append(event("response.output_item.done", ["output_index": .int(Int64(index)), "item": item]))
        }
        ending.append(event("response.completed", ["response": completed]))
        return ending
    }

    /// `response.failed`, with `failed`, the response object with its status and error.
    public mutating func fail(_ failed: JSONValue) -> [Event] {
        [event("response.failed", ["response": failed])]
    }

    private mutating func takeIndex() -> Int {
        defer { nextIndex += 1 }
        return nextIndex
    }

    private func callItemID(_ position: Int) -> String { "fc_\(id)_\(position)" }

    private mutating func openMessage() -> [Event] {
        let index = takeIndex()
        message = (index, "")
        let item = ResponsesWireFormat.messageItem(id: "msg_" + id, text: nil, status: "in_progress")
        return [
            event("response.output_item.added", ["output_index": .int(Int64(index)), "item": item]),
            event("response.content_part.added", textPart(["part": ResponsesWireFormat.outputText("")])),
        ]
    }

    /// The message item's `done` events, with its final `text`; nothing when it is not open.
    private mutating func closeMessage(text: String) -> [Event] {
        guard let open = message else { return [] }
        let events = [
            event("response.output_text.done", textPart(["text": .string(text)])),
            event("response.content_part.done", textPart(["part": ResponsesWireFormat.outputText(text)])),
            event(
                "response.output_item.done",
                [
                    "output_index": .int(Int64(open.index)),
                    "item": ResponsesWireFormat.messageItem(id: "msg_" + id, text: text, status: "completed"),
                ]
            ),
        ]
        message = nil
        messageClosed = true
        return events
    }

    private func textPart(delta: String) -> [String: JSONValue] { textPart(["delta": .string(delta)]) }

    private func textPart(_ fields: [String: JSONValue]) -> [String: JSONValue] {
        [
            "item_id": .string("msg_" + id), "output_index": .int(Int64(message?.index ?? 0)), "content_index": 0,
        ].merging(fields) { $1 }
    }

    private mutating func event(_ type: String, _ fields: [String: JSONValue]) -> Event {
        var data = fields
        data["type"] = .string(type)
        data["sequence_number"] = .int(Int64(sequence))
        sequence += 1
        return (type, .object(data))
    }
}
