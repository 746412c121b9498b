import CaravanTestSupport
import HummingbirdTesting
import Testing

@Suite("Agents and the gateway on SQLite")
struct SQLiteAgentTests {
    let backend = TestBackend.sqlite
    @Test func answersWithTools() async throws {
        try await withAgentWorld(backend, AgentChecks.answersWithHTTPAndMCPTools)
    }
    @Test func fallsBack() async throws { try await withAgentWorld(backend, AgentChecks.fallsBackAcrossProviders) }
    @Test func maxTurns() async throws { try await withAgentWorld(backend, AgentChecks.stopsAtMaxTurns) }
    @Test func budgets() async throws { try await withAgentWorld(backend, AgentChecks.budgetsStopCalls) }
    @Test func outputSchema() async throws { try await withAgentWorld(backend, AgentChecks.validatesOutput) }
    @Test func toolArguments() async throws { try await withAgentWorld(backend, AgentChecks.validatesToolArguments) }
    @Test func chatCompletions() async throws { try await withAgentWorld(backend, AgentChecks.chatCompletions) }
    @Test func workflowSteps() async throws { try await withAgentWorld(backend, AgentChecks.llmAndAgentSteps) }
    @Test func threads() async throws { try await withAgentWorld(backend, AgentChecks.threadsRemember) }
    @Test func approvals() async throws { try await withAgentWorld(backend, AgentChecks.approvalBindsArguments) }
    @Test func egress() async throws { try await withAgentWorld(backend, AgentChecks.egressRefusesProviders) }
    @Test func validation() async throws {
        try await withAgentWorld(backend, AgentChecks.definitionsAndProvidersAreValidated)
    }
    @Test func stdioMCP() async throws { try await withAgentWorld(backend, AgentChecks.usesStdioMCPServer) }
    @Test func deltas() async throws { try await withAgentWorld(backend, mode: .live, AgentChecks.streamsDeltas) }
}

@Suite(
    "Agents and the gateway on PostgreSQL",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)")
)
struct PostgresAgentTests {
    let backend = TestBackend.postgres
    @Test func answersWithTools() async throws {
        try await withAgentWorld(backend, AgentChecks.answersWithHTTPAndMCPTools)
    }
    @Test func fallsBack() async throws { try await withAgentWorld(backend, AgentChecks.fallsBackAcrossProviders) }
    @Test func maxTurns() async throws { try await withAgentWorld(backend, AgentChecks.stopsAtMaxTurns) }
    @Test func budgets() async throws { try await withAgentWorld(backend, AgentChecks.budgetsStopCalls) }
    @Test func outputSchema() async throws { try await withAgentWorld(backend, AgentChecks.validatesOutput) }
    @Test func toolArguments() async throws { try await withAgentWorld(backend, AgentChecks.validatesToolArguments) }
    @Test func chatCompletions() async throws { try await withAgentWorld(backend, AgentChecks.chatCompletions) }
    @Test func workflowSteps() async throws { try await withAgentWorld(backend, AgentChecks.llmAndAgentSteps) }
    @Test func threads() async throws { try await withAgentWorld(backend, AgentChecks.threadsRemember) }
    @Test func approvals() async throws { try await withAgentWorld(backend, AgentChecks.approvalBindsArguments) }
    @Test func egress() async throws { try await withAgentWorld(backend, AgentChecks.egressRefusesProviders) }
    @Test func validation() async throws {
        try await withAgentWorld(backend, AgentChecks.definitionsAndProvidersAreValidated)
    }
    @Test func stdioMCP() async throws { try await withAgentWorld(backend, AgentChecks.usesStdioMCPServer) }
    @Test func deltas() async throws { try await withAgentWorld(backend, mode: .live, AgentChecks.streamsDeltas) }
}
