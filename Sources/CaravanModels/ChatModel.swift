public import CaravanCore

/// Who said a message in a conversation with a model.
public enum ChatRole: String, Sendable, Hashable, Codable {
    case system, user, assistant, tool
}

/// A model's request to call a tool: an id to answer with, the tool's name and its arguments as JSON text
/// (exactly as the model wrote them: they may not parse).
public struct ToolCall: Sendable, Hashable {
    public var id: String
    public var name: String
    public var arguments: String

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// One message of a conversation, in Caravan's provider-neutral form.
public struct ChatMessage: Sendable, Hashable {
    public var role: ChatRole
    /// The text; `nil` for an assistant message that only calls tools.
    public var content: String?
    /// For assistant messages: the tools the model asked to call.
    public var toolCalls: [ToolCall]
    /// For tool messages: the call this answers.
    public var toolCallID: String?
    /// For tool messages: the tool's name (Anthropic does not need it; some OpenAI-compatible servers do).
    public var name: String?
    /// For system messages: sent in OpenAI's `developer` role, in which OpenAI-format providers get it back.
    public var isDeveloper = false
    /// For user messages with images: the content in order, text and images (`content` is then its text alone).
    /// `nil` for text only.
    public var parts: [ContentPart]?

    public init(
        role: ChatRole,
        content: String?,
        toolCalls: [ToolCall] = [],
        toolCallID: String? = nil,
        name: String? = nil
    ) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
    }

    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: .system, content: text) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: text) }
    public static func assistant(_ text: String?, toolCalls: [ToolCall] = []) -> ChatMessage {
        ChatMessage(role: .assistant, content: text, toolCalls: toolCalls)
    }
    public static func tool(callID: String, name: String, content: String) -> ChatMessage {
        ChatMessage(role: .tool, content: content, toolCallID: callID, name: name)
    }
}

/// A piece of a user message's content.
public enum ContentPart: Sendable, Hashable {
    case text(String)
    case image(ImagePart)
}

/// An image in a message: by URL (`https://…`), which the provider fetches, or inline as a data URL
/// (`data:image/png;base64,…`).
public struct ImagePart: Sendable, Hashable {
    public var url: String
    /// OpenAI's `detail` (`auto`, `low` or `high`), when given.
    public var detail: String?

    public init(url: String, detail: String? = nil) {
        self.url = url
        self.detail = detail
    }

    /// The media types an inline image may have.
    public static let mediaTypes: Set<String> = ["image/png", "image/jpeg", "image/gif", "image/webp"]

    /// For a data URL: its media type and base64 data (checked to decode).
    public var inline: (mediaType: String, data: String)? {
        guard url.hasPrefix("data:"), let comma = url.firstIndex(of: ",") else { return nil }
        let header = url[url.index(url.startIndex, offsetBy: 5)..<comma]
        guard header.hasSuffix(";base64") else { return nil }
        let mediaType = String(header.dropLast(7)).lowercased()
        let data = String(url[url.index(after: comma)...])
        guard Self.mediaTypes.contains(mediaType), !data.isEmpty, Self.isBase64(data) else { return nil }
        return (mediaType, data)
    }

    static func isBase64(_ text: String) -> Bool {
        let bytes = text.utf8
        guard bytes.count % 4 == 0 else { return false }
        var padding = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "="): padding += 1
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                if padding > 0 { return false }
            default: return false
            }
        }
        return padding <= 2
    }
}

/// A tool offered to a model: its name, what it does, and the JSON Schema of its arguments.
public struct ToolSpec: Sendable, Hashable {
    public var name: String
    public var description: String
    public var parameters: JSONValue

    public init(name: String, description: String, parameters: JSONValue) {
        self.name = name
        self.description = description
        self.parameters = parameters
    }
}

/// Whether and which tool the model must call.
public enum ToolChoice: Sendable, Hashable {
    case auto
    case none
    case required
    case tool(String)
}

/// The shape the answer must take.
public enum ResponseFormat: Sendable, Hashable {
    case text
    /// Any JSON object.
    case jsonObject
    /// JSON that matches this schema; `name` is what OpenAI calls the schema.
    case jsonSchema(name: String, schema: JSONValue)
}

/// One completion request, provider-neutral. `model` is the provider's own model name (no `provider/` prefix).
public struct ChatRequest: Sendable, Hashable {
    public var model: String
    public var messages: [ChatMessage]
    public var tools: [ToolSpec]
    public var toolChoice: ToolChoice?
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var stop: [String]
    public var responseFormat: ResponseFormat
    /// Caller-supplied end-user id, passed on where the protocol has a place for it.
    public var user: String?
    /// The field the client set `maxTokens` with (`max_tokens` or `max_completion_tokens`), sent as it came to
    /// providers of OpenAI's format; `nil` lets the encoder choose by model.
    public var maxTokensField: String?
    /// OpenAI parameters Caravan does not model (`seed`, `presence_penalty`, `logprobs`, `parallel_tool_calls`,
    /// `reasoning_effort`, `metadata`, …), checked and passed as they came to providers of OpenAI's format. A
    /// provider of another format honours those it can map and refuses the call naming any other
    /// (`AnthropicWireFormat.unsupportedParameter`): none is ever dropped without a word.
    public var passthrough: [String: JSONValue] = [:]

    public init(
        model: String,
        messages: [ChatMessage],
        tools: [ToolSpec] = [],
        toolChoice: ToolChoice? = nil,
        maxTokens: Int? = nil,
        temperature: Double? = nil,
        topP: Double? = nil,
        stop: [String] = [],
        responseFormat: ResponseFormat = .text,
        user: String? = nil
    ) {
        self.model = model
        self.messages = messages
        self.tools = tools
        self.toolChoice = toolChoice
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.stop = stop
        self.responseFormat = responseFormat
        self.user = user
    }
}

/// Tokens counted for one call.
public struct TokenUsage: Sendable, Hashable {
    public var inputTokens: Int
    public var outputTokens: Int

    public init(inputTokens: Int, outputTokens: Int) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }

    public var totalTokens: Int { inputTokens + outputTokens }
    public static let zero = TokenUsage(inputTokens: 0, outputTokens: 0)
}

/// Why the model stopped.
public enum FinishReason: String, Sendable, Hashable {
    /// It finished its answer (or hit a stop sequence).
    case stop
    /// It asked for tools.
    case toolCalls = "tool_calls"
    /// It ran out of `maxTokens`.
    case length
    /// A provider filter stopped it.
    case contentFilter = "content_filter"
}

/// A model's complete answer to one request.
public struct ChatResponse: Sendable, Hashable {
    /// The assistant message: text and/or tool calls.
    public var message: ChatMessage
    public var finishReason: FinishReason
    public var usage: TokenUsage
    /// The model that answered, as the provider named it.
    public var model: String
    /// The provider's id of the response, when it gave one.
    public var providerResponseID: String?
    /// The choice's `logprobs` as an OpenAI-format provider sent them (asked for with `logprobs: true`).
    public var logprobs: JSONValue?

    public init(
        message: ChatMessage,
        finishReason: FinishReason,
        usage: TokenUsage,
        model: String,
        providerResponseID: String? = nil
    ) {
        self.message = message
        self.finishReason = finishReason
        self.usage = usage
        self.model = model
        self.providerResponseID = providerResponseID
    }
}

/// A piece of an answer as it streams.
public enum ChatDelta: Sendable, Hashable {
    /// More text of the answer.
    case text(String)
    /// A tool call began (`index` is its position in the answer).
    case toolCallStarted(index: Int, id: String, name: String)
    /// More of a tool call's arguments text.
    case toolCallArguments(index: Int, fragment: String)
}

/// Receives deltas while a streamed answer arrives; the complete `ChatResponse` is returned at the end anyway.
public typealias ChatDeltaHandler = @Sendable (ChatDelta) async -> Void

/// What went wrong calling a provider, classified so that the router knows whether to retry or fall back.
public struct ProviderError: Error, Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// 429: retry after `retryAfter`, or fall back.
        case rateLimited = "rate_limited"
        /// 5xx (and 408): retry, or fall back.
        case unavailable = "provider_unavailable"
        /// No answer in time.
        case timeout = "provider_timeout"
        /// The connection failed.
        case network = "network_error"
        /// The circuit breaker is open for this provider: not called.
        case circuitOpen = "circuit_open"
        /// 4xx other than 408/429: the request is wrong; neither retried nor sent elsewhere.
        case badRequest = "provider_bad_request"
        /// 401/403: the provider refused the key.
        case unauthorized = "provider_unauthorized"
        /// The answer did not parse as the protocol says.
        case malformedResponse = "provider_malformed_response"
        /// The egress policy refused the provider's address.
        case egressDenied = "egress_denied"
        /// No provider or model by that name, or the model is not in the provider's list.
        case unknownModel = "unknown_model"
        /// The request has a parameter the provider's format cannot honour.
        case unsupportedParameter = "unsupported_parameter"
    }

    public var kind: Kind
    public var message: String
    /// The HTTP status the provider answered, if any.
    public var status: Int?
    /// For `rateLimited`/`unavailable`: how long the provider asked us to wait (`Retry-After`), in milliseconds.
    public var retryAfterMilliseconds: Int64?

    public init(_ kind: Kind, _ message: String, status: Int? = nil, retryAfterMilliseconds: Int64? = nil) {
        self.kind = kind
        self.message = message
        self.status = status
        self.retryAfterMilliseconds = retryAfterMilliseconds
    }

    /// The stable code: the kind's raw value.
    public var code: String { kind.rawValue }

    /// Whether the same provider may answer if asked again, and whether another provider should be tried.
    public var isTransient: Bool {
        switch kind {
        case .rateLimited, .unavailable, .timeout, .network, .circuitOpen: true
        case .badRequest, .unauthorized, .malformedResponse, .egressDenied, .unknownModel, .unsupportedParameter: false
        }
    }
}

/// Which wire protocol a provider speaks.
public enum ProviderKind: String, Sendable, Hashable, CaseIterable {
    /// OpenAI Chat Completions, and every compatible server (vLLM, llama.cpp, Ollama, LM Studio).
    case openai
    /// The Anthropic Messages API.
    case anthropic

    /// The first parameter of `request` a provider of this kind cannot honour, or `nil`: such a call is refused
    /// (or, in a route of several models, goes to those that can), never sent without it.
    public func unsupportedParameter(of request: ChatRequest) -> String? {
        switch self {
        case .openai: nil
        case .anthropic: AnthropicWireFormat.unsupportedParameter(request)
        }
    }
}

/// Where and how to reach one configured provider, with its key already unsealed.
public struct ProviderEndpoint: Sendable {
    public var name: String
    public var kind: ProviderKind
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8081/v1`; paths (`/chat/completions`, `/messages`)
    /// are appended to it.
    public var baseURL: String
    /// The API key, or `nil` for servers that need none.
    public var apiKey: String?
    /// The longest one call may take (the whole answer, streamed or not).
    public var timeoutMilliseconds: Int64
    /// How many times a transient failure is retried on this provider before falling back.
    public var maxRetries: Int

    public init(
        name: String,
        kind: ProviderKind,
        baseURL: String,
        apiKey: String?,
        timeoutMilliseconds: Int64,
        maxRetries: Int
    ) {
        self.name = name
        self.kind = kind
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxRetries = maxRetries
    }
}

/// Speaks one provider protocol.
public protocol ChatProvider: Sendable {
    /// Sends one request and returns the whole answer. When `onDelta` is given the request is streamed and
    /// each piece is passed to it as it arrives.
    /// - Throws: `ProviderError`, classified.
    func complete(
        _ request: ChatRequest,
        endpoint: ProviderEndpoint,
        onDelta: ChatDeltaHandler?
    ) async throws(ProviderError) -> ChatResponse

    /// Sends an embeddings request: OpenAI's `/embeddings` body, with `model`.
    /// - Throws: `ProviderError`; `unsupportedParameter` naming `model` for a provider that has no embeddings.
    func embed(_ body: JSONValue, model: String, endpoint: ProviderEndpoint) async throws(ProviderError) -> Embeddings
}

extension ChatProvider {
    public func embed(
        _ body: JSONValue,
        model: String,
        endpoint: ProviderEndpoint
    ) async throws(ProviderError)
        -> Embeddings
    {
        throw ProviderError(.unsupportedParameter, "The provider's API has no embeddings.")
    }
}

/// An embeddings answer in OpenAI's format (`{object: list, data: [{object: embedding, index, embedding}], model,
/// usage}`), kept as the provider sent it: `embedding` is an array of numbers, or base64 when the client asked
/// for `encoding_format: base64`.
public struct Embeddings: Sendable, Hashable {
    public var json: JSONValue
    public var usage: TokenUsage

    public init(json: JSONValue, usage: TokenUsage) {
        self.json = json
        self.usage = usage
    }
}
