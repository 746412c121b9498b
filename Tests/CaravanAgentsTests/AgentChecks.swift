import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// The gateway and agents through the HTTP API. Each check runs unchanged on SQLite and PostgreSQL.
enum AgentChecks {
    /// An agent with an http tool and an MCP tool answers a question: each turn and tool call is an event, the
    /// model sees every tool's result, the key reaches the provider, and usage is metered.
    static func answersWithHTTPAndMCPTools(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "helper",
            """
            name: helper
            model: local/m1
            instructions: "You help with {{ input.topic }}. <Be brief>."
            tools:
              - http: {name: lookup, description: "Look a city up", method: POST, url: "\(world.http.baseURL)/count/lookup?city={{ args.city }}",
                       parameters: {type: object, required: [city], properties: {city: {type: string}}}}
              - mcp: {name: calc, url: "\(world.mcp.url)"}
            max_turns: 5
            """
        )
        world.openAI.respond { request in
            switch request.messages.filter({ $0["role"] == "tool" }).count {
            case 0: .toolCall("lookup", arguments: #"{"city": "Paris"}"#, id: "call_1")
            case 1: .toolCall("calc_add", arguments: #"{"a": 2, "b": 3}"#, id: "call_2")
            default: .text("Paris, and 2 + 3 = \(request.lastToolResult ?? "?")")
            }
        }
        let run = try await world.runAgent(
            "helper",
            input: ["topic": "cities", "question": "Where, and how much is 2+3?"]
        )
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["kind"] == "agent")
        #expect(run["agent"] == "helper")
        #expect(run["output"]?.stringValue?.hasSuffix("= 5") == true, "\(run["output"] ?? .null)")
        #expect(world.http.calls("/count/lookup") == 1)
        #expect(world.mcp.calls("add") == 1)

        let requests = world.openAI.requests
        #expect(requests.count == 3)
        #expect(requests.first?.systemPrompt == "You help with cities. <Be brief>.")  // Mustache, not HTML-escaped
        #expect(requests.first?.toolNames.sorted() == ["calc_add", "calc_echo", "calc_fail", "calc_slow", "lookup"])
        #expect(requests.dropFirst().first?.lastToolResult?.contains("\"ok\":true") == true)
        #expect(requests.allSatisfy { $0.headers["authorization"] == "Bearer sk-openai-test" })

        let runID = try #require(run["id"]?.stringValue)
        let types = eventTypes(try await world.events(runID))
        #expect(types.filter { $0 == "llm.request" }.count == 3)
        #expect(types.filter { $0 == "llm.response" }.count == 3)
        #expect(types.filter { $0 == "tool.call" }.count == 2)
        #expect(types.filter { $0 == "tool.result" }.count == 2)
        #expect(types.last == "run.succeeded")

        let usage = try await world.client.send(.get, "/v1/usage?group_by=agent").json
        let helper = try #require(usage["items"]?.arrayValue?.first { $0["key"] == "helper" })
        #expect(helper["requests"] == 3)
        #expect(helper["input_tokens"] == 30)
        #expect(helper["output_tokens"] == 15)
        let byModel = try await world.client.send(.get, "/v1/usage?group_by=model").json
        #expect(byModel["items"]?.arrayValue?.first?["key"] == "local/m1")
        let byDay = try await world.client.send(.get, "/v1/usage?group_by=day").json["items"]?.arrayValue ?? []
        #expect(byDay.count == 1)
        #expect(byDay.first?["key"] == .string(String(Clock.rfc3339(WallClock.system.nowMilliseconds()).prefix(10))))
        #expect(byDay.first?["requests"] == 3)
    }

    /// An MCP server started as a child process (stdio) serves an agent's tools.
    static func usesStdioMCPServer(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "stdio",
            """
            name: stdio
            model: local/m1
            tools:
              - mcp: {name: local, command: ["\(mcpFixturePath)"]}
            """
        )
        world.openAI.respond { request in
            request.toolResults.isEmpty
                ? .toolCall("local_add", arguments: #"{"a": 20, "b": 22}"#)
                : .text("sum \(request.lastToolResult ?? "")")
        }
        let run = try await world.runAgent("stdio", input: "add")
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "sum 42")
    }

    /// Token deltas reach a run's live event stream (not stored); the stored events follow.
    static func streamsDeltas(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "talker",
            """
            name: talker
            model: local/m1
            tools:
              - http: {name: wait, method: POST, url: "\(world.http.baseURL)/slow/2000"}
            """
        )
        world.openAI.respond { request in
            request.toolResults.isEmpty ? .toolCall("wait") : .text("a streamed answer in several words")
        }
        let started = try await world.client.send(.post, "/v1/agents/talker/runs", json: #"{"input": "talk"}"#)
        let runID = try #require(started.json["id"]?.stringValue)
        let port = try #require(world.client.port)
        let stream = try await fetch(
            "http://127.0.0.1:\(port)/v1/runs/\(runID)/events",
            headers: [("Accept", "text/event-stream")] + world.client.authorization,
            timeout: .seconds(20)
        )
        let frames = stream.body.components(separatedBy: "\n\n")
        let deltas = frames.filter { $0.hasPrefix("event: llm.delta") }.compactMap { frame in
            frame.split(separator: "\n").first { $0.hasPrefix("data: ") }.flatMap {
                try? JSONValue(parsing: Array($0.dropFirst(6).utf8))
            }
        }
        #expect(deltas.compactMap { $0["data"]?["text"]?.stringValue }.joined() == "a streamed answer in several words")
        #expect(frames.contains { $0.contains("event: run.succeeded") })
        let stored = eventTypes(try await world.events(runID))
        #expect(!stored.contains("llm.delta"), "deltas are not stored")
    }

    /// A route falls back from a failing OpenAI-compatible provider to Anthropic after its retries.
    static func fallsBackAcrossProviders(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "fallback",
            """
            name: fallback
            model: [local/m1, claude/haiku]
            instructions: Answer.
            """
        )
        world.openAI.respond { _ in .error(status: 500) }
        world.anthropic.respond { _ in .text("from claude") }
        let run = try await world.runAgent("fallback", input: "hello")
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "from claude")
        #expect(world.openAI.callCount == 2, "one call and one retry (max_retries: 1)")
        #expect(world.anthropic.callCount == 1)
        #expect(world.anthropic.requests.first?.headers["x-api-key"] == "sk-anthropic-test")
        let local = try await world.client.send(.get, "/v1/providers/local").json
        #expect(local["circuit"] == "closed", "two failures in a row do not open it")
        let agentRuns = try await world.client.send(.get, "/v1/runs?agent=fallback").json["items"]?.arrayValue ?? []
        #expect(agentRuns.count == 1)

        world.openAI.respond { _ in .error(status: 429, retryAfter: "0") }
        world.anthropic.respond { _ in .error(status: 400, message: "bad request") }
        let failed = try await world.runAgent("fallback", input: "hello")
        #expect(failed["status"] == "failed")
        #expect(failed["error"]?["code"] == "provider_bad_request", "\(failed["error"] ?? .null)")

        // A model its provider does not list is left out of the route; the next one answers.
        try await world.putAgent("unlisted", "{\"model\": [\"local/m9\", \"claude/haiku\"]}")
        world.anthropic.respond { _ in .text("listed") }
        let calls = world.openAI.callCount
        let routed = try await world.runAgent("unlisted", input: "hello")
        #expect(routed["output"] == "listed")
        #expect(world.openAI.callCount == calls, "local/m9 is not called")
    }

    /// A model that keeps calling tools stops at `max_turns`.
    static func stopsAtMaxTurns(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "looper",
            """
            name: looper
            model: local/m1
            tools:
              - mcp: {name: calc, url: "\(world.mcp.url)", tools: [echo]}
            max_turns: 3
            """
        )
        world.openAI.respond { _ in .toolCall("calc_echo", arguments: #"{"text": "again"}"#) }
        let run = try await world.runAgent("looper", input: "loop")
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "max_turns_exceeded")
        #expect(world.openAI.callCount == 3)
        #expect(world.mcp.calls("echo") == 3)
    }

    /// A run's token budget and the organization's monthly budget stop model calls.
    static func budgetsStopCalls(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "thrifty",
            """
            name: thrifty
            model: local/m1
            tools:
              - mcp: {name: calc, url: "\(world.mcp.url)", tools: [echo]}
            budget: {tokens: 20}
            """
        )
        world.openAI.respond { _ in .toolCall("calc_echo", arguments: #"{"text": "x"}"#) }
        let run = try await world.runAgent("thrifty", input: "spend")
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "budget_exceeded")
        #expect(world.openAI.callCount == 2, "15 tokens, then 30 ≥ 20: the third call is never made")

        expectStatus(.ok, try await world.client.send(.put, "/v1/budget", json: #"{"tokens": 40}"#))
        let budget = try await world.client.send(.get, "/v1/budget").json
        #expect(budget["spent_tokens"] == 30)
        world.openAI.respond { _ in .text("fine") }
        let chat = #"{"model": "local/m1", "messages": [{"role": "user", "content": "hi"}]}"#
        expectStatus(.ok, try await world.client.send(.post, "/v1/chat/completions", json: chat))  // 30 < 40
        let refused = try await world.client.send(.post, "/v1/chat/completions", json: chat)  // 45 ≥ 40
        #expect(refused.status.code == 402)
        #expect(refused.json["code"] == "budget_exceeded")
        #expect(refused.headers[.contentType] == "application/problem+json")
    }

    /// `output_schema`: a bad answer is sent back once with the problem, then the run fails.
    static func validatesOutput(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "structured",
            """
            name: structured
            model: local/m1
            output_schema: {type: object, required: [answer], properties: {answer: {type: string}}}
            """
        )
        world.openAI.enqueue(.text("not json"), .json(#"{"answer": "42"}"#))
        let run = try await world.runAgent("structured", input: "?")
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == ["answer": "42"])
        #expect(world.openAI.requests.last?.lastUserText?.contains("not valid") == true)
        #expect(world.openAI.requests.first?.body["response_format"]?["type"] == "json_schema")

        world.openAI.enqueue(.json(#"{"answer": 1}"#), .json(#"{"wrong": true}"#))
        let failed = try await world.runAgent("structured", input: "?")
        #expect(failed["status"] == "failed")
        #expect(failed["error"]?["code"] == "output_invalid")
    }

    /// Arguments that do not match a tool's schema go back to the model as an error result; nothing runs.
    static func validatesToolArguments(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "strict",
            """
            name: strict
            model: local/m1
            tools:
              - http: {name: lookup, url: "\(world.http.baseURL)/count/strict", parameters: {type: object, required: [city], properties: {city: {type: string}}}}
            """
        )
        world.openAI.respond { request in
            request.toolResults.isEmpty
                ? .toolCall("lookup", arguments: #"{"city": 7}"#) : .text("gave up: \(request.lastToolResult ?? "")")
        }
        let run = try await world.runAgent("strict", input: "?")
        #expect(run["status"] == "succeeded")
        #expect(run["output"]?.stringValue?.contains("do not match") == true, "\(run["output"] ?? .null)")
        #expect(world.http.calls("/count/strict") == 0)
    }

    /// The OpenAI-compatible front door: models, completions streamed and not, and clear errors.
    static func chatCompletions(_ world: AgentWorld) async throws {
        let models = try await world.client.send(.get, "/v1/models").json
        #expect(
            Set(models["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []) == [
                "local/m1", "local/m2", "claude/haiku",
            ]
        )

        // One model, as clients ask for it to check that it is there.
        let one = try await world.client.send(.get, "/v1/models/local/m2")
        #expect(one.status == .ok && one.json["id"] == "local/m2" && one.json["owned_by"] == "local", "\(one.json)")
        #expect(try await world.client.send(.get, "/v1/models/local/m9").status == .notFound)
        #expect(try await world.client.send(.get, "/v1/models/nowhere/m1").status == .notFound)

        world.openAI.enqueue(.text("hello there", usage: FakeUsage(input: 7, output: 2)))
        let answer = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "local/m2", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}"#
        )
        expectStatus(.ok, answer)
        #expect(answer.json["object"] == "chat.completion")
        #expect(answer.json["choices"]?.arrayValue?.first?["message"]?["content"] == "hello there")
        #expect(answer.json["usage"]?["prompt_tokens"] == 7)
        #expect(world.openAI.lastBody?["model"] == "m2")

        world.anthropic.enqueue(.text("streamed answer"))
        let stream = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json:
                #"{"model": "claude/haiku", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}"#
        )
        expectStatus(.ok, stream)
        #expect(stream.headers[.contentType] == "text/event-stream")
        let text = stream.json.stringValue ?? ""
        let chunks = text.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }.compactMap {
            try? JSONValue(parsing: Array($0.dropFirst(6).utf8))
        }
        let content = chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
        #expect(content == "streamed answer")
        // The usage comes as OpenAI sends it: a last chunk of its own, with no choices.
        let usageChunks = chunks.filter { $0["usage"] != nil && $0["usage"] != .null }
        #expect(usageChunks.count == 1 && usageChunks.first?["choices"] == [], "\(usageChunks)")
        #expect(usageChunks.first?["usage"]?["completion_tokens"] != nil)
        #expect(chunks.last?["choices"] == [])
        #expect(text.hasSuffix("data: [DONE]\n\n"))

        let unknown = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "nope/x", "messages": [{"role": "user", "content": "hi"}]}"#
        )
        #expect(unknown.status == .notFound)
        #expect(unknown.json["code"] == "unknown_model")
        // A provider that says to wait longer than the router waits: the client is told to wait, not given a 502.
        world.openAI.respond { _ in .error(status: 429, retryAfter: "60") }
        let limited = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "local/m2", "messages": [{"role": "user", "content": "hi"}]}"#
        )
        #expect(limited.status == .tooManyRequests, "\(limited.json)")
        #expect(limited.json["code"] == "rate_limited")
        #expect(limited.headers[.retryAfter] == "60")
        #expect(limited.json["error"]?["type"] == "rate_limit_error")
        // Streamed, a call that fails before its first token answers with its status too, not a 200.
        let streamed = #"{"model": "local/m2", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#
        let limitedStream = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: streamed
        )
        #expect(limitedStream.status == .tooManyRequests, "\(limitedStream.json)")
        #expect(limitedStream.headers[.retryAfter] == "60")
        world.openAI.respond(with: nil)
        // Once a token is out the status is sent: a failure after it is the stream's last chunk.
        world.openAI.enqueue(.failMidStream(text: "partial answer"))
        let broken = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: streamed
        )
        #expect(broken.status == .ok)
        let brokenText = broken.json.stringValue ?? ""
        #expect(brokenText.contains("partial answer") && brokenText.contains(#""error":"#), "\(brokenText)")
        #expect(brokenText.hasSuffix("data: [DONE]\n\n"))
        let invalid = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "local/m1", "messages": [{"role": "wizard", "content": "hi"}]}"#
        )
        #expect(invalid.status == .badRequest, "what OpenAI's SDKs raise as BadRequestError")
        #expect(invalid.json["code"] == "invalid_request")
        #expect(invalid.json["errors"]?.arrayValue?.first?["pointer"] == "/messages/0/role")
        // OpenAI's clients read `error.message`: the problem carries OpenAI's shape too, on these endpoints only.
        #expect(invalid.json["error"]?["type"] == "invalid_request_error", "\(invalid.json)")
        #expect(invalid.json["error"]?["param"] == "messages.0.role")
        #expect(invalid.json["error"]?["message"] == invalid.json["detail"])
        #expect(unknown.json["error"]?["code"] == "unknown_model")
        #expect(
            try await world.client.send(.get, "/v1/models/local/m9").json["error"]?["type"] == "invalid_request_error"
        )
        #expect(try await world.client.send(.get, "/v1/agents/nope").json["error"] == nil)
        // A server that counts nothing (llama.cpp when streaming) is metered by an estimate, not as free.
        world.openAI.enqueue(.text("abcdefgh", usage: FakeUsage(input: 0, output: 0)))
        expectStatus(
            .ok,
            try await world.client.send(
                .post,
                "/v1/chat/completions",
                json: #"{"model": "local/m1", "messages": [{"role": "user", "content": "hi"}]}"#
            )
        )
        let usage = try await world.client.send(.get, "/v1/usage?group_by=model").json["items"]?.arrayValue ?? []
        let estimated = try #require(usage.first { $0["key"] == "local/m1" })
        #expect(estimated["input_tokens"] == 1)
        #expect(estimated["output_tokens"] == 2)

        world.openAI.respond { _ in .hang(milliseconds: 5_000) }
        let slow = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "local/m1", "messages": [{"role": "user", "content": "hi"}]}"#
        )
        #expect(slow.status == .gatewayTimeout, "\(slow.json)")
        world.openAI.respond(with: nil)
    }

    /// Every parameter is passed on or refused by name, `n` answers as many choices, a default provider takes
    /// bare model names, and each answer states the caller's request budget as OpenAI's headers do.
    static func gatewayParameters(_ world: AgentWorld) async throws {
        world.openAI.enqueue(.text("seeded"))
        let seeded = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: """
                {"model": "local/m2", "seed": 42, "presence_penalty": 0.5, "logit_bias": {"50256": -100},
                 "reasoning_effort": "low", "max_completion_tokens": 30, "metadata": {"team": "a"},
                 "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]}
                """
        )
        expectStatus(.ok, seeded)
        let sent = try #require(world.openAI.lastBody)
        #expect(sent["seed"] == 42 && sent["presence_penalty"] == 0.5 && sent["reasoning_effort"] == "low")
        #expect(sent["logit_bias"] == ["50256": -100] && sent["metadata"] == ["team": "a"])
        #expect(sent["max_completion_tokens"] == 30 && sent["max_tokens"] == nil, "\(sent)")
        #expect(sent["messages"]?.arrayValue?.first?["role"] == "developer")
        #expect(seeded.headers[HTTPField.Name("x-ratelimit-limit-requests")!] == "6000")
        let remaining = seeded.headers[HTTPField.Name("x-ratelimit-remaining-requests")!].flatMap { Int($0) }
        #expect(remaining.map { (5_900..<6_000).contains($0) } == true, "\(String(describing: remaining))")
        #expect(seeded.headers[HTTPField.Name("x-ratelimit-reset-requests")!]?.hasSuffix("s") == true)

        // A parameter Anthropic's format cannot honour is refused, named, before any call.
        let calls = world.anthropic.callCount
        let refused = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "claude/haiku", "seed": 1, "messages": [{"role": "user", "content": "hi"}]}"#
        )
        #expect(refused.status == .unprocessableContent, "\(refused.json)")
        #expect(refused.json["code"] == "unsupported_parameter")
        #expect(refused.json["error"]?["param"] == "seed")
        #expect(world.anthropic.callCount == calls)
        // One it can map is mapped.
        world.anthropic.enqueue(.text("one at a time"))
        expectStatus(
            .ok,
            try await world.client.send(
                .post,
                "/v1/chat/completions",
                json: """
                    {"model": "claude/haiku", "parallel_tool_calls": false, "messages": [{"role": "user", "content": "hi"}],
                     "tools": [{"type": "function", "function": {"name": "f"}}]}
                    """
            )
        )
        #expect(world.anthropic.lastBody?["tool_choice"]?["disable_parallel_tool_use"] == true)
        // An argument no API has is refused as OpenAI refuses it.
        let unknown = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "local/m1", "temprature": 0, "messages": [{"role": "user", "content": "hi"}]}"#
        )
        #expect(unknown.status == .badRequest)
        #expect(unknown.json["error"]?["param"] == "temprature")

        // Images reach the provider in order with the text; one at an internal address is refused by the policy.
        world.openAI.enqueue(.text("a cat"))
        let image = #"{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}"#
        expectStatus(
            .ok,
            try await world.client.send(
                .post,
                "/v1/chat/completions",
                json: """
                    {"model": "local/m1", "messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, \(image)]}]}
                    """
            )
        )
        let parts = world.openAI.lastBody?["messages"]?.arrayValue?.first?["content"]?.arrayValue ?? []
        #expect(parts.map { $0["type"] } == ["text", "image_url"], "\(parts)")
        world.anthropic.enqueue(.text("a cat"))
        expectStatus(
            .ok,
            try await world.client.send(
                .post,
                "/v1/chat/completions",
                json: #"{"model": "claude/haiku", "messages": [{"role": "user", "content": [\#(image)]}]}"#
            )
        )
        let block = world.anthropic.lastBody?["messages"]?.arrayValue?.first?["content"]?.arrayValue?.first
        #expect(block?["source"]?["type"] == "base64" && block?["source"]?["media_type"] == "image/png")
        let internalImage = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: """
                {"model": "local/m1", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest"}}]}]}
                """
        )
        #expect(
            internalImage.status == .unprocessableContent && internalImage.json["code"] == "egress_denied",
            "\(internalImage.json)"
        )
        #expect(internalImage.json["error"]?["param"] == "messages.0.content.0.image_url.url")

        // Request-level fallbacks: `models` after `model`; a model that cannot honour a parameter is left out.
        world.openAI.respond { request in request.model == "m1" ? .error(status: 503) : .text("from m2") }
        let fellBack = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "local/m1", "models": ["local/m2"], "messages": [{"role": "user", "content": "hi"}]}"#
        )
        expectStatus(.ok, fellBack)
        #expect(fellBack.json["model"] == "local/m2", "the model that answered")
        #expect(fellBack.json["choices"]?.arrayValue?.first?["message"]?["content"] == "from m2")
        world.openAI.respond(with: nil)
        world.openAI.enqueue(.text("seeded elsewhere"))
        let skipped = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json:
                #"{"model": "claude/haiku", "models": ["local/m2"], "seed": 3, "messages": [{"role": "user", "content": "hi"}]}"#
        )
        expectStatus(.ok, skipped)
        #expect(skipped.json["model"] == "local/m2" && world.openAI.lastBody?["seed"] == 3)

        // n > 1: as many choices, usage summed.
        world.openAI.enqueue(.text("first", usage: FakeUsage(input: 3, output: 1)))
        world.openAI.enqueue(.text("second", usage: FakeUsage(input: 3, output: 1)))
        let two = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "local/m1", "n": 2, "messages": [{"role": "user", "content": "hi"}]}"#
        )
        expectStatus(.ok, two)
        let choices = two.json["choices"]?.arrayValue ?? []
        #expect(choices.map { $0["index"] } == [0, 1])
        #expect(Set(choices.compactMap { $0["message"]?["content"]?.stringValue }) == ["first", "second"])
        #expect(two.json["usage"]?["prompt_tokens"] == 6)

        // Bare model names: refused until a default provider is set, then routed to it.
        let bare = #"{"model": "m1", "messages": [{"role": "user", "content": "hi"}]}"#
        #expect(try await world.client.send(.post, "/v1/chat/completions", json: bare).status == .badRequest)
        let provider = try await world.client.send(.get, "/v1/providers/local").json
        guard case .object(var fields) = provider else { throw CaravanError(.internal, "no provider") }
        for key in ["created_at", "updated_at", "circuit", "circuits"] { fields[key] = nil }
        fields["default"] = true
        expectStatus(
            .ok,
            try await world.client.send(.put, "/v1/providers/local", json: JSONValue.object(fields).canonicalText)
        )
        world.openAI.enqueue(.text("by default"))
        let routed = try await world.client.send(.post, "/v1/chat/completions", json: bare)
        expectStatus(.ok, routed)
        #expect(routed.json["choices"]?.arrayValue?.first?["message"]?["content"] == "by default")
        #expect(world.openAI.lastBody?["model"] == "m1")
        #expect(try await world.client.send(.get, "/v1/providers/local").json["default"] == true)
        // A model by its id as OpenAI's SDKs ask for it (the slash percent-encoded), and a bare one.
        #expect(try await world.client.send(.get, "/v1/models/local%2Fm2").json["id"] == "local/m2")
        #expect(try await world.client.send(.get, "/v1/models/m2").json["id"] == "local/m2")
        #expect(try await world.client.send(.get, "/v1/models/m9").status == .notFound)
        #expect(try await world.client.send(.get, "/v1/providers/claude").json["default"] == false)
    }

    /// `/v1/embeddings`: routed to an OpenAI-format provider, its answer as the provider gave it (base64
    /// included), metered; refused with the field named otherwise.
    static func embeddings(_ world: AgentWorld) async throws {
        func inputTokens() async throws -> Int64 {
            let items = try await world.client.send(.get, "/v1/usage?group_by=model").json["items"]?.arrayValue ?? []
            guard case .int(let tokens)? = items.first(where: { $0["key"] == "local/m1" })?["input_tokens"] else {
                return 0
            }
            return tokens
        }
        let before = try await inputTokens()
        let answer = try await world.client.send(
            .post,
            "/v1/embeddings",
            json: #"{"model": "local/m1", "input": ["first text", "second"], "dimensions": 4}"#
        )
        expectStatus(.ok, answer)
        #expect(answer.json["object"] == "list" && answer.json["model"] == "local/m1")
        let data = answer.json["data"]?.arrayValue ?? []
        #expect(data.map { $0["index"] } == [0, 1])
        #expect(data.allSatisfy { $0["embedding"]?.arrayValue?.count == 4 }, "\(answer.json)")
        #expect(data.first?["embedding"] != data.last?["embedding"])
        #expect(world.openAI.lastBody?["model"] == "m1" && world.openAI.lastBody?["dimensions"] == 4)
        let tokens = try #require(answer.json["usage"]?["prompt_tokens"])
        #expect(tokens == 5, "four characters a token: 3 + 2")
        #expect(try await inputTokens() == before + 5, "the call is metered")

        let packed = try await world.client.send(
            .post,
            "/v1/embeddings",
            json: #"{"model": "local/m1", "input": "first text", "encoding_format": "base64", "dimensions": 4}"#
        )
        expectStatus(.ok, packed)
        let text = try #require(packed.json["data"]?.arrayValue?.first?["embedding"]?.stringValue)
        let floats = try #require(Data(base64Encoded: text)).withUnsafeBytes { raw in
            (0..<raw.count / 4).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
        }
        #expect(floats.map { JSONValue.double(Double($0)) } == data.first?["embedding"]?.arrayValue)

        let anthropic = try await world.client.send(
            .post,
            "/v1/embeddings",
            json: #"{"model": "claude/haiku", "input": "x"}"#
        )
        #expect(anthropic.status == .unprocessableContent, "\(anthropic.json)")
        #expect(anthropic.json["error"]?["param"] == "model")
        for (body, param) in [
            (#"{"model": "local/m1", "input": 5}"#, "input"), (#"{"model": "local/m1", "input": []}"#, "input"),
            (#"{"model": "local/m1", "input": "x", "encoding": "float"}"#, "encoding"),
            (#"{"model": "local/m1", "input": "x", "encoding_format": "hex"}"#, "encoding_format"),
            (#"{"input": "x"}"#, "model"),
        ] {
            let refused = try await world.client.send(.post, "/v1/embeddings", json: body)
            #expect(refused.status == .badRequest, "\(body) → \(refused.json)")
            #expect(refused.json["error"]?["param"] == .string(param), "\(body) → \(refused.json)")
        }
    }

    /// `/mcp`: the organization's workflows and agents as MCP tools, over JSON-RPC.
    static func mcpServer(_ world: AgentWorld) async throws {
        func rpc(_ method: String, _ params: JSONValue = [:], id: Int64 = 1) async throws -> JSONValue {
            let body: JSONValue = ["jsonrpc": "2.0", "id": .int(id), "method": .string(method), "params": params]
            let answer = try await world.client.send(.post, "/mcp", json: body.canonicalText)
            expectStatus(.ok, answer)
            #expect(answer.json["id"] == .int(id) && answer.json["jsonrpc"] == "2.0")
            return answer.json
        }
        try await world.putAgent(
            "helper",
            """
            name: helper
            description: Answers questions.
            model: local/m1
            instructions: Help.
            """
        )
        let workflow =
            #"{"name": "add", "steps": [{"id": "sum", "template": "{{ input.a }}+{{ input.b }}"}], "output": "{{ steps.sum.output }}"}"#
        expectStatus(.created, try await world.client.send(.put, "/v1/workflows/add", json: workflow))

        let initialized = try await rpc(
            "initialize",
            ["protocolVersion": "2025-03-26", "capabilities": [:], "clientInfo": ["name": "t", "version": "1"]]
        )
        #expect(initialized["result"]?["protocolVersion"] == "2025-03-26")
        #expect(initialized["result"]?["capabilities"]?["tools"] != nil)
        let notified = try await world.client.send(
            .post,
            "/mcp",
            json: #"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#
        )
        #expect(notified.status == .accepted)

        let tools = try await rpc("tools/list")["result"]?["tools"]?.arrayValue ?? []
        #expect(Set(tools.compactMap { $0["name"]?.stringValue }) == ["workflow-add", "agent-helper"])
        #expect(tools.first { $0["name"] == "agent-helper" }?["description"] == "Answers questions.")

        let sum = try await rpc("tools/call", ["name": "workflow-add", "arguments": ["a": 2, "b": 3]])
        #expect(sum["result"]?["isError"] == false)
        #expect(sum["result"]?["content"]?.arrayValue?.first?["text"] == "2+3", "\(sum)")
        world.openAI.enqueue(.text("Happy to help."))
        let asked = try await rpc("tools/call", ["name": "agent-helper", "arguments": ["question": "hi"]])
        #expect(asked["result"]?["content"]?.arrayValue?.first?["text"] == "Happy to help.", "\(asked)")

        #expect(try await rpc("tools/call", ["name": "workflow-nope"])["error"]?["code"] == -32602)
        #expect(try await rpc("resources/list")["error"]?["code"] == -32601)
        #expect(try await world.client.send(.get, "/mcp").status == .methodNotAllowed)
        let anonymous = try await world.client.send(
            .post,
            "/mcp",
            json: #"{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}"#,
            headers: [.authorization: "Bearer ck_wrong"]
        )
        #expect(anonymous.status == .unauthorized)
    }

    /// An API key limited to some models and a monthly spend, its calls counted apart (`group_by=key`).
    static func keyLimits(_ world: AgentWorld) async throws {
        let created = try await world.client.send(.post, "/v1/api-keys", json: #"{"name": "app", "role": "admin"}"#)
        expectStatus(.created, created)
        let key = try #require(created.json["key"]?.stringValue)
        let keyID = try #require(created.json["id"]?.stringValue)
        let limited = try await world.client.send(
            .put,
            "/v1/api-keys/\(keyID)/limits",
            json: #"{"models": ["local/m1", "claude/*"]}"#
        )
        expectStatus(.ok, limited)
        #expect(limited.json["models"] == ["local/m1", "claude/*"] && limited.json["monthly_cost_usd"] == .null)
        func chat(_ model: String) async throws -> (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields) {
            try await world.client.send(
                .post,
                "/v1/chat/completions",
                json: #"{"model": "\#(model)", "messages": [{"role": "user", "content": "hi"}]}"#,
                headers: [.authorization: "Bearer \(key)"]
            )
        }
        let refused = try await chat("local/m2")
        #expect(refused.status == .forbidden && refused.json["code"] == "model_not_allowed", "\(refused.json)")
        world.openAI.enqueue(.text("allowed"))
        expectStatus(.ok, try await chat("local/m1"))
        world.anthropic.enqueue(.text("allowed too"))
        expectStatus(.ok, try await chat("claude/haiku"))
        world.openAI.enqueue(.text("the owner's"))
        expectStatus(
            .ok,
            try await world.client.send(
                .post,
                "/v1/chat/completions",
                json: #"{"model": "local/m2", "messages": [{"role": "user", "content": "hi"}]}"#
            )
        )
        let byKey = try await world.client.send(.get, "/v1/usage?group_by=key").json["items"]?.arrayValue ?? []
        #expect(byKey.first { $0["key"] == .string(keyID) }?["requests"] == 2, "\(byKey)")

        // A spend limit reached: refused before any call.
        expectStatus(
            .ok,
            try await world.client.send(.put, "/v1/api-keys/\(keyID)/limits", json: #"{"monthly_cost_usd": 0}"#)
        )
        let calls = world.openAI.callCount
        let spent = try await chat("local/m1")
        #expect(spent.status.code == 402 && spent.json["code"] == "budget_exceeded", "\(spent.json)")
        #expect(world.openAI.callCount == calls)
        let shown = try await world.client.send(.get, "/v1/api-keys/\(keyID)/limits").json
        #expect(shown["monthly_cost_usd"] == 0 && shown["models"] == .null && shown["spent_cost_usd"] != nil)
        expectStatus(.ok, try await world.client.send(.put, "/v1/api-keys/\(keyID)/limits", json: "{}"))
        world.openAI.enqueue(.text("free again"))
        expectStatus(.ok, try await chat("local/m2"))

        #expect(
            try await world.client.send(.put, "/v1/api-keys/ak_nothing/limits", json: "{}").status == .notFound
        )
        let invalid = try await world.client.send(
            .put,
            "/v1/api-keys/\(keyID)/limits",
            json: #"{"models": ["no-slash"]}"#
        )
        #expect(invalid.status == .unprocessableContent)
        #expect(invalid.json["errors"]?.arrayValue?.first?["pointer"] == "/models")
    }

    /// `/v1/responses`: answers, continues a stored conversation, streams its events, refuses what it cannot read.
    static func responsesAPI(_ world: AgentWorld) async throws {
        world.openAI.enqueue(.text("first answer", usage: FakeUsage(input: 4, output: 2)))
        let first = try await world.client.send(
            .post,
            "/v1/responses",
            json: #"{"model": "local/m1", "input": "hello", "instructions": "Be brief."}"#
        )
        expectStatus(.ok, first)
        #expect(first.json["object"] == "response" && first.json["status"] == "completed")
        #expect(first.json["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["text"] == "first answer")
        #expect(first.json["usage"]?["input_tokens"] == 4)
        let id = try #require(first.json["id"]?.stringValue)

        world.openAI.enqueue(.toolCalls([FakeToolCall(name: "lookup", arguments: #"{"q":"x"}"#)]))
        let second = try await world.client.send(
            .post,
            "/v1/responses",
            json: """
                {"model": "local/m1", "previous_response_id": "\(id)", "input": [{"role": "user", "content": [{"type": "input_text", "text": "more"}]}],
                 "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]}
                """
        )
        expectStatus(.ok, second)
        let sent = world.openAI.lastBody?["messages"]?.arrayValue ?? []
        #expect(sent.map { $0["role"] } == ["user", "assistant", "user"], "instructions are not carried over: \(sent)")
        #expect(sent.map { $0["content"] } == ["hello", "first answer", "more"])
        let call = second.json["output"]?.arrayValue?.first
        #expect(call?["type"] == "function_call" && call?["name"] == "lookup", "\(second.json)")
        #expect(try await world.client.send(.get, "/v1/responses/\(id)").json["id"] == .string(id))

        world.openAI.enqueue(.text("streamed"))
        let stream = try await world.client.send(
            .post,
            "/v1/responses",
            json: #"{"model": "local/m1", "input": "hi", "stream": true, "store": false}"#
        )
        expectStatus(.ok, stream)
        let text = stream.json.stringValue ?? ""
        #expect(text.hasPrefix("event: response.created\n") && text.contains("event: response.completed\n"), "\(text)")
        #expect(text.contains(#""text":"streamed""#))
        let unstored = try #require(
            text.components(separatedBy: "\n").first { $0.hasPrefix("data: ") }.flatMap {
                try? JSONValue(parsing: Array($0.dropFirst(6).utf8))
            }?["response"]?["id"]?.stringValue
        )
        #expect(try await world.client.send(.get, "/v1/responses/\(unstored)").status == .notFound)

        for (body, param) in [
            (#"{"model": "local/m1", "input": "x", "frequency": 1}"#, "frequency"),
            (#"{"model": "local/m1", "input": [{"type": "file_search_call"}]}"#, "input.0.type"),
            (#"{"model": "local/m1", "input": "x", "temperature": 9}"#, "temperature"),
            (#"{"model": "local/m1", "input": []}"#, "input"),
            (#"{"model": "local/m1", "input": "x", "previous_response_id": "resp_none"}"#, "previous_response_id"),
        ] {
            let refused = try await world.client.send(.post, "/v1/responses", json: body)
            #expect(refused.status.code >= 400 && refused.status.code < 500, "\(body) → \(refused.json)")
            #expect(refused.json["error"]?["param"] == .string(param), "\(body) → \(refused.json)")
        }
    }

    /// With `gatewayCacheTTL`, the same `temperature: 0` call is answered again without the provider and unmetered;
    /// other calls, and those sent with `Cache-Control: no-cache`, go to it.
    static func responseCache(_ world: AgentWorld) async throws {
        let deterministic =
            #"{"model": "local/m1", "temperature": 0, "messages": [{"role": "user", "content": "same"}]}"#
        world.openAI.respond { _ in .text("cached answer") }
        let calls = world.openAI.callCount
        let first = try await world.client.send(.post, "/v1/chat/completions", json: deterministic)
        let second = try await world.client.send(.post, "/v1/chat/completions", json: deterministic)
        expectStatus(.ok, second)
        #expect(first.json["choices"] == second.json["choices"])
        #expect(world.openAI.callCount == calls + 1, "the second call was answered from the cache")
        let usage = try await world.client.send(.get, "/v1/usage?group_by=model").json["items"]?.arrayValue ?? []
        #expect(usage.first { $0["key"] == "local/m1" }?["requests"] == 1, "a cached answer is not metered")

        _ = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: deterministic,
            headers: [.cacheControl: "no-cache"]
        )
        #expect(world.openAI.callCount == calls + 2)
        let warm = #"{"model": "local/m1", "temperature": 0.7, "messages": [{"role": "user", "content": "same"}]}"#
        _ = try await world.client.send(.post, "/v1/chat/completions", json: warm)
        _ = try await world.client.send(.post, "/v1/chat/completions", json: warm)
        #expect(world.openAI.callCount == calls + 4, "only temperature 0 is cached")
        let other = #"{"model": "local/m1", "temperature": 0, "messages": [{"role": "user", "content": "other"}]}"#
        _ = try await world.client.send(.post, "/v1/chat/completions", json: other)
        #expect(world.openAI.callCount == calls + 5, "an exact match only")
        world.openAI.respond(with: nil)
    }

    /// A model route: calls naming it are spread over its deployments by weight, and fall back.
    static func modelRoutes(_ world: AgentWorld) async throws {
        let route =
            #"{"deployments": [{"model": "local/m1", "weight": 1}, {"model": "local/m2", "weight": 1}], "fallbacks": ["claude/haiku"]}"#
        expectStatus(.created, try await world.client.send(.put, "/v1/model-routes/smart", json: route))
        world.openAI.respond { request in .text("from \(request.model ?? "")") }
        var models: [String: Int] = [:]
        for _ in 0..<40 {
            let answer = try await world.client.send(
                .post,
                "/v1/chat/completions",
                json: #"{"model": "smart", "messages": [{"role": "user", "content": "hi"}]}"#
            )
            expectStatus(.ok, answer)
            models[answer.json["model"]?.stringValue ?? "", default: 0] += 1
        }
        #expect(Set(models.keys) == ["local/m1", "local/m2"], "both deployments serve: \(models)")
        // Both deployments failing: the route's fallback answers.
        world.openAI.respond { _ in .error(status: 503) }
        world.anthropic.enqueue(.text("fallback"))
        let fellBack = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "smart", "messages": [{"role": "user", "content": "hi"}]}"#
        )
        expectStatus(.ok, fellBack)
        #expect(fellBack.json["model"] == "claude/haiku")
        world.openAI.respond(with: nil)
        let listed = try await world.client.send(.get, "/v1/model-routes").json["items"]?.arrayValue ?? []
        #expect(listed.first?["name"] == "smart" && listed.first?["deployments"]?.arrayValue?.count == 2)
        let invalid = try await world.client.send(
            .put,
            "/v1/model-routes/bad",
            json: #"{"deployments": [{"model": "local/m1", "weight": 0}]}"#
        )
        #expect(invalid.status == .unprocessableContent)
        #expect(invalid.json["errors"]?.arrayValue?.first?["pointer"] == "/deployments/0/weight")
        expectStatus(.noContent, try await world.client.send(.delete, "/v1/model-routes/smart"))
        let gone = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "smart", "messages": [{"role": "user", "content": "hi"}]}"#
        )
        #expect(gone.status == .badRequest, "no route, no default provider: \(gone.json)")
    }

    /// Workflows mix `llm` and `agent` steps with the others.
    static func llmAndAgentSteps(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "namer",
            """
            name: namer
            model: claude/haiku
            instructions: "Name a {{ input.thing }}."
            """
        )
        world.anthropic.respond { request in
            .text("Rex the \(request.systemPrompt?.contains("dog") == true ? "dog" : "?")")
        }
        world.openAI.respond { _ in .json(#"{"kind": "dog"}"#) }
        let put = try await world.client.send(
            .put,
            "/v1/workflows/pets",
            json: """
                name: pets
                steps:
                  - id: classify
                    llm: {model: local/m1, prompt: "Classify {{ input.text }}", output_schema: {type: object, required: [kind], properties: {kind: {type: string}}}}
                  - id: name
                    needs: [classify]
                    agent: {name: namer, input: {thing: "{{ steps.classify.output.json.kind }}"}}
                output: "{{ steps.name.output }}"
                """,
            contentType: "application/yaml"
        )
        expectStatus(.created, put)
        let run = try await world.client.send(
            .post,
            "/v1/workflows/pets/runs?wait=20s",
            json: #"{"input": {"text": "woof"}}"#
        ).json
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "Rex the dog")
        #expect(world.openAI.lastBody?["messages"]?.arrayValue?.first?["content"] == "Classify woof")

        // A workflow's agent step must give the agent the input its schema asks for.
        try await world.putAgent(
            "strict-namer",
            """
            name: strict-namer
            model: claude/haiku
            input: {type: object, required: [thing], properties: {thing: {type: string}}}
            """
        )
        expectStatus(
            .created,
            try await world.client.send(
                .put,
                "/v1/workflows/bad-pets",
                json: """
                    steps:
                      - {id: name, agent: {name: strict-namer, input: {animal: cat}}}
                    """,
                contentType: "application/yaml"
            )
        )
        let calls = world.anthropic.callCount
        let refused = try await world.client.send(
            .post,
            "/v1/workflows/bad-pets/runs?wait=20s",
            json: #"{"input": {}}"#
        ).json
        let children = try await world.client.send(.get, "/v1/runs?agent=strict-namer").json
        #expect(refused["status"] == "failed", "\(refused) \(children)")
        #expect(refused["error"]?["code"] == "child_failed", "\(refused["error"] ?? .null)")
        #expect(refused["error"]?["message"]?.stringValue?.contains("input schema") == true)
        #expect(world.anthropic.callCount == calls, "the agent never asked its model")
    }

    /// Threads keep a conversation across runs; a second run at once on one thread is refused.
    static func threadsRemember(_ world: AgentWorld) async throws {
        try await world.putAgent(
            "chat",
            """
            name: chat
            model: local/m1
            instructions: Chat.
            """
        )
        let thread = try await world.client.send(.post, "/v1/threads", json: #"{"metadata": {"user": "u1"}}"#)
        expectStatus(.created, thread)
        let threadID = try #require(thread.json["id"]?.stringValue)
        world.openAI.respond { request in .text("you said \(request.messages.count) things") }
        let first = try await world.runAgent("chat", input: "my name is Ann", thread: threadID)
        #expect(first["status"] == "succeeded")
        #expect(first["thread"] == .string(threadID))
        let second = try await world.runAgent("chat", input: "what is my name?", thread: threadID)
        #expect(second["status"] == "succeeded")
        let seen = world.openAI.requests.last?.messages.compactMap { $0["content"]?.stringValue } ?? []
        #expect(seen == ["Chat.", "my name is Ann", "you said 2 things", "what is my name?"])
        let messages =
            try await world.client.send(.get, "/v1/threads/\(threadID)/messages").json["items"]?.arrayValue ?? []
        #expect(messages.count == 4)
        #expect(messages.first?["role"] == "user")

        // A run that stays busy (its model takes 10 s) holds the thread.
        try await world.putProvider(
            "patient",
            kind: "openai",
            baseURL: world.openAI.baseURL,
            secret: "openai_key",
            models: ["m1"],
            timeout: "30s"
        )
        try await world.putAgent("slowchat", "{\"model\": \"patient/m1\"}")
        world.openAI.respond { _ in .hang(milliseconds: 10_000) }
        let slow = try await world.client.send(
            .post,
            "/v1/agents/slowchat/runs",
            json: #"{"input": "slow", "thread": "\#(threadID)"}"#
        )
        expectStatus(.created, slow)
        let busy = try await world.client.send(
            .post,
            "/v1/agents/chat/runs",
            json: #"{"input": "again", "thread": "\#(threadID)"}"#
        )
        #expect(busy.status == .conflict)
        let missing = try await world.client.send(
            .post,
            "/v1/agents/chat/runs",
            json: #"{"input": "x", "thread": "thr_missing"}"#
        )
        #expect(missing.status == .notFound)
    }

    /// A tool that needs approval waits for the `approve` signal naming the call and its exact arguments.
    static func approvalBindsArguments(_ world: AgentWorld) async throws {
        try await world.putCarefulAgent { request in "result: \(request.lastToolResult ?? "")" }
        /// Starts a run and sends an approval for other arguments, then `approved` for the right ones.
        func run(approving approved: Bool) async throws -> JSONValue {
            let started = try await world.client.send(.post, "/v1/agents/careful/runs", json: #"{"input": "pay"}"#)
            let runID = try #require(started.json["id"]?.stringValue)
            var request: JSONValue?
            for _ in 0..<800 where request == nil {
                request = try await world.events(runID).first { $0["type"] == "tool.approval_requested" }
                if request == nil { try await Task.sleep(for: .milliseconds(25)) }
            }
            let data = try #require(request?["data"])
            #expect(data["arguments"] == ["amount": 10])
            let callID = try #require(data["call_id"]?.stringValue)
            let digest = data["arguments_digest"]?.stringValue ?? ""
            let signals = "/v1/runs/\(runID)/signals/approve"
            let wrong = #"{"approved": true, "data": {"call_id": "\#(callID)", "arguments_digest": "0000"}}"#
            expectStatus(.accepted, try await world.client.send(.post, signals, json: wrong))
            let right =
                #"{"approved": \#(approved), "data": {"call_id": "\#(callID)", "arguments_digest": "\#(digest)"}}"#
            expectStatus(.accepted, try await world.client.send(.post, signals, json: right))
            var finished = try await world.client.send(.get, "/v1/runs/\(runID)").json
            for _ in 0..<400 where finished["status"] != "succeeded" && finished["status"] != "failed" {
                try await Task.sleep(for: .milliseconds(25))
                finished = try await world.client.send(.get, "/v1/runs/\(runID)").json
            }
            #expect(finished["status"] == "succeeded", "\(finished)")
            return finished
        }
        // Approving other arguments approves nothing: the refusal that follows it is the decision taken.
        let refused = try await run(approving: false)
        #expect(world.http.calls("/count/pay") == 0)
        #expect(refused["output"]?.stringValue?.contains("A person refused this call.") == true, "\(refused)")
        // The right arguments approved: the call is made once.
        _ = try await run(approving: true)
        #expect(world.http.calls("/count/pay") == 1)
    }

    /// A provider whose address the egress policy refuses is never called.
    static func egressRefusesProviders(_ world: AgentWorld) async throws {
        try await world.putProvider(
            "metadata",
            kind: "openai",
            baseURL: "http://169.254.169.254/v1",
            secret: nil,
            models: ["m"]
        )
        let answer = try await world.client.send(
            .post,
            "/v1/chat/completions",
            json: #"{"model": "metadata/m", "messages": [{"role": "user", "content": "hi"}]}"#
        )
        #expect(answer.status == .badGateway)
        #expect(answer.json["detail"]?.stringValue?.contains("egress_denied") == true, "\(answer.json)")

        // An http tool aimed at a private address is refused too, its refusal is audited, and the model is told.
        try await world.putAgent(
            "prober",
            """
            name: prober
            model: local/m1
            tools:
              - http: {name: probe, url: "http://10.0.0.1/admin"}
            """
        )
        world.openAI.respond { request in
            request.toolResults.isEmpty ? .toolCall("probe") : .text(request.lastToolResult ?? "")
        }
        let run = try await world.runAgent("prober", input: "probe")
        #expect(run["status"] == "succeeded")
        #expect(run["output"]?.stringValue?.contains("egress_denied") == true, "\(run["output"] ?? .null)")
        let audit = try await world.client.send(.get, "/v1/audit?action=egress.denied").json["items"]?.arrayValue ?? []
        #expect(audit.count == 2, "\(audit)")
        #expect(audit.contains { $0["details"]?["url"]?.stringValue == "http://10.0.0.1/admin" })
    }

    /// Definitions are validated with pointers; agents are versioned; other organizations' resources are unseen.
    static func definitionsAndProvidersAreValidated(_ world: AgentWorld) async throws {
        let bad = try await world.client.send(
            .put,
            "/v1/agents/bad",
            json: """
                name: bad
                model: gpt
                tools: [{shell: {}}]
                max_turns: 0
                """,
            contentType: "application/yaml"
        )
        #expect(bad.status == .unprocessableContent)
        let pointers = Set(bad.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? [])
        #expect(pointers.isSuperset(of: ["/model", "/tools/0/shell", "/max_turns"]), "\(pointers)")
        let provider = try await world.client.send(
            .put,
            "/v1/providers/x",
            json: #"{"kind": "gemini", "base_url": "ftp://x", "models": []}"#
        )
        #expect(provider.status == .unprocessableContent)
        #expect(
            Set(provider.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? []) == [
                "/kind", "/base_url", "/models",
            ]
        )
        let listed = try await world.client.send(.get, "/v1/providers").json
        #expect(listed.canonicalText.contains("sk-openai-test") == false, "keys never leave")

        let v1 = try await world.putAgent("versioned", "{\"model\": \"local/m1\", \"instructions\": \"one\"}")
        let same = try await world.client.send(
            .put,
            "/v1/agents/versioned",
            json: "{\"model\": \"local/m1\", \"instructions\": \"one\"}"
        )
        #expect(same.status == .ok)
        let v2 = try await world.putAgent("versioned", "{\"model\": \"local/m1\", \"instructions\": \"two\"}")
        #expect(v1["version"] == 1)
        #expect(v2["version"] == 2)
        let old = try await world.client.send(.get, "/v1/agents/versioned?version=1").json
        #expect(old["definition"]?["instructions"] == "one")
        let agents =
            try await world.client.send(.get, "/v1/agents").json["items"]?.arrayValue?.compactMap {
                $0["name"]?.stringValue
            } ?? []
        #expect(agents.contains("versioned"))
        let workflows = try await world.client.send(.get, "/v1/workflows").json["items"]?.arrayValue ?? []
        #expect(
            workflows.allSatisfy { $0["name"]?.stringValue?.hasPrefix("agent:") == false },
            "agents are not listed as workflows"
        )
        #expect(
            try await world.client.send(.post, "/v1/workflows/agent:versioned/runs", json: "{}").status == .notFound
        )
        let inline = try await world.client.send(
            .put,
            "/v1/workflows/inline",
            json: #"{"steps": [{"id": "a", "agent_loop": {"name": "inline", "model": "local/m1"}}]}"#
        )
        #expect(inline.status == .unprocessableContent)
        #expect(inline.json["errors"]?.arrayValue?.first?["pointer"] == "/steps/0/agent_loop")
    }
}
