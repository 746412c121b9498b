import CaravanAudit
import CaravanCore
import CaravanIdentity
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import Crypto
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Checks of the fixes of security findings, run unchanged on SQLite and PostgreSQL (`IdentitySuites.swift`).
enum SecurityFindingChecks {
    // MARK: API keys and their creator's role

    /// A key never acts above its creator's current role; removing the creator revokes their keys; a key whose
    /// creator is no member is no credential; a key mints no key above its own effective role.
    static func keysFollowTheirCreator(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let org = client.orgID
        let (adminToken, adminID) = try await client.member("admin@example.com", role: "admin")
        let created = try await client.anonymous.send(
            .post,
            "/v1/api-keys",
            json: #"{"name": "adm", "role": "admin"}"#,
            headers: .bearer(adminToken)
        )
        #expect(created.status == .created, "\(created.json)")
        let key = try #require(created.json["key"]?.stringValue)
        let keyID = try #require(created.json["id"]?.stringValue)
        #expect(
            try await client.anonymous.send(.put, "/v1/secrets/s1", json: #"{"value": "v"}"#, headers: .bearer(key))
                .status == .created
        )

        // The creator is demoted to viewer: the key acts as a viewer at once.
        #expect(
            try await client.send(.patch, "/v1/organizations/\(org)/members/\(adminID)", json: #"{"role": "viewer"}"#)
                .status == .ok
        )
        let secret = try await client.anonymous.send(
            .put,
            "/v1/secrets/s2",
            json: #"{"value": "v"}"#,
            headers: .bearer(key)
        )
        #expect(secret.status == .forbidden, "a demoted creator's key still writes secrets")
        #expect(secret.json["code"] == "forbidden")
        let minted = try await client.anonymous.send(
            .post,
            "/v1/api-keys",
            json: #"{"name": "x", "role": "admin"}"#,
            headers: .bearer(key)
        )
        #expect(minted.status == .forbidden, "a demoted creator's key still mints admin keys")
        let invited = try await client.anonymous.send(
            .post,
            "/v1/organizations/\(org)/invitations",
            json: #"{"email": "x@example.com", "role": "admin"}"#,
            headers: .bearer(key)
        )
        #expect(invited.status == .forbidden, "a demoted creator's key still invites admins")
        #expect(
            try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(key)).status == .ok,
            "it reads, as a viewer"
        )
        // As a developer, it writes workflows and still no secrets.
        #expect(
            try await client.send(
                .patch,
                "/v1/organizations/\(org)/members/\(adminID)",
                json: #"{"role": "developer"}"#
            ).status == .ok
        )
        let workflow = try await client.anonymous.send(
            .put,
            "/v1/workflows/by-key",
            json: "steps:\n  - {id: a, template: x}\n",
            contentType: "application/yaml",
            headers: .bearer(key)
        )
        #expect(workflow.status == .created)
        #expect(
            try await client.anonymous.send(.put, "/v1/secrets/s3", json: #"{"value": "v"}"#, headers: .bearer(key))
                .status == .forbidden
        )
        // Back to admin: the key's own role applies again (the rule caps; it never raises).
        #expect(
            try await client.send(.patch, "/v1/organizations/\(org)/members/\(adminID)", json: #"{"role": "admin"}"#)
                .status == .ok
        )
        #expect(
            try await client.anonymous.send(.put, "/v1/secrets/s4", json: #"{"value": "v"}"#, headers: .bearer(key))
                .status == .created
        )

        // A key mints no key above its own effective role, even when its creator's role is higher.
        let adminKeyOfOwner = try #require(
            try await client.send(.post, "/v1/api-keys", json: #"{"name": "o-adm", "role": "admin"}"#).json["key"]?
                .stringValue
        )
        let ownerKey = try await client.anonymous.send(
            .post,
            "/v1/api-keys",
            json: #"{"name": "up", "role": "owner"}"#,
            headers: .bearer(adminKeyOfOwner)
        )
        #expect(ownerKey.status == .forbidden)
        #expect(
            try await client.anonymous.send(
                .post,
                "/v1/api-keys",
                json: #"{"name": "same", "role": "admin"}"#,
                headers: .bearer(adminKeyOfOwner)
            ).status == .created
        )

        // The creator is removed: their keys are revoked, and answer 401.
        #expect(try await client.send(.delete, "/v1/organizations/\(org)/members/\(adminID)").status == .noContent)
        let after = try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(key))
        #expect(after.status == .unauthorized)
        #expect(after.json["code"] == "unauthenticated")
        let revoked = try await app.database.read { executor in
            try await executor.queryFirst("SELECT revoked_at FROM api_keys WHERE id = $1", [.text(keyID)])?.optionalInt(
                "revoked_at"
            )
        }
        #expect(revoked != nil, "the removed member's key is revoked")
        #expect(try await client.send(.get, "/v1/api-keys?limit=100").json.canonicalText.contains(keyID) == false)

        // A key whose creator has no membership (however it came to be) authenticates as nothing.
        let (otherToken, otherID) = try await client.member("admin2@example.com", role: "admin")
        let orphan = try #require(
            try await client.anonymous.send(
                .post,
                "/v1/api-keys",
                json: #"{"name": "o", "role": "developer"}"#,
                headers: .bearer(otherToken)
            )
            .json["key"]?.stringValue
        )
        #expect(try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(orphan)).status == .ok)
        try await app.database.withTransaction { executor in
            try await executor.execute(
                "DELETE FROM memberships WHERE org_id = $1 AND user_id = $2",
                [.text(org), .text(otherID)]
            )
        }
        // A change made behind the server's back reaches its credential cache only when told (or after its 10 s).
        app.identity.forgetCredentials()
        #expect(
            try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(orphan)).status == .unauthorized
        )
    }

    // MARK: The operator's rate limit is a ceiling

    /// With an operator limit of 20 a minute (set by the suite), an organization may lower it, never lift it, and an
    /// organization limit stored above it (the operator lowered the flag later) is capped at enforcement.
    static func rateLimitCeiling(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let path = "/v1/organizations/\(client.orgID)"
        for body in [
            #"{"rate_limit_per_minute": 0}"#, #"{"rate_limit_per_minute": 21}"#, #"{"rate_limit_per_minute": 1000}"#,
        ] {
            let refused = try await client.send(.patch, path, json: body)
            #expect(refused.status == .unprocessableContent, "\(body): \(refused.status)")
            #expect(refused.json["code"] == "validation_failed")
            #expect(refused.json["errors"]?.arrayValue?.first?["pointer"] == "/rate_limit_per_minute")
        }
        #expect(
            try await client.send(.get, path).json["rate_limit_per_minute"] == .null,
            "a refused change changes nothing"
        )
        #expect(try await client.send(.patch, path, json: #"{"rate_limit_per_minute": 10}"#).status == .ok)
        #expect(try await client.send(.patch, path, json: #"{"rate_limit_per_minute": null}"#).status == .ok)

        // A limit stored before the operator lowered theirs: 0 (no limit) and 1000 are both capped at 20.
        for stored: Int64? in [0, 1000] {
            try await app.database.withTransaction { executor in
                try await executor.execute(
                    "UPDATE organizations SET rate_limit_per_minute = $2 WHERE id = $1",
                    [.text(client.orgID), .int(stored)]
                )
            }
            let key = try #require(
                try await client.send(.post, "/v1/api-keys", json: #"{"name": "counted", "role": "viewer"}"#).json[
                    "key"
                ]?.stringValue
            )
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<22 {
                statuses.append(try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(key)).status)
            }
            #expect(statuses.contains(.tooManyRequests), "stored \(String(describing: stored)): \(statuses)")
        }
    }

    // MARK: Audit

    /// A failed sign-in on an account is in its organization's audit log, readable by admins; never the password.
    static func failedSignInsAreAudited(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let attempt = "wrong-\(UUID().uuidString)"
        let wrong = try await client.anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "owner@example.com", "password": "\#(attempt)"}"#
        )
        #expect(wrong.status == .unauthorized)
        _ = try await client.anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "nobody@example.com", "password": "\#(attempt)"}"#
        )
        let page = try await client.send(.get, "/v1/audit?action=auth.login_failed&limit=100")
        #expect(page.status == .ok)
        let items = page.json["items"]?.arrayValue ?? []
        #expect(items.count == 1, "\(page.json)")
        let entry = try #require(items.first)
        #expect(entry["actor"]?["id"] == "owner@example.com")
        #expect(entry["target"]?.stringValue?.hasPrefix("user:usr_") == true)
        #expect(entry["outcome"] == "failure")
        #expect(entry["source"]?.stringValue?.isEmpty == false)
        #expect(entry["details"]?["reason"] == "wrong_password")
        let everything = try await client.send(.get, "/v1/audit?limit=500").json.canonicalText
        #expect(!everything.contains(attempt), "the audit log holds a tried password")
        #expect(
            !everything.contains("nobody@example.com"),
            "a failure on an unknown email is no organization's business"
        )
    }

    /// The ids `GET /v1/audit` shows count each organization's own entries, revealing nothing of another's.
    static func auditIDsArePerOrganization(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        for index in 0..<5 {
            _ = try await client.send(
                .put,
                "/v1/workflows/w\(index)",
                json: "steps:\n  - {id: a, template: x}\n",
                contentType: "application/yaml"
            )
        }
        let signup = try await client.anonymous.send(
            .post,
            "/v1/auth/signup",
            json: #"{"email": "b@example.org", "password": "another long passphrase", "organization": "Beta"}"#
        )
        let tokenB = try #require(signup.json["access_token"]?.stringValue)
        #expect(
            try await client.anonymous.send(
                .post,
                "/v1/api-keys",
                json: #"{"name": "b", "role": "owner"}"#,
                headers: .bearer(tokenB)
            ).status == .created
        )
        let page = try await client.anonymous.send(.get, "/v1/audit?limit=100", headers: .bearer(tokenB))
        let ids = (page.json["items"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
        #expect(ids == ["2", "1"], "B's first entries are its own 1 and 2, whatever A did: \(ids)")
        // Pages follow the same ids.
        let first = try await client.anonymous.send(.get, "/v1/audit?limit=1", headers: .bearer(tokenB))
        let cursor = try #require(first.json["next_cursor"]?.stringValue)
        let second = try await client.anonymous.send(
            .get,
            "/v1/audit?limit=1&cursor=\(cursor)",
            headers: .bearer(tokenB)
        )
        #expect(second.json["items"]?.arrayValue?.first?["id"] == "1")
    }

    /// Deleting the last entries of a chain, a whole chain, or the entries of no organization is detected; an
    /// entry rewritten with a plain SHA-256 link (what anyone can compute) is detected.
    static func auditDeletionsAreDetected(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let org = client.orgID
        for index in 0..<3 {
            _ = try await client.send(
                .put,
                "/v1/workflows/d\(index)",
                json: "steps:\n  - {id: a, template: x}\n",
                contentType: "application/yaml"
            )
        }
        // An entry of no organization: a failed sign-in on an unknown email.
        _ = try await client.anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "nobody@example.com", "password": "whatever it is"}"#
        )
        #expect(try await client.send(.get, "/v1/audit/verify").json["intact"] == true)
        #expect(try await app.audit.verifier.verify().isIntact)

        // A rewritten last entry, relinked with plain SHA-256 and marked as written before keys: detected.
        try await app.database.withTransaction { executor in
            let row = try #require(
                try await executor.queryFirst(
                    "SELECT seq, at, previous_hash FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                    [.text(org)]
                )
            )
            let seq = try row.int("seq")
            let current = try #require(
                try await executor.queryFirst(
                    "SELECT \(auditColumns) FROM audit_log WHERE chain = $1 AND seq = $2",
                    [.text(org), .int(seq)]
                )
            )
            let forged = try unkeyedHash(current, changing: ["target": "workflow:innocent"])
            try await executor.execute(
                "UPDATE audit_log SET target = 'workflow:innocent', hash = $3, hash_key = NULL WHERE chain = $1 AND seq = $2",
                [.text(org), .int(seq), .text(forged)]
            )
            try await executor.execute(
                "UPDATE audit_heads SET hash = $2 WHERE chain = $1",
                [.text(org), .text(forged)]
            )
        }
        let forgedVerdict = try await client.send(.get, "/v1/audit/verify")
        #expect(forgedVerdict.json["intact"] == false, "\(forgedVerdict.json)")
        try await app.database.withTransaction { executor in
            try await executor.execute("DELETE FROM audit_heads WHERE chain = $1", [.text(org)])
        }
        #expect(
            try await client.send(.get, "/v1/audit/verify").json["intact"] == false,
            "without the head, the downgrade still shows"
        )
    }

    /// The tail of a chain, deleted: detected from the signed head, and the next appends do not hide it.
    static func auditTailDeletionIsDetected(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let org = client.orgID
        for index in 0..<3 {
            _ = try await client.send(
                .put,
                "/v1/workflows/t\(index)",
                json: "steps:\n  - {id: a, template: x}\n",
                contentType: "application/yaml"
            )
        }
        #expect(try await client.send(.get, "/v1/audit/verify").json["intact"] == true)
        try await app.database.withTransaction { executor in
            try await executor.execute(
                "DELETE FROM audit_log WHERE chain = $1 AND seq > (SELECT MAX(seq) - 2 FROM audit_log WHERE chain = $1)",
                [.text(org)]
            )
        }
        let verdict = try await client.send(.get, "/v1/audit/verify")
        #expect(verdict.json["intact"] == false, "\(verdict.json)")
        #expect(verdict.json["first_break"]?["reason"]?.stringValue?.contains("deleted") == true, "\(verdict.json)")
        _ = try await client.send(
            .put,
            "/v1/workflows/after",
            json: "steps:\n  - {id: a, template: x}\n",
            contentType: "application/yaml"
        )
        #expect(
            try await client.send(.get, "/v1/audit/verify").json["intact"] == false,
            "an append papered over the deletion"
        )

        // The whole chain of an organization, deleted.
        try await app.database.withTransaction { executor in
            try await executor.execute("DELETE FROM audit_log WHERE chain = $1", [.text(org)])
        }
        let whole = try await app.audit.verifier.verify(chain: org)
        #expect(whole.firstBreak?.reason.contains("whole chain") == true, "\(String(describing: whole.firstBreak))")

        // The entries of no organization, deleted.
        _ = try await client.anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "nobody@example.com", "password": "whatever it is"}"#
        )
        #expect(try await app.audit.verifier.verify(chain: "").isIntact)
        try await app.database.withTransaction { executor in
            try await executor.execute("DELETE FROM audit_log WHERE chain = ''", [])
        }
        let global = try await app.audit.verifier.verify()
        #expect(global.isIntact == false)
        #expect(try await app.audit.verifier.verify(chain: "").isIntact == false)
    }

    /// A chain deleted together with its head shows against a saved heads export; an altered export is refused;
    /// with SQLite the export lands in the data directory, readable by the server's user only.
    static func savedHeadsRevealDeletions(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let org = client.orgID
        _ = try await client.send(
            .put,
            "/v1/workflows/h",
            json: "steps:\n  - {id: a, template: x}\n",
            contentType: "application/yaml"
        )
        let heads = try await app.audit.exportHeads(previous: nil)
        #expect(heads[org] != nil)
        let line = AuditHeadsExport(at: WallClock.system.nowMilliseconds(), heads: heads).signed(with: app.audit.keys)
        let saved = try AuditHeadsExport.parse(line, keys: app.audit.keys)
        #expect(saved.heads == heads)
        #expect(throws: CaravanError.self) {
            try AuditHeadsExport.parse(
                line.replacingOccurrences(of: "\"seq\":", with: "\"seq\":1"),
                keys: app.audit.keys
            )
        }
        if let file = app.audit.headsFile {
            let attributes = try FileManager.default.attributesOfItem(atPath: file)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            let written = try AuditHeadsExport.parse(
                try String(contentsOfFile: file, encoding: .utf8),
                keys: app.audit.keys
            )
            #expect(written.heads == heads)
        }
        #expect(try await app.audit.verifier.verify(saved: saved).isIntact)
        // Everything of the organization's chain, head included, deleted.
        try await app.database.withTransaction { executor in
            try await executor.execute("DELETE FROM audit_log WHERE chain = $1", [.text(org)])
            try await executor.execute("DELETE FROM audit_heads WHERE chain = $1", [.text(org)])
        }
        let verdict = try await app.audit.verifier.verify(saved: saved)
        #expect(verdict.firstBreak?.chain == org)
        #expect(verdict.firstBreak?.reason.contains("deleted") == true, "\(String(describing: verdict.firstBreak))")
    }

    /// Chains written before chains were keyed (plain SHA-256 links, no head) still verify, keep verifying once
    /// keyed entries follow, and still show a change.
    static func legacyChainsStillVerify(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let chain = "org_legacy"
        try await app.database.withTransaction { executor in
            var previous = String(repeating: "0", count: 64)
            for seq in Int64(1)...3 {
                let fields: [String: JSONValue] = [
                    "chain": .string(chain), "seq": .int(seq), "at": .int(1_700_000_000_000 + seq),
                    "org_id": .string(chain),
                    "actor_type": "user", "actor_id": "usr_old", "action": "putWorkflow",
                    "target": .string("workflow:w\(seq)"),
                    "outcome": "success", "source": "10.0.0.1", "request_id": .null, "details": ["method": "PUT"],
                ]
                let hash = legacySHA256(previous + "\n" + JSONValue.object(fields).canonicalText)
                try await executor.execute(
                    """
                    INSERT INTO audit_log (chain, seq, at, org_id, actor_type, actor_id, action, target, outcome, source,
                        request_id, details, previous_hash, hash)
                    VALUES ($1, $2, $3, $1, 'user', 'usr_old', 'putWorkflow', $4, 'success', '10.0.0.1', NULL, $5, $6, $7)
                    """,
                    [
                        .text(chain), .int(seq), .int(1_700_000_000_000 + seq), .text("workflow:w\(seq)"),
                        .text(#"{"method":"PUT"}"#), .text(previous), .text(hash),
                    ]
                )
                previous = hash
            }
        }
        let legacy = try await app.audit.verifier.verify(chain: chain)
        #expect(legacy.isIntact, "\(String(describing: legacy.firstBreak))")
        #expect(legacy.checked == 3)
        #expect(legacy.unsignedChains == [chain])
        #expect(try await app.audit.verifier.verify().isIntact, "the whole log verifies with an old chain in it")

        try await app.audit.record(AuditRecord(orgID: chain, actor: .system, action: "test.keyed", target: "x"))
        let mixed = try await app.audit.verifier.verify(chain: chain)
        #expect(mixed.isIntact, "\(String(describing: mixed.firstBreak))")
        #expect(mixed.checked == 4)
        #expect(mixed.unsignedChains.isEmpty)

        try await app.database.withTransaction { executor in
            try await executor.execute(
                "UPDATE audit_log SET target = 'workflow:other' WHERE chain = $1 AND seq = 2",
                [.text(chain)]
            )
        }
        let changed = try await app.audit.verifier.verify(chain: chain)
        #expect(changed.firstBreak?.seq == 2)
    }

    static let auditColumns =
        "chain, seq, at, org_id, actor_type, actor_id, action, target, outcome, source, request_id, details, previous_hash"

    /// The plain SHA-256 link of a stored entry with some fields changed: what someone without the key can compute.
    static func unkeyedHash(_ row: SQLRow, changing changes: [String: JSONValue]) throws -> String {
        var fields: [String: JSONValue] = [
            "chain": .string(try row.string("chain")), "seq": .int(try row.int("seq")), "at": .int(try row.int("at")),
            "org_id": (try row.optionalString("org_id")).map(JSONValue.string) ?? .null,
            "actor_type": .string(try row.string("actor_type")), "actor_id": .string(try row.string("actor_id")),
            "action": .string(try row.string("action")), "target": .string(try row.string("target")),
            "outcome": .string(try row.string("outcome")),
            "source": (try row.optionalString("source")).map(JSONValue.string) ?? .null,
            "request_id": (try row.optionalString("request_id")).map(JSONValue.string) ?? .null,
            "details": try row.json("details") ?? .null,
        ]
        fields.merge(changes) { _, new in new }
        return legacySHA256(try row.string("previous_hash") + "\n" + JSONValue.object(fields).canonicalText)
    }

    static func legacySHA256(_ text: String) -> String {
        SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: Sign-in backoff per address

    /// Wrong passwords from one address put that address in backoff for the account; the owner signing in from
    /// another address is not held back. Over HTTP (all tests come from one address) the same-address case holds.
    /// The injected clock stands still until moved on, so each backoff lasts until the check ends it.
    static func backoffIsPerAddress(
        _ client: AuthenticatedClient,
        _ app: CaravanApplication,
        _ time: ManualTime
    ) async throws {
        let email = "owner@example.com"
        // Five failures, then a sixth attempt refused in the backoff they started.
        for _ in 0..<6 {
            await #expect(throws: CaravanError.self) {
                try await app.identity.login(
                    email: email,
                    password: "not the password!",
                    code: nil,
                    source: "198.51.100.7"
                )
            }
        }
        let refused = await #expect(throws: CaravanError.self, "the attacking address is in backoff") {
            try await app.identity.login(
                email: email,
                password: AuthenticatedClient.ownerPassword,
                code: nil,
                source: "198.51.100.7"
            )
        }
        #expect(refused?.code == .rateLimited)
        // Another address: the right password works at once.
        let other = try await app.identity.login(
            email: email,
            password: AuthenticatedClient.ownerPassword,
            code: nil,
            source: "203.0.113.9"
        )
        #expect(!other.tokens.accessToken.isEmpty)

        // Over HTTP, from the test client's address: failures there hold back that address only.
        for _ in 0..<5 {
            #expect(
                try await client.anonymous.send(
                    .post,
                    "/v1/auth/login",
                    json: #"{"email": "\#(email)", "password": "not the password!"}"#
                ).status == .unauthorized
            )
        }
        let rightPassword = #"{"email": "\#(email)", "password": "\#(AuthenticatedClient.ownerPassword)"}"#
        let blocked = try await client.anonymous.send(.post, "/v1/auth/login", json: rightPassword)
        #expect(blocked.status == .tooManyRequests)
        let elsewhere = try await app.identity.login(
            email: email,
            password: AuthenticatedClient.ownerPassword,
            code: nil,
            source: "203.0.113.10"
        )
        #expect(!elsewhere.tokens.accessToken.isEmpty)

        // Once the backoff (a second after five failures) has passed, both addresses sign in again.
        time.advance(by: .seconds(1))
        #expect(try await client.anonymous.send(.post, "/v1/auth/login", json: rightPassword).status == .ok)
        let after = try await app.identity.login(
            email: email,
            password: AuthenticatedClient.ownerPassword,
            code: nil,
            source: "198.51.100.7"
        )
        #expect(!after.tokens.accessToken.isEmpty)
    }
}

@Suite("Operator rate limit as a ceiling")
struct RateLimitCeilingTests {
    @Test(arguments: [
        (operator: 20, organization: nil as Int?, effective: 20), (operator: 20, organization: 0, effective: 20),
        (operator: 20, organization: 1000, effective: 20), (operator: 20, organization: 5, effective: 5),
        (operator: 0, organization: nil, effective: 0), (operator: 0, organization: 0, effective: 0),
        (operator: 0, organization: 7, effective: 7),
    ])
    func effectiveLimit(_ row: (operator: Int, organization: Int?, effective: Int)) {
        #expect(
            RequestRateLimiter(defaultPerMinute: row.operator).effectiveLimit(organization: row.organization)
                == row.effective
        )
    }

    @Test func organizationCannotLiftTheLimit() {
        let limiter = RequestRateLimiter(defaultPerMinute: 2)
        let now = ContinuousClock.now
        #expect(limiter.take("k", perMinute: 0, now: now) == nil)
        #expect(limiter.take("k", perMinute: 0, now: now) == nil)
        #expect(limiter.take("k", perMinute: 0, now: now) != nil)
    }
}
