import CaravanCore
import CaravanTestSupport
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite("Hostile input to the gateway and agents")
struct HostileAgentInputTests {
    /// (method, path, content type, body, expected status): the gateway's validation answers 400 as OpenAI does.
    static let cases: [(HTTPRequest.Method, String, String, String, Int)] = [
        (.post, "/v1/chat/completions", "application/json", "[]", 400),
        (.post, "/v1/chat/completions", "application/json", #"{"model": "local/m1"}"#, 400),
        (.post, "/v1/chat/completions", "application/json", #"{"model": "local/m1", "messages": "hi"}"#, 400),
        (
            .post, "/v1/chat/completions", "application/json",
            #"{"model": 7, "messages": [{"role": "user", "content": "hi"}]}"#, 400
        ),
        (
            .post, "/v1/chat/completions", "application/json",
            #"{"model": "local/m1", "messages": [{"role": "user", "content": {"x": 1}}]}"#, 400
        ),
        (
            .post, "/v1/chat/completions", "application/json",
            #"{"model": "local/m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}"#, 400
        ),
        (.post, "/v1/chat/completions", "application/json", String(repeating: "[", count: 5_000), 400),
        (.put, "/v1/agents/a", "application/yaml", "a: &a [*a, *a, *a]\nb: [*a, *a, *a, *a]", 400),
        (.put, "/v1/agents/a", "application/yaml", "model: local/m1\ninstructions: \"{{#open}}\"", 422),
        (
            .put, "/v1/agents/a", "application/json",
            #"{"model": "local/m1", "tools": [{"http": {"name": "../../etc", "url": "file:///etc/passwd"}}]}"#, 422
        ),
        (
            .put, "/v1/agents/a", "application/json",
            #"{"model": "local/m1", "tools": [{"mcp": {"name": "m", "command": []}}]}"#, 422
        ),
        (.put, "/v1/agents/a", "application/json", #"{"model": "local/m1", "budget": {"tokens": -1}}"#, 422),
        (.put, "/v1/agents/a", "application/json", #"{"model": "local/m1", "max_turns": 1000000}"#, 422),
        (.put, "/v1/agents/a", "text/plain", "model: local/m1", 415),
        (.put, "/v1/agents/a%2F..", "application/json", #"{"model": "local/m1"}"#, 422),
        (
            .put, "/v1/providers/p", "application/json",
            #"{"kind": "openai", "base_url": "javascript:alert(1)", "models": ["m"]}"#, 422
        ),
        (
            .put, "/v1/providers/p", "application/json",
            #"{"kind": "openai", "base_url": "https://x.example", "models": ["m"], "max_retries": 99}"#, 422
        ),
        (
            .put, "/v1/providers/p", "application/json",
            #"{"kind": "openai", "base_url": "https://x.example", "models": ["m"], "api_key_secret": "../x"}"#, 422
        ),
        (.put, "/v1/budget", "application/json", #"{"cost_usd": "lots"}"#, 422),
        (.post, "/v1/threads", "application/json", #"{"metadata": "not an object"}"#, 422),
        (.post, "/v1/agents/nope/runs", "application/json", #"{"input": {}, "thread": 5}"#, 422),
        (.get, "/v1/usage?group_by=planet", "application/json", "", 422),
        (.get, "/v1/usage?from=yesterday", "application/json", "", 422),
        (.get, "/v1/threads/thr_x/messages?cursor=%%%", "application/json", "", 404),
    ]

    @Test("Malformed, oversized or hostile bodies get a problem+json 4xx, store nothing, and the server stays up")
    func hostileBodies() async throws {
        try await withTestApplication(.sqlite) { client, _ in
            for (method, path, contentType, body, status) in Self.cases {
                let answer = try await client.send(
                    method,
                    path,
                    json: body.isEmpty ? nil : body,
                    contentType: contentType
                )
                #expect(
                    Int(answer.status.code) == status,
                    "\(method) \(path) \(body.prefix(80)): \(answer.status) \(answer.json)"
                )
                #expect(answer.headers[.contentType] == "application/problem+json", "\(method) \(path)")
                #expect(answer.json["code"]?.stringValue?.isEmpty == false)
            }
            #expect(try await client.send(.get, "/v1/agents").json["items"] == [])
            #expect(try await client.send(.get, "/v1/providers").json["items"] == [])
            #expect(try await client.send(.get, "/healthz").status == .ok)
        }
    }
}
