import AsyncHTTPClient
import CaravanCore
import CaravanModels
import CaravanOutbound
import CaravanTestSupport
import Foundation
import Testing

@Suite("OpenAI provider over HTTP")
struct OpenAIProviderTests {
    let weatherTool = ToolSpec(
        name: "get_weather",
        description: "The weather in a city.",
        parameters: ["type": "object", "properties": ["city": ["type": "string"]], "required": ["city"]]
    )

    @Test func textRoundTrip() async throws {
        try await FakeOpenAIServer.with { server in
            server.enqueue(.text("Hello there", usage: FakeUsage(input: 12, output: 3)))
            let request = ChatRequest(
                model: "gpt-4o",
                messages: [.system("Be brief."), .user("Hi")],
                maxTokens: 50,
                temperature: 0.2,
                user: "u1"
            )
            let response = try await openAIProvider.complete(
                request,
                endpoint: endpoint(server.baseURL, kind: .openai),
                onDelta: nil
            )
            #expect(response.message == .assistant("Hello there"))
            #expect(response.finishReason == .stop)
            #expect(response.usage == TokenUsage(inputTokens: 12, outputTokens: 3))
            #expect(response.model == "gpt-4o")
            #expect(response.providerResponseID == "chatcmpl-fake-1")

            let received = try #require(server.requests.first)
            #expect(received.path == "/v1/chat/completions")
            #expect(received.headers["authorization"] == "Bearer sk-test")
            #expect(received.body["model"] == "gpt-4o")
            #expect(
                received.body["messages"] == [
                    ["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi"],
                ]
            )
            #expect(received.body["max_tokens"] == 50)
            #expect(received.body["temperature"]?.numberValue == 0.2)
            #expect(received.body["user"] == "u1")
            #expect(received.body["stream"] == nil)
        }
    }

    @Test func noAuthorizationWithoutKey() async throws {
        try await FakeOpenAIServer.with { server in
            _ = try await openAIProvider.complete(
                ChatRequest(model: "local", messages: [.user("x")]),
                endpoint: endpoint(server.baseURL, kind: .openai, apiKey: nil),
                onDelta: nil
            )
            #expect(server.requests.first?.headers["authorization"] == nil)
        }
    }

    @Test func toolCallsAndResultsRoundTrip() async throws {
        try await FakeOpenAIServer.with { server in
            server.enqueue(
                .toolCall("get_weather", arguments: #"{"city":"Paris"}"#, id: "call_1"),
                .text("Sunny in Paris.")
            )
            var request = ChatRequest(
                model: "gpt-4o",
                messages: [.user("Weather in Paris?")],
                tools: [weatherTool],
                toolChoice: .auto
            )
            let first = try await openAIProvider.complete(
                request,
                endpoint: endpoint(server.baseURL, kind: .openai),
                onDelta: nil
            )
            #expect(first.finishReason == .toolCalls)
            #expect(first.message.content == nil)
            #expect(
                first.message.toolCalls == [
                    ToolCall(id: "call_1", name: "get_weather", arguments: #"{"city":"Paris"}"#)
                ]
            )

            request.messages += [first.message, .tool(callID: "call_1", name: "get_weather", content: "sunny, 24°C")]
            let second = try await openAIProvider.complete(
                request,
                endpoint: endpoint(server.baseURL, kind: .openai),
                onDelta: nil
            )
            #expect(second.message.content == "Sunny in Paris.")

            let body = try #require(server.lastBody)
            #expect(
                body["tools"] == [
                    [
                        "type": "function",
                        "function": [
                            "name": "get_weather", "description": "The weather in a city.",
                            "parameters": weatherTool.parameters,
                        ],
                    ]
                ]
            )
            #expect(body["tool_choice"] == "auto")
            let messages = try #require(body["messages"]?.arrayValue)
            #expect(messages.count == 3)
            // An assistant message that only calls tools carries "" (llama.cpp refuses null).
            #expect(
                messages[1] == [
                    "role": "assistant", "content": "",
                    "tool_calls": [
                        [
                            "id": "call_1", "type": "function",
                            "function": ["name": "get_weather", "arguments": #"{"city":"Paris"}"#],
                        ]
                    ],
                ]
            )
            #expect(
                messages[2] == [
                    "role": "tool", "tool_call_id": "call_1", "content": "sunny, 24°C", "name": "get_weather",
                ]
            )
            #expect(server.requests.last?.lastToolResult == "sunny, 24°C")
        }
    }

    @Test func toolChoiceMapping() async throws {
        try await FakeOpenAIServer.with { server in
            for (choice, expected) in [
                (ToolChoice.none, JSONValue.string("none")), (.required, "required"),
                (.tool("get_weather"), ["type": "function", "function": ["name": "get_weather"]]),
            ] {
                let request = ChatRequest(model: "m", messages: [.user("x")], tools: [weatherTool], toolChoice: choice)
                _ = try await openAIProvider.complete(
                    request,
                    endpoint: endpoint(server.baseURL, kind: .openai),
                    onDelta: nil
                )
                #expect(server.lastBody?["tool_choice"] == expected)
            }
        }
    }

    @Test(arguments: [
        FakeModelReply.text(
            "The quick brown fox jumps over the lazy dog, twice.",
            usage: FakeUsage(input: 20, output: 11)
        ),
        .toolCalls(
            [
                FakeToolCall(name: "get_weather", arguments: #"{"city":"Paris","unit":"celsius"}"#, id: "call_a"),
                FakeToolCall(name: "get_time", arguments: #"{"zone":"CET"}"#, id: "call_b"),
            ],
            text: "Let me check."
        ),
    ])
    func streamingAssemblesTheSameResponse(reply: FakeModelReply) async throws {
        try await FakeOpenAIServer.with { server in
            server.enqueue(reply, reply)
            let request = ChatRequest(model: "gpt-4o", messages: [.user("Go")], tools: [weatherTool])
            let plain = try await openAIProvider.complete(
                request,
                endpoint: endpoint(server.baseURL, kind: .openai),
                onDelta: nil
            )
            let collector = DeltaCollector()
            let streamed = try await openAIProvider.complete(
                request,
                endpoint: endpoint(server.baseURL, kind: .openai),
                onDelta: collector.handler
            )
            #expect(withoutID(streamed) == withoutID(plain))
            #expect(streamed.usage == plain.usage)
            #expect(streamed.usage != .zero)
            #expect(collector.text == (plain.message.content ?? ""))
            for (index, call) in plain.message.toolCalls.enumerated() {
                #expect(collector.started[index].id == call.id)
                #expect(collector.started[index].name == call.name)
                #expect(collector.arguments(index) == call.arguments)
            }
            #expect(collector.all.count > 2)  // it did arrive in pieces
            let body = try #require(server.lastBody)
            #expect(body["stream"] == true)
            #expect(body["stream_options"] == ["include_usage": true])
        }
    }

    @Test func structuredOutputRequestShape() async throws {
        try await FakeOpenAIServer.with { server in
            let schema: JSONValue = [
                "type": "object", "properties": ["name": ["type": "string"]], "required": ["name"],
            ]
            server.enqueue(.json(#"{"name":"Ada"}"#), .json("{}"))
            var request = ChatRequest(
                model: "gpt-4o",
                messages: [.user("Who?")],
                responseFormat: .jsonSchema(name: "person", schema: schema)
            )
            let response = try await openAIProvider.complete(
                request,
                endpoint: endpoint(server.baseURL, kind: .openai),
                onDelta: nil
            )
            #expect(response.message.content == #"{"name":"Ada"}"#)
            #expect(
                server.lastBody?["response_format"] == [
                    "type": "json_schema", "json_schema": ["name": "person", "schema": schema, "strict": true],
                ]
            )

            request.responseFormat = .jsonObject
            _ = try await openAIProvider.complete(
                request,
                endpoint: endpoint(server.baseURL, kind: .openai),
                onDelta: nil
            )
            #expect(server.lastBody?["response_format"] == ["type": "json_object"])
        }
    }

    @Test func reasoningModelsGetMaxCompletionTokens() {
        let body = OpenAIWireFormat.encodeRequest(
            ChatRequest(model: "o3-mini", messages: [.user("x")], maxTokens: 10),
            stream: false
        )
        #expect(body["max_completion_tokens"] == 10)
        #expect(body["max_tokens"] == nil)
    }

    @Test func errorsAreClassified() async throws {
        try await FakeOpenAIServer.with { server in
            let request = ChatRequest(model: "gpt-4o", messages: [.user("x")])
            let target = endpoint(server.baseURL, kind: .openai)

            server.enqueue(.error(status: 429, message: "Slow down", retryAfter: "2"))
            let limited = await providerError { () async throws(ProviderError) in
                try await openAIProvider.complete(request, endpoint: target, onDelta: nil)
            }
            #expect(limited?.kind == .rateLimited)
            #expect(limited?.status == 429)
            #expect(limited?.retryAfterMilliseconds == 2_000)
            #expect(limited?.message.contains("Slow down") == true)
            #expect(limited?.isTransient == true)

            let date = Date().addingTimeInterval(5)
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            server.enqueue(.error(status: 429, retryAfter: formatter.string(from: date)))
            let dated = await providerError { () async throws(ProviderError) in
                try await openAIProvider.complete(request, endpoint: target, onDelta: nil)
            }
            let wait = try #require(dated?.retryAfterMilliseconds)
            #expect((2_000...6_000).contains(wait))

            for status in [500, 502, 503, 408] {
                server.enqueue(.error(status: status))
                let error = await providerError { () async throws(ProviderError) in
                    try await openAIProvider.complete(request, endpoint: target, onDelta: nil)
                }
                #expect(error?.kind == .unavailable)
                #expect(error?.status == status)
            }

            server.enqueue(.error(status: 400, message: String(repeating: "bad parameter ", count: 100)))
            let bad = await providerError { () async throws(ProviderError) in
                try await openAIProvider.complete(request, endpoint: target, onDelta: nil)
            }
            #expect(bad?.kind == .badRequest)
            #expect(bad?.message.contains("bad parameter") == true)
            #expect((bad?.message.count ?? 0) < 600)

            server.enqueue(.error(status: 403))
            #expect(
                await providerError { () async throws(ProviderError) in
                    try await openAIProvider.complete(request, endpoint: target, onDelta: nil)
                }?.kind == .unauthorized
            )
            server.enqueue(.error(status: 404, message: "The model does not exist"))
            #expect(
                await providerError { () async throws(ProviderError) in
                    try await openAIProvider.complete(request, endpoint: target, onDelta: nil)
                }?.kind == .unknownModel
            )
        }
    }

    @Test func wrongKeyIsUnauthorized() async throws {
        try await FakeOpenAIServer.with(requiredAPIKey: "sk-right") { server in
            let request = ChatRequest(model: "gpt-4o", messages: [.user("x")])
            let error = await providerError { () async throws(ProviderError) in
                try await openAIProvider.complete(
                    request,
                    endpoint: endpoint(server.baseURL, kind: .openai, apiKey: "sk-wrong"),
                    onDelta: nil
                )
            }
            #expect(error?.kind == .unauthorized)
            #expect(error?.status == 401)
            #expect(error?.isTransient == false)
            _ = try await openAIProvider.complete(
                request,
                endpoint: endpoint(server.baseURL, kind: .openai, apiKey: "sk-right"),
                onDelta: nil
            )
        }
    }

    @Test(arguments: [false, true])
    func hangIsATimeout(streaming: Bool) async throws {
        try await FakeOpenAIServer.with { server in
            server.enqueue(.hang())
            let collector = DeltaCollector()
            let started = ContinuousClock.now
            let error = await providerError { () async throws(ProviderError) in
                try await openAIProvider.complete(
                    ChatRequest(model: "gpt-4o", messages: [.user("x")]),
                    endpoint: endpoint(server.baseURL, kind: .openai, timeoutMilliseconds: 300),
                    onDelta: streaming ? collector.handler : nil
                )
            }
            #expect(error?.kind == .timeout)
            #expect(ContinuousClock.now - started < .seconds(3))
        }
    }

    @Test func malformedAnswers() async throws {
        try await FakeOpenAIServer.with { server in
            let request = ChatRequest(model: "gpt-4o", messages: [.user("x")])
            server.enqueue(
                .malformed,
                .raw(status: 200, contentType: "application/json", body: #"{"id":"x","object":"chat.completion"}"#)
            )
            for _ in 0..<2 {
                let error = await providerError { () async throws(ProviderError) in
                    try await openAIProvider.complete(
                        request,
                        endpoint: endpoint(server.baseURL, kind: .openai),
                        onDelta: nil
                    )
                }
                #expect(error?.kind == .malformedResponse)
            }
            server.enqueue(.raw(status: 200, contentType: "text/event-stream", body: "data: {not json\n\n"))
            let streamed = await providerError { () async throws(ProviderError) in
                try await openAIProvider.complete(
                    request,
                    endpoint: endpoint(server.baseURL, kind: .openai),
                    onDelta: DeltaCollector().handler
                )
            }
            #expect(streamed?.kind == .malformedResponse)
        }
    }

    @Test func tooLargeAnswerIsRefused() async throws {
        try await FakeOpenAIServer.with { server in
            server.enqueue(.text(String(repeating: "x", count: 10_000)))
            let small = OpenAIProvider(client: loopbackClient, maxResponseBytes: 1_000)
            let error = await providerError { () async throws(ProviderError) in
                try await small.complete(
                    ChatRequest(model: "m", messages: [.user("x")]),
                    endpoint: endpoint(server.baseURL, kind: .openai),
                    onDelta: nil
                )
            }
            #expect(error?.kind == .malformedResponse)
        }
    }

    @Test func failureMidStreamIsThrownAfterTheDeltas() async throws {
        try await FakeOpenAIServer.with { server in
            server.enqueue(.failMidStream(text: "partial"))
            let collector = DeltaCollector()
            let error = await providerError { () async throws(ProviderError) in
                try await openAIProvider.complete(
                    ChatRequest(model: "m", messages: [.user("x")]),
                    endpoint: endpoint(server.baseURL, kind: .openai),
                    onDelta: collector.handler
                )
            }
            #expect(error?.kind == .unavailable)
            #expect(collector.text == "partial")
        }
    }

    @Test func egressDenialStopsTheCall() async throws {
        try await FakeOpenAIServer.with { server in
            let strict = OpenAIProvider(client: EgressHTTPClient(client: loopbackHTTPClient, policy: .strict))
            let error = await providerError { () async throws(ProviderError) in
                try await strict.complete(
                    ChatRequest(model: "m", messages: [.user("x")]),
                    endpoint: endpoint(server.baseURL, kind: .openai),
                    onDelta: nil
                )
            }
            #expect(error?.kind == .egressDenied)
            #expect(server.callCount == 0)
        }
    }

    @Test func refusedConnectionIsANetworkError() async throws {
        let server = try await FakeOpenAIServer.start()
        let baseURL = server.baseURL
        await server.stop()
        // The egress client does not retry refused connections until the deadline: it fails at once.
        let provider = OpenAIProvider(client: loopbackClient)
        let started = ContinuousClock.now
        let error = await providerError { () async throws(ProviderError) in
            try await provider.complete(
                ChatRequest(model: "m", messages: [.user("x")]),
                endpoint: endpoint(baseURL, kind: .openai),
                onDelta: nil
            )
        }
        #expect(error?.kind == .network)
        #expect(ContinuousClock.now - started < .seconds(2))
    }
}
