import CaravanCore
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

func json(_ buffer: ByteBuffer?) throws -> JSONValue {
    try JSONValue(parsing: Array(buffer?.readableBytesView ?? ByteBuffer().readableBytesView))
}

@Suite("System endpoints")
struct SystemEndpointTests {
    @Test("healthz answers with a Request-Id; a sane client id is kept, a hostile one replaced")
    func healthAndRequestID() async throws {
        try await withTestApplication(.sqlite) { client, _ in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.requestID]?.hasPrefix("req_") == true)
                let body = try json(response.body)
                #expect(body["status"] == "ok")
            }
            try await client.execute(uri: "/healthz", method: .get, headers: [.requestID: "trace-42.a_b"]) { response in
                #expect(response.headers[.requestID] == "trace-42.a_b")
            }
            try await client.execute(uri: "/healthz", method: .get, headers: [.requestID: "bad id\u{7f}<script>"]) {
                response in
                #expect(response.headers[.requestID]?.hasPrefix("req_") == true)
            }
        }
    }

    @Test("An unknown path is a problem+json 404 whose request_id matches the header")
    func unknownPath() async throws {
        try await withTestApplication(.sqlite) { client, _ in
            try await client.execute(uri: "/v1/nothing-here", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/problem+json")
                let problem = try json(response.body)
                #expect(problem["code"] == "not_found")
                #expect(problem["status"] == 404)
                #expect(problem["title"] == "Not Found")
                #expect(problem["detail"]?.stringValue?.isEmpty == false)
                #expect(problem["type"]?.stringValue?.isEmpty == false)
                #expect(problem["request_id"]?.stringValue == response.headers[.requestID])
            }
        }
    }

    @Test("metrics counts requests by route template and status, and reports process memory")
    func metrics() async throws {
        try await withTestApplication(.sqlite) { client, _ in
            _ = try await client.execute(uri: "/healthz", method: .get)
            _ = try await client.execute(uri: "/readyz", method: .get)
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body ?? ByteBuffer())
                #expect(text.contains(#"http_server_request_duration_count{http_route="/healthz""#))
                #expect(text.contains(#"http_response_status_code="200""#))
                #expect(text.contains("process_resident_memory_bytes"))
                #expect(text.contains(#"db_client_connections_max{db_system="sqlite"}"#))
            }
        }
    }

    @Test("openapi.json is an OpenAPI 3.1 document that lists every registered endpoint")
    func openAPI() async throws {
        try await withTestApplication(.sqlite) { client, parts in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                let document = try json(response.body)
                #expect(document["openapi"] == "3.1.0")
                let paths = try #require(document["paths"]?.objectValue)
                #expect(parts.catalog.endpoints.count >= 4)
                for endpoint in parts.catalog.endpoints {
                    let operation = paths[endpoint.path]?[endpoint.method.rawValue.lowercased()]
                    #expect(operation?["operationId"]?.stringValue == endpoint.operationID, "\(endpoint.path)")
                    #expect(operation?["responses"]?["default"] != nil)
                }
                let operationIDs = parts.catalog.endpoints.map(\.operationID)
                #expect(Set(operationIDs).count == operationIDs.count, "operation ids are unique")
            }
        }
    }
}
