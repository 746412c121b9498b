import ArgumentParser
import CaravanCore
import CaravanHarness
import Foundation
import NIOHTTP1

/// How cost grows: W1 at growing run counts (scale), one run of a wide `for_each` (fanout, W5), W1 over several
/// nodes of one PostgreSQL database (nodes, W6).
extension Bench {
    // MARK: Scale

    /// W1 at each count of `--scale-runs`, one fresh server each: workflows/s and peak RSS per count, and the
    /// ratio of the largest count's workflows/s to the smallest's (1 when throughput does not depend on N).
    func scale() async throws -> [String: Double] {
        let counts = try Self.counts(scaleRuns, option: "--scale-runs")
        var result: [String: Double] = [:]
        var throughput: [Int: Double] = [:]
        for count in counts {
            let figures = try await withServer { try await w1([$0], runs: count) }
            for key in ["workflows_per_s", "peak_rss_mb", "latency_p99_ms", "server_cpu_ms_per_run"] {
                result["n\(count)_\(key)"] = figures[key]
            }
            throughput[count] = figures["workflows_per_s"]
        }
        if let smallest = counts.min(), let largest = counts.max(), let low = throughput[smallest], low > 0 {
            result["ratio_largest_to_smallest"] = (throughput[largest] ?? 0) / low
        }
        return result
    }

    // MARK: Fanout (W5)

    /// One run of a workflow whose single step is a `for_each` over `--fanout-items` items (a template per
    /// item): the time from the start request to the run's success, and the server's peak RSS.
    func fanout() async throws -> [String: Double] {
        let items = fanoutItems
        return try await withServer { server in
            let base = "http://127.0.0.1:\(server.port)"
            let definition = """
                name: bench-w5
                steps:
                  - {id: each, for_each: input.items, template: "item {{ item }}"}
                """
            let put = try await Self.call(
                .PUT,
                base + "/v1/workflows/bench-w5",
                body: definition,
                contentType: "application/yaml"
            )
            guard put.status == 201 else { throw ValidationError("PUT failed: \(put)") }
            let input = "{\"input\":{\"items\":[" + (0..<items).map(String.init).joined(separator: ",") + "]}}"
            let idleRSS = Self.residentMemory(pid: server.pid)
            let cpuBefore = Self.cpuSeconds(pid: server.pid)
            let sent = WallClock.system.nowMilliseconds()
            let started = ContinuousClock.now
            let response = try await Self.call(.POST, base + "/v1/workflows/bench-w5/runs", body: input)
            guard response.status == 201, let id = response.json["id"]?.stringValue else {
                throw ValidationError("start failed: \(response)")
            }
            var run = response.json
            while run["status"]?.stringValue != "succeeded" {
                if let status = run["status"]?.stringValue, ["failed", "cancelled", "timed_out"].contains(status) {
                    throw ValidationError("the fanout run ended \(status): \(run["error"] ?? .null)")
                }
                if ContinuousClock.now - started > .seconds(max(120, items / 20)) {
                    throw ValidationError("W5 did not finish")
                }
                try await Task.sleep(for: .milliseconds(20))
                run = try await Self.call(.GET, base + "/v1/runs/\(id)").json
            }
            let cpu = Self.cpuSeconds(pid: server.pid) - cpuBefore
            let peak = Self.peakRSS(pid: server.pid)
            guard let finished = run["finished_at"]?.stringValue.flatMap(Clock.parseRFC3339) else {
                throw ValidationError("the fanout run has no finish time: \(run)")
            }
            // Every item rendered, in order.
            let outputs = run["steps"]?.arrayValue?.first?["output"]?.arrayValue ?? []
            guard outputs.count == items, outputs.first == .string("item 0"),
                outputs.last == .string("item \(items - 1)")
            else {
                throw ValidationError("the fanout step gave \(outputs.count) outputs, not \(items)")
            }
            let seconds = Double(finished - sent) / 1000
            return [
                "run_s": seconds, "items_per_s": Double(items) / seconds, "peak_rss_mb": peak,
                "rss_before_mb": idleRSS, "server_cpu_s": cpu,
            ]
        }
    }

    // MARK: Nodes (W6)

    /// For each count of `--nodes`: that many `caravan serve` processes on one fresh PostgreSQL database, W1
    /// (`--runs`, default 2,000) spread round-robin over their ports. Reports the aggregate workflows/s and the
    /// CPU seconds the nodes and PostgreSQL (the postmaster and its backends) used during the W1, so that a
    /// reader can tell which one bounds it.
    func nodeSeries() async throws -> [String: Double] {
        let counts = try Self.counts(nodes, option: "--nodes")
        guard backend == "postgres",
            let postgresPort = PostgresTestServer.url.flatMap({ URLComponents(string: $0)?.port })
        else {
            throw ValidationError(
                "nodes needs --backend postgres and CARAVAN_TEST_POSTGRES_URL (scripts/with-postgres)"
            )
        }
        guard let postmaster = Self.postmasterPID(port: postgresPort) else {
            throw ValidationError("no PostgreSQL server process listens on port \(postgresPort) on this machine")
        }
        var result: [String: Double] = [:]
        for count in counts {
            let figures = try await withNodes(count) { servers in
                try await w1(
                    servers,
                    runs: runs ?? 2_000,
                    otherCPU: { Self.postgresCPUSeconds(postmaster: postmaster) }
                )
            }
            result["nodes\(count)_workflows_per_s"] = figures["workflows_per_s"]
            result["nodes\(count)_latency_p99_ms"] = figures["latency_p99_ms"]
            result["nodes\(count)_caravan_cpu_s"] = figures["servers_cpu_s"]
            result["nodes\(count)_postgres_cpu_s"] = figures["postgres_cpu_s"]
            result["nodes\(count)_wall_s"] = figures["wall_s"]
        }
        return result
    }

    /// Starts `count` nodes (own port, `--node-id bench-node-N`) on one fresh database, runs `body`, stops them.
    func withNodes<T: Sendable>(_ count: Int, _ body: @Sendable ([Server]) async throws -> T) async throws -> T {
        try await withDatabaseArguments { arguments in
            var processes: [CaravanProcess] = []
            defer { for process in processes { process.send(signal: SIGTERM) } }
            for index in 0..<count {
                // One after the other: the first applies the migrations, the others find them applied.
                processes.append(
                    try await CaravanProcess(
                        arguments: ["serve", "--port", "0", "--node-id", "bench-node-\(index + 1)"] + arguments
                            + Self.serveArguments,
                        binary: binary
                    )
                )
            }
            Self.useCredentials(try await bootstrapCredentials(port: processes[0].port))
            let result = try await body(processes.map { Server(port: $0.port, pid: $0.pid) })
            for process in processes { process.send(signal: SIGTERM) }
            for process in processes { _ = try await process.waitForExit() }
            return result
        }
    }

    /// The PostgreSQL server process (postmaster) started with `-p port`, found in /proc.
    static func postmasterPID(port: Int) -> Int32? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry),
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { continue }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let program = arguments.first, program.hasSuffix("/postgres") || program == "postgres" else {
                continue
            }
            if let flag = arguments.firstIndex(of: "-p"), arguments.indices.contains(flag + 1),
                arguments[flag + 1] == String(port)
            {
                return pid
            }
            if arguments.contains("-p\(port)") { return pid }
        }
        return nil
    }

    /// CPU seconds of a PostgreSQL server: the postmaster's own and those of the children it has reaped, plus
    /// those of its live children (backends, WAL writer, checkpointer). Differences of two samples give the CPU
    /// used between them, whether backends came, went or stayed.
    static func postgresCPUSeconds(postmaster: Int32) -> Double {
        var total = cpuSeconds(pid: postmaster, includingReapedChildren: true)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry), pid != postmaster, parentPID(of: pid) == postmaster else { continue }
            total += cpuSeconds(pid: pid)
        }
        return total
    }

    /// The parent process id (field 4 of /proc/PID/stat).
    static func parentPID(of pid: Int32) -> Int32? {
        guard let fields = statFields(pid: pid), fields.count > 1 else { return nil }
        return Int32(fields[1])
    }
}
