import CaravanCore
import CaravanModels
import CaravanOutbound
import CaravanTestSupport
import Testing

@Suite("Anthropic provider over HTTP")
struct AnthropicProviderTests {
    let weatherTool = ToolSpec(
        name: "get_weather",
        description: "The weather in a city.",
        parameters: ["type": "object", "properties": ["city": ["type": "string"]], "required": ["city"]]
    )

    func call(
        _ server: FakeAnthropicServer,
        _ request: ChatRequest,
        onDelta: ChatDeltaHandler? = nil,
        timeout: Int64 = 5_000
    ) async throws(ProviderError) -> ChatResponse {
        try await anthropicProvider.complete(
            request,
            endpoint: endpoint(server.baseURL, kind: .anthropic, timeoutMilliseconds: timeout),
            onDelta: onDelta
        )
    }

    @Test func textRoundTrip() async throws {
        try await FakeAnthropicServer.with { server in
            server.enqueue(.text("Bonjour", usage: FakeUsage(input: 30, output: 4)))
            let request = ChatRequest(
                model: "claude-sonnet-4",
                messages: [.system("Be brief."), .system("Speak French."), .user("Hi")],
                temperature: 1.5,
                stop: ["END"],
                user: "u1"
            )
            let response = try await call(server, request)
            #expect(response.message == .assistant("Bonjour"))
            #expect(response.finishReason == .stop)
            #expect(response.usage == TokenUsage(inputTokens: 30, outputTokens: 4))
            #expect(response.model == "claude-sonnet-4")
            #expect(response.providerResponseID == "msg_fake_1")

            let received = try #require(server.requests.first)
            #expect(received.path == "/v1/messages")
            #expect(received.headers["x-api-key"] == "sk-test")
            #expect(received.headers["anthropic-version"] == "2023-06-01")
            #expect(received.body["system"] == "Be brief.\n\nSpeak French.")
            #expect(received.body["max_tokens"] == 4096)
            #expect(received.body["messages"] == [["role": "user", "content": "Hi"]])
            #expect(received.body["temperature"]?.numberValue == 1)  // capped at the API's maximum
            #expect(received.body["stop_sequences"] == ["END"])
            #expect(received.body["metadata"] == ["user_id": "u1"])
            #expect(received.body["stream"] == nil)
        }
    }

    @Test func toolCallsAndResultsRoundTrip() async throws {
        try await FakeAnthropicServer.with { server in
            server.enqueue(
                .toolCalls(
                    [
                        FakeToolCall(name: "get_weather", arguments: #"{"city":"Paris"}"#, id: "toolu_1"),
                        FakeToolCall(name: "get_weather", arguments: #"{"city":"Rome"}"#, id: "toolu_2"),
                    ],
                    text: "Checking."
                ),
                .text("Both sunny.")
            )
            var request = ChatRequest(
                model: "claude-sonnet-4",
                messages: [.system("Sys"), .user("Paris and Rome?")],
                tools: [weatherTool],
                toolChoice: .auto,
                maxTokens: 100
            )
            let first = try await call(server, request)
            #expect(first.finishReason == .toolCalls)
            #expect(first.message.content == "Checking.")
            #expect(
                first.message.toolCalls == [
                    ToolCall(id: "toolu_1", name: "get_weather", arguments: #"{"city":"Paris"}"#),
                    ToolCall(id: "toolu_2", name: "get_weather", arguments: #"{"city":"Rome"}"#),
                ]
            )

            request.messages += [
                first.message, .tool(callID: "toolu_1", name: "get_weather", content: "sunny"),
                .tool(callID: "toolu_2", name: "get_weather", content: "sunny too"),
            ]
            let second = try await call(server, request)
            #expect(second.message.content == "Both sunny.")

            let body = try #require(server.lastBody)
            #expect(
                body["tools"] == [
                    [
                        "name": "get_weather", "description": "The weather in a city.",
                        "input_schema": weatherTool.parameters,
                    ]
                ]
            )
            #expect(body["tool_choice"] == ["type": "auto"])
            #expect(body["max_tokens"] == 100)
            #expect(
                body["messages"] == [
                    ["role": "user", "content": "Paris and Rome?"],
                    [
                        "role": "assistant",
                        "content": [
                            ["type": "text", "text": "Checking."],
                            ["type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": ["city": "Paris"]],
                            ["type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": ["city": "Rome"]],
                        ],
                    ],
                    // Consecutive tool results are one user message.
                    [
                        "role": "user",
                        "content": [
                            ["type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"],
                            ["type": "tool_result", "tool_use_id": "toolu_2", "content": "sunny too"],
                        ],
                    ],
                ]
            )
            #expect(server.requests.last?.toolResults == ["sunny", "sunny too"])
        }
    }

    @Test func toolChoiceMapping() async throws {
        try await FakeAnthropicServer.with { server in
            let cases: [(ToolChoice, JSONValue)] = [
                (.none, ["type": "none"]), (.required, ["type": "any"]),
                (.tool("get_weather"), ["type": "tool", "name": "get_weather"]),
            ]
            for (choice, expected) in cases {
                _ = try await call(
                    server,
                    ChatRequest(model: "m", messages: [.user("x")], tools: [weatherTool], toolChoice: choice)
                )
                #expect(server.lastBody?["tool_choice"] == expected)
            }
            // No tools: no tool_choice (the API refuses one).
            _ = try await call(server, ChatRequest(model: "m", messages: [.user("x")], toolChoice: .auto))
            #expect(server.lastBody?["tool_choice"] == nil)
        }
    }

    @Test(arguments: [
        FakeModelReply.text(
            "Streaming is a way of sending an answer in pieces.",
            usage: FakeUsage(input: 40, output: 12)
        ),
        .toolCalls(
            [
                FakeToolCall(name: "get_weather", arguments: #"{"city":"Paris"}"#, id: "toolu_a"),
                FakeToolCall(name: "get_time", arguments: "{}", id: "toolu_b"),
            ],
            text: "Let me look."
        ),
    ])
    func streamingAssemblesTheSameResponse(reply: FakeModelReply) async throws {
        try await FakeAnthropicServer.with { server in
            server.enqueue(reply, reply)
            let request = ChatRequest(model: "claude-sonnet-4", messages: [.user("Go")], tools: [weatherTool])
            let plain = try await call(server, request)
            let collector = DeltaCollector()
            let streamed = try await call(server, request, onDelta: collector.handler)
            #expect(withoutID(streamed) == withoutID(plain))
            #expect(streamed.usage != .zero)
            #expect(collector.text == (plain.message.content ?? ""))
            for (index, call) in plain.message.toolCalls.enumerated() {
                #expect(collector.started[index].index == index)
                #expect(collector.started[index].id == call.id)
                #expect(collector.started[index].name == call.name)
                #expect(collector.arguments(index) == call.arguments)
            }
            #expect(server.lastBody?["stream"] == true)
        }
    }

    @Test(arguments: [false, true])
    func structuredOutputUsesAForcedTool(streaming: Bool) async throws {
        try await FakeAnthropicServer.with { server in
            let schema: JSONValue = [
                "type": "object", "properties": ["name": ["type": "string"]], "required": ["name"],
            ]
            server.enqueue(.json(#"{"name":"Ada"}"#))
            let request = ChatRequest(
                model: "claude-sonnet-4",
                messages: [.user("Who?")],
                responseFormat: .jsonSchema(name: "person", schema: schema)
            )
            let collector = DeltaCollector()
            let response = try await call(server, request, onDelta: streaming ? collector.handler : nil)
            #expect(response.message.content == #"{"name":"Ada"}"#)
            #expect(response.message.toolCalls.isEmpty)
            #expect(response.finishReason == .stop)
            if streaming { #expect(collector.text == #"{"name":"Ada"}"#) }

            let body = try #require(server.lastBody)
            #expect(
                body["tools"] == [
                    [
                        "name": "person", "description": "Answer with JSON that matches this schema.",
                        "input_schema": schema,
                    ]
                ]
            )
            #expect(body["tool_choice"] == ["type": "tool", "name": "person"])
        }
    }

    @Test func jsonObjectUsesAnOpenSchema() async throws {
        try await FakeAnthropicServer.with { server in
            server.enqueue(.json(#"{"ok":true}"#))
            let response = try await call(
                server,
                ChatRequest(model: "m", messages: [.user("x")], responseFormat: .jsonObject)
            )
            #expect(response.message.content == #"{"ok":true}"#)
            #expect(server.lastBody?["tool_choice"] == ["type": "tool", "name": "json_object"])
        }
    }

    @Test func errorsAreClassified() async throws {
        try await FakeAnthropicServer.with(requiredAPIKey: "sk-test") { server in
            let request = ChatRequest(model: "m", messages: [.user("x")])
            let cases: [(FakeModelReply, ProviderError.Kind)] = [
                (.error(status: 529, message: "Overloaded"), .unavailable),
                (.error(status: 500), .unavailable),
                (.error(status: 429, retryAfter: "3"), .rateLimited),
                (.error(status: 400, message: "messages: roles must alternate"), .badRequest),
                (.error(status: 403), .unauthorized),
                (.malformed, .malformedResponse),
            ]
            for (reply, kind) in cases {
                server.enqueue(reply)
                let error = await providerError { () async throws(ProviderError) in try await call(server, request) }
                #expect(error?.kind == kind, "\(reply)")
                if case .error(429, _, _) = reply { #expect(error?.retryAfterMilliseconds == 3_000) }
                if case .error(400, let message, _) = reply { #expect(error?.message.contains(message) == true) }
            }
            let wrongKey = await providerError { () async throws(ProviderError) in
                try await anthropicProvider.complete(
                    request,
                    endpoint: endpoint(server.baseURL, kind: .anthropic, apiKey: "sk-wrong"),
                    onDelta: nil
                )
            }
            #expect(wrongKey?.kind == .unauthorized)
        }
    }

    @Test func failureMidStreamIsClassified() async throws {
        try await FakeAnthropicServer.with { server in
            server.enqueue(.failMidStream(text: "Hal"))
            let collector = DeltaCollector()
            let error = await providerError { () async throws(ProviderError) in
                try await call(server, ChatRequest(model: "m", messages: [.user("x")]), onDelta: collector.handler)
            }
            #expect(error?.kind == .unavailable)
            #expect(collector.text == "Hal")
        }
    }

    @Test func hangIsATimeout() async throws {
        try await FakeAnthropicServer.with { server in
            server.enqueue(.hang(), .hang())
            for streaming in [false, true] {
                let error = await providerError { () async throws(ProviderError) in
                    try await call(
                        server,
                        ChatRequest(model: "m", messages: [.user("x")]),
                        onDelta: streaming ? DeltaCollector().handler : nil,
                        timeout: 300
                    )
                }
                #expect(error?.kind == .timeout)
            }
        }
    }

    @Test func egressDenialStopsTheCall() async throws {
        try await FakeAnthropicServer.with { server in
            let strict = AnthropicProvider(client: EgressHTTPClient(client: loopbackHTTPClient, policy: .strict))
            let error = await providerError { () async throws(ProviderError) in
                try await strict.complete(
                    ChatRequest(model: "m", messages: [.user("x")]),
                    endpoint: endpoint(server.baseURL, kind: .anthropic),
                    onDelta: nil
                )
            }
            #expect(error?.kind == .egressDenied)
            #expect(server.callCount == 0)
        }
    }
}
