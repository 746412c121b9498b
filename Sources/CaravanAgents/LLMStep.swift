public import CaravanCore
public import CaravanEngine
import CaravanModels
import CaravanWorkflow

/// `llm: {model, prompt | messages, system?, output_schema?, max_tokens?, temperature?}`: one completion.
/// Output: `{text, json?, usage: {input_tokens, output_tokens, cost_usd}, model}`. With `output_schema` the
/// answer must be JSON matching it (`json`), else the step fails with `output_invalid`.
public struct LLMStep: StepExecutor {
    public static let name = "llm"
    static let fields: Set<String> = [
        "model", "prompt", "messages", "system", "output_schema", "max_tokens", "temperature",
    ]

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys.sorted() where !fields.contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of an llm step"))
        }
        do throws(CaravanError) { _ = try ModelGateway.route(object["model"], at: pointer + "/model") } catch {
            errors += error.fieldErrors
        }
        if (object["prompt"] == nil) == (object["messages"] == nil) {
            errors.append(.init(pointer: pointer + "/prompt", detail: "give either prompt (a string) or messages"))
        }
        if let prompt = object["prompt"], prompt.stringValue == nil {
            errors.append(.init(pointer: pointer + "/prompt", detail: "must be a string"))
        }
        if let messages = object["messages"] {
            if let list = messages.arrayValue, !list.isEmpty {
                for (index, message) in list.enumerated() {
                    let role = message["role"]?.stringValue ?? ""
                    if !["system", "user", "assistant"].contains(role) {
                        errors.append(
                            .init(
                                pointer: pointer + "/messages/\(index)/role",
                                detail: "must be system, user or assistant"
                            )
                        )
                    }
                    if message["content"]?.stringValue == nil {
                        errors.append(
                            .init(pointer: pointer + "/messages/\(index)/content", detail: "must be a string")
                        )
                    }
                }
            } else {
                errors.append(
                    .init(pointer: pointer + "/messages", detail: "must be a non-empty array of {role, content}")
                )
            }
        }
        if let schema = object["output_schema"], schema.objectValue == nil {
            errors.append(.init(pointer: pointer + "/output_schema", detail: "must be a JSON Schema object"))
        }
        if let value = object["max_tokens"] {
            if case .int(let number) = value, number >= 1, number <= 1_000_000 {
            } else {
                errors.append(.init(pointer: pointer + "/max_tokens", detail: "must be an integer from 1 to 1000000"))
            }
        }
        if let value = object["temperature"], !(value.numberValue.map { (0...2).contains($0) } ?? false) {
            errors.append(.init(pointer: pointer + "/temperature", detail: "must be a number from 0 to 2"))
        }
        return errors
    }

    let gateway: ModelGateway

    public init(gateway: ModelGateway) {
        self.gateway = gateway
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        let route: [ModelRef]
        do { route = try ModelGateway.route(config["model"], at: "/model") } catch {
            throw Failure(code: "invalid_model", message: error.detail, retryable: false)
        }
        var messages: [ChatMessage] = []
        if let system = config["system"]?.stringValue { messages.append(.system(system)) }
        if let prompt = config["prompt"] {
            messages.append(.user(prompt.stringValue ?? prompt.canonicalText))
        }
        for message in config["messages"]?.arrayValue ?? [] {
            let role = message["role"]?.stringValue.flatMap(ChatRole.init(rawValue:)) ?? .user
            messages.append(
                ChatMessage(
                    role: role,
                    content: message["content"]?.stringValue ?? message["content"]?.canonicalText ?? ""
                )
            )
        }
        let schema = config["output_schema"]
        var maxTokens: Int?
        if case .int(let number)? = config["max_tokens"] { maxTokens = Int(number) }
        let request = ChatRequest(
            model: "",
            messages: messages,
            maxTokens: maxTokens,
            temperature: config["temperature"]?.numberValue,
            responseFormat: schema.map { .jsonSchema(name: "output", schema: $0) } ?? .text
        )
        let answer: ModelAnswer
        do {
            answer = try await gateway.complete(
                request,
                route: route,
                context: ModelCallContext(orgID: context.orgID, runID: context.runID)
            )
        } catch {
            throw error
        }
        let text = answer.response.message.content ?? ""
        var output: [String: JSONValue] = [
            "text": .string(text), "model": .string(answer.ref.description),
            "usage": [
                "input_tokens": .int(Int64(answer.response.usage.inputTokens)),
                "output_tokens": .int(Int64(answer.response.usage.outputTokens)), "cost_usd": .double(answer.costUSD),
            ],
        ]
        if let schema {
            switch AgentLoopStep.problems(of: text, against: schema) {
            case .success(let value): output["json"] = value
            case .failure(let problem):
                throw Failure(
                    code: "output_invalid",
                    message: "The answer does not match the output schema: \(problem)",
                    retryable: true
                )
            }
        }
        return .object(output)
    }
}
