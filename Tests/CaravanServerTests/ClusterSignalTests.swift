import CaravanCore
import CaravanEngine
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Nodes sharing a PostgreSQL database wake each other through signals sent with the change (LISTEN/NOTIFY),
/// not at their next poll.
@Suite(
    "Signals between nodes",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)"),
    .timeLimit(.minutes(2))
)
struct ClusterSignalTests {
    /// A run sleeping in the memory of the first node is cancelled through the second: the first stops it at once,
    /// although it would otherwise learn of the cancel only from its next lease renewal or its timer (both a minute
    /// away here).
    @Test func aCancelOnOneNodeStopsTheRunOnAnother() async throws {
        try await withTwoPostgresNodes(configure: { configuration in
            configuration.engine.pollInterval = .seconds(60)
            configuration.engine.leaseDuration = .seconds(180)
            configuration.engine.leaseRenewInterval = .seconds(60)
            configuration.engine.holdWindow = .seconds(120)
        }) { owner, other, _ in
            let put = try await owner.send(
                .put,
                "/v1/workflows/napper",
                json: "steps:\n  - {id: nap, sleep: 60s}\n",
                contentType: "application/yaml"
            )
            #expect(put.status == .created, "\(put.json)")
            let started = try await owner.send(.post, "/v1/workflows/napper/runs", json: #"{"input": {}}"#)
            let id = try #require(started.json["id"]?.stringValue)
            let headers = HTTPFields.bearer(owner.apiKey)
            let cancel = try await other.send(.post, "/v1/runs/\(id)/cancel", headers: headers)
            #expect(cancel.status == .ok || cancel.status == .accepted, "\(cancel.json)")
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            var status = ""
            while clock.now < deadline {
                status =
                    try await other.send(.get, "/v1/runs/\(id)", headers: headers).json["status"]?.stringValue ?? ""
                if status == "cancelled" { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(status == "cancelled", "the sleeping run was not told of the cancel")
        }
    }

    /// The latest version of a workflow is kept in memory on every node; a new version or an archive put through
    /// one node holds for the very next run started through another.
    @Test func aNewVersionOnOneNodeIsWhatTheOtherStarts() async throws {
        try await withTwoPostgresNodes { owner, other, _ in
            let headers = HTTPFields.bearer(owner.apiKey)
            let yaml = { (text: String) in "steps:\n  - {id: a, template: \(text)}\noutput: \"{{ steps.a.output }}\"\n"
            }
            #expect(
                try await owner.send(.put, "/v1/workflows/greeting", json: yaml("one"), contentType: "application/yaml")
                    .status == .created
            )
            let first = try await other.send(
                .post,
                "/v1/workflows/greeting/runs?wait=10s",
                json: #"{"input": {}}"#,
                headers: headers
            )
            #expect(first.json["output"] == "one", "\(first.json)")
            #expect(
                try await owner.send(.put, "/v1/workflows/greeting", json: yaml("two"), contentType: "application/yaml")
                    .status == .created
            )
            let second = try await other.send(
                .post,
                "/v1/workflows/greeting/runs?wait=10s",
                json: #"{"input": {}}"#,
                headers: headers
            )
            #expect(second.json["output"] == "two", "the other node started the old version: \(second.json)")
            #expect(try await owner.send(.delete, "/v1/workflows/greeting").status == .noContent)
            let archived = try await other.send(
                .post,
                "/v1/workflows/greeting/runs",
                json: #"{"input": {}}"#,
                headers: headers
            )
            #expect(archived.status == .notFound, "the other node started an archived workflow: \(archived.json)")
        }
    }
}

extension HTTPFields {
    fileprivate static func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }
}
