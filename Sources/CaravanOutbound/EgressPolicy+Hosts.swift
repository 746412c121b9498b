public import CaravanCore
import Foundation
public import NIOCore

extension EgressPolicy {
    /// Checks a destination that is not an HTTP URL (an SMTP server) and says where to connect: the addresses
    /// `host` resolves to, every one of them checked like an HTTP request's host. Connecting to these checked
    /// addresses (never to the name again) leaves no window for a DNS answer that changes after the check.
    /// - Parameters:
    ///   - host: a name or an IP literal (IPv6 with or without brackets).
    ///   - port: the port, which `--egress-allow host:port` entries are matched against.
    /// - Returns: the addresses, IPv4 first, each with `port`.
    /// - Throws: `Failure` with code `egress_denied` (not retryable) or `dns_error` (retryable), as for HTTP.
    public func connectableAddresses(host: String, port: Int) async throws(Failure) -> [SocketAddress] {
        let name = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        guard !name.isEmpty, port > 0, port < 65_536 else {
            throw Failure(code: .egressDenied, message: "The destination has no host or port.", retryable: false)
        }
        let addresses: [[UInt8]]
        if let literal = Self.parseAddress(name) {
            addresses = [literal]
        } else if let resolver {
            addresses = await resolver(name)
        } else {
            addresses = await Self.resolveOffPool(name)
        }
        // A host the operator allowed by name is trusted with whatever it resolves to.
        if allowsHost(name, port: port) {
            guard !addresses.isEmpty else {
                throw Failure(code: .dnsError, message: "The host \(name) does not resolve.", retryable: true)
            }
        } else {
            try vet(addresses, of: Target(scheme: "tcp", host: name, port: port))
        }
        var unique: [[UInt8]] = []
        for address in addresses.sorted(by: { $0.count < $1.count }) where !unique.contains(address) {
            unique.append(address)
        }
        return unique.compactMap { address in
            Self.formatAddress(address).flatMap { try? SocketAddress(ipAddress: $0, port: port) }
        }
    }
}
