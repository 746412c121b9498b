import CaravanCore
import CaravanPostgres
import CaravanSQLite
import CaravanStorage
import CaravanTestSupport
import Foundation
import Testing

/// Starts `count` runs of a three-step workflow whose middle step is slow, through the server at `port`.
private func startSlowRuns(
    port: Int,
    server: TestHTTPServer,
    count: Int,
    auth: [(String, String)]
) async throws -> [String] {
    let definition = """
        {"steps": [
          {"id": "a", "http": {"method": "POST", "url": "\(server.baseURL)/count/a"}},
          {"id": "b", "needs": ["a"], "http": {"method": "POST", "url": "\(server.baseURL)/slow/1500"}, "timeout": "10s"},
          {"id": "c", "needs": ["b"], "http": {"method": "POST", "url": "\(server.baseURL)/count/c"}}
        ], "output": "{{ steps.c.output.body.ok }}"}
        """
    let put = try await fetch(
        "http://127.0.0.1:\(port)/v1/workflows/crash",
        method: "PUT",
        headers: [("Content-Type", "application/json")] + auth,
        body: definition
    )
    #expect(put.status == 201, "\(put.body)")
    var ids: [String] = []
    for _ in 0..<count {
        let started = try await fetch(
            "http://127.0.0.1:\(port)/v1/workflows/crash/runs",
            method: "POST",
            headers: [("Content-Type", "application/json")] + auth,
            body: #"{"input": {}}"#
        )
        let run = try JSONValue(parsing: Array(started.body.utf8))
        ids.append(try #require(run["id"]?.stringValue))
    }
    return ids
}

/// Waits until every run has succeeded, through the server at `port`.
private func waitUntilSucceeded(
    _ ids: [String],
    port: Int,
    timeout: Duration,
    auth: [(String, String)]
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let page = try await fetch(
            "http://127.0.0.1:\(port)/v1/runs?workflow=crash&status=succeeded&limit=500",
            headers: auth
        )
        let succeeded = Set(
            (try JSONValue(parsing: Array(page.body.utf8)))["items"]?.arrayValue?.compactMap { $0["id"]?.stringValue }
                ?? []
        )
        if Set(ids).isSubset(of: succeeded) { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return false
}

/// The steps (`run:step`) whose success was committed, read from the database while no server runs.
func committedSteps(in database: any Database) async throws -> Set<String> {
    let rows = try await database.read { try await $0.query("SELECT id, steps FROM runs", []) }
    var done = Set<String>()
    for row in rows {
        let id = try row.string("id")
        for step in try row.json("steps")?.arrayValue ?? [] where step["status"] == "succeeded" {
            done.insert("\(id):\(step["id"]?.stringValue ?? "")")
        }
    }
    return done
}

/// The invariants of durable execution, counted at the endpoint the steps call: a step whose success was
/// committed before the crash never runs again; a step in flight runs at most once more, with the same key.
private func checkExactlyOnce(_ ids: [String], _ server: TestHTTPServer, committedBeforeCrash: Set<String>) {
    let calls = ["a": server.keys("/count/a"), "b": server.keys("/slow/1500"), "c": server.keys("/count/c")]
    for id in ids {
        for step in ["a", "b", "c"] {
            let key = "\(id):\(step)"
            let count = calls[step]?.filter { $0 == key }.count ?? 0
            if committedBeforeCrash.contains(key) {
                #expect(count == 1, "step \(key) ran again after its success was committed")
            } else {
                #expect((1...2).contains(count), "step \(key) ran \(count) times")
            }
        }
    }
    #expect(committedBeforeCrash.contains { $0.hasSuffix(":a") }, "the crash came after some steps had committed")
    for (step, keys) in calls {
        #expect(keys.allSatisfy { $0.hasSuffix(":" + step) }, "every call carried its step's Idempotency-Key")
    }
}

@Suite("Crash recovery", .serialized, .tags(.engine, .integration), .timeLimit(.minutes(5)))
struct CrashRecoveryTests {
    /// Reads the committed steps of a SQLite data directory; the database (and its lock) is closed on return.
    static func committedSteps(inDirectory directory: String) async throws -> Set<String> {
        let database = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
        return try await CaravanEngineTests.committedSteps(in: database)
    }

    @Test("After kill -9 mid-run and a restart, every run finishes and no completed step runs again (SQLite)")
    func killAndRestartSQLite() async throws {
        try await TestHTTPServer.with { server in
            try await withTemporaryDirectory { directory in
                let arguments = ["serve", "--port", "0", "--data", directory, "--egress-allow", "127.0.0.1"]
                let first = try await CaravanProcess(arguments: arguments)
                let auth = try await bootstrapCredentials(port: first.port)
                let ids = try await startSlowRuns(port: first.port, server: server, count: 20, auth: auth)
                try await Task.sleep(for: .milliseconds(700))
                first.send(signal: SIGKILL)
                _ = try await first.waitForExit()
                let committed = try await Self.committedSteps(inDirectory: directory)
                #expect(ids.contains { !committed.contains("\($0):c") }, "the crash came while runs were in flight")
                let second = try await CaravanProcess(arguments: arguments)
                let finished = try await waitUntilSucceeded(ids, port: second.port, timeout: .seconds(30), auth: auth)
                #expect(finished, "log: \(second.log.suffix(2000))")
                checkExactlyOnce(ids, server, committedBeforeCrash: committed)
                second.send(signal: SIGTERM)
                let status = try await second.waitForExit()
                #expect(status == 0)
            }
        }
    }

    @Test(
        "Two nodes share a PostgreSQL database; when one is killed the other finishes its runs",
        .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)")
    )
    func twoNodesOnPostgreSQL() async throws {
        try await TestHTTPServer.with { server in
            try await PostgresTestServer.withFreshDatabase { url in
                let masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
                func node(_ name: String) async throws -> CaravanProcess {
                    try await CaravanProcess(arguments: [
                        "serve", "--port", "0", "--database", url, "--egress-allow", "127.0.0.1",
                        "--node-id", name, "--lease-duration", "2s", "--database-pool-size", "4", "--master-key",
                        masterKey,
                    ])
                }
                // Started together against an empty database: both come up, the schema is applied once.
                async let startingA = node("node-a")
                async let startingB = node("node-b")
                let (a, b) = try await (startingA, startingB)
                let auth = try await bootstrapCredentials(port: a.port)
                let ids = try await startSlowRuns(port: a.port, server: server, count: 10, auth: auth)
                try await Task.sleep(for: .milliseconds(700))
                // Node b goes on committing after the kill, so what counts as committed before the crash is read
                // just before it: a step that commits between this read and the kill is only held to "at most
                // once more".
                let committed = try await PostgresDatabase(url: url, maximumConnections: 1, logger: TestLogging.quiet)
                    .withRunningPool { try await CaravanEngineTests.committedSteps(in: $0) }
                a.send(signal: SIGKILL)
                _ = try await a.waitForExit()
                let finished = try await waitUntilSucceeded(ids, port: b.port, timeout: .seconds(30), auth: auth)
                #expect(finished, "log: \(b.log.suffix(2000))")
                checkExactlyOnce(ids, server, committedBeforeCrash: committed)
                let migrations = [a.log, b.log].filter { $0.contains("Applied database migrations") }.count
                #expect(migrations == 1)
                b.send(signal: SIGTERM)
                let status = try await b.waitForExit()
                #expect(status == 0)
            }
        }
    }
}
