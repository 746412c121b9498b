import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import Testing

/// The gateway's request log and the Responses API's streamed events, checked over HTTP on both backends.
enum GatewayLogChecks {
    /// Every call is in the log (answered, refused, failed) with its key, model, tokens, cost, latency and status;
    /// filters and pages; bodies only once the organization keeps them; admins only; other organizations see none.
    static func requestLog(_ world: AgentWorld) async throws {
        let created = try await world.client.send(.post, "/v1/api-keys", json: #"{"name": "app", "role": "developer"}"#)
        let key = try #require(created.json["key"]?.stringValue)
        let keyID = try #require(created.json["id"]?.stringValue)
        expectStatus(
            .ok,
            try await world.client.send(.put, "/v1/api-keys/\(keyID)/limits", json: #"{"models": ["local/m1"]}"#)
        )
        let asKey: HTTPFields = [.authorization: "Bearer \(key)"]
        func chat(
            _ model: String,
            stream: Bool = false,
            headers: HTTPFields = [:]
        ) async throws -> (
            status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields
        ) {
            try await world.client.send(
                .post,
                "/v1/chat/completions",
                json: #"{"model": "\#(model)", "stream": \#(stream), "messages": [{"role": "user", "content": "hi"}]}"#,
                headers: headers
            )
        }
        world.openAI.enqueue(.text("logged answer", usage: FakeUsage(input: 7, output: 3)))
        let answered = try await chat("local/m1", headers: asKey)
        expectStatus(.ok, answered)
        let refused = try await chat("local/m2", headers: asKey)
        #expect(refused.status == .forbidden)
        world.openAI.enqueue(.error(status: 400, message: "no such thing"))
        let failed = try await chat("local/m1")
        #expect(failed.status == .badRequest, "\(failed.json)")

        let log = try await world.client.send(.get, "/v1/model-requests")
        expectStatus(.ok, log)
        let items = log.json["items"]?.arrayValue ?? []
        #expect(items.count == 3, "\(log.json)")
        let ok = try #require(items.last)
        #expect(ok["model"] == "local/m1" && ok["key_id"] == .string(keyID) && ok["status"] == 200)
        #expect(ok["outcome"] == "success" && ok["endpoint"] == "chat.completions")
        #expect(ok["input_tokens"] == 7 && ok["output_tokens"] == 3 && (ok["cost_usd"]?.numberValue ?? -1) >= 0)
        #expect((ok["latency_ms"]?.numberValue ?? -1) >= 0)
        #expect(ok["request_id"]?.stringValue == answered.headers[HTTPField.Name("Request-Id")!])
        let forbidden = items[1]
        #expect(forbidden["status"] == 403 && forbidden["outcome"] == "model_not_allowed", "\(forbidden)")
        #expect(forbidden["model"] == "local/m2" && forbidden["input_tokens"] == 0)
        #expect(items[0]["status"] == 400 && items[0]["key_id"] != .string(keyID), "\(items[0])")

        // Filters and pages.
        let onlyFailed = try await world.client.send(.get, "/v1/model-requests?outcome=failed").json["items"]
        #expect(onlyFailed?.arrayValue?.count == 2)
        let byKey = try await world.client.send(.get, "/v1/model-requests?key_id=\(keyID)").json["items"]
        #expect(byKey?.arrayValue?.count == 2)
        let byModel = try await world.client.send(.get, "/v1/model-requests?model=local/m2").json["items"]
        #expect(byModel?.arrayValue?.map { $0["outcome"] } == ["model_not_allowed"])
        let first = try await world.client.send(.get, "/v1/model-requests?limit=2").json
        let cursor = try #require(first["next_cursor"]?.stringValue)
        let second = try await world.client.send(.get, "/v1/model-requests?limit=2&cursor=\(cursor)").json
        #expect(second["items"]?.arrayValue?.map { $0["id"] } == [ok["id"] ?? .null] && second["next_cursor"] == .null)
        let badModel = try await world.client.send(.get, "/v1/model-requests?model=nothing")
        #expect(
            badModel.status.code == 422 && badModel.json["errors"]?.arrayValue?.first?["pointer"] == "/model",
            "\(badModel.json)"
        )

        // No bodies until the organization keeps them.
        let okID = try #require(ok["id"]?.stringValue)
        let plain = try await world.client.send(.get, "/v1/model-requests/\(okID)")
        #expect(plain.json["request"] == .null && plain.json["response"] == .null && plain.json["model"] == "local/m1")
        let settings = try await world.client.send(
            .put,
            "/v1/model-requests/settings",
            json: #"{"log_bodies": true, "body_retention_days": 7}"#
        )
        #expect(settings.json == ["log_bodies": true, "body_retention_days": 7], "\(settings.json)")
        world.openAI.enqueue(.text("kept answer"))
        expectStatus(.ok, try await chat("local/m1"))
        world.openAI.enqueue(.text("kept stream"))
        let streamed = try await chat("local/m1", stream: true)
        expectStatus(.ok, streamed)
        world.openAI.enqueue(.error(status: 400, message: "refused upstream"))
        _ = try await chat("local/m1")
        let kept = try await world.client.send(.get, "/v1/model-requests?limit=3").json["items"]?.arrayValue ?? []
        #expect(kept.count == 3)
        var details: [JSONValue] = []
        for item in kept.reversed() {
            details.append(
                try await world.client.send(.get, "/v1/model-requests/\(item["id"]?.stringValue ?? "")").json
            )
        }
        #expect(details.allSatisfy { $0["request"]?["messages"]?.arrayValue?.first?["content"] == "hi" }, "\(details)")
        #expect(details[0]["response"]?["choices"]?.arrayValue?.first?["message"]?["content"] == "kept answer")
        #expect(
            details[1]["response"]?["choices"]?.arrayValue?.first?["message"]?["content"] == "kept stream",
            "\(details[1])"
        )
        #expect(details[2]["response"]?["error"]?["code"] == "invalid_request", "\(details[2])")

        // Admins only; bad settings refused; another organization sees nothing.
        let asDeveloper = try await world.client.send(.get, "/v1/model-requests", headers: asKey)
        #expect(asDeveloper.status == .forbidden)
        let invalid = try await world.client.send(
            .put,
            "/v1/model-requests/settings",
            json: #"{"log_bodies": true, "body_retention_days": 0}"#
        )
        #expect(
            invalid.status.code == 422
                && invalid.json["errors"]?.arrayValue?.first?["pointer"] == "/body_retention_days"
        )
        let other = try await world.otherOrganization()
        let theirs = try await world.client.send(.get, "/v1/model-requests", headers: other)
        #expect(theirs.status == .ok && theirs.json["items"] == [], "\(theirs.json)")
        #expect(try await world.client.send(.get, "/v1/model-requests/\(okID)", headers: other).status == .notFound)
        #expect(try await world.client.send(.get, "/v1/model-requests/x1").status == .notFound)
    }

    /// A streamed response sends its text and arguments as they arrive, its events numbered in order; a failure
    /// before the first token answers with its status, one after it ends the stream with `response.failed`.
    static func responsesStreaming(_ world: AgentWorld) async throws {
        func stream(
            _ input: String,
            extra: String = ""
        ) async throws -> (
            status: HTTPResponse.Status, events: [(type: String, data: JSONValue)]
        ) {
            let answer = try await world.client.send(
                .post,
                "/v1/responses",
                json: #"{"model": "local/m1", "input": "\#(input)", "stream": true\#(extra)}"#
            )
            let text = answer.json.stringValue ?? ""
            var events: [(String, JSONValue)] = []
            for block in text.components(separatedBy: "\n\n") where !block.isEmpty {
                let lines = block.components(separatedBy: "\n")
                guard let type = lines.first?.dropFirst("event: ".count), let data = lines.dropFirst().first else {
                    continue
                }
                events.append((String(type), try JSONValue(parsing: Array(data.dropFirst("data: ".count).utf8))))
            }
            return (answer.status, events)
        }
        let words = "streamed in several pieces"
        world.openAI.enqueue(.text(words))
        let text = try await stream("hi")
        #expect(text.status == .ok)
        #expect(text.events.map { $0.data["sequence_number"] } == (0..<text.events.count).map { .int(Int64($0)) })
        #expect(text.events.first?.type == "response.created" && text.events.last?.type == "response.completed")
        let deltas = text.events.filter { $0.type == "response.output_text.delta" }.compactMap {
            $0.data["delta"]?.stringValue
        }
        #expect(deltas.count > 1 && deltas.joined() == words, "as they arrive: \(deltas)")
        #expect(text.events.contains { $0.type == "response.output_text.done" && $0.data["text"] == .string(words) })
        let completed = text.events.last?.data["response"]
        #expect(completed?["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["text"] == .string(words))
        #expect(completed?["status"] == "completed" && completed?["usage"]?["input_tokens"] != nil)
        let id = try #require(completed?["id"]?.stringValue)
        #expect(try await world.client.send(.get, "/v1/responses/\(id)").json["status"] == "completed", "stored")

        world.openAI.enqueue(.toolCalls([FakeToolCall(name: "lookup", arguments: #"{"query":"caravan"}"#)]))
        let tool = try await stream(
            "look",
            extra: #", "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]"#
        )
        let fragments = tool.events.filter { $0.type == "response.function_call_arguments.delta" }.compactMap {
            $0.data["delta"]?.stringValue
        }
        #expect(fragments.count > 1 && fragments.joined() == #"{"query":"caravan"}"#, "\(fragments)")
        let added = tool.events.first { $0.type == "response.output_item.added" }?.data["item"]
        #expect(added?["type"] == "function_call" && added?["name"] == "lookup")
        #expect(tool.events.last?.data["response"]?["output"]?.arrayValue?.first?["id"] == added?["id"])

        world.openAI.enqueue(.failMidStream(text: "half an"))
        let broken = try await stream("break")
        #expect(broken.status == .ok)
        #expect(broken.events.contains { $0.type == "response.output_text.delta" })
        let last = broken.events.last
        #expect(last?.type == "response.failed" && last?.data["response"]?["status"] == "failed", "\(broken.events)")
        #expect(last?.data["response"]?["error"]?["code"] != nil)

        world.openAI.enqueue(.error(status: 400, message: "no"))
        let refused = try await world.client.send(
            .post,
            "/v1/responses",
            json: #"{"model": "local/m1", "input": "x", "stream": true}"#
        )
        #expect(refused.status == .badRequest && refused.json["error"]?["message"] != nil, "\(refused.json)")
    }
}
