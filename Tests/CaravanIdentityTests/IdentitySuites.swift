import CaravanCore
import CaravanSQLite
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// The secrets check with an upstream that echoes, captured logs and (on SQLite) the data files searched.
func secretsCheck(_ backend: TestBackend) async throws {
    try await TestHTTPServer.with { upstream in
        try await withTemporaryDirectory { directory in
            let logs = JSONLogOutput.memory()
            let value = try await withTestApplication(
                backend,
                logOutput: logs,
                configure: { configuration in
                    configuration.egressAllow = "127.0.0.1"
                    configuration.dataDirectory = directory
                }
            ) { client, app in
                try await IdentityChecks.secretsStaySecret(
                    try #require(client as? AuthenticatedClient),
                    app,
                    upstream,
                    logs
                )
                return try #require(upstream.lastAuthorization?.replacingOccurrences(of: "Bearer ", with: ""))
            }
            if backend == .sqlite {
                let files = try FileManager.default.contentsOfDirectory(atPath: directory)
                #expect(files.contains("caravan.sqlite"))
                for file in files {
                    let bytes = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
                    #expect(bytes.range(of: Data(value.utf8)) == nil, "\(file) holds the secret")
                }
            }
        }
    }
}

/// Every check runs on each available backend (`TestBackend.available`), as one test case per backend.
@Suite("Identity and tenancy", .tags(.identity), .timeLimit(.minutes(3)))
struct IdentityTests {
    @Test(arguments: TestBackend.available) func credentialsAreRequired(backend: TestBackend) async throws {
        try await identityCheck(backend, IdentityChecks.credentialsAreRequired)
    }
    @Test(arguments: TestBackend.available) func roleMatrix(backend: TestBackend) async throws {
        try await identityCheck(backend, IdentityChecks.roleMatrix)
    }
    @Test(arguments: TestBackend.available) func isolation(backend: TestBackend) async throws {
        try await identityCheck(backend, configure: { $0.openSignup = true }, IdentityChecks.organizationsAreIsolated)
    }
    @Test(arguments: TestBackend.available) func sessions(backend: TestBackend) async throws {
        try await identityCheck(backend, IdentityChecks.sessions)
    }
    @Test(arguments: TestBackend.available) func totp(backend: TestBackend) async throws {
        try await identityCheck(backend, time: ManualTime(), IdentityChecks.totp)
    }
    @Test(arguments: TestBackend.available) func apiKeys(backend: TestBackend) async throws {
        try await identityCheck(backend, time: ManualTime(), IdentityChecks.apiKeys)
    }
    @Test(arguments: TestBackend.available) func members(backend: TestBackend) async throws {
        try await identityCheck(backend, IdentityChecks.members)
    }
    /// The rules are the service's own, not the database's: one backend suffices.
    @Test func passwordPolicy() async throws { try await identityCheck(.sqlite, IdentityChecks.passwordPolicy) }
    @Test(arguments: TestBackend.available) func rateLimits(backend: TestBackend) async throws {
        try await identityCheck(backend, time: ManualTime(), IdentityChecks.rateLimits)
    }
    @Test(arguments: TestBackend.available) func auditChain(backend: TestBackend) async throws {
        try await identityCheck(backend, IdentityChecks.auditChain)
    }
    @Test(arguments: TestBackend.available) func runStartsAreAuditedWithTheRun(backend: TestBackend) async throws {
        try await identityCheck(backend, IdentityChecks.runStartsAreAuditedWithTheRun)
    }
    @Test(arguments: TestBackend.available) func secrets(backend: TestBackend) async throws {
        try await secretsCheck(backend)
    }
    @Test(arguments: TestBackend.available) func keysFollowTheirCreator(backend: TestBackend) async throws {
        try await identityCheck(backend, SecurityFindingChecks.keysFollowTheirCreator)
    }
    @Test(arguments: TestBackend.available) func rateLimitCeiling(backend: TestBackend) async throws {
        try await identityCheck(
            backend,
            configure: { $0.rateLimitPerMinute = 20 },
            SecurityFindingChecks.rateLimitCeiling
        )
    }
    @Test(arguments: TestBackend.available) func failedSignInsAreAudited(backend: TestBackend) async throws {
        try await identityCheck(backend, SecurityFindingChecks.failedSignInsAreAudited)
    }
    @Test(arguments: TestBackend.available) func auditIDsArePerOrganization(backend: TestBackend) async throws {
        try await identityCheck(
            backend,
            configure: { $0.openSignup = true },
            SecurityFindingChecks.auditIDsArePerOrganization
        )
    }
    @Test(arguments: TestBackend.available) func auditDeletionsAreDetected(backend: TestBackend) async throws {
        try await identityCheck(backend, SecurityFindingChecks.auditDeletionsAreDetected)
    }
    @Test(arguments: TestBackend.available) func auditTailDeletionIsDetected(backend: TestBackend) async throws {
        try await identityCheck(backend, SecurityFindingChecks.auditTailDeletionIsDetected)
    }
    @Test(arguments: TestBackend.available) func savedHeadsRevealDeletions(backend: TestBackend) async throws {
        try await identityCheck(backend, SecurityFindingChecks.savedHeadsRevealDeletions)
    }
    @Test(arguments: TestBackend.available) func legacyChainsStillVerify(backend: TestBackend) async throws {
        try await identityCheck(backend, SecurityFindingChecks.legacyChainsStillVerify)
    }
    @Test(arguments: TestBackend.available) func backoffIsPerAddress(backend: TestBackend) async throws {
        try await identityCheck(backend, time: ManualTime(), SecurityFindingChecks.backoffIsPerAddress)
    }
}

@Suite("Identity from outside")
struct IdentityProcessTests {
    @Test("Sign-in attempts per address are limited, with Retry-After")
    func addressLimit() async throws {
        try await identityCheck(.sqlite, configure: { $0.authAttemptsPerMinute = 3 }) { client, _ in
            var answers: [(status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields)] = []
            for index in 0..<8 {
                answers.append(
                    try await client.anonymous.send(
                        .post,
                        "/v1/auth/login",
                        json: #"{"email": "u\#(index)@example.com", "password": "whatever it is"}"#
                    )
                )
            }
            // The signup that set up the test was the first attempt from this address. Windows are calendar
            // minutes: eight attempts meet the limit within one window even if a minute boundary falls among them.
            let statuses = answers.map(\.status)
            #expect(statuses.allSatisfy { $0 == .unauthorized || $0 == .tooManyRequests }, "\(statuses)")
            let refused = try #require(answers.first { $0.status == .tooManyRequests }, "\(statuses)")
            #expect(refused.json["code"] == "rate_limited")
            #expect((1...60).contains(Int(refused.headers[HTTPField.Name("Retry-After")!] ?? "") ?? 0))
        }
    }

    @Test("Changing one byte of a stored audit entry makes `caravan audit verify` name that entry")
    func auditVerifyCommand() async throws {
        try await withTemporaryDirectory { directory in
            let server = try await CaravanProcess(arguments: ["serve", "--port", "0", "--data", directory])
            let auth = try await bootstrapCredentials(port: server.port)
            let put = try await fetch(
                "http://127.0.0.1:\(server.port)/v1/workflows/w",
                method: "PUT",
                headers: [("Content-Type", "application/yaml")] + auth,
                body: "steps:\n  - {id: a, template: x}\n"
            )
            #expect(put.status == 201)
            server.send(signal: SIGTERM)
            #expect(try await server.waitForExit() == 0)

            let intact = try runCaravan(["audit", "verify", "--data", directory])
            #expect(intact.status == 0, "\(intact.output)")
            #expect(intact.output.contains("OK: 3 audit entries"), "\(intact.output)")

            // One byte of the second entry's action, changed behind Caravan's back.
            let id = try await tamperWithSecondEntry(directory)
            let broken = try runCaravan(["audit", "verify", "--data", directory])
            #expect(broken.status == 1)
            #expect(broken.output.contains("audit entry \(id) "), "\(broken.output)")
        }
    }
}

@Suite("Audit heads from outside")
struct AuditHeadsProcessTests {
    @Test("`caravan audit verify --heads` reports a chain deleted with its head since the heads were saved")
    func verifyAgainstSavedHeads() async throws {
        try await withTemporaryDirectory { directory in
            let server = try await CaravanProcess(arguments: ["serve", "--port", "0", "--data", directory])
            let auth = try await bootstrapCredentials(port: server.port)
            let put = try await fetch(
                "http://127.0.0.1:\(server.port)/v1/workflows/w",
                method: "PUT",
                headers: [("Content-Type", "application/yaml")] + auth,
                body: "steps:\n  - {id: a, template: x}\n"
            )
            #expect(put.status == 201)
            server.send(signal: SIGTERM)
            #expect(try await server.waitForExit() == 0)

            // The server checkpointed its heads on the way out, for its user only; keep a copy elsewhere.
            let heads = directory + "/audit-heads.json"
            let attributes = try FileManager.default.attributesOfItem(atPath: heads)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            let saved = directory + "/saved-heads.json"
            try FileManager.default.copyItem(atPath: heads, toPath: saved)
            let intact = try runCaravan(["audit", "verify", "--data", directory, "--heads", saved])
            #expect(intact.status == 0, "\(intact.output)")
            #expect(intact.output.contains("OK: 3 audit entries"), "\(intact.output)")

            // The organization's whole chain and its head, deleted behind Caravan's back.
            try await deleteOrganizationChains(directory)
            let broken = try runCaravan(["audit", "verify", "--data", directory, "--heads", saved])
            #expect(broken.status == 1, "\(broken.output)")
            #expect(broken.output.contains("BROKEN: organization "), "\(broken.output)")
            #expect(broken.output.contains("deleted"), "\(broken.output)")
            // An altered heads file is refused.
            let altered = try String(contentsOfFile: saved, encoding: .utf8).replacingOccurrences(
                of: "\"seq\":",
                with: "\"seq\":9"
            )
            try altered.write(toFile: saved, atomically: true, encoding: .utf8)
            let refused = try runCaravan(["audit", "verify", "--data", directory, "--heads", saved])
            #expect(refused.status == 1, "\(refused.output)")
        }
    }
}

/// Runs the `caravan` binary to completion.
func runCaravan(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CaravanProcess.binaryPath)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Changes one byte of the second audit entry of a SQLite data directory; the database closes on return.
func tamperWithSecondEntry(_ directory: String) async throws -> Int64 {
    let database = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
    return try await database.withTransaction { executor in
        guard let row = try await executor.queryFirst("SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET 1", [])
        else {
            throw TestSetupError.failed("no second audit entry")
        }
        let id = try row.int("id")
        try await executor.execute("UPDATE audit_log SET action = 'createAPIKez' WHERE id = $1", [.int(id)])
        return id
    }
}

/// Deletes every organization's audit entries and heads from a SQLite data directory; the database closes on return.
func deleteOrganizationChains(_ directory: String) async throws {
    let database = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
    try await database.withTransaction { executor in
        try await executor.execute("DELETE FROM audit_log WHERE chain <> ''", [])
        try await executor.execute("DELETE FROM audit_heads WHERE chain <> ''", [])
    }
}
