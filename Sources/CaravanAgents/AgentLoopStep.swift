public import CaravanCore
public import CaravanEngine
import CaravanModels
import CaravanWorkflow
import Foundation

/// `agent_loop`: the durable agent loop, the one step of an agent's run. Each model turn and each tool call is
/// recorded in the step's journal (committed with its `llm.*` / `tool.*` events) before the loop goes on, so a
/// crash, a lost node or a retry replays answered turns from the journal instead of calling the model again.
public struct AgentLoopStep: StepExecutor {
    public static let name = "agent_loop"
    /// The id of the step in an agent's workflow.
    public static let stepID = "agent"
    public static let keepsJournal = true
    public static let interpolatesConfig = false

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        do {
            _ = try AgentDefinition.validate(config, nameFromPath: nil)
            return []
        } catch {
            let fields =
                error.fieldErrors.isEmpty
                ? [CaravanError.FieldError(pointer: "", detail: error.detail)] : error.fieldErrors
            return fields.map { .init(pointer: pointer + $0.pointer, detail: $0.detail) }
        }
    }

    let gateway: ModelGateway
    let toolbox: AgentToolbox
    let threads: ThreadStore

    public init(gateway: ModelGateway, toolbox: AgentToolbox, threads: ThreadStore) {
        self.gateway = gateway
        self.toolbox = toolbox
        self.threads = threads
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        guard let journal = context.journal else {
            throw Failure(
                code: "journal_unavailable",
                message: "The agent loop runs only inside the engine.",
                retryable: false
            )
        }
        let definition: AgentDefinition
        do { definition = try AgentDefinition.validate(config, nameFromPath: nil) } catch {
            throw Failure(code: "invalid_agent", message: error.detail, retryable: false)
        }
        let input = context.input["input"] ?? .null
        let threadID = context.input["thread"]?.stringValue
        // Runs started through the API were checked already; a workflow's `agent` step is checked here.
        if let schema = definition.inputSchema {
            let problems = JSONSchemaCheck.problems(of: input, against: schema, at: "/input")
            if !problems.isEmpty {
                throw Failure(
                    code: "invalid_input",
                    message: "The input does not match the agent's input schema: "
                        + problems.map { "\($0.pointer) \($0.detail)" }.joined(separator: "; "),
                    retryable: false
                )
            }
        }

        var messages: [ChatMessage] = []
        let system = try definition.renderInstructions(input: input, limit: context.maxOutputBytes)
        if !system.isEmpty { messages.append(.system(system)) }
        if let threadID {
            do { messages += try await threads.history(threadID: threadID, excludingRun: context.runID) } catch {
                throw Failure(
                    code: "thread_unavailable",
                    message: "The thread's messages could not be read.",
                    retryable: true
                )
            }
        }
        let question = ChatMessage.user(input.stringValue ?? input.canonicalText)
        messages.append(question)
        var conversation = [question]  // what this run adds to the thread
        let offered = try await toolbox.offer(definition.tools, context: context)
        let specs = offered.map(\.spec)
        var responseFormat = ResponseFormat.text
        if let schema = definition.outputSchema, offered.isEmpty {
            responseFormat = .jsonSchema(name: "answer", schema: schema)
        }

        var spentTokens: Int64 = 0
        var spentCost = 0.0
        var repaired = false
        var turn = 0
        while true {
            turn += 1
            if turn > definition.maxTurns {
                throw Failure(
                    code: "max_turns_exceeded",
                    message: "The agent did not finish within \(definition.maxTurns) model turns.",
                    retryable: false
                )
            }
            let key = "turn:\(turn)"
            let record: TurnRecord
            if let entry = journal.entries[key], let replayed = TurnRecord(json: entry) {
                record = replayed
            } else {
                if let limit = definition.budgetTokens, spentTokens >= limit {
                    throw Failure(
                        code: Failure.Code(rawValue: BudgetExceeded.code),
                        message: "The run used \(spentTokens) of its \(limit) tokens.",
                        retryable: false
                    )
                }
                if let limit = definition.budgetCostUSD, spentCost >= limit {
                    throw Failure(
                        code: Failure.Code(rawValue: BudgetExceeded.code),
                        message: "The run spent $\(spentCost) of its $\(limit).",
                        retryable: false
                    )
                }
                let request = ChatRequest(
                    model: "",
                    messages: messages,
                    tools: specs,
                    toolChoice: specs.isEmpty ? nil : .auto,
                    maxTokens: definition.maxTokens,
                    temperature: definition.temperature,
                    responseFormat: responseFormat
                )
                // Announced before the call, so that a run's history shows a model call in progress.
                if journal.entries["request:\(turn)"] == nil {
                    try await journal.record(
                        "request:\(turn)",
                        value: .bool(true),
                        events: [
                            (
                                "llm.request",
                                [
                                    "turn": .int(Int64(turn)),
                                    "model": .string(definition.route.map(\.description).joined(separator: ",")),
                                    "messages": .int(Int64(messages.count)), "tools": .int(Int64(specs.count)),
                                ]
                            )
                        ]
                    )
                }
                let answer: ModelAnswer
                let currentTurn = Int64(turn)
                do {
                    answer = try await gateway.complete(
                        request,
                        route: definition.route,
                        context: ModelCallContext(orgID: context.orgID, runID: context.runID, agent: definition.name),
                        onDelta: { delta in
                            if case .text(let text) = delta {
                                journal.publish("llm.delta", data: ["turn": .int(currentTurn), "text": .string(text)])
                            }
                        }
                    )
                } catch {
                    throw error
                }
                record = TurnRecord(
                    message: answer.response.message,
                    usage: answer.response.usage,
                    model: answer.ref.description,
                    costUSD: answer.costUSD,
                    finishReason: answer.response.finishReason.rawValue
                )
                try await journal.record(
                    key,
                    value: record.json,
                    events: [("llm.response", record.eventData(turn: turn))]
                )
            }
            spentTokens += Int64(record.usage.totalTokens)
            spentCost += record.costUSD
            messages.append(record.message)
            conversation.append(record.message)

            if record.message.toolCalls.isEmpty {
                let text = record.message.content ?? ""
                guard let schema = definition.outputSchema else {
                    try await finishThread(threadID, context: context, messages: conversation)
                    guard !definition.knowledgeTools.isEmpty else { return .string(text) }
                    // An agent that searches knowledge answers with the passages its answer cites as [n].
                    let cited = Self.passages(in: conversation, tools: definition.knowledgeTools).filter { passage in
                        guard case .int(let number)? = passage["n"] else { return false }
                        return text.contains("[\(number)]")
                    }
                    return ["answer": .string(text), "citations": .array(cited.map(Self.citation))]
                }
                let problems = Self.problems(of: text, against: schema)
                if case .success(let value) = problems {
                    try await finishThread(threadID, context: context, messages: conversation)
                    return value
                }
                guard !repaired, case .failure(let failure) = problems else {
                    throw Failure(
                        code: "output_invalid",
                        message: "The answer does not match the output schema.",
                        retryable: false
                    )
                }
                repaired = true
                messages.append(
                    .user(
                        "Your answer is not valid: \(failure). Answer again with only a JSON value that matches this JSON Schema: "
                            + schema.canonicalText
                    )
                )
                continue
            }

            for (index, call) in record.message.toolCalls.enumerated() {
                let result = try await runTool(
                    call,
                    index: index,
                    turn: turn,
                    offered: offered,
                    journal: journal,
                    firstPassage: Self.passages(in: conversation, tools: definition.knowledgeTools).count + 1,
                    context: context
                )
                let message = ChatMessage.tool(callID: call.id, name: call.name, content: result.content)
                messages.append(message)
                conversation.append(message)
            }
        }
    }

    /// The passages that the knowledge tools named `tools` returned in `messages`, in order (numbered across them).
    static func passages(in messages: [ChatMessage], tools: Set<String>) -> [JSONValue] {
        guard !tools.isEmpty else { return [] }
        return messages.filter { $0.role == .tool && tools.contains($0.name ?? "") }.flatMap { message in
            (try? JSONValue(parsing: Array((message.content ?? "").utf8), maxDepth: 16))?["passages"]?.arrayValue ?? []
        }
    }

    /// A passage as the run's output cites it: where it is, not its text.
    static func citation(_ passage: JSONValue) -> JSONValue {
        [
            "n": passage["n"] ?? .null, "document": passage["document"] ?? .null,
            "document_id": passage["document_id"] ?? .null, "position": passage["position"] ?? .null,
            "chunk_id": passage["chunk_id"] ?? .null,
        ]
    }

    /// Runs one tool call, or replays its recorded result.
    private func runTool(
        _ call: ToolCall,
        index: Int,
        turn: Int,
        offered: [OfferedTool],
        journal: StepJournal,
        firstPassage: Int,
        context: StepContext
    ) async throws(Failure) -> ToolResult {
        let key = "tool:\(turn):\(index)"
        if let entry = journal.entries[key], let content = entry["content"]?.stringValue {
            return ToolResult(content: content, isError: entry["is_error"] == .bool(true))
        }
        let result: ToolResult
        let arguments = try? JSONValue(
            parsing: Array((call.arguments.isEmpty ? "{}" : call.arguments).utf8),
            maxDepth: 64
        )
        // Announced before the tool runs (once: a call resumed after a crash is not announced again).
        if journal.entries["call:" + key] == nil {
            try await journal.record(
                "call:" + key,
                value: .bool(true),
                events: [
                    (
                        "tool.call",
                        [
                            "id": .string(call.id), "name": .string(call.name),
                            "arguments": arguments ?? .string(call.arguments),
                        ]
                    )
                ]
            )
        }
        if let tool = offered.first(where: { $0.spec.name == call.name }) {
            if let arguments {
                let problems = JSONSchemaCheck.problems(of: arguments, against: tool.spec.parameters, at: "")
                if !problems.isEmpty {
                    result = ToolResult(
                        content: "The arguments do not match the tool's schema: "
                            + problems.map { "\($0.pointer.isEmpty ? "/" : $0.pointer) \($0.detail)" }.joined(
                                separator: "; "
                            ),
                        isError: true
                    )
                } else if tool.tool.approval,
                    let refusal = try await awaitApproval(
                        call,
                        arguments: arguments,
                        key: key,
                        journal: journal,
                        context: context
                    )
                {
                    result = refusal
                } else {
                    result = await toolbox.call(
                        tool,
                        arguments: arguments,
                        callID: "\(turn)-\(index)",
                        firstPassage: firstPassage,
                        context: context
                    )
                }
            } else {
                result = ToolResult(content: "The arguments are not valid JSON.", isError: true)
            }
        } else {
            result = ToolResult(content: "There is no tool named '\(call.name)'.", isError: true)
        }
        let shown =
            result.content.utf8.count > 4096
            ? String(decoding: Array(result.content.utf8.prefix(4096)), as: UTF8.self) + "…" : result.content
        let value: JSONValue = [
            "id": .string(call.id), "name": .string(call.name), "content": .string(result.content),
            "is_error": .bool(result.isError),
        ]
        try await journal.record(
            key,
            value: value,
            events: [
                (
                    "tool.result",
                    [
                        "id": .string(call.id), "name": .string(call.name), "is_error": .bool(result.isError),
                        "content": .string(shown),
                    ]
                )
            ]
        )
        return result
    }

    /// Waits for the `approve` signal that names this call and its exact arguments. - Returns: `nil` when
    /// approved; a result for the model when a person refused.
    private func awaitApproval(
        _ call: ToolCall,
        arguments: JSONValue,
        key: String,
        journal: StepJournal,
        context: StepContext
    ) async throws(Failure) -> ToolResult? {
        let decisionKey = "approval:" + key
        let digest = stableDigest(arguments.canonicalText)
        var decision = journal.entries[decisionKey]
        if decision == nil {
            if journal.entries["approval-requested:" + key] == nil {
                try await journal.record(
                    "approval-requested:" + key,
                    value: .bool(true),
                    events: [
                        (
                            "tool.approval_requested",
                            [
                                "call_id": .string(key), "name": .string(call.name), "arguments": arguments,
                                "arguments_digest": .string(digest),
                                "signal": "approve",
                            ]
                        )
                    ]
                )
            }
            guard let runs = context.runs else {
                throw Failure(code: "engine_unavailable", message: "No engine.", retryable: true)
            }
            while decision == nil {
                let signal: (data: JSONValue, sender: String?)?
                do {
                    signal = try await runs.takeSignal(name: "approve") { data in
                        data["data"]?["call_id"]?.stringValue == key
                            && data["data"]?["arguments_digest"]?.stringValue == digest
                    }
                } catch {
                    throw Failure(
                        code: "signal_unavailable",
                        message: "The run's signals could not be read.",
                        retryable: true
                    )
                }
                if let signal {
                    let value: JSONValue = [
                        "approved": .bool(signal.data["approved"] == .bool(true)),
                        "by": signal.sender.map(JSONValue.string) ?? .null,
                    ]
                    try await journal.record(
                        decisionKey,
                        value: value,
                        events: [
                            (
                                "signal.received",
                                ["signal": "approve", "call_id": .string(key), "approved": value["approved"] ?? .null]
                            )
                        ]
                    )
                    decision = value
                } else {
                    do { try await Task.sleep(for: .milliseconds(250)) } catch {
                        throw Failure(
                            code: .cancelled,
                            message: "The run was cancelled while a tool waited for approval.",
                            retryable: false
                        )
                    }
                }
            }
        }
        return decision?["approved"] == .bool(true)
            ? nil : ToolResult(content: "A person refused this call.", isError: true)
    }

    private func finishThread(_ threadID: String?, context: StepContext, messages: [ChatMessage]) async throws(Failure)
    {
        guard let threadID else { return }
        do { try await threads.append(threadID: threadID, runID: context.runID, messages: messages) } catch {
            throw Failure(code: "thread_unavailable", message: "The thread could not be updated.", retryable: true)
        }
    }

    /// The answer as JSON matching `schema`, or what is wrong with it. Code fences around the JSON are allowed.
    static func problems(of text: String, against schema: JSONValue) -> Result<JSONValue, OutputProblem> {
        var body = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if body.hasPrefix("```") {
            body = body.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().joined(separator: "\n")
            if body.hasSuffix("```") { body = String(body.dropLast(3)) }
        }
        guard let value = try? JSONValue(parsing: Array(body.utf8), maxDepth: 64) else {
            return .failure(OutputProblem(text: "it is not JSON"))
        }
        let problems = JSONSchemaCheck.problems(of: value, against: schema, at: "")
        if problems.isEmpty { return .success(value) }
        return .failure(
            OutputProblem(
                text: problems.map { "\($0.pointer.isEmpty ? "/" : $0.pointer) \($0.detail)" }.joined(separator: "; ")
            )
        )
    }

    struct OutputProblem: Error, CustomStringConvertible {
        var text: String
        var description: String { text }
    }
}

/// One answered model turn, as journalled.
struct TurnRecord: Sendable {
    var message: ChatMessage
    var usage: TokenUsage
    var model: String
    var costUSD: Double
    var finishReason: String

    init(message: ChatMessage, usage: TokenUsage, model: String, costUSD: Double, finishReason: String) {
        self.message = message
        self.usage = usage
        self.model = model
        self.costUSD = costUSD
        self.finishReason = finishReason
    }

    init?(json: JSONValue) {
        guard let message = json["message"].flatMap(MessageCoding.decode) else { return nil }
        self.message = message
        self.usage = TokenUsage(
            inputTokens: Int(json["input_tokens"]?.numberValue ?? 0),
            outputTokens: Int(json["output_tokens"]?.numberValue ?? 0)
        )
        self.model = json["model"]?.stringValue ?? ""
        self.costUSD = json["cost_usd"]?.numberValue ?? 0
        self.finishReason = json["finish_reason"]?.stringValue ?? "stop"
    }

    var json: JSONValue {
        [
            "message": MessageCoding.encode(message), "input_tokens": .int(Int64(usage.inputTokens)),
            "output_tokens": .int(Int64(usage.outputTokens)), "model": .string(model), "cost_usd": .double(costUSD),
            "finish_reason": .string(finishReason),
        ]
    }

    func eventData(turn: Int) -> JSONValue {
        [
            "turn": .int(Int64(turn)), "model": .string(model), "finish_reason": .string(finishReason),
            "usage": [
                "input_tokens": .int(Int64(usage.inputTokens)), "output_tokens": .int(Int64(usage.outputTokens)),
            ],
            "cost_usd": .double(costUSD), "text": message.content.map(JSONValue.string) ?? .null,
            "tool_calls": .array(message.toolCalls.map { ["id": .string($0.id), "name": .string($0.name)] }),
        ]
    }
}
