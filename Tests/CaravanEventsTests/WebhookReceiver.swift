import CaravanCore
import CaravanTestSupport
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// A webhook receiver on loopback for the tests: records every request it gets (headers, body, what it answered)
/// and answers as told: always 2xx, always some status, or a failure for the first attempts of each message.
final class WebhookReceiver: Sendable {
    struct Received: Sendable {
        var messageID: String
        var timestamp: String
        var signature: String
        var body: [UInt8]
        var answered: Int
        var json: JSONValue { (try? JSONValue(parsing: body)) ?? .null }
    }

    enum Plan: Sendable {
        case succeed
        case answer(Int)
        /// Fails the first `times` attempts of every message with `status`, then succeeds.
        case failFirst(times: Int, status: Int)
    }

    private struct State {
        var received: [Received] = []
        var plan: Plan = .succeed
        var attempts: [String: Int] = [:]
    }

    private let state = Mutex(State())
    let port: Int

    private init(port: Int) { self.port = port }

    var url: String { "http://127.0.0.1:\(port)/hook" }
    var received: [Received] { state.withLock { $0.received } }
    /// What it accepted (answered 2xx), in arrival order.
    var accepted: [Received] { received.filter { (200..<300).contains($0.answered) } }
    func plan(_ plan: Plan) { state.withLock { $0.plan = plan } }

    static func with<T: Sendable>(_ body: @Sendable (WebhookReceiver) async throws -> T) async throws -> T {
        let box = Mutex<WebhookReceiver?>(nil)
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            let bytes = Array(try await request.body.collect(upTo: 1 << 20).readableBytesView)
            guard let receiver = box.withLock({ $0 }) else { return Response(status: .serviceUnavailable) }
            return Response(status: HTTPResponse.Status(code: receiver.take(request.headers, bytes)))
        }
        return try await withLoopbackServer(router) { port in
            let receiver = WebhookReceiver(port: port)
            box.withLock { $0 = receiver }
            return try await body(receiver)
        }
    }

    private func take(_ headers: HTTPFields, _ body: [UInt8]) -> Int {
        func header(_ name: String) -> String { headers[HTTPField.Name(name)!] ?? "" }
        let id = header("webhook-id")
        return state.withLock { state in
            state.attempts[id, default: 0] += 1
            let status: Int
            switch state.plan {
            case .succeed: status = 200
            case .answer(let code): status = code
            case .failFirst(let times, let code): status = (state.attempts[id] ?? 0) <= times ? code : 204
            }
            state.received.append(
                Received(
                    messageID: id,
                    timestamp: header("webhook-timestamp"),
                    signature: header("webhook-signature"),
                    body: body,
                    answered: status
                )
            )
            return status
        }
    }

    /// Waits until `condition` holds of what was received, or fails after `timeout`.
    func wait(
        timeout: Duration = .seconds(20),
        _ what: String,
        until condition: @Sendable ([Received]) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(received) {
            guard ContinuousClock.now < deadline else {
                throw TestSetupError.failed("timed out waiting for \(what); received \(received.count)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// An independent check of a Standard Webhooks signature (the receiver's side, written from the specification).
enum StandardWebhooksCheck {
    /// Whether any `v1,` signature in `header` is the HMAC-SHA256 of `id.timestamp.body` under `secret` (`whsec_…`).
    static func verify(secret: String, id: String, timestamp: String, body: [UInt8], header: String) -> Bool {
        guard secret.hasPrefix("whsec_"), let key = Data(base64Encoded: String(secret.dropFirst(6))) else {
            return false
        }
        let expected = Data(
            HMAC<SHA256>.authenticationCode(
                for: Array("\(id).\(timestamp).".utf8) + body,
                using: SymmetricKey(data: key)
            )
        ).base64EncodedString()
        return header.split(separator: " ").contains { $0 == "v1,\(expected)" }
    }
}
