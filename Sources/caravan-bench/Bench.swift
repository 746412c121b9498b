import ArgumentParser
import AsyncHTTPClient
import CaravanCore
import CaravanHarness
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Runs the workloads of `docs/benchmarks.md` against a `caravan` binary it starts itself, on a fresh data
/// directory (or a fresh PostgreSQL database) for every repetition, prints the figures and, with `--record`,
/// appends their medians to the benchmark record.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caravan-bench",
        abstract: "Benchmark W1, W2, W3, the gateway, and how cost grows (scale, fanout, nodes, seeded)."
    )

    @Option(help: "The caravan binary (a release build).") var binary: String = ".build-release/release/caravan"
    @Option(help: "sqlite, or postgres (uses CARAVAN_TEST_POSTGRES_URL to make a fresh database per repetition).")
    var backend: String = "sqlite"
    @Option(
        help:
            "w1, w2, w3, gateway, scale, fanout, nodes, seeded, webhooks, triggers, wasm, knowledge, or all (w1, w2, w3)."
    )
    var workload: String =
        "all"
    @Option(help: "Repetitions of each workload.") var repetitions: Int = 3
    @Option(help: "Runs in W1 (default 1,000) and in each W1 of nodes (default 2,000).") var runs: Int?
    @Option(help: "Connections the W1 client uses.") var connections: Int = 8
    @Option(help: "scale: the run counts of W1, one fresh server each.") var scaleRuns: String = "1000,10000,100000"
    @Option(help: "fanout: the items of the one for_each step.") var fanoutItems: Int = 10_000
    @Option(help: "nodes: how many caravan processes share the PostgreSQL database, one series each.")
    var nodes: String = "1,2,4"
    @Option(help: "seeded: the finished runs stored before measuring.") var seedRuns: Int = 1_000_000
    @Option(help: "knowledge: the megabytes of text ingested.") var knowledgeMegabytes: Int = 100
    @Option(help: "knowledge: the chunks searched (in documents of 1,000).") var knowledgeChunks: Int = 100_000
    @Option(help: "knowledge-local: the OpenAI-format base URL of a real embedding model (scripts/local-model).")
    var embedderURL: String?
    @Option(help: "knowledge-local: the embedding model's name there.") var embedderModel = "multilingual-e5-small-q4"
    @Option(help: "Append each figure's median as a JSON line to this file (docs/bench/results.jsonl).")
    var record: String?
    @Option(help: "The commit recorded (default: git's short sha, -dirty when tracked files changed).")
    var commit: String?

    func validate() throws {
        guard ["sqlite", "postgres"].contains(backend) else { throw ValidationError("--backend is sqlite or postgres") }
        guard repetitions > 0, connections > 0, fanoutItems > 0, seedRuns > 0, (runs ?? 1) > 0 else {
            throw ValidationError("counts must be positive")
        }
        _ = try Self.counts(scaleRuns, option: "--scale-runs")
        _ = try Self.counts(nodes, option: "--nodes")
        if workload == "nodes", backend != "postgres" { throw ValidationError("nodes needs --backend postgres") }
    }

    /// A comma-separated list of positive counts.
    static func counts(_ text: String, option: String) throws -> [Int] {
        let values = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 > 0 }), values.count == text.split(separator: ",").count else {
            throw ValidationError("\(option) is a comma-separated list of positive counts")
        }
        return values
    }

    func run() async throws {
        let started = Clock.rfc3339(WallClock.system.nowMilliseconds())
        let recorder = record.map {
            BenchRecord(path: $0, date: started, commit: commit ?? BenchRecord.currentCommit(), backend: backend)
        }
        print("caravan-bench \(started) backend=\(backend) nproc=\(ProcessInfo.processInfo.activeProcessorCount)")
        let workloads = workload == "all" ? ["w1", "w2", "w3"] : [workload]
        for name in workloads {
            var results: [[String: Double]] = []
            for round in 1...self.repetitions {
                let result: [String: Double]
                switch name {
                case "w1":
                    result = try await withServer { server in
                        // Idle: started, one account and API key made, then 2 s without requests.
                        try await Task.sleep(for: .seconds(2))
                        let idle = Self.residentMemory(pid: server.pid)
                        return try await w1([server], runs: runs ?? 1_000).merging(["idle_rss_mb": idle]) { $1 }
                    }
                case "w2": result = try await withServer { try await w2(port: $0.port) }
                case "w3": result = try await w3()
                case "gateway": result = try await gateway()
                case "scale": result = try await scale()
                case "fanout": result = try await fanout()
                case "nodes": result = try await nodeSeries()
                case "seeded": result = try await seeded()
                case "webhooks": result = try await webhooks()
                case "triggers": result = try await triggers()
                case "wasm": result = try await wasm()
                case "knowledge": result = try await knowledge()
                case "knowledge-local": result = try await knowledgeLocal()
                default: throw ValidationError("unknown workload \(name)")
                }
                print(
                    "  \(name) round \(round): "
                        + result.sorted { $0.key < $1.key }.map { "\($0.key)=\(format($0.value))" }.joined(
                            separator: " "
                        )
                )
                results.append(result)
            }
            print("\(name.uppercased()) (\(backend), median of \(self.repetitions), min..max):")
            var figures: [String: [Double]] = [:]
            for key in results.first?.keys.sorted() ?? [] {
                let values = results.compactMap { $0[key] }.sorted()
                figures[key] = values
                print(
                    "  \(key): \(format(values[values.count / 2])) (\(format(values.first ?? 0))..\(format(values.last ?? 0)))"
                )
            }
            if let recorder {
                try recorder.append(workload: name, figures: figures)
                print("  recorded \(figures.count) figures in \(recorder.path)")
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
        "--rate-limit", "0", "--master-key",
        Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString(),
    ]

    private static let credentials = Mutex<[(String, String)]>([])

    /// Sends these headers (an API key) with every later call.
    static func useCredentials(_ headers: [(String, String)]) {
        credentials.withLock { $0 = headers }
    }

    static func call(
        _ method: HTTPMethod,
        _ url: String,
        body: String? = nil,
        contentType: String = "application/json"
    ) async throws
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

    /// CPU seconds (user + system) the process has used; with `includingReapedChildren`, also those of the
    /// children it has waited for.
    static func cpuSeconds(pid: Int32, includingReapedChildren: Bool = false) -> Double {
        // After the command's closing parenthesis: state, ppid, … utime (index 11), stime, cutime, cstime.
        guard let fields = statFields(pid: pid), fields.count > 14,
            let user = Double(fields[11]), let system = Double(fields[12]),
            let childUser = Double(fields[13]), let childSystem = Double(fields[14])
        else { return 0 }
        let ticks = user + system + (includingReapedChildren ? childUser + childSystem : 0)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The fields of /proc/PID/stat after the command name, or `nil` when the process is gone.
    static func statFields(pid: Int32) -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    /// The most memory the process has held resident (VmHWM), in MB.
    static func peakRSS(pid: Int32) -> Double { memoryField("VmHWM:", pid: pid) }

    /// The memory the process holds resident now (VmRSS), in MB.
    static func residentMemory(pid: Int32) -> Double { memoryField("VmRSS:", pid: pid) }

    private static func memoryField(_ name: String, pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) })
        else { return 0 }
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    // MARK: W1

    /// W1 over `servers` (nodes of one database): `total` runs of `bench-w1` started over `connections` keep-alive
    /// connections, run `i` sent to `servers[i % servers.count]`, then followed until none is queued or running.
    /// The client holds one id and one timestamp per run and at most one request per connection: it never has
    /// more than `connections` requests outstanding, whatever `total` is.
    /// - Parameter otherCPU: CPU seconds of other processes (PostgreSQL), sampled when the servers' are.
    func w1(
        _ servers: [Server],
        runs total: Int,
        otherCPU: (@Sendable () -> Double)? = nil
    ) async throws -> [String: Double] {
        let bases = servers.map { "http://127.0.0.1:\($0.port)" }
        let base = bases[0]
        let put = try await Self.call(
            .PUT,
            base + "/v1/workflows/bench-w1",
            body: Self.w1Definition,
            contentType: "application/yaml"
        )
        guard put.status == 201 || put.status == 200 else { throw ValidationError("PUT failed: \(put)") }
        let connections = self.connections
        let startWall = WallClock.system.nowMilliseconds()
        let started = ContinuousClock.now
        let serversCPU = { servers.reduce(0) { $0 + Self.cpuSeconds(pid: $1.pid) } }
        let cpuBefore = serversCPU()
        let otherBefore = otherCPU?() ?? 0
        let sentAt = try await withThrowingTaskGroup(of: [(String, Int64)].self) { group in
            for connection in 0..<connections {
                group.addTask {
                    var sent: [(String, Int64)] = []
                    sent.reserveCapacity(total / connections + 1)
                    for index in stride(from: connection, to: total, by: connections) {
                        let at = WallClock.system.nowMilliseconds()
                        let url = bases[index % bases.count] + "/v1/workflows/bench-w1/runs"
                        let response = try await Self.call(.POST, url, body: #"{"input":{}}"#)
                        guard response.status == 201, let id = response.json["id"]?.stringValue else {
                            throw ValidationError("start failed: \(response)")
                        }
                        sent.append((id, at))
                    }
                    return sent
                }
            }
            var all: [String: Int64] = [:]
            all.reserveCapacity(total)
            for try await part in group { for (id, at) in part { all[id] = at } }
            return all
        }
        let sendWall = Double(WallClock.system.nowMilliseconds() - startWall) / 1000
        // Wait until nothing is queued or running. By status alone (the database holds only this benchmark's
        // runs, or finished ones), so that each check is one step into the (org, status, id) index however many
        // runs there are.
        let deadline: Duration = .seconds(max(120, total / 50))
        while true {
            let running = try await Self.call(.GET, base + "/v1/runs?status=running&limit=1")
            let queued = try await Self.call(.GET, base + "/v1/runs?status=queued&limit=1")
            if running.json["items"]?.arrayValue?.isEmpty == true && queued.json["items"]?.arrayValue?.isEmpty == true {
                break
            }
            if ContinuousClock.now - started > deadline { throw ValidationError("W1 did not finish") }
            try await Task.sleep(for: .milliseconds(20))
        }
        let peak = servers.map { Self.peakRSS(pid: $0.pid) }.max() ?? 0
        let serverCPU = serversCPU() - cpuBefore
        let otherUsed = (otherCPU?() ?? 0) - otherBefore
        // Every run, page by page (after the clock stopped): each must have succeeded with "abc".
        var latencies: [Double] = []
        latencies.reserveCapacity(total)
        var lastFinish: Int64 = 0
        var cursor: String?
        var succeeded = 0
        repeat {
            let page = try await Self.call(
                .GET,
                base + "/v1/runs?workflow=bench-w1&limit=500" + (cursor.map { "&cursor=\($0)" } ?? "")
            )
            for run in page.json["items"]?.arrayValue ?? [] {
                guard let id = run["id"]?.stringValue, let sent = sentAt[id] else { continue }  // not this W1's
                guard run["status"] == "succeeded", run["output"] == "abc",
                    let finished = run["finished_at"]?.stringValue.flatMap(Clock.parseRFC3339)
                else { throw ValidationError("a run did not succeed with \"abc\": \(run)") }
                succeeded += 1
                latencies.append(Double(finished - sent))
                lastFinish = max(lastFinish, finished)
            }
            cursor = page.json["next_cursor"]?.stringValue
        } while cursor != nil && succeeded < total
        guard succeeded == total else { throw ValidationError("\(succeeded) of \(total) runs succeeded") }
        latencies.sort()
        let wall = Double(lastFinish - startWall) / 1000
        var result = [
            "wall_s": wall, "workflows_per_s": Double(total) / wall, "steps_per_s": 3 * Double(total) / wall,
            "latency_p50_ms": Self.percentile(latencies, 0.5), "latency_p99_ms": Self.percentile(latencies, 0.99),
            "peak_rss_mb": peak, "server_cpu_ms_per_run": serverCPU * 1000 / Double(total),
            "start_requests_s": sendWall,
        ]
        if otherCPU != nil {
            result["servers_cpu_s"] = serverCPU
            result["postgres_cpu_s"] = otherUsed
        }
        return result
    }

    // MARK: W2

    func w2(port: Int) async throws -> [String: Double] {
        let base = "http://127.0.0.1:\(port)"
        _ = try await Self.call(
            .PUT,
            base + "/v1/workflows/bench-w1",
            body: Self.w1Definition,
            contentType: "application/yaml"
        )
        var times: [Double] = []
        for _ in 0..<200 {
            let start = ContinuousClock.now
            let response = try await Self.call(
                .POST,
                base + "/v1/workflows/bench-w1/runs?wait=10s",
                body: #"{"input":{}}"#
            )
            let elapsed = ContinuousClock.now - start
            guard response.status == 201, response.json["output"] == "abc" else {
                throw ValidationError("W2 run failed: \(response)")
            }
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
                    "direct_p50_ms": Self.percentile(directTimes, 0.5),
                    "direct_p99_ms": Self.percentile(directTimes, 0.99),
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
                let serve =
                    ["serve", "--port", "0", "--egress-allow", "127.0.0.1", "--node-id", "bench-node"]
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
                                let response = try await Self.call(
                                    .POST,
                                    base + "/v1/workflows/bench-w3/runs",
                                    body: #"{"input":{}}"#
                                )
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
                let readyWall = WallClock.system.nowMilliseconds()
                while true {
                    var done = 0
                    var cursor: String?
                    repeat {
                        let page = try await Self.call(
                            .GET,
                            secondBase + "/v1/runs?workflow=bench-w3&status=succeeded&limit=500"
                                + (cursor.map { "&cursor=\($0)" } ?? "")
                        )
                        for run in page.json["items"]?.arrayValue ?? [] {
                            done += 1
                            lastFinish = max(
                                lastFinish,
                                run["finished_at"]?.stringValue.flatMap(Clock.parseRFC3339) ?? 0
                            )
                        }
                        cursor = page.json["next_cursor"]?.stringValue
                    } while cursor != nil
                    if done == ids.count { break }
                    if ContinuousClock.now - ready > .seconds(60) {
                        throw ValidationError("W3: only \(done) of \(ids.count) succeeded")
                    }
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
