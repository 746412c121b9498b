import CaravanCore
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// What every answer carries, how methods a path does not declare are answered, and whether the OpenAPI document
/// says what the server accepts.
@Suite("HTTP contract")
struct HTTPContractTests {
    static let definition = "steps:\n  - {id: a, template: x}\n"

    @Test("Every answer says nosniff; every /v1 answer, tokens and keys included, says no-store")
    func securityHeaders() async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            let health = try await client.send(.get, "/healthz")
            #expect(health.headers[.xContentTypeOptions] == "nosniff")
            let login = try await client.send(
                .post,
                "/v1/auth/login",
                json: #"{"email": "owner@example.com", "password": "\#(AuthenticatedClient.ownerPassword)"}"#
            )
            #expect(login.status == .ok)
            #expect(login.json["refresh_token"]?.stringValue != nil)
            #expect(login.headers[.cacheControl] == "no-store")
            #expect(login.headers[.xContentTypeOptions] == "nosniff")
            let refresh = try await client.send(
                .post,
                "/v1/auth/refresh",
                json: #"{"refresh_token": "\#(login.json["refresh_token"]?.stringValue ?? "")"}"#
            )
            #expect(refresh.status == .ok)
            #expect(refresh.headers[.cacheControl] == "no-store")
            let key = try await client.send(.post, "/v1/api-keys", json: #"{"name": "ci", "role": "viewer"}"#)
            #expect(key.status == .created)
            #expect(key.headers[.cacheControl] == "no-store")
            let session = try #require(client as? AuthenticatedClient).accessToken
            let totp = try await client.send(.post, "/v1/auth/mfa/totp", headers: [.authorization: "Bearer \(session)"])
            #expect(totp.status == .created)
            #expect(totp.headers[.cacheControl] == "no-store")
            // Errors too: a problem answer is no more cacheable than a success.
            let missing = try await client.send(.get, "/v1/runs/run_missing")
            #expect(missing.status == .notFound)
            #expect(missing.headers[.cacheControl] == "no-store")
            #expect(missing.headers[.xContentTypeOptions] == "nosniff")
            let unknown = try await client.send(.get, "/nowhere")
            #expect(unknown.headers[.xContentTypeOptions] == "nosniff")
        }
    }

    @Test(
        "A method a known path does not declare is 405 with Allow; an unknown path stays 404",
        arguments: [
            ("TRACE", "/v1/runs", "GET, HEAD"), ("DELETE", "/v1/runs", "GET, HEAD"), ("TRACE", "/healthz", "GET, HEAD"),
            ("PATCH", "/v1/runs/run_1", "GET, HEAD"), ("GET", "/v1/auth/login", "POST"),
            ("POST", "/v1/workflows/hello", "DELETE, GET, HEAD, PUT"),
        ]
    )
    func methodNotAllowed(method: String, path: String, allow: String) async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            let port = try #require(client.port)
            let answer = try await fetch(
                "http://127.0.0.1:\(port)\(path)",
                method: method,
                headers: client.authorization
            )
            #expect(answer.status == 405, "\(answer.body)")
            #expect(answer.header("Allow") == allow)
            #expect(answer.header("Content-Type") == "application/problem+json")
            let problem = try JSONValue(parsing: Array(answer.body.utf8))
            #expect(problem["code"] == "method_not_allowed")
            #expect(problem["status"] == 405)
            #expect(problem["detail"]?.stringValue?.contains(method) == true)
        }
    }

    @Test("HEAD is answered wherever GET is, without a body")
    func head() async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            let port = try #require(client.port)
            let answer = try await fetch(
                "http://127.0.0.1:\(port)/v1/runs",
                method: "HEAD",
                headers: client.authorization
            )
            #expect(answer.status == 200)
            #expect(answer.body.isEmpty)
        }
    }

    @Test("An unknown path is 404 whatever the method")
    func unknownPath() async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            let port = try #require(client.port)
            for method in ["GET", "TRACE", "DELETE"] {
                // Every other path is the console's, whose unknown pages are 404 too.
                for path in ["/v1/nothing", "/v1/runs/a/b/c/d", "/nowhere", "/runs/a/b/c"] {
                    let answer = try await fetch(
                        "http://127.0.0.1:\(port)\(path)",
                        method: method,
                        headers: client.authorization
                    )
                    #expect(answer.status == 404, "\(method) \(path): \(answer.body)")
                    #expect(answer.header("Allow") == nil)
                }
            }
        }
    }

    /// The operation `operationID` of the document.
    static func operation(_ document: JSONValue, _ operationID: String) -> JSONValue? {
        for (_, item) in document["paths"]?.objectValue ?? [:] {
            for (_, operation) in item.objectValue ?? [:] where operation["operationId"]?.stringValue == operationID {
                return operation
            }
        }
        return nil
    }

    static func queryParameters(_ document: JSONValue, _ operationID: String) -> Set<String> {
        Set(
            (operation(document, operationID)?["parameters"]?.arrayValue ?? []).compactMap { parameter in
                parameter["in"] == "query" ? parameter["name"]?.stringValue : nil
            }
        )
    }

    @Test(
        "The OpenAPI document lists each list's query parameters",
        arguments: [
            ("listRuns", ["limit", "cursor", "workflow", "status", "agent", "from", "to"]),
            ("getUsage", ["from", "to", "group_by"]),
            ("getWorkflow", ["version"]), ("getAgent", ["version"]),
            ("listWorkflows", ["limit", "cursor"]), ("listAgents", ["limit", "cursor"]),
            ("listRunEvents", ["after", "limit"]),
            ("streamEvents", ["after", "limit", "types", "workflow", "agent", "run"]),
            ("listThreadMessages", ["limit", "cursor"]), ("listAudit", ["limit", "cursor", "action"]),
            ("listSecrets", ["limit", "cursor"]), ("listAPIKeys", ["limit", "cursor"]),
            ("listMembers", ["limit", "cursor"]),
            ("startRun", ["wait"]), ("startAgentRun", ["wait"]),
        ]
    )
    func queryParameters(operationID: String, expected: [String]) async throws {
        try await withTestApplication(.sqlite, signUp: false) { client, _ in
            let document = try await client.send(.get, "/openapi.json").json
            #expect(Self.queryParameters(document, operationID) == Set(expected))
        }
    }

    @Test("The document's request schemas carry the server's limits and refuse unknown fields where the server does")
    func requestSchemas() async throws {
        try await withTestApplication(.sqlite, signUp: false) { client, _ in
            let document = try await client.send(.get, "/openapi.json").json
            func schema(_ operationID: String) -> JSONValue? {
                Self.operation(document, operationID)?["requestBody"]?["content"]?["application/json"]?["schema"]
            }
            for operationID in [
                "signup", "login", "refreshSession", "changePassword", "verifyTOTP", "acceptInvitation",
                "createOrganization",
                "updateOrganization", "inviteMember", "updateMember", "createAPIKey", "putSecret", "startRun",
                "startAgentRun",
                "createThread", "putBudget", "putProvider", "putWorkflow",
            ] {
                #expect(schema(operationID)?["additionalProperties"] == false, "\(operationID)")
            }
            #expect(schema("signup")?["properties"]?["email"]?["maxLength"] == 320)
            #expect(schema("login")?["properties"]?["totp"]?["maxLength"] == 64)
            #expect(schema("createAPIKey")?["properties"]?["role"]?["enum"]?.arrayValue?.contains("owner") == true)
            #expect(schema("startAgentRun")?["properties"]?["thread"]?["maxLength"] == 100)
            #expect(schema("createOrganization")?["properties"]?["name"]?["maxLength"] == 100)
            // Path names carry the server's pattern, so that generated names are ones the server takes.
            let workflowName = Self.operation(document, "putWorkflow")?["parameters"]?.arrayValue?.first {
                $0["name"] == "name"
            }
            #expect(workflowName?["schema"]?["pattern"] == "^[a-z0-9-]{1,64}$")
            // The body of POST /v1/threads is optional, and the server takes a request without one.
            #expect(Self.operation(document, "createThread")?["requestBody"]?["required"] == false)
            #expect(Self.operation(document, "startRun")?["requestBody"]?["required"] == true)
        }
    }

    @Test("GET /v1/usage answers {items, next_cursor} as its schema says; POST /v1/threads takes no body")
    func answersMatchTheDocument() async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            let usage = try await client.send(.get, "/v1/usage?group_by=day")
            #expect(usage.status == .ok)
            #expect(usage.json["next_cursor"] == .null)
            #expect(usage.json.objectValue?.keys.contains("next_cursor") == true)
            #expect(usage.json["items"]?.arrayValue != nil)
            // No body and no Content-Length at all (chunked with no chunk), as well as Content-Length: 0.
            let port = try #require(client.port)
            let empty = try await fetch(
                "http://127.0.0.1:\(port)/v1/threads",
                method: "POST",
                headers: client.authorization
            )
            #expect(empty.status == 201, "\(empty.body)")
            let connection = try RawHTTPConnection(port: port)
            let key = try #require(client as? AuthenticatedClient).apiKey
            connection.send(
                "POST /v1/threads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            let chunked = try await connection.receive(timeout: .seconds(5), limit: 12)
            #expect(chunked.text.hasPrefix("HTTP/1.1 201"), "\(chunked.text)")
            let withMetadata = try await client.send(.post, "/v1/threads", json: #"{"metadata": {"user": "ada"}}"#)
            #expect(withMetadata.status == .created)
        }
    }

    @Test(
        "A key twice in one object is refused with 400 invalid_json naming it",
        arguments: [
            (#"{"input": {}, "input": {"a": 1}}"#, "input"),
            (#"{"input": {"name": "a", "x": [1, {"b": 1, "b": 2}], "name": "b"}}"#, "b"),
            (#"{"input": {"name": "a", "n\u0061me": "b"}}"#, "name"),
            (#"{"input" : {"k": 1, "k" : 2}}"#, "k"),
        ]
    )
    func duplicateKeys(body: String, key: String) async throws {
        try await withTestApplication(.sqlite) { client, _ in
            _ = try await client.send(.put, "/v1/workflows/w", json: Self.definition, contentType: "application/yaml")
            let response = try await client.send(.post, "/v1/workflows/w/runs", json: body)
            #expect(response.status == .badRequest)
            #expect(response.headers[.contentType] == "application/problem+json")
            #expect(response.json["code"] == "invalid_json")
            #expect(response.json["detail"]?.stringValue?.contains(#""\#(key)""#) == true, "\(response.json)")
            #expect(try await client.send(.get, "/v1/runs").json["items"]?.arrayValue?.isEmpty == true)
        }
    }

    @Test("The same key in different objects, or as a value, is fine; a JSON definition with a key twice is refused")
    func distinctKeys() async throws {
        try await withTestApplication(.sqlite) { client, _ in
            _ = try await client.send(.put, "/v1/workflows/w", json: Self.definition, contentType: "application/yaml")
            let fine = try await client.send(
                .post,
                "/v1/workflows/w/runs",
                json: #"{"input": {"a": {"a": 1}, "b": [{"a": 1}, {"a": "a"}], "c": "a", "d\"": 1, "d": ":"}}"#
            )
            #expect(fine.status == .created, "\(fine.json)")
            let definition = try await client.send(
                .put,
                "/v1/workflows/w2",
                json: #"{"steps": [{"id": "a", "template": "x"}], "steps": []}"#
            )
            #expect(definition.status == .badRequest)
            #expect(definition.json["code"] == "invalid_json")
            #expect(definition.json["detail"]?.stringValue?.contains(#""steps""#) == true)
        }
    }
}
