import CaravanCore
import CaravanEngine
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Everything an agent check needs: the application, a fake OpenAI-compatible and a fake Anthropic provider, an
/// HTTP endpoint for tools and an MCP server over HTTP, all on loopback.
struct AgentWorld: Sendable {
    let client: any TestClientProtocol
    let openAI: FakeOpenAIServer
    let anthropic: FakeAnthropicServer
    let http: TestHTTPServer
    let mcp: FakeMCPHTTPServer
}

/// Runs an agent check on `backend`.
func withAgentWorld(
    _ backend: TestBackend,
    mode: TestingSetup = .router,
    configure: @escaping @Sendable (inout ServerConfiguration) -> Void = { _ in },
    _ body: @escaping @Sendable (AgentWorld) async throws -> Void
) async throws {
    try await FakeOpenAIServer.with(requiredAPIKey: "sk-openai-test") { openAI in
        try await FakeAnthropicServer.with(requiredAPIKey: "sk-anthropic-test") { anthropic in
            try await TestHTTPServer.with { http in
                try await FakeMCPHTTPServer.with { mcp in
                    try await withTestApplication(
                        backend,
                        mode: mode,
                        configure: { configuration in
                            configuration.egressAllow = "127.0.0.1"
                            configuration.mcpCommandAllow = mcpFixturePath
                            configuration.engine.pollInterval = .init(milliseconds: 50)
                            configure(&configuration)
                        }
                    ) { client, _ in
                        let world = AgentWorld(
                            client: client,
                            openAI: openAI,
                            anthropic: anthropic,
                            http: http,
                            mcp: mcp
                        )
                        try await world.configureProviders()
                        try await body(world)
                    }
                }
            }
        }
    }
}

extension AgentWorld {
    /// Providers `local` (the fake OpenAI server: models `m1`, `m2`) and `claude` (the fake Anthropic server:
    /// `haiku`), with their keys in secrets.
    func configureProviders(maxRetries: Int = 1) async throws {
        try await expectStatus(
            .created,
            client.send(.put, "/v1/secrets/openai_key", json: #"{"value": "sk-openai-test"}"#)
        )
        try await expectStatus(
            .created,
            client.send(.put, "/v1/secrets/anthropic_key", json: #"{"value": "sk-anthropic-test"}"#)
        )
        try await putProvider(
            "local",
            kind: "openai",
            baseURL: openAI.baseURL,
            secret: "openai_key",
            models: ["m1", "m2"],
            maxRetries: maxRetries
        )
        try await putProvider(
            "claude",
            kind: "anthropic",
            baseURL: anthropic.baseURL,
            secret: "anthropic_key",
            models: ["haiku"],
            maxRetries: maxRetries
        )
    }

    func putProvider(
        _ name: String,
        kind: String,
        baseURL: String,
        secret: String?,
        models: [String],
        maxRetries: Int = 1,
        timeout: String = "2s"
    ) async throws {
        let body: JSONValue = [
            "kind": .string(kind), "base_url": .string(baseURL),
            "api_key_secret": secret.map(JSONValue.string) ?? .null,
            "models": .array(models.map(JSONValue.string)), "max_retries": .int(Int64(maxRetries)),
            "timeout": .string(timeout),
        ]
        let answer = try await client.send(.put, "/v1/providers/\(name)", json: body.canonicalText)
        #expect(answer.status == .created || answer.status == .ok, "\(answer.json)")
    }

    @discardableResult
    func putAgent(_ name: String, _ yaml: String) async throws -> JSONValue {
        let answer = try await client.send(.put, "/v1/agents/\(name)", json: yaml, contentType: "application/yaml")
        #expect(answer.status == .created || answer.status == .ok, "\(answer.json)")
        return answer.json
    }

    /// Starts a run of `agent` and waits up to 20 s for it to end.
    func runAgent(_ name: String, input: JSONValue, thread: String? = nil) async throws -> JSONValue {
        var body: [String: JSONValue] = ["input": input]
        if let thread { body["thread"] = .string(thread) }
        let started = try await client.send(
            .post,
            "/v1/agents/\(name)/runs?wait=20s",
            json: JSONValue.object(body).canonicalText
        )
        #expect(started.status == .created || started.status == .ok, "\(started.json)")
        return started.json
    }

    func events(_ runID: String) async throws -> [JSONValue] {
        try await client.send(.get, "/v1/runs/\(runID)/events").json["items"]?.arrayValue ?? []
    }
}

func expectStatus(
    _ status: HTTPResponse.Status,
    _ answer: (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields),
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(answer.status == status, "\(answer.json)", sourceLocation: sourceLocation)
}

func eventTypes(_ events: [JSONValue]) -> [String] {
    events.compactMap { $0["type"]?.stringValue }
}

/// The `caravan-mcp-fixture` binary built beside `caravan` (an MCP server over stdio with add, echo, fail, slow).
var mcpFixturePath: String {
    URL(fileURLWithPath: CaravanProcess.binaryPath).deletingLastPathComponent().appendingPathComponent(
        "caravan-mcp-fixture"
    ).path
}

extension AgentWorld {
    /// The agent `careful`, whose one tool `pay` (an http call to `/count/pay`) needs a person's approval; the model
    /// first calls it with `{"amount": 10}`, then answers `answer(request)` once it has the tool's result.
    func putCarefulAgent(answer: @escaping @Sendable (FakeModelRequest) -> String) async throws {
        try await putAgent(
            "careful",
            """
            name: careful
            model: local/m1
            tools:
              - http: {name: pay, method: POST, url: "\(http.baseURL)/count/pay", body: {amount: "{{ args.amount }}"}, approval: true,
                       parameters: {type: object, required: [amount], properties: {amount: {type: integer}}}}
            """
        )
        openAI.respond { request in
            request.toolResults.isEmpty ? .toolCall("pay", arguments: #"{"amount": 10}"#) : .text(answer(request))
        }
    }
}

extension AgentWorld {
    /// A second organization of the test user's, and the headers that act in it.
    func otherOrganization() async throws -> HTTPFields {
        let owner = try #require(client as? AuthenticatedClient)
        let other = try await client.send(
            .post,
            "/v1/organizations",
            json: #"{"name": "Other"}"#,
            headers: [.authorization: "Bearer \(owner.accessToken)"]
        )
        return [
            .authorization: "Bearer \(owner.accessToken)",
            HTTPField.Name("Caravan-Organization")!: try #require(other.json["id"]?.stringValue),
        ]
    }
}
