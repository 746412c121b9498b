import AsyncHTTPClient
public import CaravanCore
public import CaravanOutbound
import NIOCore
import NIOHTTP1

/// Speaks OpenAI Chat Completions (`POST {baseURL}/chat/completions`) to OpenAI and every compatible server
/// (vLLM, llama.cpp, Ollama, LM Studio). With `onDelta` the answer is streamed as server-sent events and each
/// text or tool-call piece is passed on as it arrives; the assembled `ChatResponse` is returned either way.
///
/// Every request first passes the egress policy; the whole call, streamed body included, must end within
/// `endpoint.timeoutMilliseconds`; answers are read up to `maxResponseBytes`.
public struct OpenAIProvider: ChatProvider {
    private let transport: ProviderTransport

    /// - Parameters:
    ///   - client: the HTTP client (not shut down by the provider).
    ///   - maxResponseBytes: the largest answer read (8 MiB by default); more is a `malformedResponse`.
    public init(client: EgressHTTPClient, maxResponseBytes: Int = 8 << 20) {
        transport = ProviderTransport(client: client, maxResponseBytes: maxResponseBytes)
    }

    public func complete(
        _ request: ChatRequest,
        endpoint: ProviderEndpoint,
        onDelta: ChatDeltaHandler?
    ) async throws(ProviderError) -> ChatResponse {
        var headers = HTTPHeaders()
        if let key = endpoint.apiKey, !key.isEmpty { headers.add(name: "Authorization", value: "Bearer \(key)") }
        if onDelta != nil { headers.add(name: "Accept", value: "text/event-stream") }
        let body = OpenAIWireFormat.encodeRequest(request, stream: onDelta != nil)
        let provider = endpoint.name
        let model = request.model
        return try await transport.post(
            body,
            path: "/chat/completions",
            headers: headers,
            endpoint: endpoint,
            streaming: onDelta != nil
        ) { body in
            switch body {
            case .complete(let bytes):
                var response = try OpenAIWireFormat.decodeResponse(
                    ProviderTransport.parseJSON(bytes, provider: provider)
                )
                if response.model.isEmpty { response.model = model }
                // A server that ignored `stream: true` still gives the caller its deltas, all at once.
                if let onDelta {
                    for delta in OpenAIStreamAssembler.deltas(of: response) { await onDelta(delta) }
                }
                return response
            case .events(let events):
                return try await Self.readStream(events, provider: provider, model: model, onDelta: onDelta)
            }
        }
    }

    public func embed(
        _ body: JSONValue,
        model: String,
        endpoint: ProviderEndpoint
    ) async throws(ProviderError)
        -> Embeddings
    {
        var headers = HTTPHeaders()
        if let key = endpoint.apiKey, !key.isEmpty { headers.add(name: "Authorization", value: "Bearer \(key)") }
        guard case .object(var fields) = body else {
            throw ProviderError(.badRequest, "An embeddings request is a JSON object.")
        }
        fields["model"] = .string(model)
        let provider = endpoint.name
        return try await transport.post(
            .object(fields),
            path: "/embeddings",
            headers: headers,
            endpoint: endpoint,
            streaming: false
        ) { body in
            guard case .complete(let bytes) = body else {
                throw ProviderError(.malformedResponse, "\(provider) streamed an embeddings answer.")
            }
            let json = try ProviderTransport.parseJSON(bytes, provider: provider)
            guard let data = json["data"]?.arrayValue,
                data.allSatisfy({ $0["embedding"]?.arrayValue != nil || $0["embedding"]?.stringValue != nil })
            else {
                throw ProviderError(.malformedResponse, "The embeddings answer of \(provider) has no data.")
            }
            let input = Int(json["usage"]?["prompt_tokens"]?.numberValue ?? 0)
            return Embeddings(json: json, usage: TokenUsage(inputTokens: input, outputTokens: 0))
        }
    }

    private static func readStream(
        _ events: EventReader,
        provider: String,
        model: String,
        onDelta: ChatDeltaHandler?
    ) async throws -> ChatResponse {
        var assembler = OpenAIStreamAssembler()
        var sawDone = false
        try await events.read { event in
            if event.data == "[DONE]" {
                sawDone = true
                return false
            }
            let chunk = try ProviderTransport.parseJSON(ByteBuffer(string: event.data), provider: provider)
            for delta in try assembler.apply(chunk) { await onDelta?(delta) }
            return true
        }
        guard sawDone || assembler.isFinished else {
            throw ProviderError(.network, "The stream from \(provider) ended before the answer was complete.")
        }
        return assembler.response(requestedModel: model)
    }
}
