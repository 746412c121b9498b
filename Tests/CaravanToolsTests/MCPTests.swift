import CaravanCore
import CaravanModels
import CaravanOutbound
import CaravanTestSupport
import CaravanTools
import Foundation
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The `caravan-mcp-fixture` binary that `swift build --build-tests` builds beside the test bundle.
enum MCPFixture {
    static let name = "caravan-mcp-fixture"

    /// `CARAVAN_MCP_FIXTURE` if set, else the first `caravan-mcp-fixture` in the directory of the running test
    /// binary or one of its parents, else `.build/debug/caravan-mcp-fixture` under the working directory.
    static let path: String? = {
        let manager = FileManager.default
        if let path = ProcessInfo.processInfo.environment["CARAVAN_MCP_FIXTURE"] { return path }
        let executable = (try? manager.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent(name).path
            if manager.isExecutableFile(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        let fallback = manager.currentDirectoryPath + "/.build/debug/" + name
        return manager.isExecutableFile(atPath: fallback) ? fallback : nil
    }()

    static func config(name: String = "fixture", env: [String: String] = [:]) throws -> MCPServerConfig {
        guard let path else {
            throw FixtureMissing()
        }
        return MCPServerConfig(name: name, command: [path], env: env)
    }

    struct FixtureMissing: Error, CustomStringConvertible {
        var description: String {
            "The \(MCPFixture.name) binary was not found beside the test binary nor in .build/debug: build it with "
                + "`swift build --build-tests` (or `swift build --product \(MCPFixture.name)`), or set CARAVAN_MCP_FIXTURE."
        }
    }
}

func processExists(_ pid: Int32) -> Bool {
    kill(pid, 0) == 0 || errno != ESRCH
}

func waitUntil(_ timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

func withEgress<T>(allow: String, _ body: (EgressHTTPClient) async throws -> T) async throws -> T {
    let http = EgressHTTPClient(policy: try EgressPolicy(allowList: allow))
    do {
        let result = try await body(http)
        try await http.shutdown()
        return result
    } catch {
        try? await http.shutdown()
        throw error
    }
}

let quietLogger = TestLogging.quiet

/// The checks every transport must pass: tools listed with their schemas, calls answered, tool errors reported.
func checkFixtureTools(_ connection: MCPConnection) async throws {
    let tools = try await connection.listTools()
    let names = Set(tools.map(\.name))
    #expect(names.isSuperset(of: ["add", "echo", "fail", "slow"]))
    let add = try #require(tools.first { $0.name == "add" })
    #expect(add.description == "Adds two numbers.")
    #expect(add.parameters["type"] == "object")
    #expect(add.parameters["properties"]?["a"]?["type"] == "number")
    #expect(add.parameters["required"] == ["a", "b"])

    let sum = try await connection.callTool(name: "add", arguments: ["a": 2, "b": 3.5])
    #expect(sum == ToolOutput(text: "5.5", isError: false))
    let echo = try await connection.callTool(name: "echo", arguments: ["text": "héllo, wörld"])
    #expect(echo.text == "héllo, wörld")
    #expect(echo.isError == false)
    let fail = try await connection.callTool(name: "fail", arguments: [:])
    #expect(fail.isError)
    #expect(fail.text == "this tool always fails")

    let unknown = await #expect(throws: Failure.self) { try await connection.callTool(name: "nope", arguments: nil) }
    #expect(unknown?.code == "mcp_error")
    let badArguments = await #expect(throws: Failure.self) {
        try await connection.callTool(name: "echo", arguments: [1, 2])
    }
    #expect(badArguments?.code == "invalid_arguments")
}

@Suite("MCP over stdio")
struct MCPStdioTests {
    @Test("lists and calls the fixture's tools, and close() ends the child")
    func basics() async throws {
        try await withEgress(allow: "") { http in
            let connection = try await MCPConnection.connect(
                try MCPFixture.config(),
                http: http,
                logger: quietLogger,
                timeout: .seconds(20)
            )
            #expect(connection.serverName == "caravan-mcp-fixture")
            let pid = try #require(connection.processIdentifier)
            #expect(processExists(pid))
            #if os(Linux)
            // The child must not inherit the blocked signals of the thread that started it, or SIGTERM would not stop it.
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            let blocked = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }.flatMap {
                UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
            }
            #expect(blocked.map { $0 & (1 << (UInt64(SIGTERM) - 1)) } == 0)
            #endif
            try await checkFixtureTools(connection)
            #expect(connection.isAlive)

            await connection.close()
            #expect(await waitUntil { !processExists(pid) }, "the fixture should have exited")
            #expect(!connection.isAlive)
            let after = await #expect(throws: Failure.self) {
                try await connection.callTool(name: "echo", arguments: ["text": "x"])
            }
            #expect(after?.code == "mcp_unavailable")
        }
    }

    @Test("a command that does not exist is a clear mcp_unavailable")
    func missingCommand() async throws {
        try await withEgress(allow: "") { http in
            let missing = await #expect(throws: Failure.self) {
                try await MCPConnection.connect(
                    MCPServerConfig(name: "ghost", command: ["caravan-no-such-mcp-server", "--flag"]),
                    http: http,
                    logger: quietLogger,
                    timeout: .seconds(5)
                )
            }
            #expect(missing?.code == "mcp_unavailable")
            #expect(missing?.message.contains("'caravan-no-such-mcp-server' was not found on PATH") == true)
            #expect(missing?.retryable == false)

            let absolute = await #expect(throws: Failure.self) {
                try await MCPConnection.connect(
                    MCPServerConfig(name: "ghost", command: ["/nonexistent/bin/server"]),
                    http: http,
                    logger: quietLogger,
                    timeout: .seconds(5)
                )
            }
            #expect(absolute?.code == "mcp_unavailable")

            let invalid = await #expect(throws: Failure.self) {
                try await MCPConnection.connect(
                    MCPServerConfig(name: "none"),
                    http: http,
                    logger: quietLogger,
                    timeout: .seconds(5)
                )
            }
            #expect(invalid?.code == "invalid_config")
        }
    }

    @Test("a program that exits at once, or never speaks MCP, fails the handshake with mcp_unavailable")
    func notAnMCPServer() async throws {
        try await withEgress(allow: "") { http in
            let start = ContinuousClock.now
            let exits = await #expect(throws: Failure.self) {
                try await MCPConnection.connect(
                    MCPServerConfig(name: "false", command: ["sh", "-c", "echo oops >&2; exit 7"]),
                    http: http,
                    logger: quietLogger,
                    timeout: .seconds(20)
                )
            }
            #expect(exits?.code == "mcp_unavailable")
            // What the child printed goes to the operator's log, never into an error a user reads.
            #expect(exits?.message.contains("oops") == false, "\(exits?.message ?? "")")
            #expect(ContinuousClock.now - start < .seconds(10), "a dead server must not wait for the timeout")

            let silent = await #expect(throws: Failure.self) {
                try await MCPConnection.connect(
                    MCPServerConfig(name: "silent", command: ["sleep", "30"]),
                    http: http,
                    logger: quietLogger,
                    timeout: .milliseconds(500)
                )
            }
            #expect(silent?.code == "mcp_unavailable")
        }
    }

    @Test("the child gets PATH, HOME and the configured variables only")
    func environment() async throws {
        setenv("CARAVAN_MCP_TEST_PARENT_ONLY", "leaked", 1)
        try await withEgress(allow: "") { http in
            let connection = try await MCPConnection.connect(
                try MCPFixture.config(env: ["FIXTURE_GREETING": "hi"]),
                http: http,
                logger: quietLogger,
                timeout: .seconds(20)
            )
            defer { Task { await connection.close() } }
            #expect(try await connection.callTool(name: "env", arguments: ["name": "FIXTURE_GREETING"]).text == "hi")
            #expect(
                try await connection.callTool(name: "env", arguments: ["name": "CARAVAN_MCP_TEST_PARENT_ONLY"]).text
                    == ""
            )
            #expect(try await connection.callTool(name: "env", arguments: ["name": "PATH"]).text.isEmpty == false)
            await connection.close()
        }
    }

    @Test("a slow call times out, the server is told, and the connection stays usable")
    func timeout() async throws {
        try await withEgress(allow: "") { http in
            let connection = try await MCPConnection.connect(
                try MCPFixture.config(),
                http: http,
                logger: quietLogger,
                timeout: .seconds(20)
            )
            let start = ContinuousClock.now
            let slow = await #expect(throws: Failure.self) {
                try await connection.callTool(name: "slow", arguments: ["ms": 10_000], timeout: .milliseconds(300))
            }
            #expect(slow?.code == "tool_timeout")
            #expect(slow?.retryable == true)
            #expect(ContinuousClock.now - start < .seconds(5))
            #expect(try await connection.callTool(name: "echo", arguments: ["text": "still here"]).text == "still here")
            #expect(try await connection.callTool(name: "slow", arguments: ["ms": 10]).text == "slept 10 ms")
            await connection.close()
        }
    }

    @Test("a server that dies fails the pending call at once")
    func crash() async throws {
        try await withEgress(allow: "") { http in
            let connection = try await MCPConnection.connect(
                try MCPFixture.config(),
                http: http,
                logger: quietLogger,
                timeout: .seconds(30)
            )
            let start = ContinuousClock.now
            let crashed = await #expect(throws: Failure.self) {
                try await connection.callTool(name: "crash", arguments: [:])
            }
            #expect(crashed?.code == "mcp_unavailable")
            #expect(ContinuousClock.now - start < .seconds(10))
            #expect(await waitUntil { !connection.isAlive })
            await connection.close()
        }
    }

    @Test("concurrent calls on one connection each get their own answer; the log counts them")
    func concurrentCalls() async throws {
        try await withTemporaryDirectory { directory in
            let log = directory + "/calls.jsonl"
            try await withEgress(allow: "") { http in
                let connection = try await MCPConnection.connect(
                    try MCPFixture.config(env: ["CARAVAN_MCP_FIXTURE_LOG": log]),
                    http: http,
                    logger: quietLogger,
                    timeout: .seconds(20)
                )
                let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                    for index in 0..<20 {
                        group.addTask {
                            (
                                index,
                                try await connection.callTool(name: "echo", arguments: ["text": .string("n\(index)")])
                                    .text
                            )
                        }
                    }
                    return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
                }
                #expect(answers.count == 20)
                #expect(answers.allSatisfy { $0.value == "n\($0.key)" })
                await connection.close()
            }
            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 20)
        }
    }
}

@Suite("MCP over HTTP")
struct MCPHTTPTests {
    @Test(
        "lists and calls tools with sessions and event-stream answers; close() deletes the session",
        arguments: [true, false]
    )
    func basics(sessions: Bool) async throws {
        try await FakeMCPHTTPServer.with(mode: sessions ? .sessions : .stateless) { server in
            try await withEgress(allow: "127.0.0.1:\(server.port)") { http in
                let config = MCPServerConfig(name: "fake", url: server.url, headers: ["X-Api-Key": "k-123"])
                let connection = try await MCPConnection.connect(
                    config,
                    http: http,
                    logger: quietLogger,
                    timeout: .seconds(20)
                )
                #expect(connection.serverName == "caravan-fake-mcp")
                #expect(connection.processIdentifier == nil)
                try await checkFixtureTools(connection)
                #expect(server.calls("add") == 1)
                #expect(server.calls("echo") == 1)  // the call with bad arguments never left
                #expect(server.lastHeaders["x-api-key"] == "k-123")
                if sessions {
                    #expect(server.sessionsOpened == 1)
                    #expect(server.lastHeaders["mcp-session-id"] != nil)
                    #expect(server.lastHeaders["mcp-protocol-version"] != nil)
                }
                await connection.close()
                #expect(server.sessionsDeleted == (sessions ? 1 : 0))
                #expect(!connection.isAlive)
            }
        }
    }

    @Test("an MCP URL that the egress policy does not allow is refused before any request")
    func egressDenied() async throws {
        try await FakeMCPHTTPServer.with { server in
            try await withEgress(allow: "") { http in
                let denied = await #expect(throws: Failure.self) {
                    try await MCPConnection.connect(
                        MCPServerConfig(name: "fake", url: server.url),
                        http: http,
                        logger: quietLogger,
                        timeout: .seconds(5)
                    )
                }
                #expect(denied?.code == "egress_denied")
                #expect(server.sessionsOpened == 0)
            }
            try await withEgress(allow: "127.0.0.1:1") { http in
                let otherPort = await #expect(throws: Failure.self) {
                    try await MCPConnection.connect(
                        MCPServerConfig(name: "fake", url: server.url),
                        http: http,
                        logger: quietLogger,
                        timeout: .seconds(5)
                    )
                }
                #expect(otherPort?.code == "egress_denied")
            }
            try await withEgress(allow: "") { http in
                let metadata = await #expect(throws: Failure.self) {
                    try await MCPConnection.connect(
                        MCPServerConfig(name: "metadata", url: "http://169.254.169.254/mcp"),
                        http: http,
                        logger: quietLogger,
                        timeout: .seconds(5)
                    )
                }
                #expect(metadata?.code == "egress_denied")
            }
        }
    }

    @Test("a call times out over HTTP too")
    func timeout() async throws {
        try await FakeMCPHTTPServer.with { server in
            try await withEgress(allow: "127.0.0.1:\(server.port)") { http in
                let connection = try await MCPConnection.connect(
                    MCPServerConfig(name: "fake", url: server.url),
                    http: http,
                    logger: quietLogger,
                    timeout: .seconds(20)
                )
                let slow = await #expect(throws: Failure.self) {
                    try await connection.callTool(name: "slow", arguments: ["ms": 10_000], timeout: .milliseconds(300))
                }
                #expect(slow?.code == "tool_timeout")
                #expect(try await connection.callTool(name: "echo", arguments: ["text": "ok"]).text == "ok")
                await connection.close()
            }
        }
    }
}

@Suite("MCP connection cache")
struct MCPConnectionCacheTests {
    @Test("reuses one connection per organization and server, replaces dead ones, and closes all on shutdown")
    func http() async throws {
        try await FakeMCPHTTPServer.with { server in
            try await withEgress(allow: "127.0.0.1:\(server.port)") { http in
                let cache = MCPConnectionCache(http: http, logger: quietLogger, timeout: .seconds(20))
                let config = MCPServerConfig(name: "fake", url: server.url)
                // Concurrent first uses share one connection.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<5 {
                        group.addTask {
                            let output = try await cache.callTool(
                                orgID: "org_a",
                                config: config,
                                name: "echo",
                                arguments: ["text": .string("\(index)")]
                            )
                            #expect(output.text == "\(index)")
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(server.sessionsOpened == 1)
                #expect(try await cache.listTools(orgID: "org_a", config: config).count == 4)
                #expect(server.sessionsOpened == 1)
                _ = try await cache.callTool(orgID: "org_b", config: config, name: "echo", arguments: ["text": "b"])
                #expect(server.sessionsOpened == 2)
                #expect(cache.count == 2)

                // The server forgets the sessions: the next call fails, and the one after reconnects.
                await server.dropSessions()
                let lost = await #expect(throws: Failure.self) {
                    try await cache.callTool(orgID: "org_a", config: config, name: "echo", arguments: ["text": "x"])
                }
                #expect(lost?.code == "mcp_unavailable")
                #expect(
                    try await cache.callTool(orgID: "org_a", config: config, name: "echo", arguments: ["text": "again"])
                        .text == "again"
                )
                #expect(server.sessionsOpened == 3)

                await cache.shutdown()
                #expect(cache.count == 0)
                #expect(server.sessionsDeleted == 1)  // org_a's new session; org_b's was dropped by the server
                let closed = await #expect(throws: Failure.self) {
                    try await cache.callTool(orgID: "org_a", config: config, name: "echo", arguments: ["text": "x"])
                }
                #expect(closed?.code == "mcp_unavailable")
            }
        }
    }

    @Test("runs only the commands the operator allowed, exactly, and never an API user's")
    func commandPolicy() async throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent(
            "caravan-mcp-\(UInt64.random(in: 0...UInt64.max))"
        ).path
        let policy = try MCPCommandPolicy(parsing: "mcp-server-files /srv/docs, /opt/weather --units metric ,")
        #expect(policy.permits(["mcp-server-files", "/srv/docs"]))
        #expect(policy.permits(["/opt/weather", "--units", "metric"]))
        #expect(!policy.permits(["mcp-server-files", "/etc"]))
        #expect(!policy.permits(["mcp-server-files"]))
        #expect(throws: MCPCommandPolicyError.self) { try MCPCommandPolicy(parsing: "--flag-only") }
        try await withEgress(allow: "") { http in
            let fixture = try MCPFixture.config()
            for policy in [MCPCommandPolicy.none, MCPCommandPolicy(allowed: [fixture.command ?? []])] {
                let cache = MCPConnectionCache(http: http, logger: quietLogger, commands: policy, timeout: .seconds(20))
                let refused = await #expect(throws: Failure.self) {
                    try await cache.connection(
                        orgID: "org_a",
                        config: MCPServerConfig(name: "pw", command: ["/bin/sh", "-c", "touch \(marker)"])
                    )
                }
                #expect(refused?.code == "mcp_command_not_allowed")
                #expect(refused?.message.contains(marker) == false)
                // The fixture with an extra argument is another command.
                let extended = await #expect(throws: Failure.self) {
                    try await cache.connection(
                        orgID: "org_a",
                        config: MCPServerConfig(name: "fx", command: (fixture.command ?? []) + ["--x"])
                    )
                }
                #expect(extended?.code == "mcp_command_not_allowed")
                await cache.shutdown()
            }
            #expect(!FileManager.default.fileExists(atPath: marker), "a refused command ran")
            // A variable that changes what the program loads is refused before anything starts.
            let preload = await #expect(throws: Failure.self) {
                try await MCPConnection.connect(
                    try MCPFixture.config(env: ["LD_PRELOAD": "/tmp/evil.so"]),
                    http: http,
                    logger: quietLogger,
                    timeout: .seconds(5)
                )
            }
            #expect(preload?.code == "invalid_config")
            #expect(MCPServerConfig.mayPassToChild("GITHUB_TOKEN"))
            for name in [
                "LD_PRELOAD", "ld_library_path", "PATH", "NODE_OPTIONS", "PYTHONPATH", "BASH_FUNC_x%%", "A=B", "",
            ] {
                #expect(!MCPServerConfig.mayPassToChild(name), "\(name)")
            }
        }
    }

    @Test("restarts a stdio server that died, and stops them all on shutdown")
    func stdio() async throws {
        try await withEgress(allow: "") { http in
            let config = try MCPFixture.config()
            let cache = MCPConnectionCache(
                http: http,
                logger: quietLogger,
                commands: MCPCommandPolicy(allowed: [config.command ?? []]),
                timeout: .seconds(20)
            )
            let first = try await cache.connection(orgID: "org_a", config: config)
            let again = try await cache.connection(orgID: "org_a", config: config)
            #expect(first === again)
            let firstPID = try #require(first.processIdentifier)
            _ = try? await cache.callTool(orgID: "org_a", config: config, name: "crash", arguments: [:])
            #expect(await waitUntil { !first.isAlive })
            #expect(
                try await cache.callTool(orgID: "org_a", config: config, name: "add", arguments: ["a": 1, "b": 1]).text
                    == "2"
            )
            let second = try await cache.connection(orgID: "org_a", config: config)
            let secondPID = try #require(second.processIdentifier)
            #expect(secondPID != firstPID)
            await cache.shutdown()
            #expect(await waitUntil { !processExists(secondPID) })
        }
    }
}
