public import AsyncHTTPClient
public import CaravanCore
import Dispatch
public import Foundation
public import NIOCore
public import NIOHTTP1
import NIOHTTPCompression
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// A request through `EgressHTTPClient` that failed throws a `Failure`: a stable code, a message for people, and whether
// trying again later may succeed.
//
// Codes: `egress_denied` (the policy refused the URL or a redirect target; not retryable), `dns_error` (the host
// does not resolve; retryable), `too_many_redirects`, `response_too_large` (not retryable), `network_error`
// (connection refused or reset, TLS failure, cancelled; retryable), `timeout` (retryable).

extension Failure {
    static func timeout(_ url: URL) -> Failure {
        Failure(code: .timeout, message: "The request to \(url.host ?? "the server") timed out.", retryable: true)
    }
}

/// The one door through which requests that a user or a model can steer leave Caravan (http steps and tools, MCP
/// servers over HTTP).
///
/// Every request, and every redirect it meets, is checked against the `EgressPolicy` before it is sent:
/// - **Plain `http://`**: the host is resolved once, every address is checked, and the request goes to the checked
///   address as an IP literal with the original `Host` header. A DNS answer that changes between the check and the
///   connection (DNS rebinding) therefore cannot reach an internal address.
/// - **`https://`**: the hostname is kept, so that the certificate is verified against the name; the HTTP client
///   resolves it again when it connects. A rebinding answer in the short window between the check and that
///   connection is the residual risk (the TLS handshake still has to succeed against a certificate for the name,
///   which an internal service rarely holds).
/// - **Allowlisted by name** (`--egress-allow host` or `host:port`): the operator trusts that name; it is sent as is.
///
/// Redirects (301, 302, 303, 307, 308) are followed here, never by the HTTP client, up to `maxRedirects`: each
/// `Location` is checked like the first URL. 303 (and 301/302 after a POST) continue as a GET without a body; 307 and
/// 308 resend the method and body (the body must then be re-playable: a `ByteBuffer` or a collection). Leaving the
/// origin drops `Authorization`, `Cookie` and `Proxy-Authorization`.
public final class EgressHTTPClient: Sendable {
    /// How many redirects one request may follow; the next one is an error.
    public static let maxRedirects = 5

    public let policy: EgressPolicy
    let client: HTTPClient
    private let ownsClient: Bool
    private let onDenied: (@Sendable (URL, Failure) async -> Void)?

    /// A client with its own `HTTPClient` (redirects disallowed); call `shutdown()` when done.
    /// - Parameters:
    ///   - policy: which destinations are allowed.
    ///   - onDenied: called for every refusal by the policy (`egress_denied`), with the refused URL; for auditing.
    public init(policy: EgressPolicy, onDenied: (@Sendable (URL, Failure) async -> Void)? = nil) {
        self.policy = policy
        self.client = Self.makeHTTPClient()
        self.ownsClient = true
        self.onDenied = onDenied
    }

    /// A client over an existing `HTTPClient`, which the caller shuts down. That client **must** be configured with
    /// `redirectConfiguration = .disallow` (as `makeHTTPClient()` does): a client that follows redirects itself would
    /// reach targets that were never checked.
    public init(client: HTTPClient, policy: EgressPolicy, onDenied: (@Sendable (URL, Failure) async -> Void)? = nil) {
        self.policy = policy
        self.client = client
        self.ownsClient = false
        self.onDenied = onDenied
    }

    /// An `HTTPClient` fit for egress: redirects disallowed, connection failures reported at once (not retried until
    /// a deadline), decompression bounded.
    public static func makeHTTPClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .enabled(limit: .ratio(20))
        configuration.timeout = .init(connect: .seconds(10), read: nil)
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 512)
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Shuts the `HTTPClient` down if this client created it.
    public func shutdown() async throws {
        if ownsClient { try await client.shutdown() }
    }

    /// Sends `request`, follows redirects, and reads the whole body.
    /// - Parameters:
    ///   - timeout: for everything: every hop, and reading the body.
    ///   - maxBodyBytes: a longer body fails with `response_too_large`.
    /// - Throws: `Failure`.
    public func execute(
        _ request: HTTPClientRequest,
        timeout: TimeAmount,
        maxBodyBytes: Int
    ) async throws(Failure) -> (status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer) {
        let deadline = NIODeadline.now() + timeout
        let (response, url) = try await send(request, deadline: deadline)
        let body = try await Self.collect(response.body, upTo: maxBodyBytes, deadline: deadline, url: url)
        return (response.status, response.headers, body)
    }

    /// Sends `request` and follows redirects like `execute`, but returns the final response with its body unread
    /// (for server-sent events and other streams). `timeout` covers the hops up to the final response's head; the
    /// caller bounds how long and how much it reads from the body.
    /// - Throws: `Failure`.
    public func stream(_ request: HTTPClientRequest, timeout: TimeAmount) async throws(Failure) -> HTTPClientResponse {
        try await send(request, deadline: .now() + timeout).response
    }

    // MARK: - Sending

    private func send(
        _ original: HTTPClientRequest,
        deadline: NIODeadline
    ) async throws(Failure) -> (
        response: HTTPClientResponse, url: URL
    ) {
        guard let first = URL(string: original.url) else {
            let denial = Failure(
                code: .egressDenied,
                message: "'\(original.url)' is not a valid URL.",
                retryable: false
            )
            throw denial
        }
        var request = original
        var url = first
        var redirects = 0
        while true {
            let response = try await sendOnce(request, url: url, deadline: deadline)
            guard [301, 302, 303, 307, 308].contains(response.status.code),
                let location = response.headers.first(name: "location"),
                let next = URL(string: location, relativeTo: url)?.absoluteURL
            else { return (response, url) }
            // The redirect's own body is of no interest; read a little of it so the connection can be reused.
            _ = try? await Self.collect(response.body, upTo: 64 * 1024, deadline: deadline, url: url)
            guard redirects < Self.maxRedirects else {
                throw Failure(
                    code: .tooManyRedirects,
                    message:
                        "More than \(Self.maxRedirects) redirects, starting at \(first.host ?? first.absoluteString).",
                    retryable: false
                )
            }
            redirects += 1
            request = Self.following(request, from: url, to: next, status: Int(response.status.code))
            url = next
        }
    }

    static func following(_ request: HTTPClientRequest, from: URL, to: URL, status: Int) -> HTTPClientRequest {
        var next = request
        next.url = to.absoluteString
        next.headers.remove(name: "host")
        if (status == 303 && request.method != .HEAD) || ((status == 301 || status == 302) && request.method == .POST) {
            next.method = .GET
            next.body = nil
            for name in ["content-type", "content-length", "transfer-encoding", "content-encoding"] {
                next.headers.remove(name: name)
            }
        }
        func origin(_ url: URL) -> String {
            let scheme = url.scheme?.lowercased() ?? ""
            return "\(scheme)://\(url.host?.lowercased() ?? ""):\(url.port ?? (scheme == "https" ? 443 : 80))"
        }
        if origin(from) != origin(to) {
            for name in ["authorization", "cookie", "proxy-authorization"] { next.headers.remove(name: name) }
        }
        return next
    }

    /// Checks `url` and sends `request` to it once (no redirects).
    private func sendOnce(
        _ request: HTTPClientRequest,
        url: URL,
        deadline: NIODeadline
    ) async throws(Failure)
        -> HTTPClientResponse
    {
        let destination: EgressPolicy.Destination
        do {
            destination = try await policy.destination(for: url)
        } catch {
            if error.code == .egressDenied, let onDenied { await onDenied(url, error) }
            throw error
        }
        switch destination {
        case .asGiven:
            var request = request
            request.url = url.absoluteString
            switch try await perform(request, url: url, deadline: deadline) {
            case .response(let response): return response
            case .connectFailed(let error): throw error
            }
        case .pinned(let addresses, let host, let port):
            var lastError = Failure(code: .dnsError, message: "The host \(host) does not resolve.", retryable: true)
            for address in addresses {
                guard let literal = Self.literalURL(url, address: address, port: port) else { continue }
                var pinned = request
                pinned.url = literal
                if !pinned.headers.contains(name: "host") {
                    let hostText = host.contains(":") ? "[\(host)]" : host
                    pinned.headers.replaceOrAdd(name: "Host", value: port == 80 ? hostText : "\(hostText):\(port)")
                }
                switch try await perform(pinned, url: url, deadline: deadline) {
                case .response(let response): return response
                // The request never left: the next address may answer (an IPv6 address of an IPv4-only host).
                case .connectFailed(let error): lastError = error
                }
            }
            throw lastError
        }
    }

    private enum Attempt {
        case response(HTTPClientResponse)
        /// The connection could not be made: the request never left, so another address of the host may be tried.
        case connectFailed(Failure)
    }

    private func perform(
        _ request: HTTPClientRequest,
        url: URL,
        deadline: NIODeadline
    ) async throws(Failure)
        -> Attempt
    {
        do {
            return .response(try await client.execute(request, deadline: deadline))
        } catch {
            if Self.isConnectFailure(error) { return .connectFailed(Self.map(error, url: url)) }
            throw Self.map(error, url: url)
        }
    }

    static func isConnectFailure(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? IOError {
            return [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT].contains(error.errnoCode)
        }
        if let error = error as? HTTPClientError { return error == .connectTimeout }
        return false
    }

    static func map(_ error: any Error, url: URL) -> Failure {
        if let error = error as? Failure { return error }
        let host = url.host ?? url.absoluteString
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout, .connectTimeout, .tlsHandshakeTimeout,
                .getConnectionFromPoolTimeout:
                return .timeout(url)
            case .cancelled:
                return Failure(code: .networkError, message: "The request to \(host) was cancelled.", retryable: true)
            default:
                break
            }
        }
        if error is CancellationError {
            return Failure(code: .networkError, message: "The request to \(host) was cancelled.", retryable: true)
        }
        if isConnectFailure(error) {
            return Failure(
                code: .networkError,
                message: "Could not connect to \(host): \(transportErrorKind(error)).",
                retryable: true
            )
        }
        return Failure(
            code: .networkError,
            message: "The request to \(host) failed: \(transportErrorKind(error)).",
            retryable: true
        )
    }

    /// Reads a body up to `maxBytes`, before `deadline`.
    static func collect(
        _ body: HTTPClientResponse.Body,
        upTo maxBytes: Int,
        deadline: NIODeadline,
        url: URL
    )
        async throws(Failure) -> ByteBuffer
    {
        do {
            return try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
                group.addTask { try await body.collect(upTo: maxBytes) }
                group.addTask {
                    let remaining = deadline - .now()
                    if remaining > .zero { try await Task.sleep(for: .nanoseconds(remaining.nanoseconds)) }
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let buffer = first else { throw Failure.timeout(url) }
                return buffer
            }
        } catch is NIOTooManyBytesError {
            throw Failure(
                code: .responseTooLarge,
                message: "The response from \(url.host ?? "the server") is larger than \(maxBytes) bytes.",
                retryable: false
            )
        } catch {
            throw map(error, url: url)
        }
    }

    /// `url` with its host replaced by `address` (and the port made explicit).
    static func literalURL(_ url: URL, address: [UInt8], port: Int) -> String? {
        guard let text = EgressPolicy.formatAddress(address),
            let components = URLComponents(url: url, resolvingAgainstBaseURL: true)
        else { return nil }
        let host = address.count == 16 ? "[\(text)]" : text
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        let query = components.percentEncodedQuery.map { "?" + $0 } ?? ""
        return "\(url.scheme?.lowercased() ?? "http")://\(host):\(port)\(path)\(query)"
    }
}

extension EgressPolicy {
    /// Where a request for a checked URL may connect.
    enum Destination: Sendable, Equatable {
        /// To the URL as written: an IP literal, an https host (kept for the certificate), or a host the operator
        /// allowed by name.
        case asGiven
        /// To one of these checked addresses (IPv4 first), with `host` as the `Host` header.
        case pinned([[UInt8]], host: String, port: Int)
    }

    /// Checks `url` like `check(_:)` — scheme, host, every address the host resolves to — with one resolution, and
    /// says where to connect. The resolution runs off the cooperative thread pool.
    func destination(for url: URL) async throws(Failure) -> Destination {
        let target = try target(of: url)
        if allowsHost(target.host, port: target.port) { return .asGiven }
        let literal = Self.parseAddress(target.host)
        let addresses: [[UInt8]]
        if let literal {
            addresses = [literal]
        } else if let resolver {
            addresses = await resolver(target.host)
        } else {
            addresses = await Self.resolveOffPool(target.host)
        }
        try vet(addresses, of: target)
        if literal != nil || target.scheme == "https" { return .asGiven }
        var unique: [[UInt8]] = []
        for address in addresses.sorted(by: { $0.count < $1.count }) where !unique.contains(address) {
            unique.append(address)
        }
        return .pinned(unique, host: target.host, port: target.port)
    }

    /// `resolve(_:)` on a Dispatch thread: `getaddrinfo` blocks, and must not hold a cooperative thread.
    static func resolveOffPool(_ host: String) async -> [[UInt8]] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: resolve(host)) }
        }
    }

    /// The text form of a 4- or 16-byte address.
    static func formatAddress(_ address: [UInt8]) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = address.count == 4 ? AF_INET : AF_INET6
        guard address.count == 4 || address.count == 16 else { return nil }
        let ok = address.withUnsafeBytes { bytes in
            inet_ntop(family, bytes.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        guard ok else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Describes a transport error without the values it may carry: an `HTTPClientError` such as
/// `invalidHeaderFieldValues([...])` quotes the header values it refused, and a connection error the address it
/// tried; either may hold a secret rendered into the request. Only the kind of error is kept.
public func transportErrorKind(_ error: any Error) -> String {
    if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
    if error is NIOConnectionError { return "the connection could not be made" }
    if let error = error as? HTTPClientError {
        let text = String(describing: error)
        let name = text.split(separator: "(", maxSplits: 1).first.map(String.init) ?? text
        return name.replacingOccurrences(of: "HTTPClientError.", with: "")
    }
    return String(describing: type(of: error))
}

/// Why a header cannot be sent as it is: a name that is not a token, or a value with a line break or another control
/// character (which would split the request: refused before anything is sent, whatever put it there). `nil` when
/// every header is fine. The reason names the header, never its value.
public func headerProblem(_ headers: [(name: String, value: String)]) -> String? {
    for (name, value) in headers {
        let validName =
            !name.isEmpty
            && name.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A)
                    || "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
        if !validName { return "A header name is not valid." }
        if value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
            return "The header '\(name)' holds a line break or a control character."
        }
    }
    return nil
}
