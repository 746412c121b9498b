import CaravanCore
import Testing

@testable import CaravanModels

@Suite("OpenAI wire format")
struct OpenAIWireFormatTests {
    func decodingError(_ text: String) -> ChatRequestDecodingError? {
        do {
            _ = try OpenAIWireFormat.decodeRequest(json(text))
            return nil
        } catch {
            return error
        }
    }

    @Test func decodesAFullRequest() throws {
        let (request, stream, choices) = try OpenAIWireFormat.decodeRequest(
            json(
                """
                {"model": "openai/gpt-4o", "stream": true, "temperature": 0.5, "top_p": 1, "max_tokens": 100, "stop": "END",
                 "user": "u1", "n": 1, "seed": 7, "parallel_tool_calls": false, "stream_options": {"include_usage": true},
                 "messages": [
                   {"role": "developer", "content": "Be brief."},
                   {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]},
                   {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\\"a\\":1}"}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "42"}
                 ],
                 "tools": [{"type": "function", "function": {"name": "f", "description": "F.", "parameters": {"type": "object"}}}],
                 "tool_choice": {"type": "function", "function": {"name": "f"}},
                 "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}}}
                """
            )
        )
        #expect(stream)
        #expect(choices == 1)
        #expect(request.model == "openai/gpt-4o")
        var developer = ChatMessage.system("Be brief.")
        developer.isDeveloper = true
        #expect(
            request.messages == [
                developer, .user("Hello, world"),
                .assistant(nil, toolCalls: [ToolCall(id: "call_1", name: "f", arguments: #"{"a":1}"#)]),
                ChatMessage(role: .tool, content: "42", toolCallID: "call_1"),
            ]
        )
        #expect(request.tools == [ToolSpec(name: "f", description: "F.", parameters: ["type": "object"])])
        #expect(request.toolChoice == .tool("f"))
        #expect(request.maxTokens == 100)
        #expect(request.maxTokensField == "max_tokens")
        #expect(request.passthrough == ["seed": 7, "parallel_tool_calls": false])
        #expect(request.temperature == 0.5)
        #expect(request.topP == 1)
        #expect(request.stop == ["END"])
        #expect(request.user == "u1")
        #expect(request.responseFormat == .jsonSchema(name: "out", schema: ["type": "object"]))
    }

    @Test func minimalRequestIsNotStreamed() throws {
        let (request, stream, _) = try OpenAIWireFormat.decodeRequest(
            json(#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#)
        )
        #expect(!stream)
        #expect(request == ChatRequest(model: "m", messages: [.user("hi")]))
    }

    @Test(arguments: [
        (#"[]"#, ""),
        (#"{"messages": [{"role": "user", "content": "x"}]}"#, "/model"),
        (#"{"model": "", "messages": [{"role": "user", "content": "x"}]}"#, "/model"),
        (#"{"model": "m"}"#, "/messages"),
        (#"{"model": "m", "messages": []}"#, "/messages"),
        (#"{"model": "m", "messages": ["hi"]}"#, "/messages/0"),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}]}"#,
            "/messages/1/role"
        ),
        (#"{"model": "m", "messages": [{"role": "user"}]}"#, "/messages/0/content"),
        (#"{"model": "m", "messages": [{"role": "user", "content": 5}]}"#, "/messages/0/content"),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]}]}"#,
            "/messages/0/content/1/image_url/url"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!"}}]}]}"#,
            "/messages/0/content/0/image_url/url"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/html;base64,PGI+"}}]}]}"#,
            "/messages/0/content/0/image_url/url"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}"#,
            "/messages/0/content/0/image_url/url"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "max"}}]}]}"#,
            "/messages/0/content/0/image_url/detail"
        ),
        (
            #"{"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]}"#,
            "/messages/0/content/0/type"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}"#,
            "/messages/0/content/0/type"
        ),
        (#"{"model": "m", "messages": [{"role": "assistant"}]}"#, "/messages/0/content"),
        (
            #"{"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}]}"#,
            "/messages/0/tool_calls/0/function/name"
        ),
        (
            #"{"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]}"#,
            "/messages/0/tool_calls/0/id"
        ),
        (#"{"model": "m", "messages": [{"role": "assistant", "tool_calls": {}}]}"#, "/messages/0/tool_calls"),
        (#"{"model": "m", "messages": [{"role": "tool", "content": "x"}]}"#, "/messages/0/tool_call_id"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}"#, "/temperature"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": -1}"#, "/top_p"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#, "/max_tokens"),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 1.5}"#,
            "/max_completion_tokens"
        ),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}"#, "/stop/0"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#, "/stream"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 9}"#, "/n"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2, "stream": true}"#, "/n"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "unknown_field": 1}"#, "/unknown_field"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "functions": []}"#, "/functions"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": "7"}"#, "/seed"),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 3}"#,
            "/presence_penalty"
        ),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#, "/top_logprobs"),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"x": 1}}"#, "/logit_bias"),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}"#,
            "/reasoning_effort"
        ),
        (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": {"k": 1}}"#, "/metadata"),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "stream": true}"#,
            "/logprobs"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "bad name"}}]}"#,
            "/tools/0/function/name"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}"#,
            "/tool_choice"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "g"}}}"#,
            "/tool_choice/function/name"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}"#,
            "/response_format/type"
        ),
        (
            #"{"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "n"}}}"#,
            "/response_format/json_schema/schema"
        ),
    ])
    func refusesWithAPointer(body: String, pointer: String) {
        let error = decodingError(body)
        #expect(error?.pointer == pointer, "\(body) → \(String(describing: error))")
        #expect(error?.detail.isEmpty == false)
        #expect(error?.caravanError.fieldErrors.first?.pointer == pointer)
    }

    /// What a client sent reaches an OpenAI-format provider as it came: passed-through parameters, the
    /// `developer` role and the `max_completion_tokens` field; an Anthropic provider maps `parallel_tool_calls`
    /// and names the first parameter it cannot honour.
    @Test func passesParametersThroughOrNamesThem() throws {
        let (request, _, _) = try OpenAIWireFormat.decodeRequest(
            json(
                """
                {"model": "m", "max_completion_tokens": 50, "seed": 3, "logprobs": true, "top_logprobs": 2,
                 "frequency_penalty": 0.5, "logit_bias": {"50256": -100}, "parallel_tool_calls": false,
                 "reasoning_effort": "low", "metadata": {"team": "a"},
                 "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}],
                 "tools": [{"type": "function", "function": {"name": "f"}}]}
                """
            )
        )
        let sent = OpenAIWireFormat.encodeRequest(request, stream: false)
        #expect(sent["max_completion_tokens"] == 50)
        #expect(sent["max_tokens"] == nil)
        #expect(sent["messages"]?.arrayValue?.first?["role"] == "developer")
        for field in ["seed", "logprobs", "top_logprobs", "frequency_penalty", "logit_bias", "parallel_tool_calls"] {
            #expect(sent[field] != nil, "\(field) was not passed on")
        }
        #expect(sent["reasoning_effort"] == "low")
        #expect(sent["metadata"] == ["team": "a"])

        #expect(ProviderKind.openai.unsupportedParameter(of: request) == nil)
        #expect(ProviderKind.anthropic.unsupportedParameter(of: request) == "frequency_penalty")
        var mappable = ChatRequest(model: "m", messages: [.user("hi")])
        mappable.tools = request.tools
        mappable.passthrough = ["parallel_tool_calls": false, "store": false, "service_tier": "auto"]
        #expect(ProviderKind.anthropic.unsupportedParameter(of: mappable) == nil)
        let anthropic = AnthropicWireFormat.encodeRequest(mappable, stream: false)
        #expect(anthropic["tool_choice"] == ["type": "auto", "disable_parallel_tool_use": true])
        mappable.passthrough["reasoning_effort"] = "high"
        #expect(ProviderKind.anthropic.unsupportedParameter(of: mappable) == "reasoning_effort")
    }

    /// `tool_choice: "none"` is a choice (no tool this turn), not the absence of one: dropping it let the model
    /// call a tool the client had ruled out.
    @Test func toolChoiceNoneReachesTheProvider() throws {
        let (request, _, _) = try OpenAIWireFormat.decodeRequest(
            json(
                """
                {"model": "m", "tool_choice": "none", "messages": [{"role": "user", "content": "hi"}],
                 "tools": [{"type": "function", "function": {"name": "f"}}]}
                """
            )
        )
        #expect(request.toolChoice == ToolChoice.none)
        #expect(OpenAIWireFormat.encodeRequest(request, stream: false)["tool_choice"] == "none")
        #expect(AnthropicWireFormat.encodeRequest(request, stream: false)["tool_choice"] == ["type": "none"])
    }

    /// Images in user messages reach both formats in order with the text: OpenAI's parts as they came; Anthropic's
    /// `image` blocks, inline (`base64`) or by URL.
    @Test func carriesImages() throws {
        let png = "iVBORw0KGgo="
        let (request, _, _) = try OpenAIWireFormat.decodeRequest(
            json(
                """
                {"model": "m", "messages": [{"role": "user", "content": [
                  {"type": "text", "text": "What is in "},
                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,\(png)", "detail": "low"}},
                  {"type": "text", "text": "and"},
                  {"type": "image_url", "image_url": {"url": "https://images.example/cat.jpg"}}]}]}
                """
            )
        )
        let message = try #require(request.messages.first)
        #expect(message.content == "What is in and")
        #expect(
            message.parts == [
                .text("What is in "), .image(ImagePart(url: "data:image/png;base64,\(png)", detail: "low")),
                .text("and"),
                .image(ImagePart(url: "https://images.example/cat.jpg")),
            ]
        )
        let openAI = OpenAIWireFormat.encodeRequest(request, stream: false)["messages"]?.arrayValue?.first
        #expect(
            openAI?["content"] == [
                ["type": "text", "text": "What is in "],
                ["type": "image_url", "image_url": ["url": .string("data:image/png;base64,\(png)"), "detail": "low"]],
                ["type": "text", "text": "and"],
                ["type": "image_url", "image_url": ["url": "https://images.example/cat.jpg"]],
            ]
        )
        let anthropic = AnthropicWireFormat.encodeRequest(request, stream: false)["messages"]?.arrayValue?.first
        #expect(
            anthropic?["content"] == [
                ["type": "text", "text": "What is in "],
                ["type": "image", "source": ["type": "base64", "media_type": "image/png", "data": .string(png)]],
                ["type": "text", "text": "and"],
                ["type": "image", "source": ["type": "url", "url": "https://images.example/cat.jpg"]],
            ]
        )
    }

    @Test func encodesACompletion() {
        let response = ChatResponse(
            message: .assistant(nil, toolCalls: [ToolCall(id: "c1", name: "f", arguments: "{}")]),
            finishReason: .toolCalls,
            usage: TokenUsage(inputTokens: 5, outputTokens: 2),
            model: "gpt-4o"
        )
        let encoded = OpenAIWireFormat.encodeResponse(
            response,
            id: "chatcmpl-1",
            model: "openai/gpt-4o",
            created: 1_700_000_000
        )
        #expect(
            encoded == [
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": "openai/gpt-4o",
                "choices": [
                    [
                        "index": 0, "finish_reason": "tool_calls", "logprobs": nil,
                        "message": [
                            "role": "assistant", "content": nil,
                            "tool_calls": [
                                ["id": "c1", "type": "function", "function": ["name": "f", "arguments": "{}"]]
                            ],
                        ],
                    ]
                ],
                "usage": ["prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7],
            ]
        )
        // What Caravan answers, OpenAIProvider reads back the same.
        var decoded = try? OpenAIWireFormat.decodeResponse(encoded)
        decoded?.providerResponseID = nil
        decoded?.model = "gpt-4o"
        #expect(decoded == response)
    }

    @Test func encodesChunks() {
        let text = OpenAIWireFormat.encodeChunk(.text("Hel"), id: "c", model: "m", created: 1)
        #expect(text["object"] == "chat.completion.chunk")
        #expect(text["choices"] == [["index": 0, "delta": ["content": "Hel"], "finish_reason": nil]])
        let start = OpenAIWireFormat.encodeChunk(
            .toolCallStarted(index: 1, id: "call_9", name: "f"),
            id: "c",
            model: "m",
            created: 1
        )
        #expect(
            start["choices"]?.arrayValue?.first?["delta"] == [
                "tool_calls": [
                    ["index": 1, "id": "call_9", "type": "function", "function": ["name": "f", "arguments": ""]]
                ]
            ]
        )
        let fragment = OpenAIWireFormat.encodeChunk(
            .toolCallArguments(index: 1, fragment: "{\"a"),
            id: "c",
            model: "m",
            created: 1
        )
        #expect(
            fragment["choices"]?.arrayValue?.first?["delta"] == [
                "tool_calls": [["index": 1, "function": ["arguments": "{\"a"]]]
            ]
        )
        let final = OpenAIWireFormat.finalChunk(
            finishReason: .stop,
            usage: TokenUsage(inputTokens: 1, outputTokens: 2),
            id: "c",
            model: "m",
            created: 1
        )
        #expect(final["choices"] == [["index": 0, "delta": [:], "finish_reason": "stop"]])
        #expect(final["usage"]?["total_tokens"] == 3)
        #expect(
            OpenAIWireFormat.roleChunk(id: "c", model: "m", created: 1)["choices"]?.arrayValue?.first?["delta"]?["role"]
                == "assistant"
        )
        #expect(OpenAIWireFormat.usageChunk(.zero, id: "c", model: "m", created: 1)["choices"] == [])
    }

    @Test func chunksReassembleIntoTheResponse() throws {
        var assembler = OpenAIStreamAssembler()
        let deltas: [ChatDelta] = [
            .text("Hi "), .text("there"), .toolCallStarted(index: 0, id: "c1", name: "f"),
            .toolCallArguments(index: 0, fragment: "{\"a\""), .toolCallArguments(index: 0, fragment: ":1}"),
        ]
        var seen: [ChatDelta] = []
        for delta in deltas {
            seen += try assembler.apply(OpenAIWireFormat.encodeChunk(delta, id: "c", model: "m", created: 1))
        }
        _ = try assembler.apply(
            OpenAIWireFormat.finalChunk(
                finishReason: .toolCalls,
                usage: TokenUsage(inputTokens: 3, outputTokens: 4),
                id: "c",
                model: "m",
                created: 1
            )
        )
        #expect(seen == deltas)
        #expect(assembler.isFinished)
        let response = assembler.response(requestedModel: "m")
        #expect(
            response.message
                == .assistant("Hi there", toolCalls: [ToolCall(id: "c1", name: "f", arguments: #"{"a":1}"#)])
        )
        #expect(response.finishReason == .toolCalls)
        #expect(response.usage == TokenUsage(inputTokens: 3, outputTokens: 4))
    }

    @Test func responsesWithoutChoicesAreMalformed() {
        #expect(throws: ProviderError.self) { try OpenAIWireFormat.decodeResponse(["id": "x"]) }
        #expect(throws: ProviderError.self) { try OpenAIWireFormat.decodeResponse(["choices": []]) }
    }
}

@Suite("Anthropic wire format")
struct AnthropicWireFormatTests {
    @Test func messagesAreMergedAndAlternate() {
        let body = AnthropicWireFormat.encodeRequest(
            ChatRequest(
                model: "claude",
                messages: [
                    .system("S"), .user("Q"),
                    .assistant(nil, toolCalls: [ToolCall(id: "t1", name: "f", arguments: "not json")]),
                    .tool(callID: "t1", name: "f", content: "R"), .user("And then?"),
                ]
            ),
            stream: true
        )
        #expect(body["stream"] == true)
        #expect(
            body["messages"] == [
                ["role": "user", "content": "Q"],
                ["role": "assistant", "content": [["type": "tool_use", "id": "t1", "name": "f", "input": [:]]]],
                [
                    "role": "user",
                    "content": [
                        ["type": "tool_result", "tool_use_id": "t1", "content": "R"],
                        ["type": "text", "text": "And then?"],
                    ],
                ],
            ]
        )
    }

    @Test func schemaNamesBecomeToolNames() {
        #expect(
            AnthropicWireFormat.structuredToolName(.jsonSchema(name: "my schema.v2", schema: [:])) == "my_schema_v2"
        )
        #expect(AnthropicWireFormat.structuredToolName(.text) == nil)
    }

    @Test func stopReasons() {
        #expect(AnthropicWireFormat.finishReason("end_turn") == .stop)
        #expect(AnthropicWireFormat.finishReason("stop_sequence") == .stop)
        #expect(AnthropicWireFormat.finishReason("tool_use") == .toolCalls)
        #expect(AnthropicWireFormat.finishReason("max_tokens") == .length)
    }

    @Test func cachedInputTokensCount() throws {
        let response = try AnthropicWireFormat.decodeResponse(
            [
                "content": [["type": "text", "text": "x"]], "stop_reason": "max_tokens",
                "usage": ["input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 5],
            ],
            structuredTool: nil,
            requestedModel: "claude"
        )
        #expect(response.usage == TokenUsage(inputTokens: 100, outputTokens: 5))
        #expect(response.finishReason == .length)
        #expect(response.model == "claude")
    }
}

@Suite("Server-sent events parser")
struct ServerSentEventParserTests {
    @Test func parsesAcrossChunksAndLineEndings() {
        var parser = ServerSentEventParser()
        let text =
            ": keep-alive\r\nevent: ping\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: second\n\ndata: third\rid: 3\rretry: 10\r\rdata: last"
        var events: [ServerSentEvent] = []
        for byte in text.utf8 { events += parser.consume([byte]) }  // one byte at a time
        events += parser.finish()
        #expect(
            events == [
                ServerSentEvent(event: "ping", data: "{\"a\":\n1}"), ServerSentEvent(event: nil, data: "second"),
                ServerSentEvent(event: nil, data: "third"), ServerSentEvent(event: nil, data: "last"),
            ]
        )
    }

    @Test func eventsWithoutDataAreDropped() {
        var parser = ServerSentEventParser()
        #expect(
            parser.consume(Array("event: x\n\ndata:no-space\n\n".utf8)) == [
                ServerSentEvent(event: nil, data: "no-space")
            ]
        )
    }
}
