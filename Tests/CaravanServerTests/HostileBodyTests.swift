import CaravanCore
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Hostile request bodies")
struct HostileBodyTests {
    static let definition = "steps:\n  - {id: a, template: x}\n"

    @Test("A 20 MB body is refused with 413 payload_too_large, and nothing is stored")
    func hugeBody() async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            let huge = #"{"input": ""# + String(repeating: "x", count: 20 << 20) + #""}"#
            _ = try await client.send(.put, "/v1/workflows/big", json: Self.definition, contentType: "application/yaml")
            let response = try await client.send(.post, "/v1/workflows/big/runs", json: huge)
            #expect(response.status == .contentTooLarge)
            #expect(response.json["code"] == "payload_too_large")
            let runs = try await client.send(.get, "/v1/runs")
            #expect(runs.json["items"]?.arrayValue?.isEmpty == true)
            #expect(try await client.send(.get, "/healthz").status == .ok)
        }
    }

    @Test("A body over the configured limit is refused even without Content-Length (chunked)")
    func chunkedBody() async throws {
        try await withTestApplication(.sqlite, mode: .live, configure: { $0.maxBodyBytes = 1000 }) { client, _ in
            let port = try #require(client.port)
            let connection = try RawHTTPConnection(port: port)
            let key = try #require(client as? AuthenticatedClient).apiKey
            var request =
                "PUT /v1/workflows/w HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            for _ in 0..<10 { request += "200\r\n" + String(repeating: " ", count: 512) + "\r\n" }
            request += "0\r\n\r\n"
            connection.send(request)
            let answer = try await connection.receive(timeout: .seconds(5))
            #expect(answer.text.hasPrefix("HTTP/1.1 413") || answer.closed)
        }
    }

    @Test("A 1 GB document upload is refused by its announced size before its body is read, and nothing is stored")
    func hugeDocumentUpload() async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            let port = try #require(client.port)
            let key = try #require(client as? AuthenticatedClient).apiKey
            let collection = try await client.send(
                .put,
                "/v1/collections/docs",
                json: #"{"embedding_model": "local/e"}"#
            )
            #expect(collection.status == .created)
            let head =
                "POST /v1/collections/docs/documents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\n"
                + "Content-Type: multipart/form-data; boundary=XyZ\r\n"
            let announced = try RawHTTPConnection(port: port)
            announced.send(head + "Content-Length: 1073741824\r\n\r\n--XyZ\r\n")
            let refused = try await announced.receive(timeout: .seconds(5))
            #expect(refused.text.hasPrefix("HTTP/1.1 413"), "\(refused.text)")
            #expect(refused.text.contains("payload_too_large"))
            let documents = try await client.send(.get, "/v1/collections/docs/documents")
            #expect(documents.status == .ok && documents.json["items"] == [], "\(documents.json)")
            #expect(try await client.send(.get, "/healthz").status == .ok)
        }
    }

    @Test(
        "Malformed bodies get 400 invalid_json saying where they broke",
        arguments: [
            #"{"input": }"#,
            #"{"input": [1, 2"#,
            "not json at all",
            String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000),
            String(repeating: #"{"a":"#, count: 10_000) + "1" + String(repeating: "}", count: 10_000),
        ]
    )
    func malformed(body: String) async throws {
        try await withTestApplication(.sqlite) { client, _ in
            _ = try await client.send(.put, "/v1/workflows/w", json: Self.definition, contentType: "application/yaml")
            let response = try await client.send(.post, "/v1/workflows/w/runs", json: body)
            #expect(response.status == .badRequest)
            #expect(response.json["code"] == "invalid_json")
            #expect(response.json["detail"]?.stringValue?.isEmpty == false)
        }
    }

    @Test("Wrong shapes get 422 with the field; wrong media types get 415")
    func wrongShapes() async throws {
        try await withTestApplication(.sqlite) { client, _ in
            _ = try await client.send(.put, "/v1/workflows/w", json: Self.definition, contentType: "application/yaml")
            let array = try await client.send(.post, "/v1/workflows/w/runs", json: "[1]")
            #expect(array.status == .unprocessableContent)
            let extra = try await client.send(.post, "/v1/workflows/w/runs", json: #"{"input": {}, "inptu": 1}"#)
            #expect(extra.json["errors"]?.arrayValue?.first?["pointer"] == "/inptu")
            let xml = try await client.send(
                .post,
                "/v1/workflows/w/runs",
                json: "<run/>",
                contentType: "application/xml"
            )
            #expect(xml.status == .unsupportedMediaType)
            #expect(xml.json["code"] == "unsupported_media_type")
            let badDefinition = try await client.send(
                .put,
                "/v1/workflows/w2",
                json: "steps: [{id: a, sleep: never}]",
                contentType: "application/yaml"
            )
            #expect(badDefinition.status == .unprocessableContent)
            #expect(badDefinition.json["code"] == "validation_failed")
            #expect(badDefinition.json["errors"]?.arrayValue?.first?["pointer"] == "/steps/0/sleep")
            // Nothing of the refused definition was stored.
            #expect(try await client.send(.get, "/v1/workflows/w2").status == .notFound)
            let badWait = try await client.send(.post, "/v1/workflows/w/runs?wait=forever", json: "{}")
            #expect(badWait.status == .unprocessableContent)
        }
    }
}
