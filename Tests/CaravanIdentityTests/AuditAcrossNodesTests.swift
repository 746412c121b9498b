import CaravanAudit
import CaravanCore
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite(
    "Audit chains across nodes",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)"),
    .timeLimit(.minutes(2))
)
struct AuditAcrossNodesTests {
    /// Two nodes appending to one chain at once, first to a chain that has no head yet, then to an organization's
    /// chain while runs are started on both: every entry lands once, in one unbroken chain.
    @Test func appendsFromTwoNodesFormOneChain() async throws {
        try await withTwoPostgresNodes { owner, other, apps in
            let chain = "org_race"
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<30 {
                    let app = apps[index % 2]
                    group.addTask {
                        try await app.database.withTransaction { executor in
                            let records = (0..<2).map { part in
                                AuditRecord(
                                    orgID: chain,
                                    actor: AuditActor(.system, "test"),
                                    action: "test.append",
                                    target: "item:\(index)-\(part)"
                                )
                            }
                            try await AuditLog.append(records, keys: app.audit.keys, at: 1, in: executor)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let race = try await apps[0].audit.verifier.verify(chain: chain)
            #expect(race.isIntact, "\(String(describing: race.firstBreak))")
            #expect(race.checked == 60)
            let seqs = try await apps[1].database.read {
                try await $0.query("SELECT seq FROM audit_log WHERE chain = $1 ORDER BY seq", [.text(chain)])
            }
            #expect(try seqs.map { try $0.int("seq") } == Array(1...60))

            let workflow = #"{"name": "w", "steps": [{"id": "a", "template": "a"}]}"#
            #expect(try await owner.send(.put, "/v1/workflows/w", json: workflow).status.code < 300)
            let started = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<40 {
                    group.addTask {
                        let client: any TestClientProtocol = index % 2 == 0 ? owner : other
                        let response = try await client.send(
                            .post,
                            "/v1/workflows/w/runs",
                            json: "{}",
                            headers: .bearer(owner.apiKey)
                        )
                        return response.status.code == 201 || response.status.code == 202
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(started == 40)
            let organization = try await apps[1].audit.verifier.verify(chain: owner.orgID)
            #expect(organization.isIntact, "\(String(describing: organization.firstBreak))")
            let runStarts = try await apps[0].database.read {
                try await $0.query(
                    "SELECT COUNT(*) AS n FROM audit_log WHERE chain = $1 AND target LIKE 'run:%'",
                    [.text(owner.orgID)]
                )
            }
            #expect(try runStarts.first?.int("n") == 40)
        }
    }
}
