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

/// Every check runs on each available backend (`TestBackend.available`), as one test case per backend.
@Suite("Workflow engine", .tags(.engine), .timeLimit(.minutes(3)))
struct EngineTests {
    @Test(arguments: TestBackend.available) func definitionsAreVersioned(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.definitionsAreVersioned(client) }
    }
    @Test(arguments: TestBackend.available) func runsToTheEnd(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.runsToTheEnd(client) }
    }
    @Test(arguments: TestBackend.available) func branchesSkipsAndForEach(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.branchesSkipsAndForEach(client) }
    }
    @Test(arguments: TestBackend.available) func httpRetries(backend: TestBackend) async throws {
        try await check(backend, EngineChecks.httpStepsRetryWithOneIdempotencyKey)
    }
    @Test(arguments: TestBackend.available) func clientErrors(backend: TestBackend) async throws {
        try await check(backend, EngineChecks.clientErrorsFailAtOnce)
    }
    @Test(arguments: TestBackend.available) func timeouts(backend: TestBackend) async throws {
        try await check(backend, EngineChecks.timeoutsAreRetried)
    }
    @Test(arguments: TestBackend.available) func egress(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.egressIsRefusedUnlessAllowed(client) }
    }
    @Test(arguments: TestBackend.available) func approvals(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.approvals(client) }
    }
    @Test(arguments: TestBackend.available) func sleepsAndChildren(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.sleepsAndChildren(client) }
    }
    @Test(arguments: TestBackend.available) func rootChildWorkflow(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.rootChildWorkflow(client) }
    }
    @Test(arguments: TestBackend.available) func cancel(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.cancelStopsEverything(client) }
    }
    @Test(arguments: TestBackend.available) func retry(backend: TestBackend) async throws {
        try await check(backend, EngineChecks.retryKeepsWhatSucceeded)
    }
    @Test(arguments: TestBackend.available) func idempotency(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.idempotentStarts(client) }
    }
    @Test(arguments: TestBackend.available) func pagination(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.listsPageWithCursors(client) }
    }
    @Test(arguments: TestBackend.available) func concurrency(backend: TestBackend) async throws {
        try await check(backend) { client, _ in try await EngineChecks.concurrencyQueuesRuns(client) }
    }
}
