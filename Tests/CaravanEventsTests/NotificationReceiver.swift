import CaravanCore
import CaravanEngine
import CaravanHarness
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

/// A loopback receiver for Slack-compatible and JSON webhooks that records every request (path, JSON body,
/// `Idempotency-Key`). Routes (POST): `/slack`, `/hook`: 200; `/flaky`: 500 to the first request, then 200;
/// `/bad`: 400 with a short body.
final class NotificationReceiver: Sendable {
    struct Request: Sendable {
        var path: String
        var body: JSONValue
        var idempotencyKey: String?
        var contentType: String?
    }

    private let state = Mutex<[Request]>([])
    private let portBox = Mutex(0)

    var baseURL: String { "http://127.0.0.1:\(portBox.withLock { $0 })" }
    var requests: [Request] { state.withLock { $0 } }
    func requests(_ path: String) -> [Request] { requests.filter { $0.path == path } }

    static func with<T: Sendable>(_ body: @Sendable (NotificationReceiver) async throws -> T) async throws -> T {
        let receiver = NotificationReceiver()
        let router = Router()
        router.post("/:name") { request, context in
            let bytes = try await request.body.collect(upTo: 4 << 20)
            let body =
                (try? JSONValue(parsing: bytes.readableBytesView, maxDepth: 64)) ?? .string(String(buffer: bytes))
            let count = receiver.state.withLock { state -> Int in
                state.append(
                    Request(
                        path: request.uri.path,
                        body: body,
                        idempotencyKey: request.headers[HTTPField.Name("Idempotency-Key")!],
                        contentType: request.headers[.contentType]
                    )
                )
                return state.filter { $0.path == request.uri.path }.count
            }
            switch context.parameters.get("name") {
            case "flaky" where count == 1: return Response(status: .internalServerError)
            case "bad":
                return Response(
                    status: .badRequest,
                    body: .init(byteBuffer: ByteBuffer(string: "invalid_payload: no text field"))
                )
            default: return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok")))
            }
        }
        return try await withLoopbackServer(router) { port in
            receiver.portBox.withLock { $0 = port }
            return try await body(receiver)
        }
    }
}

/// The SMTP account and vault secret the tests configure.
enum NotifyFixture {
    static let username = "caravan-mailer"
    static let password = "Sm7p-pa55word-never-shown"
    static let secretName = "SMTP_PASSWORD"

    /// Runs `body` with a notification receiver, a test SMTP server (`options`) and the application on `backend`,
    /// which may reach loopback (`--egress-allow 127.0.0.1`).
    static func with(
        _ backend: TestBackend,
        smtp options: TestSMTPServer.Options = defaultSMTP,
        _ body: @escaping @Sendable (any TestClientProtocol, NotificationReceiver, TestSMTPServer) async throws -> Void
    ) async throws {
        try await NotificationReceiver.with { receiver in
            try await TestSMTPServer.with(options) { smtp in
                try await withTestApplication(
                    backend,
                    configure: { configuration in
                        configuration.egressAllow = "127.0.0.1"
                        configuration.engine.pollInterval = .init(milliseconds: 50)
                    }
                ) { client, _ in
                    try await body(client, receiver, smtp)
                }
            }
        }
    }

    static var defaultSMTP: TestSMTPServer.Options {
        var options = TestSMTPServer.Options()
        options.account = (username, password)
        return options
    }

    /// Stores the password secret and the SMTP settings pointing at `smtp`.
    static func configureSMTP(
        _ client: any TestClientProtocol,
        _ smtp: TestSMTPServer,
        security: String = "starttls",
        host: String = "127.0.0.1"
    ) async throws {
        let secret = try await client.send(
            .put,
            "/v1/secrets/\(secretName)",
            json: #"{"value": "\#(password)"}"#
        )
        #expect(secret.status == .created || secret.status == .ok)
        let settings = try await client.send(
            .put,
            "/v1/notifications/smtp",
            json: """
                {"host": "\(host)", "port": \(smtp.port), "security": "\(security)", "username": "\(username)",
                 "password_secret": "\(secretName)", "from": "Caravan Alerts <ops@example.com>",
                 "insecure_skip_verify": true}
                """
        )
        #expect(settings.status == .created || settings.status == .ok, "\(settings.json)")
    }

    static func putWorkflow(
        _ client: any TestClientProtocol,
        _ name: String,
        _ yaml: String
    ) async throws -> (status: HTTPResponse.Status, json: JSONValue) {
        let answer = try await client.send(
            .put,
            "/v1/workflows/\(name)",
            json: yaml,
            contentType: "application/yaml"
        )
        return (answer.status, answer.json)
    }

    /// Starts a run and waits until it has finished.
    static func run(_ client: any TestClientProtocol, _ name: String, input: String = "{}") async throws -> JSONValue {
        let started = try await client.send(.post, "/v1/workflows/\(name)/runs?wait=20s", json: #"{"input":\#(input)}"#)
        #expect(started.status == .created, "\(started.json)")
        guard let id = started.json["id"]?.stringValue else { return started.json }
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let run = try await client.send(.get, "/v1/runs/\(id)").json
            if let status = run["status"]?.stringValue, ["succeeded", "failed", "cancelled"].contains(status) {
                return run
            }
            if ContinuousClock.now > deadline {
                Issue.record("run \(id) did not finish: \(run["status"] ?? .null)")
                return run
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    static func step(_ run: JSONValue, _ id: String) -> JSONValue? {
        run["steps"]?.arrayValue?.first { $0["id"] == .string(id) }
    }

    /// Decodes quoted-printable text (soft breaks removed, `=XX` decoded as UTF-8).
    static func decodeQuotedPrintable(_ text: String) -> String {
        var bytes: [UInt8] = []
        let source = Array(text.replacingOccurrences(of: "=\r\n", with: "").utf8)
        var index = 0
        while index < source.count {
            if source[index] == 0x3D, index + 2 < source.count,
                let value = UInt8(String(decoding: source[(index + 1)...(index + 2)], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                index += 3
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Decodes RFC 2047 `=?utf-8?B?…?=` words of a header value (joined, as an unfolded header shows them).
    static func decodeEncodedWords(_ value: String) -> String {
        let words = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard words.allSatisfy({ $0.hasPrefix("=?utf-8?B?") && $0.hasSuffix("?=") }) else { return value }
        var bytes: [UInt8] = []
        for word in words {
            let payload = word.dropFirst(10).dropLast(2)
            bytes += Data(base64Encoded: String(payload)).map(Array.init) ?? []
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
