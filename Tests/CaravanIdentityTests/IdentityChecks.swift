import CaravanCore
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

@testable import CaravanIdentity

/// The identity checks, run unchanged on SQLite and PostgreSQL.
enum IdentityChecks {
    /// Every endpoint but the open ones answers 401 unauthenticated without credentials, or with bad ones.
    static func credentialsAreRequired(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let open = app.catalog.endpoints.filter { !$0.authenticated }.map(\.path)
        #expect(
            Set(open) == [
                "/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/auth/signup", "/v1/auth/login",
                "/v1/auth/refresh", "/v1/hooks/{id}",
            ]
        )
        for endpoint in app.catalog.endpoints where endpoint.authenticated {
            let path = fill(endpoint.path, ["org": client.orgID])
            for headers: HTTPFields in [
                [:], .bearer("cvk_not-a-key"), .bearer("not.a.jwt"), [.authorization: "Basic b3duZXI6eA=="],
            ] {
                let response = try await client.anonymous.send(endpoint.method, path, json: "{}", headers: headers)
                #expect(response.status == .unauthorized, "\(endpoint.method) \(path) answered \(response.status)")
                #expect(response.json["code"] == "unauthenticated")
            }
        }
    }

    /// Every role × every endpoint: the policy table's answer, and nothing else.
    static func roleMatrix(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        var tokens: [Role: String] = [.owner: client.accessToken]
        for role in [Role.admin, .developer, .viewer] {
            tokens[role] = try await client.member("\(role.rawValue)@example.com", role: role.rawValue).token
        }
        var checked = 0
        for endpoint in app.catalog.endpoints {
            guard case .organization(let permission) = endpoint.access else { continue }
            let path = fill(endpoint.path, ["org": client.orgID])
            for role in Role.allCases {
                let allowed = AccessPolicy.allows(role, permission)
                // Deleting the organization is checked once, last.
                if allowed && endpoint.operationID == "deleteOrganization" { continue }
                let response = try await client.anonymous.send(
                    endpoint.method,
                    path,
                    json: "{}",
                    headers: .bearer(tokens[role]!)
                )
                if allowed {
                    #expect(response.status != .forbidden, "\(role) may \(endpoint.method) \(endpoint.path)")
                    #expect(
                        response.status != .unauthorized,
                        "\(role) on \(endpoint.method) \(endpoint.path): \(response.json)"
                    )
                } else {
                    #expect(
                        response.status == .forbidden,
                        "\(role) may not \(endpoint.method) \(endpoint.path): \(response.status)"
                    )
                    #expect(response.json["code"] == "forbidden")
                }
                checked += 1
            }
        }
        #expect(checked >= 4 * 25)
        let denials = try await client.send(.get, "/v1/audit?action=permission.denied&limit=500")
        #expect((denials.json["items"]?.arrayValue?.count ?? 0) > 10, "denials are audited")
        // An admin cannot make themselves owner, nor grant a key above their role.
        let adminToken = tokens[.admin]!
        let keyAbove = try await client.anonymous.send(
            .post,
            "/v1/api-keys",
            json: #"{"name": "k", "role": "owner"}"#,
            headers: .bearer(adminToken)
        )
        #expect(keyAbove.status == .forbidden)
        let deleted = try await client.send(.delete, "/v1/organizations/\(client.orgID)")
        #expect(deleted.status == .noContent)
        #expect(
            try await client.send(.get, "/v1/workflows").status == .unauthorized,
            "the key went with its organization"
        )
    }

    /// Organization B's credentials on organization A's ids: every endpoint answers as if they did not exist.
    static func organizationsAreIsolated(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        // Organization A: a workflow, a finished run, a waiting run, a secret, a key, the owner.
        _ = try await client.send(
            .put,
            "/v1/workflows/shared-name",
            json: "steps:\n  - {id: a, approval: {}}\n",
            contentType: "application/yaml"
        )
        let run = try await client.send(.post, "/v1/workflows/shared-name/runs", json: #"{"input": {}}"#)
        let runID = try #require(run.json["id"]?.stringValue)
        _ = try await client.send(.put, "/v1/secrets/shared_name", json: #"{"value": "a-secret"}"#)
        let keyA = try await client.send(.post, "/v1/api-keys", json: #"{"name": "a", "role": "viewer"}"#)
        let keyAID = try #require(keyA.json["id"]?.stringValue)
        let ownerA = try #require(
            try await client.send(.get, "/v1/me", headers: .bearer(client.accessToken)).json["user"]?["id"]?.stringValue
        )
        // A provider, an agent and a thread of A's.
        let provider = #"{"kind": "openai", "base_url": "https://models.example.com/v1", "models": ["m"]}"#
        #expect(try await client.send(.put, "/v1/providers/shared-name", json: provider).status == .created)
        #expect(
            try await client.send(.put, "/v1/agents/shared-name", json: #"{"model": "shared-name/m"}"#).status
                == .created
        )
        let threadA = try #require(try await client.send(.post, "/v1/threads", json: "{}").json["id"]?.stringValue)

        // Organization B: another user, signing up on their own.
        let signupB = try await client.anonymous.send(
            .post,
            "/v1/auth/signup",
            json: #"{"email": "b@example.org", "password": "another long passphrase", "organization": "Beta"}"#
        )
        #expect(signupB.status == .created, "\(signupB.json)")
        let tokenB = try #require(signupB.json["access_token"]?.stringValue)
        let keyB = try #require(
            try await client.anonymous.send(
                .post,
                "/v1/api-keys",
                json: #"{"name": "b", "role": "owner"}"#,
                headers: .bearer(tokenB)
            ).json["key"]?.stringValue
        )

        let ids = ["org": client.orgID, "name": "shared-name", "id": runID, "user": ownerA]
        var checked = 0
        for endpoint in app.catalog.endpoints
        where endpoint.authenticated && endpoint.path.contains("{") && endpoint.method != .put {
            var values = ids
            if endpoint.path.hasPrefix("/v1/api-keys") { values["id"] = keyAID }
            if endpoint.path.hasPrefix("/v1/secrets") { values["name"] = "shared_name" }
            if endpoint.path.hasPrefix("/v1/threads") { values["id"] = threadA }
            let path = fill(endpoint.path, values)
            for credential in [keyB, tokenB] {
                let body = path.contains("/signals/") ? #"{"approved": true}"# : #"{"input": {}}"#
                let response = try await client.anonymous.send(
                    endpoint.method,
                    path,
                    json: body,
                    headers: .bearer(credential)
                )
                #expect(
                    response.status == .notFound,
                    "B on A's \(endpoint.method) \(path): \(response.status) \(response.json)"
                )
                #expect(response.json["code"] == "not_found")
                checked += 1
            }
        }
        #expect(checked >= 20)
        // B acting in A by header is refused like a missing organization.
        let byHeader = try await client.anonymous.send(
            .get,
            "/v1/runs",
            headers: [.authorization: "Bearer \(tokenB)", HTTPField.Name("Caravan-Organization")!: client.orgID]
        )
        #expect(byHeader.status == .notFound)
        // Lists and streams show B nothing of A.
        for list in [
            "/v1/runs", "/v1/workflows", "/v1/secrets", "/v1/api-keys", "/v1/audit", "/v1/events?after=0",
            "/v1/organizations",
            "/v1/agents", "/v1/providers", "/v1/models", "/v1/usage",
        ] {
            let response = try await client.anonymous.send(.get, list, headers: .bearer(keyB))
            #expect(response.status == .ok, "\(list)")
            let text = response.json.canonicalText
            for secret in [runID, "shared-name", "shared_name", keyAID, client.orgID, threadA] {
                #expect(!text.contains(secret), "\(list) shows B \(secret)")
            }
        }
        // A's things are untouched.
        #expect(try await client.send(.get, "/v1/runs/\(runID)").json["status"] == "waiting")
        #expect(try await client.send(.get, "/v1/secrets").json["items"]?.arrayValue?.count == 1)
    }

    /// Login, refresh rotation with reuse detection, logout, password change, hostile tokens.
    static func sessions(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let anonymous = client.anonymous
        let wrong = try await anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "owner@example.com", "password": "wrong password here"}"#
        )
        #expect(wrong.status == .unauthorized)
        let unknown = try await anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "nobody@example.com", "password": "wrong password here"}"#
        )
        #expect(unknown.status == .unauthorized)
        #expect(unknown.json["detail"] == wrong.json["detail"], "an unknown email answers like a wrong password")
        let login = try await anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "OWNER@example.com", "password": "\#(AuthenticatedClient.ownerPassword)"}"#
        )
        #expect(login.status == .ok)
        let access = try #require(login.json["access_token"]?.stringValue)
        let refresh = try #require(login.json["refresh_token"]?.stringValue)
        #expect(
            try await anonymous.send(.get, "/v1/me", headers: .bearer(access)).json["user"]?["email"]
                == "owner@example.com"
        )

        let rotated = try await anonymous.send(.post, "/v1/auth/refresh", json: #"{"refresh_token": "\#(refresh)"}"#)
        #expect(rotated.status == .ok)
        let access2 = try #require(rotated.json["access_token"]?.stringValue)
        #expect(try await anonymous.send(.get, "/v1/me", headers: .bearer(access2)).status == .ok)
        // The old refresh token again: theft suspected, the whole session ends.
        let reused = try await anonymous.send(.post, "/v1/auth/refresh", json: #"{"refresh_token": "\#(refresh)"}"#)
        #expect(reused.status == .unauthorized)
        #expect(try await anonymous.send(.get, "/v1/me", headers: .bearer(access2)).status == .unauthorized)

        // Logout ends a session at once.
        let second = try #require(
            try await anonymous.send(
                .post,
                "/v1/auth/login",
                json: #"{"email": "owner@example.com", "password": "\#(AuthenticatedClient.ownerPassword)"}"#
            ).json["access_token"]?.stringValue
        )
        #expect(try await anonymous.send(.post, "/v1/auth/logout", headers: .bearer(second)).status == .noContent)
        #expect(try await anonymous.send(.get, "/v1/me", headers: .bearer(second)).status == .unauthorized)

        // Hostile tokens: alg none, another algorithm, an altered payload.
        let parts = client.accessToken.split(separator: ".").map(String.init)
        func encode(_ text: String) -> String {
            Data(text.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "").replacingOccurrences(
                of: "+",
                with: "-"
            ).replacingOccurrences(of: "/", with: "_")
        }
        let none = encode(#"{"alg":"none","typ":"JWT"}"#) + "." + parts[1] + "."
        let hs512 = encode(#"{"alg":"HS512","typ":"JWT"}"#) + "." + parts[1] + "." + parts[2]
        let payload = String(
            decoding: Data(
                base64Encoded: parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(
                    of: "_",
                    with: "/"
                ).padding(toLength: (parts[1].count + 3) / 4 * 4, withPad: "=", startingAt: 0)
            ) ?? Data(),
            as: UTF8.self
        )
        let altered = parts[0] + "." + encode(payload.replacingOccurrences(of: "usr_", with: "usr_X")) + "." + parts[2]
        for token in [none, hs512, altered, parts[0] + "." + parts[1], client.accessToken + "x"] {
            let response = try await anonymous.send(.get, "/v1/workflows", headers: .bearer(token))
            #expect(response.status == .unauthorized, "\(token)")
        }
        #expect(try await anonymous.send(.get, "/v1/workflows", headers: .bearer(client.accessToken)).status == .ok)

        // A password change ends every session and starts a new one.
        let changed = try await anonymous.send(
            .post,
            "/v1/auth/password",
            json:
                #"{"current_password": "\#(AuthenticatedClient.ownerPassword)", "new_password": "\#(String(repeating: "long-", count: 20))A"}"#,
            headers: .bearer(client.accessToken)
        )
        #expect(changed.status == .ok, "\(changed.json)")
        #expect(try await anonymous.send(.get, "/v1/me", headers: .bearer(client.accessToken)).status == .unauthorized)
        let fresh = try #require(changed.json["access_token"]?.stringValue)
        #expect(try await anonymous.send(.get, "/v1/me", headers: .bearer(fresh)).status == .ok)
        // Every character counts: the same first 72 bytes with another ending is a wrong password.
        let truncated = try await anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{"email": "owner@example.com", "password": "\#(String(repeating: "long-", count: 20))B"}"#
        )
        #expect(truncated.status == .unauthorized)
    }

    /// TOTP: enrolment, a code required at login, each code and recovery code usable once.
    static func totp(_ client: AuthenticatedClient, _ app: CaravanApplication, _ time: ManualTime) async throws {
        let anonymous = client.anonymous
        let enrolled = try await anonymous.send(.post, "/v1/auth/mfa/totp", headers: .bearer(client.accessToken))
        #expect(enrolled.status == .created)
        let secret = try #require(enrolled.json["secret"]?.stringValue)
        let recovery = (enrolled.json["recovery_codes"]?.arrayValue ?? []).compactMap { $0.stringValue }
        #expect(recovery.count == 10 && Set(recovery).count == 10)
        #expect(enrolled.json["otpauth_url"]?.stringValue?.hasPrefix("otpauth://totp/") == true)
        let bad = try await anonymous.send(
            .post,
            "/v1/auth/mfa/totp/verify",
            json: #"{"code": "000000x"}"#,
            headers: .bearer(client.accessToken)
        )
        #expect(bad.status == .unprocessableContent)
        // Verify with the previous step's code (drift of one step), keeping the current one for login. The clock
        // stands in the middle of a 30-second step (moved on to the next middle), so no code ages a step meanwhile.
        let step: Int64 = 30_000
        var middle = time.milliseconds / step * step + step / 2
        if middle < time.milliseconds { middle += step }
        time.set(middle)
        let now = Date(timeIntervalSince1970: Double(middle) / 1000)
        let previous = totpCode(base32: secret, at: now.addingTimeInterval(-30))
        let verified = try await anonymous.send(
            .post,
            "/v1/auth/mfa/totp/verify",
            json: #"{"code": "\#(previous)"}"#,
            headers: .bearer(client.accessToken)
        )
        #expect(verified.status == .ok, "\(verified.json)")

        let credentials = #""email": "owner@example.com", "password": "\#(AuthenticatedClient.ownerPassword)""#
        let withoutCode = try await anonymous.send(.post, "/v1/auth/login", json: "{\(credentials)}")
        #expect(withoutCode.status == .unauthorized)
        #expect(withoutCode.json["code"] == "mfa_required")
        let replayed = try await anonymous.send(
            .post,
            "/v1/auth/login",
            json: #"{\#(credentials), "totp": "\#(previous)"}"#
        )
        #expect(replayed.status == .unauthorized, "a code is usable once")
        let current = totpCode(base32: secret, at: now)
        #expect(
            try await anonymous.send(.post, "/v1/auth/login", json: #"{\#(credentials), "totp": "\#(current)"}"#).status
                == .ok
        )
        #expect(
            try await anonymous.send(.post, "/v1/auth/login", json: #"{\#(credentials), "totp": "\#(current)"}"#).status
                == .unauthorized
        )
        #expect(
            try await anonymous.send(.post, "/v1/auth/login", json: #"{\#(credentials), "totp": "\#(recovery[0])"}"#)
                .status == .ok
        )
        #expect(
            try await anonymous.send(.post, "/v1/auth/login", json: #"{\#(credentials), "totp": "\#(recovery[0])"}"#)
                .status == .unauthorized
        )
        #expect(
            try await anonymous.send(.get, "/v1/me", headers: .bearer(client.accessToken)).json["user"]?["mfa_enabled"]
                == true
        )
    }

    /// API keys: shown once, stored hashed, scoped, revocable at once, expiring, never in a URL.
    static func apiKeys(_ client: AuthenticatedClient, _ app: CaravanApplication, _ time: ManualTime) async throws {
        let created = try await client.send(.post, "/v1/api-keys", json: #"{"name": "ci", "role": "developer"}"#)
        #expect(created.status == .created)
        let key = try #require(created.json["key"]?.stringValue)
        let id = try #require(created.json["id"]?.stringValue)
        let listed = try await client.send(.get, "/v1/api-keys")
        #expect(!listed.json.canonicalText.contains(key), "a key is shown once")
        let stored = try await app.database.read { try await $0.query("SELECT key_hash FROM api_keys", []) }
        #expect(try stored.allSatisfy { try !$0.string("key_hash").contains(key) })
        #expect(try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(key)).status == .ok)
        #expect(
            try await client.anonymous.send(.put, "/v1/secrets/x", json: #"{"value": "v"}"#, headers: .bearer(key))
                .status == .forbidden
        )
        let inURL = try await client.anonymous.send(.get, "/v1/workflows?api_key=\(key)")
        #expect(inURL.status == .badRequest)
        #expect(try await client.send(.get, "/v1/runs?cursor=\(key)").status == .badRequest)
        #expect(try await client.send(.delete, "/v1/api-keys/\(id)").status == .noContent)
        #expect(try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(key)).status == .unauthorized)
        #expect(try await client.send(.delete, "/v1/api-keys/\(id)").status == .notFound)
        let past = try await client.send(
            .post,
            "/v1/api-keys",
            json: #"{"name": "old", "role": "viewer", "expires_at": "2000-01-01T00:00:00Z"}"#
        )
        #expect(past.status == .unprocessableContent)
        #expect(past.json["errors"]?.arrayValue?.first?["pointer"] == "/expires_at")
        let soon = Clock.rfc3339(time.milliseconds + 1500)
        let expiring = try #require(
            try await client.send(
                .post,
                "/v1/api-keys",
                json: #"{"name": "soon", "role": "viewer", "expires_at": "\#(soon)"}"#
            ).json["key"]?.stringValue
        )
        #expect(try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(expiring)).status == .ok)
        time.advance(by: .seconds(1))
        #expect(try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(expiring)).status == .ok)
        // The key is served from memory now; past its expiry (on the injected clock) it is refused all the same.
        #expect(app.identity.credentials.value(OpaqueToken.digest(expiring)) != nil, "the key is kept in memory")
        time.advance(by: .seconds(1))
        #expect(
            try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(expiring)).status == .unauthorized
        )
    }

    /// Members: roles change within limits; the last owner stays; a removed member loses access at once.
    static func members(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        let (devToken, devID) = try await client.member("dev@example.com", role: "developer")
        let (adminToken, _) = try await client.member("admin@example.com", role: "admin")
        let me = try await client.anonymous.send(.get, "/v1/me", headers: .bearer(client.accessToken))
        let ownerID = try #require(me.json["user"]?["id"]?.stringValue)
        #expect(
            try await client.send(.get, "/v1/organizations/\(client.orgID)/members").json["items"]?.arrayValue?.count
                == 3
        )
        let demoteOwner = try await client.anonymous.send(
            .patch,
            "/v1/organizations/\(client.orgID)/members/\(ownerID)",
            json: #"{"role": "viewer"}"#,
            headers: .bearer(adminToken)
        )
        #expect(demoteOwner.status == .forbidden, "an admin cannot change an owner")
        let lastOwner = try await client.send(
            .patch,
            "/v1/organizations/\(client.orgID)/members/\(ownerID)",
            json: #"{"role": "admin"}"#
        )
        #expect(lastOwner.status == .conflict)
        let promote = try await client.anonymous.send(
            .patch,
            "/v1/organizations/\(client.orgID)/members/\(devID)",
            json: #"{"role": "owner"}"#,
            headers: .bearer(adminToken)
        )
        #expect(promote.status == .forbidden, "no one grants above their role")
        let invalid = try await client.send(
            .patch,
            "/v1/organizations/\(client.orgID)/members/\(devID)",
            json: #"{"role": "emperor"}"#
        )
        #expect(invalid.status == .unprocessableContent)
        #expect(invalid.json["errors"]?.arrayValue?.first?["pointer"] == "/role")
        #expect(try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(devToken)).status == .ok)
        #expect(
            try await client.send(.delete, "/v1/organizations/\(client.orgID)/members/\(devID)").status == .noContent
        )
        #expect(
            try await client.anonymous.send(.get, "/v1/workflows", headers: .bearer(devToken)).status == .unauthorized
        )
        // Signup is closed now that users exist, unless invited.
        let closed = try await client.anonymous.send(
            .post,
            "/v1/auth/signup",
            json: #"{"email": "x@example.com", "password": "a long enough passphrase", "organization": "X"}"#
        )
        #expect(closed.status == .forbidden)
    }

    /// Bad passwords are refused with the field named.
    static func passwordPolicy(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        for password in [
            "short", "password1234", "Password123456!", "aaaaaaaaaaaaaaaa", String(repeating: "x", count: 1025) + "y",
            "owner@example.com",
        ] {
            let response = try await client.anonymous.send(
                .post,
                "/v1/auth/password",
                json: #"{"current_password": "\#(AuthenticatedClient.ownerPassword)", "new_password": "\#(password)"}"#,
                headers: .bearer(client.accessToken)
            )
            #expect(response.status == .unprocessableContent, "\(password.prefix(20))")
            #expect(response.json["errors"]?.arrayValue?.first?["pointer"] == "/new_password")
        }
    }

    /// Too many sign-in attempts: per address, then per account with a short backoff; per credential on the API.
    static func rateLimits(_ client: AuthenticatedClient, _ app: CaravanApplication, _ time: ManualTime) async throws {
        let anonymous = client.anonymous
        for _ in 0..<5 {
            #expect(
                try await anonymous.send(
                    .post,
                    "/v1/auth/login",
                    json: #"{"email": "owner@example.com", "password": "not the password!"}"#
                ).status == .unauthorized
            )
        }
        // The first backoff lasts a second of the injected clock, which stands still until moved on: even the right
        // password waits it out.
        let rightPassword = #"{"email": "owner@example.com", "password": "\#(AuthenticatedClient.ownerPassword)"}"#
        let blocked = try await anonymous.send(.post, "/v1/auth/login", json: rightPassword)
        #expect(blocked.status == .tooManyRequests)
        #expect(blocked.json["code"] == "rate_limited")
        #expect(Int(blocked.headers[.init("Retry-After")!] ?? "") == 1)
        time.advance(by: .milliseconds(999))
        #expect(
            try await anonymous.send(.post, "/v1/auth/login", json: rightPassword).status == .tooManyRequests,
            "the backoff lasts its whole second"
        )
        time.advance(by: .milliseconds(1))
        #expect(
            try await anonymous.send(.post, "/v1/auth/login", json: rightPassword).status == .ok,
            "the real user is back after a moment"
        )

        let limited = try await client.send(
            .patch,
            "/v1/organizations/\(client.orgID)",
            json: #"{"rate_limit_per_minute": 3}"#
        )
        #expect(limited.status == .ok)
        var statuses: [HTTPResponse.Status] = []
        for _ in 0..<4 { statuses.append(try await client.send(.get, "/v1/workflows").status) }
        #expect(statuses.last == .tooManyRequests)
        #expect(try await client.send(.get, "/healthz").status == .ok)
    }

    /// The audit log records changes with who and from where, and verification names a tampered entry.
    static func auditChain(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        _ = try await client.send(
            .put,
            "/v1/workflows/audited",
            json: "steps:\n  - {id: a, template: x}\n",
            contentType: "application/yaml"
        )
        _ = try await client.send(.post, "/v1/workflows/audited/runs", json: #"{"input": {}}"#)
        let page = try await client.send(.get, "/v1/audit?limit=500")
        let actions = page.json["items"]?.arrayValue?.compactMap { $0["action"]?.stringValue } ?? []
        for action in ["signup", "createAPIKey", "putWorkflow", "startRun"] {
            #expect(actions.contains(action), "\(actions)")
        }
        let put = try #require(page.json["items"]?.arrayValue?.first { $0["action"] == "putWorkflow" })
        #expect(put["actor"]?["type"] == "api_key")
        #expect(put["request_id"]?.stringValue?.hasPrefix("req_") == true)
        #expect(try await client.send(.get, "/v1/audit/verify").json["intact"] == true)

        let target = try #require(put["id"]?.stringValue)
        try await app.database.withTransaction { executor in
            try await executor.execute(
                "UPDATE audit_log SET target = 'workflow:something-else' WHERE chain = $1 AND seq = $2",
                [.text(client.orgID), .int(Int64(target)!)]
            )
        }
        let verdict = try await client.send(.get, "/v1/audit/verify")
        #expect(verdict.json["intact"] == false)
        #expect(verdict.json["first_break"]?["id"]?.stringValue == target)
    }

    /// A run start's audit entry is written in the run's own transaction: one entry per run created, naming the
    /// run, present as soon as the start is answered; a start answered from its Idempotency-Key writes its own
    /// entry. With runs started concurrently, verification still names a changed entry.
    static func runStartsAreAuditedWithTheRun(_ client: AuthenticatedClient, _ app: CaravanApplication) async throws {
        _ = try await client.send(
            .put,
            "/v1/workflows/audited",
            json: "steps:\n  - {id: a, template: x}\n",
            contentType: "application/yaml"
        )
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<40 {
                group.addTask {
                    let headers: HTTPFields = index == 0 ? [HTTPField.Name("Idempotency-Key")!: "once"] : [:]
                    let started = try await client.send(
                        .post,
                        "/v1/workflows/audited/runs",
                        json: #"{"input": {}}"#,
                        headers: headers
                    )
                    #expect(started.status == .created, "\(started.json)")
                    return try #require(started.json["id"]?.stringValue)
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        let repeated = try await client.send(
            .post,
            "/v1/workflows/audited/runs",
            json: #"{"input": {}}"#,
            headers: [HTTPField.Name("Idempotency-Key")!: "once"]
        )
        #expect(repeated.status == .ok)
        let entries = try await app.database.read { executor in
            try await executor.query(
                "SELECT target, outcome, actor_type, request_id FROM audit_log WHERE chain = $1 AND action = 'startRun' ORDER BY seq",
                [.text(client.orgID)]
            )
        }
        let targets = try entries.map { try $0.string("target") }
        #expect(targets.count == 41, "\(targets)")
        #expect(Set(targets) == Set(ids.map { "run:\($0)" }), "one entry per run, naming it")
        #expect(
            try entries.allSatisfy { try $0.string("outcome") == "success" && $0.string("actor_type") == "api_key" }
        )
        #expect(try entries.allSatisfy { try $0.optionalString("request_id")?.hasPrefix("req_") == true })
        #expect(try await client.send(.get, "/v1/audit/verify").json["intact"] == true)

        let changed = try #require(
            try await app.database.read { executor in
                try await executor.queryFirst(
                    "SELECT seq FROM audit_log WHERE chain = $1 AND action = 'startRun' ORDER BY seq LIMIT 1 OFFSET 20",
                    [.text(client.orgID)]
                )?.int("seq")
            }
        )
        try await app.database.withTransaction { executor in
            try await executor.execute(
                "UPDATE audit_log SET target = 'run:other' WHERE chain = $1 AND seq = $2",
                [.text(client.orgID), .int(changed)]
            )
        }
        let verdict = try await client.send(.get, "/v1/audit/verify")
        #expect(verdict.json["intact"] == false)
        #expect(verdict.json["first_break"]?["id"]?.stringValue == String(changed))
    }

    /// A secret's value is sent where a step puts it and found nowhere else: not in run output, events, answers,
    /// logs, nor the database files.
    static func secretsStaySecret(
        _ client: AuthenticatedClient,
        _ app: CaravanApplication,
        _ upstream: TestHTTPServer,
        _ logs: JSONLogOutput
    ) async throws {
        let value = "sv-" + UUID().uuidString
        #expect(
            try await client.send(.put, "/v1/secrets/crm_token", json: #"{"value": "\#(value)"}"#).status == .created
        )
        let misuse = try await client.send(
            .put,
            "/v1/workflows/leaky",
            json: "steps:\n  - {id: a, template: '{{ secrets.crm_token }}'}\n",
            contentType: "application/yaml"
        )
        #expect(misuse.status == .unprocessableContent, "a template step would store the value")
        let yaml = """
            steps:
              - {id: call, http: {method: POST, url: "\(upstream.baseURL)/echo", headers: {Authorization: "Bearer {{ secrets.crm_token }}"}}}
            """
        #expect(
            try await client.send(.put, "/v1/workflows/crm", json: yaml, contentType: "application/yaml").status
                == .created
        )
        let run = try await client.send(.post, "/v1/workflows/crm/runs?wait=10s", json: #"{"input": {}}"#)
        #expect(run.json["status"] == "succeeded", "\(run.json)")
        #expect(upstream.lastAuthorization == "Bearer \(value)", "the step sent the value")
        #expect(run.json.canonicalText.contains("[redacted]"), "the echoed value is masked in the output")
        // A secret that does not exist is refused when the workflow is put; one deleted later fails the step.
        let missing = try await client.send(
            .put,
            "/v1/workflows/missing",
            json: yaml.replacingOccurrences(of: "crm_token", with: "nope"),
            contentType: "application/yaml"
        )
        #expect(missing.status == .unprocessableContent, "\(missing.json)")
        #expect(try await client.send(.put, "/v1/secrets/nope", json: #"{"value": "soon gone"}"#).status == .created)
        #expect(
            try await client.send(
                .put,
                "/v1/workflows/missing",
                json: yaml.replacingOccurrences(of: "crm_token", with: "nope"),
                contentType: "application/yaml"
            ).status == .created
        )
        #expect(try await client.send(.delete, "/v1/secrets/nope").status == .noContent)
        let failed = try await client.send(.post, "/v1/workflows/missing/runs?wait=10s", json: #"{"input": {}}"#)
        #expect(failed.json["status"] == "failed")
        #expect(failed.json.canonicalText.contains("secret_not_found"))

        let id = try #require(run.json["id"]?.stringValue)
        var answers: [String] = [run.json.canonicalText]
        for path in [
            "/v1/runs/\(id)", "/v1/runs/\(id)/events", "/v1/secrets", "/v1/audit?limit=500", "/v1/events?after=0",
            "/v1/runs",
        ] {
            answers.append(try await client.send(.get, path).json.canonicalText)
        }
        #expect(answers.allSatisfy { !$0.contains(value) }, "an answer holds the secret")
        #expect(answers[4].contains("secret.use"), "the use is audited")
        #expect(!logs.captured.contains { $0.contains(value) }, "a log line holds the secret")
        let rows = try await app.database.read { try await $0.query("SELECT sealed FROM secrets", []) }
        #expect(try rows.allSatisfy { try !$0.string("sealed").contains(value) })
    }
}
