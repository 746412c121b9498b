import CaravanCore
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Hostile connections")
struct HostileConnectionTests {
    @Test("A 1 MB header is refused and the server goes on serving")
    func hugeHeader() async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            let port = try #require(client.port)
            let connection = try RawHTTPConnection(port: port)
            let header = String(repeating: "a", count: 1 << 20)
            connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: \(header)\r\n\r\n")
            let answer = try await connection.receive(timeout: .seconds(10))
            #expect(answer.closed || answer.text.hasPrefix("HTTP/1.1 4"), "got: \(answer.text.prefix(80))")
            #expect(!answer.text.hasPrefix("HTTP/1.1 200"))
            let response = try await client.execute(uri: "/healthz", method: .get)
            #expect(response.status == .ok)
        }
    }

    @Test("Headers dripped a byte at a time are cut off by the idle timeout")
    func slowHeaders() async throws {
        try await withTestApplication(
            .sqlite,
            mode: .live,
            signUp: false,
            configure: { $0.idleTimeout = .init(milliseconds: 500) }
        ) {
            client,
            _ in
            let port = try #require(client.port)
            let connection = try RawHTTPConnection(port: port)
            connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            var closed = false
            for _ in 0..<40 where !closed {
                // One header byte every 100 ms: always active, never finished.
                if !connection.send("x") { closed = true }
                if try await connection.receive(timeout: .milliseconds(100)).closed { closed = true }
            }
            #expect(closed)
        }
    }

    @Test("A body dripped a byte at a time is cut off by the read timeout")
    func slowBody() async throws {
        try await withTestApplication(
            .sqlite,
            mode: .live,
            configure: { $0.requestReadTimeout = .init(milliseconds: 500) }
        ) { client, _ in
            let port = try #require(client.port)
            let connection = try RawHTTPConnection(port: port)
            connection.send("POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
            var closed = false
            for _ in 0..<40 where !closed {
                if !connection.send("x") { closed = true }
                if try await connection.receive(timeout: .milliseconds(100)).closed { closed = true }
            }
            #expect(closed)
        }
    }

    @Test("An idle keep-alive connection is closed after the idle timeout")
    func idleConnection() async throws {
        try await withTestApplication(
            .sqlite,
            mode: .live,
            signUp: false,
            configure: { $0.idleTimeout = .init(milliseconds: 300) }
        ) {
            client,
            _ in
            let port = try #require(client.port)
            let connection = try RawHTTPConnection(port: port)
            connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            let answer = try await connection.receive(timeout: .seconds(3))
            #expect(answer.text.hasPrefix("HTTP/1.1 200"))
            #expect(answer.closed)
        }
    }
}
