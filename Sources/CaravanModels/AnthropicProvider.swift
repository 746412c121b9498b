import AsyncHTTPClient
import CaravanCore
public import CaravanOutbound
import NIOCore
import NIOHTTP1

/// Speaks the Anthropic Messages API (`POST {baseURL}/messages`, `x-api-key`, `anthropic-version: 2023-06-01`).
/// With `onDelta` the answer is streamed and each text or tool-call piece is passed on as it arrives; the
/// assembled `ChatResponse` is returned either way.
///
/// `maxTokens` defaults to 4096 (the API requires it). Structured output (`.jsonSchema`, `.jsonObject`) is asked
/// for with a forced tool whose input is the answer: see `AnthropicWireFormat`. Errors are classified as for
/// OpenAI, 529 (overloaded) being `unavailable`; an `error` event mid-stream is classified by its type.
public struct AnthropicProvider: ChatProvider {
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
        if let key = endpoint.apiKey, !key.isEmpty { headers.add(name: "x-api-key", value: key) }
        headers.add(name: "anthropic-version", value: AnthropicWireFormat.version)
        if onDelta != nil { headers.add(name: "Accept", value: "text/event-stream") }
        let body = AnthropicWireFormat.encodeRequest(request, stream: onDelta != nil)
        let structuredTool = AnthropicWireFormat.structuredToolName(request.responseFormat)
        let provider = endpoint.name
        let model = request.model
        return try await transport.post(
            body,
            path: "/messages",
            headers: headers,
            endpoint: endpoint,
            streaming: onDelta != nil
        ) { body in
            switch body {
            case .complete(let bytes):
                let json = try ProviderTransport.parseJSON(bytes, provider: provider)
                let response = try AnthropicWireFormat.decodeResponse(
                    json,
                    structuredTool: structuredTool,
                    requestedModel: model
                )
                if let onDelta {
                    for delta in OpenAIStreamAssembler.deltas(of: response) { await onDelta(delta) }
                }
                return response
            case .events(let events):
                var assembler = AnthropicStreamAssembler(structuredTool: structuredTool)
                try await events.read { event in
                    let data = try ProviderTransport.parseJSON(ByteBuffer(string: event.data), provider: provider)
                    for delta in try assembler.apply(data) { await onDelta?(delta) }
                    return !assembler.isFinished
                }
                guard assembler.isFinished else {
                    throw ProviderError(.network, "The stream from \(provider) ended before the answer was complete.")
                }
                return assembler.response(requestedModel: model)
            }
        }
    }
}
