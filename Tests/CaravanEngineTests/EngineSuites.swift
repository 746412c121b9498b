import CaravanCore
import CaravanEngine
import CaravanServer
import CaravanTestSupport
import HummingbirdTesting
import Testing

/// Runs an engine check on `backend`, with a local HTTP server the steps may call.
func check(
    _ backend: TestBackend,
    _ body: @escaping @Sendable (any TestClientProtocol, TestHTTPServer) async throws -> Void
) async throws {
    try await TestHTTPServer.with { server in
        try await withTestApplication(
            backend,
            configure: { configuration in
                configuration.egressAllow = "127.0.0.1"
                configuration.engine.pollInterval = .init(milliseconds: 50)
            }
        ) { client, _ in
            try await body(client, server)
        }
    }
}

@Suite("Workflow engine on SQLite")
struct SQLiteEngineTests {
    let backend = TestBackend.sqlite
    @Test func definitionsAreVersioned() async throws {
        try await check(backend) { client, _ in try await EngineChecks.definitionsAreVersioned(client) }
    }
    @Test func runsToTheEnd() async throws {
        try await check(backend) { client, _ in try await EngineChecks.runsToTheEnd(client) }
    }
    @Test func branchesSkipsAndForEach() async throws {
        try await check(backend) { client, _ in try await EngineChecks.branchesSkipsAndForEach(client) }
    }
    @Test func httpRetries() async throws { try await check(backend, EngineChecks.httpStepsRetryWithOneIdempotencyKey) }
    @Test func clientErrors() async throws { try await check(backend, EngineChecks.clientErrorsFailAtOnce) }
    @Test func timeouts() async throws { try await check(backend, EngineChecks.timeoutsAreRetried) }
    @Test func egress() async throws {
        try await check(backend) { client, _ in try await EngineChecks.egressIsRefusedUnlessAllowed(client) }
    }
    @Test func approvals() async throws {
        try await check(backend) { client, _ in try await EngineChecks.approvals(client) }
    }
    @Test func sleepsAndChildren() async throws {
        try await check(backend) { client, _ in try await EngineChecks.sleepsAndChildren(client) }
    }
    @Test func rootChildWorkflow() async throws {
        try await check(backend) { client, _ in try await EngineChecks.rootChildWorkflow(client) }
    }
    @Test func cancel() async throws {
        try await check(backend) { client, _ in try await EngineChecks.cancelStopsEverything(client) }
    }
    @Test func retry() async throws { try await check(backend, EngineChecks.retryKeepsWhatSucceeded) }
    @Test func idempotency() async throws {
        try await check(backend) { client, _ in try await EngineChecks.idempotentStarts(client) }
    }
    @Test func pagination() async throws {
        try await check(backend) { client, _ in try await EngineChecks.listsPageWithCursors(client) }
    }
    @Test func concurrency() async throws {
        try await check(backend) { client, _ in try await EngineChecks.concurrencyQueuesRuns(client) }
    }
}

@Suite(
    "Workflow engine on PostgreSQL",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)")
)
struct PostgresEngineTests {
    let backend = TestBackend.postgres
    @Test func definitionsAreVersioned() async throws {
        try await check(backend) { client, _ in try await EngineChecks.definitionsAreVersioned(client) }
    }
    @Test func runsToTheEnd() async throws {
        try await check(backend) { client, _ in try await EngineChecks.runsToTheEnd(client) }
    }
    @Test func branchesSkipsAndForEach() async throws {
        try await check(backend) { client, _ in try await EngineChecks.branchesSkipsAndForEach(client) }
    }
    @Test func httpRetries() async throws { try await check(backend, EngineChecks.httpStepsRetryWithOneIdempotencyKey) }
    @Test func clientErrors() async throws { try await check(backend, EngineChecks.clientErrorsFailAtOnce) }
    @Test func timeouts() async throws { try await check(backend, EngineChecks.timeoutsAreRetried) }
    @Test func egress() async throws {
        try await check(backend) { client, _ in try await EngineChecks.egressIsRefusedUnlessAllowed(client) }
    }
    @Test func approvals() async throws {
        try await check(backend) { client, _ in try await EngineChecks.approvals(client) }
    }
    @Test func sleepsAndChildren() async throws {
        try await check(backend) { client, _ in try await EngineChecks.sleepsAndChildren(client) }
    }
    @Test func rootChildWorkflow() async throws {
        try await check(backend) { client, _ in try await EngineChecks.rootChildWorkflow(client) }
    }
    @Test func cancel() async throws {
        try await check(backend) { client, _ in try await EngineChecks.cancelStopsEverything(client) }
    }
    @Test func retry() async throws { try await check(backend, EngineChecks.retryKeepsWhatSucceeded) }
    @Test func idempotency() async throws {
        try await check(backend) { client, _ in try await EngineChecks.idempotentStarts(client) }
    }
    @Test func pagination() async throws {
        try await check(backend) { client, _ in try await EngineChecks.listsPageWithCursors(client) }
    }
    @Test func concurrency() async throws {
        try await check(backend) { client, _ in try await EngineChecks.concurrencyQueuesRuns(client) }
    }
}
