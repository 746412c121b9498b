import ArgumentParser
import AsyncHTTPClient
import CaravanCore
import CaravanEngine
import CaravanHarness
import CaravanPostgres
import CaravanSQLite
import CaravanStorage
import Foundation
import NIOCore
import NIOHTTP1

/// W4: a database that has grown. `--seed-runs` finished runs of `bench-w1` (one in ten failed) are stored
/// through the engine's run store while the server is stopped, then the server is started again on that
/// database and measured: W1, W2, a page of failed runs, a run's events, and the database's size per run.
extension Bench {
    func seeded() async throws -> [String: Double] {
        let count = seedRuns
        return try await withDatabaseArguments { arguments in
            let serve = ["serve", "--port", "0"] + arguments + Self.serveArguments
            // 1. An account, an API key and the workflow, made through the API; the organization's id.
            let first = try await CaravanProcess(arguments: serve, binary: binary)
            Self.useCredentials(try await bootstrapCredentials(port: first.port))
            let firstBase = "http://127.0.0.1:\(first.port)"
            let put = try await Self.call(
                .PUT,
                firstBase + "/v1/workflows/bench-w1",
                body: Self.w1Definition,
                contentType: "application/yaml"
            )
            let me = try await Self.call(.GET, firstBase + "/v1/me")
            first.send(signal: SIGTERM)
            _ = try await first.waitForExit()
            guard put.status == 201, let orgID = me.json["api_key"]?["organization_id"]?.stringValue else {
                throw ValidationError("setting up the seeded database failed: \(put) \(me)")
            }
            let version = put.json["version"]?.numberValue.map { Int($0) } ?? 1

            // 2. The finished runs, straight into the database.
            let sizeBefore = try await Self.databaseBytes(arguments)
            let seedStart = ContinuousClock.now
            let sample = try await Self.withDatabase(arguments) { database in
                try await RunSeeder.storeFinishedRuns(
                    count,
                    orgID: orgID,
                    workflow: "bench-w1",
                    version: version,
                    stepIDs: ["a", "b", "c"],
                    in: database
                ) { stored in
                    if stored % 100_000 == 0 || stored == count { print("    seeded \(stored) runs") }
                }
            }
            let seedSeconds = Self.milliseconds(ContinuousClock.now - seedStart) / 1000
            let sizeAfter = try await Self.databaseBytes(arguments)

            // 3. The server again, on the grown database.
            let second = try await CaravanProcess(arguments: serve, binary: binary)
            defer { second.send(signal: SIGTERM) }
            let base = "http://127.0.0.1:\(second.port)"
            let server = Server(port: second.port, pid: second.pid)
            let failedPage = try await Self.latencies(200) {
                let page = try await Self.call(.GET, base + "/v1/runs?status=failed&limit=50")
                guard page.status == 200, page.json["items"]?.arrayValue?.count == 50 else {
                    throw ValidationError("listing failed runs answered \(page.status)")
                }
            }
            let events = try await Self.latencies(200) {
                let id = sample.randomElement() ?? ""
                let page = try await Self.call(.GET, base + "/v1/runs/\(id)/events")
                guard page.status == 200, (page.json["items"]?.arrayValue?.count ?? 0) >= 6 else {
                    throw ValidationError("reading a seeded run's events answered \(page.status): \(page.json)")
                }
            }
            let console = try await consolePages(base: base, sample: sample)
            let w1 = try await w1([server], runs: runs ?? 1_000)
            let w2 = try await w2(port: second.port)
            second.send(signal: SIGTERM)
            _ = try await second.waitForExit()
            return [
                "seed_runs_per_s": Double(count) / seedSeconds,
                "db_bytes_per_run": Double(sizeAfter - sizeBefore) / Double(count),
                "db_mb": Double(sizeAfter) / 1_048_576,
                "list_failed_p50_ms": Self.percentile(failedPage, 0.5),
                "list_failed_p99_ms": Self.percentile(failedPage, 0.99),
                "run_events_p50_ms": Self.percentile(events, 0.5), "run_events_p99_ms": Self.percentile(events, 0.99),
                "w1_workflows_per_s": w1["workflows_per_s"] ?? 0, "w1_latency_p99_ms": w1["latency_p99_ms"] ?? 0,
                "w1_peak_rss_mb": w1["peak_rss_mb"] ?? 0,
                "w2_rtt_p50_ms": w2["rtt_p50_ms"] ?? 0, "w2_rtt_p99_ms": w2["rtt_p99_ms"] ?? 0,
            ].merging(console) { first, _ in first }
        }
    }

    /// The console's pages on the grown database, as a signed-in browser asks for them: the runs list, the failed
    /// runs, and a seeded run's page, 100 times each; p50 and p99 of the whole answer in milliseconds.
    func consolePages(base: String, sample: [String]) async throws -> [String: Double] {
        let login = try await Self.call(
            .POST,
            base + "/v1/auth/login",
            body: #"{"email": "owner@example.com", "password": "\#(ownerAccountPassword)"}"#
        )
        guard let token = login.json["access_token"]?.stringValue else {
            throw ValidationError("signing in for the console answered \(login.status)")
        }
        var figures: [String: Double] = [:]
        let pages: [(name: String, path: () -> String)] = [
            ("console_runs", { "/runs" }),
            ("console_failed_runs", { "/runs?status=failed" }),
            ("console_run", { "/runs/\(sample.randomElement() ?? "")" }),
        ]
        for page in pages {
            let times = try await Self.latencies(100) {
                var request = HTTPClientRequest(url: base + page.path())
                request.headers.add(name: "Cookie", value: "caravan_access=\(token)")
                let response = try await Self.client.execute(request, timeout: .seconds(30))
                let body = try await response.body.collect(upTo: 16 << 20)
                guard response.status == .ok, body.readableBytes > 1000 else {
                    throw ValidationError("the console's \(page.name) answered \(response.status)")
                }
            }
            figures[page.name + "_p50_ms"] = Self.percentile(times, 0.5)
            figures[page.name + "_p99_ms"] = Self.percentile(times, 0.99)
        }
        return figures
    }

    /// The sorted round trips of `count` sequential calls of `body`, in milliseconds.
    static func latencies(_ count: Int, _ body: () async throws -> Void) async throws -> [Double] {
        var times: [Double] = []
        for _ in 0..<count {
            let start = ContinuousClock.now
            try await body()
            times.append(milliseconds(ContinuousClock.now - start))
        }
        return times.sorted()
    }

    /// Opens the database the server was given (`--data DIR` or `--database URL`) while the server is stopped.
    static func withDatabase<T: Sendable>(
        _ arguments: [String],
        _ body: @Sendable (any Database) async throws -> T
    ) async throws -> T {
        if let index = arguments.firstIndex(of: "--database"), arguments.indices.contains(index + 1) {
            let database = try PostgresDatabase(
                url: arguments[index + 1],
                maximumConnections: 2,
                logger: TestLogging.quiet
            )
            return try await database.withRunningPool { try await body($0) }
        }
        guard let index = arguments.firstIndex(of: "--data"), arguments.indices.contains(index + 1) else {
            throw ValidationError("no database in \(arguments)")
        }
        return try await body(try SQLiteDatabase(directory: arguments[index + 1], logger: TestLogging.quiet))
    }

    /// The database's size on disk: SQLite's files (database, WAL and shared memory), or PostgreSQL's
    /// `pg_database_size`.
    static func databaseBytes(_ arguments: [String]) async throws -> Int64 {
        if arguments.contains("--database") {
            return try await withDatabase(arguments) { database in
                try await database.read {
                    try await $0.queryFirst("SELECT pg_database_size(current_database()) AS size", [])
                }?
                .int("size") ?? 0
            }
        }
        guard let index = arguments.firstIndex(of: "--data"), arguments.indices.contains(index + 1) else { return 0 }
        let directory = arguments[index + 1]
        var total: Int64 = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where name.hasPrefix("caravan.sqlite") {
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)
            total += (attributes?[.size] as? NSNumber)?.int64Value ?? 0
        }
        return total
    }
}
