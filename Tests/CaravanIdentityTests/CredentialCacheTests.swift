import CaravanCore
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

@testable import CaravanIdentity
@testable import CaravanStorage

/// Credentials are served from memory; a change made on one node must still hold on the very next request on
/// another node sharing the database.
@Suite(
    "Credentials across nodes",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)"),
    .timeLimit(.minutes(2))
)
struct CredentialsAcrossNodesTests {
    @Test func changesHoldOnTheNextRequestOnAnotherNode() async throws {
        try await withTwoPostgresNodes { owner, other, apps in
            let org = owner.orgID
            let (adminToken, adminID) = try await owner.member("admin@example.com", role: "admin")
            let created = try await owner.anonymous.send(
                .post,
                "/v1/api-keys",
                json: #"{"name": "adm", "role": "admin"}"#,
                headers: .bearer(adminToken)
            )
            let key = try #require(created.json["key"]?.stringValue)
            let keyID = try #require(created.json["id"]?.stringValue)

            // Both credentials work on the other node, which now keeps them in memory.
            #expect(
                try await other.send(.put, "/v1/secrets/s1", json: #"{"value": "v"}"#, headers: .bearer(key)).status
                    == .created
            )
            #expect(
                try await other.send(.put, "/v1/secrets/s2", json: #"{"value": "v"}"#, headers: .bearer(adminToken))
                    .status == .created
            )
            #expect(apps[1].identity.credentials.count == 2, "the second node serves both credentials from memory")

            // A changed role holds on the other node's next request, for the key and for the session.
            #expect(
                try await owner.send(
                    .patch,
                    "/v1/organizations/\(org)/members/\(adminID)",
                    json: #"{"role": "viewer"}"#
                ).status == .ok
            )
            let demotedKey = try await other.send(
                .put,
                "/v1/secrets/s3",
                json: #"{"value": "v"}"#,
                headers: .bearer(key)
            )
            #expect(demotedKey.status == .forbidden, "the other node still acts on the old role: \(demotedKey.json)")
            let demotedSession = try await other.send(
                .put,
                "/v1/secrets/s3",
                json: #"{"value": "v"}"#,
                headers: .bearer(adminToken)
            )
            #expect(
                demotedSession.status == .forbidden,
                "the other node still acts on the old role: \(demotedSession.json)"
            )
            #expect(
                try await other.send(.get, "/v1/workflows", headers: .bearer(key)).status == .ok,
                "a viewer still reads"
            )

            // A revoked key is refused on the other node's next request.
            #expect(try await owner.send(.delete, "/v1/api-keys/\(keyID)").status == .noContent)
            let revoked = try await other.send(.get, "/v1/workflows", headers: .bearer(key))
            #expect(revoked.status == .unauthorized, "the other node still accepts a revoked key")
            #expect(revoked.json["code"] == "unauthenticated")

            // A removed member's session and keys are refused on the other node's next request.
            #expect(
                try await owner.send(.patch, "/v1/organizations/\(org)/members/\(adminID)", json: #"{"role": "admin"}"#)
                    .status == .ok
            )
            let second = try #require(
                try await owner.anonymous.send(
                    .post,
                    "/v1/api-keys",
                    json: #"{"name": "adm2", "role": "admin"}"#,
                    headers: .bearer(adminToken)
                )
                .json["key"]?.stringValue
            )
            #expect(try await other.send(.get, "/v1/workflows", headers: .bearer(second)).status == .ok)
            #expect(try await other.send(.get, "/v1/workflows", headers: .bearer(adminToken)).status == .ok)
            #expect(try await owner.send(.delete, "/v1/organizations/\(org)/members/\(adminID)").status == .noContent)
            #expect(try await other.send(.get, "/v1/workflows", headers: .bearer(second)).status == .unauthorized)
            #expect(try await other.send(.get, "/v1/workflows", headers: .bearer(adminToken)).status == .unauthorized)

            // The organization's rate limit, lowered on the first node, applies on the second at once.
            let limited = try await owner.send(
                .patch,
                "/v1/organizations/\(org)",
                json: #"{"rate_limit_per_minute": 1}"#
            )
            #expect(limited.status == .ok, "\(limited.json)")
            #expect(try await other.send(.get, "/v1/workflows", headers: .bearer(owner.apiKey)).status == .ok)
            #expect(
                try await other.send(.get, "/v1/workflows", headers: .bearer(owner.apiKey)).status == .tooManyRequests
            )
        }
    }
}

@Suite("The cluster cache")
struct ClusterCacheTests {
    @Test func aReadThatRacedAChangeIsNotKept() {
        let cache = ClusterCache<Int>(signals: nil, topic: "t")
        let generation = cache.generation()
        cache.invalidateAll()  // a revocation committed while the read was under way
        cache.store("k", 1, generation: generation, loadedAt: .now)
        #expect(cache.value("k") == nil)
        cache.store("k", 1, generation: cache.generation(), loadedAt: .now)
        #expect(cache.value("k") == 1)
    }

    @Test func nothingIsKeptWhileNotListening() {
        let cache = ClusterCache<Int>(signals: nil, topic: "t")
        cache.setEnabled(false)
        #expect(cache.generation() == nil)
        cache.store("k", 1, generation: 0, loadedAt: .now)
        #expect(cache.value("k") == nil)
        cache.setEnabled(true)
        cache.store("k", 1, generation: cache.generation(), loadedAt: .now)
        #expect(cache.value("k") == 1)
        cache.setEnabled(false)  // the listening connection was lost: what was learned may be stale
        #expect(cache.value("k") == nil)
    }

    @Test func entriesExpire() {
        let cache = ClusterCache<Int>(signals: nil, topic: "t", maxAge: .seconds(10))
        cache.store("old", 1, generation: cache.generation(), loadedAt: .now - .seconds(11))
        cache.store("new", 2, generation: cache.generation(), loadedAt: .now - .seconds(9))
        #expect(cache.value("old") == nil)
        #expect(cache.value("new") == 2)
    }

    @Test func absentValuesAreNotKept() async throws {
        let cache = ClusterCache<Int>(signals: nil, topic: "t")
        #expect(try await cache.value("k", load: { nil }) == nil)
        #expect(try await cache.value("k", load: { 3 }) == 3, "a value created since is seen at once")
        #expect(try await cache.value("k", load: { 4 }) == 3, "then kept")
    }
}
