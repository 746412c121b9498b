import AsyncHTTPClient
public import CaravanCore
public import CaravanOutbound
import CaravanWorkflow
import Foundation
import NIOCore
import NIOHTTP1

/// `http`: one request. 2xx succeeds; 408, 429, 5xx, network errors and timeouts are retried; other 4xx fail at
/// once. Every attempt carries the same `Idempotency-Key`. The destination, and every redirect, must pass the egress
/// policy.
public struct HTTPStep: StepExecutor {
    public static let acceptsSecrets = true
    public static let name = HTTPStepKind.name
    public static let urlFields = HTTPStepKind.urlFields
    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        HTTPStepKind.validate(config, at: pointer)
    }

    let client: EgressHTTPClient

    /// - Parameter client: the one door to the network: it checks the destination (and every redirect) against the
    ///   egress policy, connects to the address it checked, and reports refusals.
    public init(client: EgressHTTPClient) {
        self.client = client
    }

    public func execute(_ config: JSONValue, context: StepContext) async throws(Failure) -> JSONValue {
        guard let urlText = config["url"]?.stringValue, var components = URLComponents(string: urlText) else {
            throw Failure(code: "invalid_url", message: "The rendered url is not a URL.", retryable: false)
        }
        if let query = config["query"]?.objectValue {
            var items = components.queryItems ?? []
            for (key, value) in query.sorted(by: { $0.key < $1.key }) {
                items.append(URLQueryItem(name: key, value: value.stringValue ?? value.canonicalText))
            }
            components.queryItems = items
        }
        guard let url = components.url else {
            throw Failure(code: "invalid_url", message: "The rendered url is not a URL.", retryable: false)
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: (config["method"]?.stringValue ?? "GET").uppercased())
        request.headers.add(name: "Idempotency-Key", value: context.idempotencyKey)
        request.headers.add(name: "User-Agent", value: "Caravan")
        let requestHeaders = (config["headers"]?.objectValue ?? [:]).compactMap { name, value in
            value.stringValue.map { (name: name, value: $0) }
        }
        if let problem = headerProblem(requestHeaders) {
            throw Failure(code: "invalid_header", message: problem, retryable: false)
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

        // Fails as egress_denied, dns_error, too_many_redirects, response_too_large, network_error or timeout (the
        // request's deadline is the step's timeout: the same failure as the engine's own timer).
        let response = try await client.execute(
            request,
            timeout: .milliseconds(context.timeout.milliseconds),
            maxBodyBytes: context.maxOutputBytes
        )
        let body = response.body

        var headers: [String: JSONValue] = [:]
        for header in response.headers { headers[header.name.lowercased()] = .string(header.value) }
        let isJSON = response.headers.first(name: "Content-Type")?.lowercased().contains("json") ?? false
        var parsedBody: JSONValue = .string(String(buffer: body))
        if isJSON, let json = try? JSONValue(parsing: body.readableBytesView, maxDepth: 128) { parsedBody = json }
        let output: JSONValue = [
            "status": .int(Int64(response.status.code)), "headers": .object(headers), "body": parsedBody,
        ]

        switch response.status.code {
        case 200..<300: return output
        case 408, 429, 500..<600:
            throw Failure(
                code: "http_\(response.status.code)",
                message: "The server answered \(response.status.code).",
                retryable: true
            )
        default:
            throw Failure(
                code: "http_\(response.status.code)",
                message: "The server answered \(response.status.code).",
                retryable: false
            )
        }
    }
}
