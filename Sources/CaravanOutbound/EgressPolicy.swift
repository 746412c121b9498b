public import CaravanCore
public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// An outbound request refused before it left throws a `Failure`: a stable code (`egress_denied`, `dns_error`), a message
// that names the host, and whether trying again later may succeed.

/// Which outbound destinations steps may reach. Loopback, private, link-local, CGNAT, unique-local and metadata
/// addresses are refused unless the operator allows them (`--egress-allow`: `host`, `host:port` or CIDR entries).
public struct EgressPolicy: Sendable {
    enum Entry: Sendable, Hashable {
        case host(String, port: Int?)
        case network([UInt8], prefix: Int)
    }

    let entries: [Entry]
    /// Resolves a host name to its addresses; `nil`: the system's resolver, off the cooperative pool.
    let resolver: (@Sendable (String) async -> [[UInt8]])?

    /// Parses a comma-separated allowlist.
    /// - Throws: `validation_failed` naming the bad entry.
    public init(allowList: String) throws(CaravanError) {
        var entries: [Entry] = []
        for raw in allowList.split(separator: ",") {
            let item = raw.trimmingCharacters(in: .whitespaces).lowercased()
            guard !item.isEmpty else { continue }
            if let slash = item.firstIndex(of: "/") {
                guard let bytes = Self.parseAddress(String(item[..<slash])),
                    let prefix = Int(item[item.index(after: slash)...]),
                    prefix >= 0, prefix <= bytes.count * 8
                else { throw CaravanError(.validationFailed, "'\(item)' is not a valid CIDR entry.") }
                entries.append(.network(bytes, prefix: prefix))
            } else if let colon = item.lastIndex(of: ":"), !item.hasPrefix("["), item.filter({ $0 == ":" }).count == 1 {
                guard let port = Int(item[item.index(after: colon)...]) else {
                    throw CaravanError(.validationFailed, "'\(item)' is not a valid host:port entry.")
                }
                entries.append(.host(String(item[..<colon]), port: port))
            } else {
                entries.append(.host(item.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: nil))
            }
        }
        self.entries = entries
        self.resolver = nil
    }

    /// Nothing private is allowed.
    public static let strict = EgressPolicy(entries: [], resolver: nil)

    init(entries: [Entry], resolver: (@Sendable (String) async -> [[UInt8]])?) {
        self.entries = entries
        self.resolver = resolver
    }

    /// This policy with another resolver (for tests that control what a name resolves to).
    func resolving(with resolver: @escaping @Sendable (String) async -> [[UInt8]]) -> EgressPolicy {
        EgressPolicy(entries: entries, resolver: resolver)
    }

    /// Checks `url`: its scheme, and every address its host resolves to (blocking, on the calling thread). Requests
    /// go through `EgressHTTPClient`, which checks with `destination(for:)` instead and connects to what it checked.
    /// - Throws: `Failure` with code `egress_denied` (not retryable) or `dns_error` (retryable).
    func check(_ url: URL) throws(Failure) {
        let target = try target(of: url)
        if allowsHost(target.host, port: target.port) { return }
        try vet(Self.resolve(target.host), of: target)
    }

    /// Checks what can be checked of `url` without resolving its host: the scheme, and the address when the host is
    /// an IP literal or `localhost`. For refusing a URL when it is configured (a webhook's), before any request;
    /// a name that resolves to an internal address is refused when the request is sent.
    /// - Returns: the refusal, or `nil` when nothing is known against the URL yet.
    public func refusalWithoutLookup(_ url: URL) -> Failure? {
        do throws(Failure) {
            let target = try target(of: url)
            if allowsHost(target.host, port: target.port) { return nil }
            if target.host == "localhost" || target.host.hasSuffix(".localhost") {
                try vet([[127, 0, 0, 1]], of: target)
            } else if let address = Self.parseAddress(target.host) {
                try vet([address], of: target)
            }
            return nil
        } catch {
            return error
        }
    }

    /// Where a URL points: its scheme, lowercased host (brackets removed) and port.
    struct Target: Sendable {
        var scheme: String
        var host: String
        var port: Int
    }

    /// The URL's target, if its scheme is http or https and it has a host.
    func target(of url: URL) throws(Failure) -> Target {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw Failure(code: .egressDenied, message: "Only http and https URLs may be called.", retryable: false)
        }
        guard let host = url.host?.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]")), !host.isEmpty
        else {
            throw Failure(code: .egressDenied, message: "The URL has no host.", retryable: false)
        }
        return Target(scheme: scheme, host: host, port: url.port ?? (scheme == "https" ? 443 : 80))
    }

    /// Refuses the target unless every address it resolved to is public or allowed.
    func vet(_ addresses: [[UInt8]], of target: Target) throws(Failure) {
        guard !addresses.isEmpty else {
            throw Failure(code: .dnsError, message: "The host \(target.host) does not resolve.", retryable: true)
        }
        for address in addresses where Self.isInternal(address) && !allowsAddress(address, port: target.port) {
            throw Failure(
                code: .egressDenied,
                message:
                    "\(target.host) resolves to an internal address; the operator has not allowed it (--egress-allow).",
                retryable: false
            )
        }
    }

    /// Whether the operator allowed this host name (and port) as such.
    func allowsHost(_ host: String, port: Int) -> Bool {
        entries.contains { entry in
            if case .host(let allowed, let allowedPort) = entry {
                return allowed == host && (allowedPort == nil || allowedPort == port)
            }
            return false
        }
    }

    private func allowsAddress(_ address: [UInt8], port: Int) -> Bool {
        entries.contains { entry in
            switch entry {
            case .host(let host, let allowedPort):
                return Self.parseAddress(host) == address && (allowedPort == nil || allowedPort == port)
            case .network(let network, let prefix):
                return Self.matches(address, network: network, prefix: prefix)
            }
        }
    }

    static func matches(_ address: [UInt8], network: [UInt8], prefix: Int) -> Bool {
        guard address.count == network.count else { return false }
        var remaining = prefix
        for index in address.indices where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if address[index] & mask != network[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    /// Loopback, private, link-local (metadata included), CGNAT, unique-local, unspecified, multicast and
    /// IPv4-mapped forms of those.
    static func isInternal(_ address: [UInt8]) -> Bool {
        if address.count == 4 {
            let internalV4: [([UInt8], Int)] = [
                ([0, 0, 0, 0], 8), ([10, 0, 0, 0], 8), ([100, 64, 0, 0], 10), ([127, 0, 0, 0], 8),
                ([169, 254, 0, 0], 16), ([172, 16, 0, 0], 12), ([192, 0, 0, 0], 24), ([192, 168, 0, 0], 16),
                ([198, 18, 0, 0], 15), ([224, 0, 0, 0], 4), ([240, 0, 0, 0], 4),
            ]
            return internalV4.contains { matches(address, network: $0.0, prefix: $0.1) }
        }
        if address.count == 16 {
            if address[0..<10].allSatisfy({ $0 == 0 }) && address[10] == 0xFF && address[11] == 0xFF {
                return isInternal(Array(address[12..<16]))
            }
            let internalV6: [([UInt8], Int)] = [
                ([UInt8](repeating: 0, count: 16), 127),  // :: and ::1
                ([0xFC] + [UInt8](repeating: 0, count: 15), 7),  // unique local
                ([0xFE, 0x80] + [UInt8](repeating: 0, count: 14), 10),  // link local
                ([0xFF] + [UInt8](repeating: 0, count: 15), 8),  // multicast
            ]
            return internalV6.contains { matches(address, network: $0.0, prefix: $0.1) }
        }
        return true
    }

    static func parseAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    static func resolve(_ host: String) -> [[UInt8]] {
        if let literal = parseAddress(host) { return [literal] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [[UInt8]] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if info.pointee.ai_family == AF_INET, let address = info.pointee.ai_addr {
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                    var value = pointer.pointee.sin_addr
                    addresses.append(withUnsafeBytes(of: &value) { Array($0) })
                }
            } else if info.pointee.ai_family == AF_INET6, let address = info.pointee.ai_addr {
                address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    var value = pointer.pointee.sin6_addr
                    addresses.append(withUnsafeBytes(of: &value) { Array($0) })
                }
            }
            cursor = info.pointee.ai_next
        }
        return addresses
    }
}

/// Whom an outbound request is made for, so that a refusal is audited in the right organization with secrets
/// masked: bound (as a task-local) by whoever acts for an organization — the engine around every step, the gateway
/// around a front-door call, an agent's toolbox around a tool call with secrets of its own — and read by
/// `EgressHTTPClient` when the policy refuses a request.
public struct EgressAttribution: Sendable {
    public var orgID: String
    public var runID: String?
    /// Masks secret values in what is recorded of the request (its URL, the reason).
    public var redact: @Sendable (String) -> String

    public init(orgID: String, runID: String?, redact: @escaping @Sendable (String) -> String = { $0 }) {
        self.orgID = orgID
        self.runID = runID
        self.redact = redact
    }

    /// The same attribution, also masking what `more` masks.
    public func masking(with more: @escaping @Sendable (String) -> String) -> EgressAttribution {
        var next = self
        let first = redact
        next.redact = { more(first($0)) }
        return next
    }

    @TaskLocal public static var current: EgressAttribution?
}

/// The hosts a secret may be sent to: exact host names, or `*.domain` for the domain's subdomains (not the domain
/// itself), compared without regard to case.
public enum SecretHostRule {
    /// Whether `host` matches one of `patterns`.
    public static func permits(host: String, patterns: [String]) -> Bool {
        let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        return patterns.contains { pattern in
            let pattern = pattern.lowercased()
            if pattern.hasPrefix("*.") { return host.hasSuffix(String(pattern.dropFirst(1))) }
            return host == pattern
        }
    }

    /// The first of `restrictions` (secret name → its hosts) that forbids sending to `url`'s host, if any.
    public static func violation(url: String, restrictions: [String: [String]]) -> String? {
        guard !restrictions.isEmpty else { return nil }
        let host = URL(string: url)?.host ?? ""
        return restrictions.keys.sorted().first { !permits(host: host, patterns: restrictions[$0] ?? []) }
    }
}
