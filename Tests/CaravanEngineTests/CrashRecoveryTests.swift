import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

/// Starts `count` runs of a three-step workflow whose middle step is slow, through the server at `port`.
private func startSlowRuns(port: Int, server: TestHTTPServer, count: Int) async throws -> [String] {
    let definition = """
        {"steps": [
          {"id": "a", "http": {"method": "POST", "url": "\(server.baseURL)/count/a"}},
          {"id": "b", "needs": ["a"], "http": {"method": "POST", "url": "\(server.baseURL)/slow/1500"}, "timeout": "10s"},
          {"id": "c", "needs": ["b"], "http": {"method": "POST", "url": "\(server.baseURL)/count/c"}}
        ], "output": "{{ steps.c.output.body.ok }}"}
        """
    let put = try await fetch("http://127.0.0.1:\(port)/v1/workflows/crash", method: "PUT", headers: [("Content-Type", "application/json")], body: definition)
    #expect(put.status == 201, "\(put.body)")
    var ids: [String] = []
    for _ in 0..<count {
        let started = try await fetch("http://127.0.0.1:\(port)/v1/workflows/crash/runs", method: "POST", headers: [("Content-Type", "application/json")], body: #"{"input": {}}"#)
        let run = try JSONValue(parsing: Array(started.body.utf8))
        ids.append(try #require(run["id"]?.stringValue))
    }
    return ids
}

/// Waits until every run has succeeded, through the server at `port`.
private func waitUntilSucceeded(_ ids: [String], port: Int, timeout: Duration) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let page = try await fetch("http://127.0.0.1:\(port)/v1/runs?workflow=crash&status=succeeded&limit=500")
        let succeeded = Set((try JSONValue(parsing: Array(page.body.utf8)))["items"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? [])
        if Set(ids).isSubset(of: succeeded) { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return false
}

/// The invariants of durable execution, counted at the endpoint the steps call.
private func checkExactlyOnce(_ ids: [String], _ server: TestHTTPServer) {
    let a = server.keys("/count/a")
    let slow = server.keys("/slow/1500")
    let c = server.keys("/count/c")
    for id in ids {
        #expect(a.filter { $0 == "\(id):a" }.count == 1, "step a of \(id) ran again after completing")
        #expect(c.filter { $0 == "\(id):c" }.count == 1, "step c of \(id) did not run exactly once")
        let slowCalls = slow.filter { $0 == "\(id):b" }.count
        #expect((1...2).contains(slowCalls), "step b of \(id) ran \(slowCalls) times")
    }
    #expect(Set(slow).count == ids.count, "every call of one step carried one Idempotency-Key")
}

@Suite("Crash recovery", .serialized)
struct CrashRecoveryTests {
    @Test("After kill -9 mid-run and a restart, every run finishes and no completed step runs again (SQLite)")
    func killAndRestartSQLite() async throws {
        try await TestHTTPServer.with { server in
            try await withTemporaryDirectory { directory in
                let arguments = ["serve", "--port", "0", "--data", directory, "--egress-allow", "127.0.0.1"]
                let first = try await CaravanProcess(arguments: arguments)
                let ids = try await startSlowRuns(port: first.port, server: server, count: 20)
                try await Task.sleep(for: .milliseconds(700))
                first.send(signal: SIGKILL)
                _ = try await first.waitForExit()
                #expect(server.keys("/count/c").isEmpty, "the crash came before any run finished")
                let second = try await CaravanProcess(arguments: arguments)
                let finished = try await waitUntilSucceeded(ids, port: second.port, timeout: .seconds(30))
                #expect(finished, "log: \(second.log.suffix(2000))")
                checkExactlyOnce(ids, server)
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
                func node(_ name: String) async throws -> CaravanProcess {
                    try await CaravanProcess(arguments: [
                        "serve", "--port", "0", "--database", url, "--egress-allow", "127.0.0.1",
                        "--node-id", name, "--lease-duration", "2s", "--database-pool-size", "4",
                    ])
                }
                // Started together against an empty database: both come up, the schema is applied once.
                async let startingA = node("node-a")
                async let startingB = node("node-b")
                let (a, b) = try await (startingA, startingB)
                let ids = try await startSlowRuns(port: a.port, server: server, count: 10)
                try await Task.sleep(for: .milliseconds(700))
                a.send(signal: SIGKILL)
                _ = try await a.waitForExit()
                let finished = try await waitUntilSucceeded(ids, port: b.port, timeout: .seconds(30))
                #expect(finished, "log: \(b.log.suffix(2000))")
                checkExactlyOnce(ids, server)
                let migrations = [a.log, b.log].filter { $0.contains("Applied database migrations") }.count
                #expect(migrations == 1)
                b.send(signal: SIGTERM)
                let status = try await b.waitForExit()
                #expect(status == 0)
            }
        }
    }
}
