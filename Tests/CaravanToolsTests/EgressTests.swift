import AsyncHTTPClient
import CaravanCore
import CaravanTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import CaravanOutbound

@Suite("Egress policy")
struct EgressPolicyTests {
    static let internalURLs = [
        "http://127.0.0.1/", "http://127.1.2.3:8080/x", "http://[::1]/", "http://10.1.2.3/", "http://172.16.5.4/",
        "http://172.31.255.255/", "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/",
        "http://100.64.1.1/", "http://100.127.0.1/", "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://[fe80::1]/",
        "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/", "http://localhost/",
        "http://LOCALHOST:8080/", "https://127.0.0.1/",
    ]

    @Test(
        "refuses loopback, private, link-local, metadata, CGNAT, ULA, unspecified and mapped addresses",
        arguments: internalURLs
    )
    func refusesInternal(_ text: String) throws {
        let error = #expect(throws: Failure.self) { try EgressPolicy.strict.check(URL(string: text)!) }
        #expect(error?.code == "egress_denied")
        #expect(error?.retryable == false)
    }

    @Test(
        "refuses schemes other than http and https",
        arguments: ["file:///etc/passwd", "ftp://example.com/x", "gopher://1.2.3.4/"]
    )
    func refusesSchemes(_ text: String) throws {
        let error = #expect(throws: Failure.self) { try EgressPolicy.strict.check(URL(string: text)!) }
        #expect(error?.code == "egress_denied")
    }

    @Test("lets public addresses through")
    func allowsPublic() throws {
        try EgressPolicy.strict.check(URL(string: "http://93.184.216.34/")!)
        try EgressPolicy.strict.check(URL(string: "https://8.8.8.8:8443/path")!)
        try EgressPolicy.strict.check(URL(string: "http://[2606:4700::1111]/")!)
    }

    @Test("a host entry opens that address on every port, and nothing else")
    func hostEntry() throws {
        let policy = try EgressPolicy(allowList: "127.0.0.1")
        try policy.check(URL(string: "http://127.0.0.1/")!)
        try policy.check(URL(string: "http://127.0.0.1:9999/")!)
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://127.0.0.2/")!) }
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://10.0.0.1/")!) }
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://[::1]/")!) }
    }

    @Test("a host:port entry opens that port only")
    func hostPortEntry() throws {
        let policy = try EgressPolicy(allowList: "127.0.0.1:8080, localhost:1234")
        try policy.check(URL(string: "http://127.0.0.1:8080/")!)
        try policy.check(URL(string: "http://localhost:1234/")!)
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://127.0.0.1:8081/")!) }
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://127.0.0.1/")!) }
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://localhost:1235/")!) }
    }

    @Test("a CIDR entry opens its network on every port, and nothing else")
    func cidrEntry() throws {
        let policy = try EgressPolicy(allowList: "10.0.0.0/8,fc00::/7")
        try policy.check(URL(string: "http://10.2.3.4/")!)
        try policy.check(URL(string: "http://10.255.0.1:5000/")!)
        try policy.check(URL(string: "http://[fd00::5]/")!)
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://172.16.0.1/")!) }
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://192.168.0.1/")!) }
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://127.0.0.1/")!) }
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://[fe80::1]/")!) }
    }

    @Test("a name entry opens that name, not the addresses it resolves to")
    func nameEntry() throws {
        let policy = try EgressPolicy(allowList: "localhost")
        try policy.check(URL(string: "http://localhost:4000/")!)
        #expect(throws: Failure.self) { try policy.check(URL(string: "http://127.0.0.1:4000/")!) }
    }

    @Test("bad entries are refused")
    func badEntries() {
        #expect(throws: (any Error).self) { try EgressPolicy(allowList: "10.0.0.0/99") }
        #expect(throws: (any Error).self) { try EgressPolicy(allowList: "host:port") }
    }

    @Test("plain http is pinned to the checked addresses; https, literals and allowed names are not")
    func destinations() async throws {
        let policy = try EgressPolicy(allowList: "127.0.0.0/8,::1")
        guard
            case .pinned(let addresses, let host, let port) = try await policy.destination(
                for: URL(string: "http://localhost:8080/x")!
            )
        else {
            Issue.record("plain http to a name should be pinned")
            return
        }
        #expect(host == "localhost")
        #expect(port == 8080)
        #expect(addresses.first == [127, 0, 0, 1])
        #expect(try await policy.destination(for: URL(string: "https://localhost:8443/")!) == .asGiven)
        #expect(try await policy.destination(for: URL(string: "http://127.0.0.1:8080/")!) == .asGiven)
        let byName = try EgressPolicy(allowList: "localhost")
        #expect(try await byName.destination(for: URL(string: "http://localhost:8080/")!) == .asGiven)
        await #expect(throws: Failure.self) {
            try await EgressPolicy.strict.destination(for: URL(string: "http://localhost/")!)
        }
    }
}

@Suite("Egress HTTP client")
struct EgressHTTPClientTests {
    /// Records what `onDenied` was told.
    final class Denials: Sendable {
        private let list = Mutex<[(URL, Failure)]>([])
        var all: [(URL, Failure)] { list.withLock { $0 } }
        func hook() -> @Sendable (URL, Failure) async -> Void {
            { url, denial in self.list.withLock { $0.append((url, denial)) } }
        }
    }

    func withClient<T>(
        allow: String,
        denials: Denials? = nil,
        _ body: (EgressHTTPClient) async throws -> T
    ) async throws -> T {
        let client = EgressHTTPClient(policy: try EgressPolicy(allowList: allow), onDenied: denials?.hook())
        do {
            let result = try await body(client)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    func get(
        _ url: String,
        method: String = "GET",
        body: String? = nil,
        headers: [(String, String)] = []
    ) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        return request
    }

    func json(_ buffer: ByteBuffer) throws -> [String: String] {
        (try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any] ?? [:])
            .compactMapValues { $0 as? String }
    }

    @Test("refuses an internal address before sending, and reports the refusal")
    func refusesAndReports() async throws {
        let denials = Denials()
        try await withClient(allow: "", denials: denials) { client in
            let error = await #expect(throws: Failure.self) {
                try await client.execute(
                    get("http://169.254.169.254/latest/meta-data/"),
                    timeout: .seconds(5),
                    maxBodyBytes: 1000
                )
            }
            #expect(error?.code == "egress_denied")
            #expect(error?.retryable == false)
            #expect(denials.all.count == 1)
            #expect(denials.all.first?.0.host == "169.254.169.254")
            let scheme = await #expect(throws: Failure.self) {
                try await client.execute(get("file:///etc/passwd"), timeout: .seconds(5), maxBodyBytes: 1000)
            }
            #expect(scheme?.code == "egress_denied")
        }
    }

    @Test("sends plain http to the checked address with the original Host header")
    func pinsPlainHTTP() async throws {
        try await RedirectTestServer.with { server in
            try await withClient(allow: "127.0.0.0/8,::1") { client in
                let response = try await client.execute(
                    get("http://localhost:\(server.port)/echo"),
                    timeout: .seconds(10),
                    maxBodyBytes: 10_000
                )
                #expect(response.status == .ok)
                #expect(try json(response.body)["host"] == "localhost:\(server.port)")
            }
        }
    }

    @Test(
        "a name whose next lookup turns private (DNS rebinding) is still refused: the checked address is the one used"
    )
    func rebindingIsRefused() async throws {
        try await RedirectTestServer.with { server in
            // The name resolves to the allowed 127.0.0.1 once, then to addresses the policy refuses.
            let lookups = Mutex(0)
            let policy = try EgressPolicy(allowList: "127.0.0.1/32").resolving { _ in
                lookups.withLock { count in
                    count += 1
                    return count == 1 ? [[127, 0, 0, 1]] : [[10, 0, 0, 1]]
                }
            }
            let client = EgressHTTPClient(policy: policy)
            do {
                let response = try await client.execute(
                    get("http://rebind.test:\(server.port)/echo"),
                    timeout: .seconds(10),
                    maxBodyBytes: 10_000
                )
                #expect(response.status == .ok, "the request went to the address that was checked")
                #expect(try json(response.body)["host"] == "rebind.test:\(server.port)")
                #expect(
                    lookups.withLock { $0 } == 1,
                    "the name was resolved again between the check and the connection"
                )
                // The next request resolves again and meets the private answer: refused, never sent.
                let error = await #expect(throws: Failure.self) {
                    try await client.execute(
                        get("http://rebind.test:\(server.port)/echo"),
                        timeout: .seconds(10),
                        maxBodyBytes: 10_000
                    )
                }
                #expect(error?.code == "egress_denied")
            } catch {
                try? await client.shutdown()
                throw error
            }
            try await client.shutdown()
        }
    }

    @Test("refuses a redirect to a port the allowlist does not name")
    func refusesRedirectToOtherPort() async throws {
        try await RedirectTestServer.with { allowed in
            try await RedirectTestServer.with { other in
                let denials = Denials()
                try await withClient(allow: "127.0.0.1:\(allowed.port)", denials: denials) { client in
                    let target = "http://127.0.0.1:\(other.port)/echo"
                    let error = await #expect(throws: Failure.self) {
                        try await client.execute(
                            get("\(allowed.baseURL)/redirect?to=\(target)"),
                            timeout: .seconds(10),
                            maxBodyBytes: 10_000
                        )
                    }
                    #expect(error?.code == "egress_denied")
                    #expect(allowed.calls("/redirect") == 1)
                    #expect(other.calls("/echo") == 0)
                    #expect(denials.all.map(\.0.port) == [other.port])
                    // The allowed port itself works.
                    let direct = try await client.execute(
                        get("\(allowed.baseURL)/echo"),
                        timeout: .seconds(10),
                        maxBodyBytes: 10_000
                    )
                    #expect(direct.status == .ok)
                }
            }
        }
    }

    @Test("refuses a redirect to a scheme other than http and https")
    func refusesRedirectToFile() async throws {
        try await RedirectTestServer.with { server in
            try await withClient(allow: "127.0.0.1:\(server.port)") { client in
                let error = await #expect(throws: Failure.self) {
                    try await client.execute(
                        get("\(server.baseURL)/redirect?to=file:///etc/passwd"),
                        timeout: .seconds(10),
                        maxBodyBytes: 10_000
                    )
                }
                #expect(error?.code == "egress_denied")
            }
        }
    }

    @Test("follows five redirects and refuses the sixth")
    func redirectLimit() async throws {
        try await RedirectTestServer.with { server in
            try await withClient(allow: "127.0.0.1:\(server.port)") { client in
                let five = try await client.execute(
                    get("\(server.baseURL)/chain/5"),
                    timeout: .seconds(10),
                    maxBodyBytes: 10_000
                )
                #expect(five.status == .ok)
                #expect(server.calls("/chain/0") == 1)
                let error = await #expect(throws: Failure.self) {
                    try await client.execute(
                        get("\(server.baseURL)/chain/6"),
                        timeout: .seconds(10),
                        maxBodyBytes: 10_000
                    )
                }
                #expect(error?.code == "too_many_redirects")
                // The sixth redirect (from /chain/1) was refused: /chain/0 saw only the first chain.
                #expect(server.calls("/chain/1") == 2)
                #expect(server.calls("/chain/0") == 1)
            }
        }
    }

    @Test("303 continues as a GET without body; 307 keeps the method and body")
    func redirectMethods() async throws {
        try await RedirectTestServer.with { server in
            try await withClient(allow: "127.0.0.1:\(server.port)") { client in
                let seeOther = try await client.execute(
                    get(
                        "\(server.baseURL)/redirect?status=303&to=/echo",
                        method: "POST",
                        body: "hello",
                        headers: [("Content-Type", "text/plain")]
                    ),
                    timeout: .seconds(10),
                    maxBodyBytes: 10_000
                )
                #expect(try json(seeOther.body)["method"] == "GET")
                #expect(try json(seeOther.body)["body"] == "")
                let temporary = try await client.execute(
                    get("\(server.baseURL)/redirect?status=307&to=/echo", method: "POST", body: "hello"),
                    timeout: .seconds(10),
                    maxBodyBytes: 10_000
                )
                #expect(try json(temporary.body)["method"] == "POST")
                #expect(try json(temporary.body)["body"] == "hello")
            }
        }
    }

    @Test("drops credentials when a redirect leaves the origin")
    func dropsCredentialsAcrossOrigins() async throws {
        try await RedirectTestServer.with { first in
            try await RedirectTestServer.with { second in
                try await withClient(allow: "127.0.0.1") { client in
                    let auth = [("Authorization", "Bearer secret")]
                    let same = try await client.execute(
                        get("\(first.baseURL)/redirect?to=/echo", headers: auth),
                        timeout: .seconds(10),
                        maxBodyBytes: 10_000
                    )
                    #expect(try json(same.body)["authorization"] == "Bearer secret")
                    let other = try await client.execute(
                        get("\(first.baseURL)/redirect?to=\(second.baseURL)/echo", headers: auth),
                        timeout: .seconds(10),
                        maxBodyBytes: 10_000
                    )
                    #expect(other.status == .ok)
                    #expect(try json(other.body)["authorization"] == nil)
                    #expect(second.lastRequest("/echo")?.authorization == nil)
                }
            }
        }
    }

    @Test("refuses a body over the cap")
    func bodyCap() async throws {
        try await RedirectTestServer.with { server in
            try await withClient(allow: "127.0.0.1:\(server.port)") { client in
                let fits = try await client.execute(
                    get("\(server.baseURL)/big/1000"),
                    timeout: .seconds(10),
                    maxBodyBytes: 1000
                )
                #expect(fits.body.readableBytes == 1000)
                let error = await #expect(throws: Failure.self) {
                    try await client.execute(
                        get("\(server.baseURL)/big/200000"),
                        timeout: .seconds(10),
                        maxBodyBytes: 1000
                    )
                }
                #expect(error?.code == "response_too_large")
                #expect(error?.retryable == false)
            }
        }
    }

    @Test("streams a response after the checks")
    func streams() async throws {
        try await RedirectTestServer.with { server in
            try await withClient(allow: "127.0.0.1:\(server.port)") { client in
                let response = try await client.stream(
                    get("\(server.baseURL)/redirect?to=/big/300"),
                    timeout: .seconds(10)
                )
                #expect(response.status == .ok)
                var total = 0
                for try await chunk in response.body { total += chunk.readableBytes }
                #expect(total == 300)
                let error = await #expect(throws: Failure.self) {
                    try await client.stream(
                        get("\(server.baseURL)/redirect?to=http://10.0.0.1/"),
                        timeout: .seconds(10)
                    )
                }
                #expect(error?.code == "egress_denied")
            }
        }
    }

    @Test("times out, and reports a refused connection as a retryable network error")
    func timeoutAndNetworkErrors() async throws {
        try await TestHTTPServer.with { server in
            try await withClient(allow: "127.0.0.1") { client in
                let slow = await #expect(throws: Failure.self) {
                    try await client.execute(
                        get("\(server.baseURL)/slow/3000", method: "POST"),
                        timeout: .milliseconds(300),
                        maxBodyBytes: 1000
                    )
                }
                #expect(slow?.code == "timeout")
                #expect(slow?.retryable == true)
                let refused = await #expect(throws: Failure.self) {
                    try await client.execute(get("http://127.0.0.1:1/"), timeout: .seconds(5), maxBodyBytes: 1000)
                }
                #expect(refused?.code == "network_error")
                #expect(refused?.retryable == true)
            }
        }
    }
}
