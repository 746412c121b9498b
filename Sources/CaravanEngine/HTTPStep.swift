import AsyncHTTPClient
import CaravanCore
import CaravanOutbound
import CaravanWorkflow
import Foundation
import NIOCore
import NIOHTTP1

/// `http`: one request. 2xx succeeds; 408, 429, 5xx, network errors and timeouts are retried; other 4xx fail at
/// once. Every attempt carries the same `Idempotency-Key`. The destination must pass the egress policy.
public struct HTTPStep: StepExecutor {
    public static let acceptsSecrets = true
    public static let name = HTTPStepKind.name
    public static let urlFields = HTTPStepKind.urlFields
    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        HTTPStepKind.validate(config, at: pointer)
    }

    let client: HTTPClient
    let egress: EgressPolicy
    let refusals: EgressRefusalRecorder

    public init(client: HTTPClient, egress: EgressPolicy, refusals: EgressRefusalRecorder = .none) {
        self.client = client
        self.egress = egress
        self.refusals = refusals
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(StepFailure) -> JSONValue {
        guard let urlText = config["url"]?.stringValue, var components = URLComponents(string: urlText) else {
            throw StepFailure(code: "invalid_url", message: "The rendered url is not a URL.", retryable: false)
        }
        if let query = config["query"]?.objectValue {
            var items = components.queryItems ?? []
            for (key, value) in query.sorted(by: { $0.key < $1.key }) {
                items.append(URLQueryItem(name: key, value: value.stringValue ?? value.canonicalText))
            }
            components.queryItems = items
        }
        guard let url = components.url else {
            throw StepFailure(code: "invalid_url", message: "The rendered url is not a URL.", retryable: false)
        }
        do {
            try egress.check(url)
        } catch {
            if error.code == "egress_denied" {
                // The URL as sent may hold a secret: the audit log keeps it masked, and cannot forget it later.
                await refusals.record(
                    orgID: context.orgID, runID: context.runID, url: context.redactor.redact(url.absoluteString),
                    reason: context.redactor.redact(error.message)
                )
            }
            throw error
        }

        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: (config["method"]?.stringValue ?? "GET").uppercased())
        request.headers.add(name: "Idempotency-Key", value: context.idempotencyKey)
        request.headers.add(name: "User-Agent", value: "Caravan")
        let requestHeaders = (config["headers"]?.objectValue ?? [:]).compactMap { name, value in
            value.stringValue.map { (name: name, value: $0) }
        }
        if let problem = headerProblem(requestHeaders) {
            throw StepFailure(code: "invalid_header", message: problem, retryable: false)
        }
        for (name, value) in requestHeaders { request.headers.replaceOrAdd(name: name, value: value) }
        if let body = config["body"] {
            if let text = body.stringValue {
                request.body = .bytes(ByteBuffer(string: text))
            } else {
                request.body = .bytes(ByteBuffer(string: body.canonicalText))
                if !request.headers.contains(name: "Content-Type") {
                    request.headers.add(name: "Content-Type", value: "application/json")
                }
            }
        }

        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .milliseconds(context.timeout.milliseconds))
            body = try await response.body.collect(upTo: context.maxOutputBytes)
        } catch let error as NIOTooManyBytesError {
            _ = error
            throw StepFailure(code: "response_too_large", message: "The response is larger than \(context.maxOutputBytes) bytes.", retryable: false)
        } catch is CancellationError {
            throw StepFailure(code: "cancelled", message: "The request was cancelled.", retryable: false)
        } catch let error as HTTPClientError where [.deadlineExceeded, .readTimeout, .connectTimeout].contains(error) {
            // The request's deadline is the step's timeout: the same failure as the engine's own timer.
            throw StepFailure(code: "timeout", message: "The request to \(url.host ?? "the server") timed out.", retryable: true)
        } catch {
            throw StepFailure(code: "network_error", message: "The request to \(url.host ?? "the server") failed: \(transportErrorKind(error)).", retryable: true)
        }

        var headers: [String: JSONValue] = [:]
        for header in response.headers { headers[header.name.lowercased()] = .string(header.value) }
        let isJSON = response.headers.first(name: "Content-Type")?.lowercased().contains("json") ?? false
        var parsedBody: JSONValue = .string(String(buffer: body))
        if isJSON, let json = try? JSONValue(parsing: body.readableBytesView, maxDepth: 128) { parsedBody = json }
        let output: JSONValue = ["status": .int(Int64(response.status.code)), "headers": .object(headers), "body": parsedBody]

        switch response.status.code {
        case 200..<300: return output
        case 408, 429, 500..<600:
            throw StepFailure(code: "http_\(response.status.code)", message: "The server answered \(response.status.code).", retryable: true)
        default:
            throw StepFailure(code: "http_\(response.status.code)", message: "The server answered \(response.status.code).", retryable: false)
        }
    }
}
