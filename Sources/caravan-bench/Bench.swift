import ArgumentParser
import AsyncHTTPClient
import CaravanCore
import CaravanTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Runs the workloads of `docs/benchmarks.md` against a `caravan` binary it starts itself, on a fresh data
/// directory (or a fresh PostgreSQL database) for every repetition, and prints the figures.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "caravan-bench", abstract: "Benchmark W1, W2 and W3.")

    @Option(help: "The caravan binary (a release build).") var binary: String = ".build/release/caravan"
    @Option(help: "sqlite, or postgres (uses CARAVAN_TEST_POSTGRES_URL to make a fresh database per repetition).")
    var backend: String = "sqlite"
    @Option(help: "w1, w2, w3, gateway, or all (w1, w2, w3).") var workload: String = "all"
    @Option(help: "Repetitions of each workload.") var repetitions: Int = 3
    @Option(help: "Runs in W1.") var runs: Int = 1000
    @Option(help: "Connections the W1 client uses.") var connections: Int = 8

    func run() async throws {
        print("caravan-bench \(Clock.rfc3339(Clock.nowMilliseconds())) backend=\(backend) nproc=\(ProcessInfo.processInfo.activeProcessorCount)")
        let workloads = workload == "all" ? ["w1", "w2", "w3"] : [workload]
        for name in workloads {
            var results: [[String: Double]] = []
            for round in 1...self.repetitions {
                let result: [String: Double]
                switch name {
                case "w1": result = try await withServer { try await w1(port: $0.port, pid: $0.pid) }
                case "w2": result = try await withServer { try await w2(port: $0.port) }
                case "w3": result = try await w3()
                case "gateway": result = try await gateway()
                default: throw ValidationError("unknown workload \(name)")
                }
                print("  \(name) round \(round): " + result.sorted { $0.key < $1.key }.map { "\($0.key)=\(format($0.value))" }.joined(separator: " "))
                results.append(result)
            }
            print("\(name.uppercased()) (\(backend), median of \(self.repetitions), min..max):")
            for key in results.first?.keys.sorted() ?? [] {
                let values = results.compactMap { $0[key] }.sorted()
                print("  \(key): \(format(values[values.count / 2])) (\(format(values.first ?? 0))..\(format(values.last ?? 0)))")
            }
        }
    }

    func format(_ value: Double) -> String { String(format: value >= 100 ? "%.0f" : "%.2f", value) }

    // MARK: Server

    struct Server {
        var port: Int
        var pid: Int32
    }

    /// Starts the server on a fresh database, runs `body`, stops the server.
    func withServer<T: Sendable>(
        extraArguments: [String] = [],
        _ body: @Sendable (Server) async throws -> T
    ) async throws -> T {
        try await withDatabaseArguments { arguments in
            let process = try await CaravanProcess(
                arguments: ["serve", "--port", "0"] + arguments + Self.serveArguments + extraArguments,
                binary: binary
            )
            defer { process.send(signal: SIGTERM) }
            Self.useCredentials(try await bootstrapCredentials(port: process.port))
            let result = try await body(Server(port: process.port, pid: process.pid))
            process.send(signal: SIGTERM)
            _ = try await process.waitForExit()
            return result
        }
    }

    func withDatabaseArguments<T: Sendable>(_ body: @Sendable ([String]) async throws -> T) async throws -> T {
        if backend == "postgres" {
            // No data directory with PostgreSQL: the master key comes from the command line.
            return try await PostgresTestServer.withFreshDatabase { url in try await body(["--database", url]) }
        }
        return try await withTemporaryDirectory { directory in try await body(["--data", directory]) }
    }

    // MARK: HTTP

    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// What every server of the benchmark is started with: no request limit (one API key drives all the load)
    /// and a master key (PostgreSQL runs have no data directory to generate one into).
    static let serveArguments = [
        "--rate-limit", "0", "--master-key", Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString(),
    ]

    private static let credentials = Mutex<[(String, String)]>([])

    /// Sends these headers (an API key) with every later call.
    static func useCredentials(_ headers: [(String, String)]) {
        credentials.withLock { $0 = headers }
    }

    static func call(_ method: HTTPMethod, _ url: String, body: String? = nil, contentType: String = "application/json") async throws
        -> (status: Int, json: JSONValue)
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in credentials.withLock({ $0 }) { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await client.execute(request, timeout: .seconds(60))
        let buffer = try await response.body.collect(upTo: 64 << 20)
        let json = (try? JSONValue(parsing: buffer.readableBytesView, maxDepth: 512)) ?? .null
        return (Int(response.status.code), json)
    }

    static let w1Definition = """
        name: bench-w1
        steps:
          - {id: a, template: "a"}
          - {id: b, needs: [a], template: "{{ steps.a.output }}b"}
          - {id: c, needs: [b], template: "{{ steps.b.output }}c"}
        output: "{{ steps.c.output }}"
        """

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }

    /// CPU seconds (user + system) the process has used.
    static func cpuSeconds(pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func peakRSS(pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    // MARK: W1

    func w1(port: Int, pid: Int32) async throws -> [String: Double] {
        let base = "http://127.0.0.1:\(port)"
        let put = try await Self.call(.PUT, base + "/v1/workflows/bench-w1", body: Self.w1Definition, contentType: "application/yaml")
        guard put.status == 201 else { throw ValidationError("PUT failed: \(put)") }
        let total = runs
        let startWall = Clock.nowMilliseconds()
        let started = ContinuousClock.now
        let cpuBefore = Self.cpuSeconds(pid: pid)
        let sentAt = try await withThrowingTaskGroup(of: [(String, Int64)].self) { group in
            for connection in 0..<connections {
                group.addTask {
                    var sent: [(String, Int64)] = []
                    for _ in stride(from: connection, to: total, by: connections) {
                        let at = Clock.nowMilliseconds()
                        let response = try await Self.call(.POST, base + "/v1/workflows/bench-w1/runs", body: #"{"input":{}}"#)
                        guard response.status == 201, let id = response.json["id"]?.stringValue else {
                            throw ValidationError("start failed: \(response)")
                        }
                        sent.append((id, at))
                    }
                    return sent
                }
            }
            var all: [String: Int64] = [:]
            for try await part in group { for (id, at) in part { all[id] = at } }
            return all
        }
        // Wait until nothing is queued or running.
        while true {
            let running = try await Self.call(.GET, base + "/v1/runs?workflow=bench-w1&status=running&limit=1")
            let queued = try await Self.call(.GET, base + "/v1/runs?workflow=bench-w1&status=queued&limit=1")
            if running.json["items"]?.arrayValue?.isEmpty == true && queued.json["items"]?.arrayValue?.isEmpty == true { break }
            if ContinuousClock.now - started > .seconds(120) { throw ValidationError("W1 did not finish") }
            try await Task.sleep(for: .milliseconds(20))
        }
        let peak = Self.peakRSS(pid: pid)
        let serverCPU = Self.cpuSeconds(pid: pid) - cpuBefore
        var latencies: [Double] = []
        var lastFinish: Int64 = 0
        var cursor: String?
        var succeeded = 0
        repeat {
            let page = try await Self.call(.GET, base + "/v1/runs?workflow=bench-w1&limit=500" + (cursor.map { "&cursor=\($0)" } ?? ""))
            for run in page.json["items"]?.arrayValue ?? [] {
                guard run["status"] == "succeeded", run["output"] == "abc", let id = run["id"]?.stringValue,
                    let finished = run["finished_at"]?.stringValue.flatMap(Clock.parseRFC3339), let sent = sentAt[id]
                else { throw ValidationError("a run did not succeed with \"abc\": \(run)") }
                succeeded += 1
                latencies.append(Double(finished - sent))
                lastFinish = max(lastFinish, finished)
            }
            cursor = page.json["next_cursor"]?.stringValue
        } while cursor != nil
        guard succeeded == total else { throw ValidationError("\(succeeded) of \(total) runs succeeded") }
        latencies.sort()
        let wall = Double(lastFinish - startWall) / 1000
        return [
            "wall_s": wall, "workflows_per_s": Double(total) / wall, "steps_per_s": 3 * Double(total) / wall,
            "latency_p50_ms": Self.percentile(latencies, 0.5), "latency_p99_ms": Self.percentile(latencies, 0.99),
            "peak_rss_mb": peak, "server_cpu_ms_per_run": serverCPU * 1000 / Double(total),
        ]
    }

    // MARK: W2

    func w2(port: Int) async throws -> [String: Double] {
        let base = "http://127.0.0.1:\(port)"
        _ = try await Self.call(.PUT, base + "/v1/workflows/bench-w1", body: Self.w1Definition, contentType: "application/yaml")
        var times: [Double] = []
        for _ in 0..<200 {
            let start = ContinuousClock.now
            let response = try await Self.call(.POST, base + "/v1/workflows/bench-w1/runs?wait=10s", body: #"{"input":{}}"#)
            let elapsed = ContinuousClock.now - start
            guard response.status == 201, response.json["output"] == "abc" else { throw ValidationError("W2 run failed: \(response)") }
            times.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
        }
        times.sort()
        return ["rtt_p50_ms": Self.percentile(times, 0.5), "rtt_p99_ms": Self.percentile(times, 0.99)]
    }

    // MARK: Gateway overhead

    /// `POST /v1/chat/completions` straight to a local fake provider, and through Caravan to the same fake,
    /// alternately on keep-alive connections: the difference of the medians is what Caravan adds (auth, routing,
    /// the provider lookup, the budget check, metering).
    func gateway() async throws -> [String: Double] {
        try await FakeOpenAIServer.with { fake in
            try await withServer(extraArguments: ["--egress-allow", "127.0.0.1"]) { server in
                let base = "http://127.0.0.1:\(server.port)"
                let provider = #"{"kind": "openai", "base_url": "\#(fake.baseURL)", "models": ["m1"]}"#
                _ = try await Self.call(.PUT, base + "/v1/providers/local", body: provider)
                let through = #"{"model": "local/m1", "messages": [{"role": "user", "content": "hello"}]}"#
                let direct = #"{"model": "m1", "messages": [{"role": "user", "content": "hello"}]}"#
                var viaTimes: [Double] = []
                var directTimes: [Double] = []
                for index in 0..<1_100 {
                    let start = ContinuousClock.now
                    let response = try await Self.call(.POST, fake.baseURL + "/chat/completions", body: direct)
                    let middle = ContinuousClock.now
                    let routed = try await Self.call(.POST, base + "/v1/chat/completions", body: through)
                    let end = ContinuousClock.now
                    guard response.status == 200, routed.status == 200, routed.json["choices"] != nil else {
                        throw ValidationError("gateway call failed: \(routed)")
                    }
                    if index < 100 { continue }  // warm-up
                    directTimes.append(Self.milliseconds(middle - start))
                    viaTimes.append(Self.milliseconds(end - middle))
                }
                directTimes.sort()
                viaTimes.sort()
                return [
                    "direct_p50_ms": Self.percentile(directTimes, 0.5), "direct_p99_ms": Self.percentile(directTimes, 0.99),
                    "caravan_p50_ms": Self.percentile(viaTimes, 0.5), "caravan_p99_ms": Self.percentile(viaTimes, 0.99),
                    "overhead_p50_ms": Self.percentile(viaTimes, 0.5) - Self.percentile(directTimes, 0.5),
                ]
            }
        }
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    // MARK: W3

    func w3() async throws -> [String: Double] {
        try await TestHTTPServer.with { harness in
            try await withDatabaseArguments { arguments in
                let serve = ["serve", "--port", "0", "--egress-allow", "127.0.0.1", "--node-id", "bench-node"]
                    + arguments + Self.serveArguments
                let first = try await CaravanProcess(arguments: serve, binary: binary)
                Self.useCredentials(try await bootstrapCredentials(port: first.port))
                let base = "http://127.0.0.1:\(first.port)"
                let definition = """
                    {"name": "bench-w3", "steps": [
                      {"id": "a", "http": {"method": "POST", "url": "\(harness.baseURL)/count/a"}},
                      {"id": "b", "needs": ["a"], "http": {"method": "POST", "url": "\(harness.baseURL)/slow/2000"}, "timeout": "10s"},
                      {"id": "c", "needs": ["b"], "http": {"method": "POST", "url": "\(harness.baseURL)/count/c"}}
                    ]}
                    """
                _ = try await Self.call(.PUT, base + "/v1/workflows/bench-w3", body: definition)
                let ids = try await withThrowingTaskGroup(of: [String].self) { group in
                    for connection in 0..<8 {
                        group.addTask {
                            var ids: [String] = []
                            for _ in stride(from: connection, to: 200, by: 8) {
                                let response = try await Self.call(.POST, base + "/v1/workflows/bench-w3/runs", body: #"{"input":{}}"#)
                                ids.append(response.json["id"]?.stringValue ?? "")
                            }
                            return ids
                        }
                    }
                    var all: [String] = []
                    for try await part in group { all += part }
                    return all
                }
                try await Task.sleep(for: .seconds(1))
                first.send(signal: SIGKILL)
                _ = try await first.waitForExit()
                let second = try await CaravanProcess(arguments: serve, binary: binary)
                defer { second.send(signal: SIGTERM) }
                let ready = ContinuousClock.now
                let secondBase = "http://127.0.0.1:\(second.port)"
                var lastFinish: Int64 = 0
                let readyWall = Clock.nowMilliseconds()
                while true {
                    var done = 0
                    var cursor: String?
                    repeat {
                        let page = try await Self.call(.GET, secondBase + "/v1/runs?workflow=bench-w3&status=succeeded&limit=500" + (cursor.map { "&cursor=\($0)" } ?? ""))
                        for run in page.json["items"]?.arrayValue ?? [] {
                            done += 1
                            lastFinish = max(lastFinish, run["finished_at"]?.stringValue.flatMap(Clock.parseRFC3339) ?? 0)
                        }
                        cursor = page.json["next_cursor"]?.stringValue
                    } while cursor != nil
                    if done == ids.count { break }
                    if ContinuousClock.now - ready > .seconds(60) { throw ValidationError("W3: only \(done) of \(ids.count) succeeded") }
                    try await Task.sleep(for: .milliseconds(20))
                }
                var violations = 0
                let a = harness.keys("/count/a")
                let c = harness.keys("/count/c")
                let slow = harness.keys("/slow/2000")
                var slowTwice = 0
                for id in ids {
                    if a.filter({ $0 == "\(id):a" }).count != 1 { violations += 1 }
                    if c.filter({ $0 == "\(id):c" }).count != 1 { violations += 1 }
                    let calls = slow.filter { $0 == "\(id):b" }.count
                    if calls > 2 || calls == 0 { violations += 1 }
                    if calls == 2 { slowTwice += 1 }
                }
                if Set(slow).count != ids.count { violations += 1 }
                return [
                    "recovery_s": Double(lastFinish - readyWall) / 1000,
                    "beyond_slow_step_s": Double(lastFinish - readyWall) / 1000 - 2,
                    "violations": Double(violations),
                    "slow_called_twice": Double(slowTwice),
                ]
            }
        }
    }
}
