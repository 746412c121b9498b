import AsyncHTTPClient
import CaravanCore
import CaravanOutbound
import Foundation
import NIOCore
import NIOHTTP1

/// The HTTP plumbing both providers share: one POST of a JSON body through the egress client (the policy checked
/// on the address it connects to) under the endpoint's deadline, bounded reading of the answer (whole or as
/// server-sent events) and the classification of failures.
struct ProviderTransport: Sendable {
    let client: EgressHTTPClient
    let maxResponseBytes: Int

    /// What a successful (2xx) answer is read into.
    enum Body {
        /// The whole body.
        case complete(ByteBuffer)
        /// The events of a streamed body, read by the caller.
        case events(EventReader)
    }

    /// POSTs `body` to `endpoint.baseURL + path` and hands the 2xx answer to `read`, all within
    /// `endpoint.timeoutMilliseconds`: as events when `streaming` (unless the server answered JSON), else whole.
    /// Non-2xx answers are classified and thrown.
    /// - Throws: `ProviderError`, classified: see `classify(status:headers:body:provider:)` and `mapError`.
    func post<T: Sendable>(
        _ body: JSONValue,
        path: String,
        headers: HTTPHeaders,
        endpoint: ProviderEndpoint,
        streaming: Bool,
        read: @escaping @Sendable (Body) async throws -> T
    ) async throws(ProviderError) -> T {
        let url = try url(endpoint.baseURL, path)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers = headers
        request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        request.headers.replaceOrAdd(name: "User-Agent", value: "Caravan")
        request.body = .bytes(ByteBuffer(string: body.canonicalText))

        let timeout = max(1, endpoint.timeoutMilliseconds)
        let client = client
        let prepared = request
        let limit = maxResponseBytes
        let name = endpoint.name
        do {
            if !streaming {
                // One answer, read whole under the deadline. Run inline: a timer task per call costs more than the rest
                // of the gateway's work.
                let response = try await client.execute(prepared, timeout: .milliseconds(timeout), maxBodyBytes: limit)
                let status = Int(response.status.code)
                guard (200..<300).contains(status) else {
                    throw Self.classify(status: status, headers: response.headers, body: response.body, provider: name)
                }
                return try await read(.complete(response.body))
            }
            return try await Self.withTimeout(milliseconds: timeout, provider: name) {
                let response = try await client.stream(prepared, timeout: .milliseconds(timeout))
                let status = Int(response.status.code)
                guard (200..<300).contains(status) else {
                    let errorBody = (try? await response.body.collect(upTo: 64 * 1024)) ?? ByteBuffer()
                    throw Self.classify(status: status, headers: response.headers, body: errorBody, provider: name)
                }
                // Servers that ignore `stream: true` answer JSON; some stream without the right content type.
                let contentType = response.headers.first(name: "Content-Type")?.lowercased() ?? ""
                if streaming && !contentType.contains("json") {
                    return try await read(.events(EventReader(body: response.body, limit: limit)))
                }
                return try await read(.complete(try await response.body.collect(upTo: limit)))
            }
        } catch {
            throw mapError(error, provider: name)
        }
    }

    /// Parses `text` as a JSON answer.
    /// - Throws: `malformedResponse` when it does not parse.
    static func parseJSON(_ bytes: ByteBuffer, provider: String) throws(ProviderError) -> JSONValue {
        do {
            return try JSONValue(parsing: bytes.readableBytesView, maxDepth: 256)
        } catch {
            throw ProviderError(
                .malformedResponse,
                "\(provider) answered with a body that is not JSON: \(error.detail)"
            )
        }
    }

    private func url(_ base: String, _ path: String) throws(ProviderError) -> URL {
        var base = base
        while base.hasSuffix("/") { base.removeLast() }
        guard let url = URL(string: base + path), url.host != nil else {
            throw ProviderError(.badRequest, "The provider's base URL '\(base)' is not a URL.")
        }
        return url
    }

    /// Runs `operation`, and throws `timeout` if it has not finished after `milliseconds`. The deadline covers
    /// the whole answer, streamed bodies included (AsyncHTTPClient's own deadline ends with the response head).
    static func withTimeout<T: Sendable>(
        milliseconds: Int64,
        provider: String,
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard let value = try await CaravanCore.withTimeout(.milliseconds(milliseconds), operation) else {
            throw ProviderError(.timeout, "\(provider) did not answer within \(milliseconds) ms.")
        }
        return value
    }

    /// Classifies anything a call threw.
    func mapError(_ error: any Error, provider: String) -> ProviderError {
        if let error = error as? ProviderError { return error }
        if let failure = error as? Failure {
            switch failure.code {
            // Refused by the egress policy: for good (another route may be allowed).
            case "egress_denied": return ProviderError(.egressDenied, failure.message)
            case "timeout": return ProviderError(.timeout, "\(provider) did not answer in time.")
            case "response_too_large":
                return ProviderError(
                    .malformedResponse,
                    "\(provider) answered with more than \(maxResponseBytes) bytes."
                )
            // A host that does not resolve, a refused or reset connection, a redirect loop: may pass.
            default: return ProviderError(.network, "Could not reach \(provider): \(failure.message)")
            }
        }
        if error is NIOTooManyBytesError {
            return ProviderError(.malformedResponse, "\(provider) answered with more than \(maxResponseBytes) bytes.")
        }
        if error is CancellationError || (error as? HTTPClientError) == .cancelled {
            return ProviderError(.timeout, "The call to \(provider) was cancelled.")
        }
        if let error = error as? HTTPClientError, error == .deadlineExceeded || error == .readTimeout {
            return ProviderError(.timeout, "\(provider) did not answer in time.")
        }
        return ProviderError(.network, "Could not reach \(provider): \(transportErrorKind(error)).")
    }

    /// Classifies a non-2xx answer. 429 → `rateLimited`; 408, 5xx (529 included) → `unavailable`, both with
    /// `Retry-After`; 401, 403 → `unauthorized`; 404 → `unknownModel` (an unknown model, or a wrong base URL:
    /// either way another route may work); other statuses → `badRequest`. The provider's own error message,
    /// truncated to 500 characters, is kept.
    static func classify(
        status: Int,
        headers: HTTPHeaders,
        body: ByteBuffer,
        provider: String,
        now: Date = Date()
    ) -> ProviderError {
        let detail = errorMessage(body)
        let message = "\(provider) answered \(status)" + (detail.isEmpty ? "." : ": \(detail)")
        let retryAfter = retryAfterMilliseconds(headers, now: now)
        switch status {
        case 429: return ProviderError(.rateLimited, message, status: status, retryAfterMilliseconds: retryAfter)
        case 408, 500..<600:
            return ProviderError(.unavailable, message, status: status, retryAfterMilliseconds: retryAfter)
        case 401, 403: return ProviderError(.unauthorized, message, status: status)
        case 404: return ProviderError(.unknownModel, message, status: status)
        default: return ProviderError(.badRequest, message, status: status)
        }
    }

    /// The error message in a provider's error body (`error.message`, `error`, `message` or `detail`), else the
    /// body's text; at most 500 characters.
    static func errorMessage(_ body: ByteBuffer) -> String {
        let text: String
        if let json = try? JSONValue(parsing: body.readableBytesView, maxDepth: 32) {
            text =
                json["error"]?["message"]?.stringValue ?? json["error"]?.stringValue ?? json["message"]?.stringValue
                ?? json["detail"]?.stringValue ?? json.canonicalText
        } else {
            text = String(buffer: body)
        }
        return truncated(text.trimmingCharacters(in: .whitespacesAndNewlines), to: 500)
    }

    static func truncated(_ text: String, to length: Int) -> String {
        text.count <= length ? text : String(text.prefix(length)) + "…"
    }

    /// `Retry-After` in milliseconds: `retry-after-ms` (OpenAI), else `Retry-After` as seconds or an HTTP date.
    static func retryAfterMilliseconds(_ headers: HTTPHeaders, now: Date) -> Int64? {
        if let text = headers.first(name: "retry-after-ms"),
            let milliseconds = Double(text.trimmingCharacters(in: .whitespaces)),
            milliseconds.isFinite, milliseconds >= 0
        {
            return Int64(milliseconds.rounded(.up))
        }
        guard let text = headers.first(name: "Retry-After")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Double(text), seconds.isFinite, seconds >= 0 {
            return Int64(min(seconds, 86_400) * 1000)
        }
        guard let date = httpDateFormatter().date(from: text) else { return nil }
        return max(0, Int64((date.timeIntervalSince(now) * 1000).rounded(.up)))
    }

    private static func httpDateFormatter() -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter
    }
}

/// Reads the server-sent events of a streamed answer, refusing more than `limit` bytes in all.
struct EventReader {
    let body: HTTPClientResponse.Body
    let limit: Int

    /// Calls `handle` with each event in order until the body ends or `handle` returns `false`.
    /// - Throws: what `handle` throws; `NIOTooManyBytesError` past the limit; network errors.
    func read(_ handle: (ServerSentEvent) async throws -> Bool) async throws {
        var parser = ServerSentEventParser()
        var received = 0
        for try await buffer in body {
            received += buffer.readableBytes
            if received > limit { throw NIOTooManyBytesError(maxBytes: limit) }
            for event in parser.consume(buffer.readableBytesView) {
                guard try await handle(event) else { return }
            }
        }
        for event in parser.finish() {
            guard try await handle(event) else { return }
        }
    }
}
