import CaravanCore
import CaravanPostgres
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite(
    "Readiness on PostgreSQL",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)")
)
struct PostgresReadinessTests {
    @Test("readyz is 503 while the database refuses connections and 200 again when it returns, without a restart")
    func readinessFollowsTheDatabase() async throws {
        try await withTestApplication(.postgres) { client, parts in
            #expect(try await client.send(.get, "/readyz").status == .ok)
            let name =
                try await parts.database.read { executor in
                    try await executor.queryFirst("SELECT current_database() AS name", [])?.string("name")
                } ?? ""
            let admin = try PostgresDatabase(
                url: PostgresTestServer.url ?? "",
                maximumConnections: 1,
                logger: TestLogging.quiet
            )
            try await admin.withRunningPool { admin in
                try await admin.read { executor in
                    try await executor.execute("ALTER DATABASE \(name) ALLOW_CONNECTIONS false", [])
                    try await executor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                        [.text(name)]
                    )
                }
                let down = try await client.send(.get, "/readyz")
                #expect(down.status == .serviceUnavailable)
                #expect(down.json["code"] == "unavailable")
                #expect(try await client.send(.get, "/healthz").status == .ok, "the process itself is alive")
                try await admin.read { try await $0.execute("ALTER DATABASE \(name) ALLOW_CONNECTIONS true", []) }
            }
            var ready = false
            for _ in 0..<100 where !ready {
                ready = try await client.send(.get, "/readyz").status == .ok
                if !ready { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(ready)
        }
    }
}
