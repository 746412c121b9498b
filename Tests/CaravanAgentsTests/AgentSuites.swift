import CaravanCore
import CaravanServer
import CaravanTestSupport
import HummingbirdTesting
import Testing

/// Every check runs on each available backend (`TestBackend.available`), as one test case per backend.
@Suite("Agents and the gateway", .tags(.agents), .timeLimit(.minutes(3)))
struct AgentTests {
    @Test(arguments: TestBackend.available) func answersWithTools(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.answersWithHTTPAndMCPTools)
    }
    @Test(arguments: TestBackend.available) func fallsBack(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.fallsBackAcrossProviders)
    }
    @Test(arguments: TestBackend.available) func maxTurns(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.stopsAtMaxTurns)
    }
    @Test(arguments: TestBackend.available) func budgets(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.budgetsStopCalls)
    }
    @Test(arguments: TestBackend.available) func outputSchema(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.validatesOutput)
    }
    @Test(arguments: TestBackend.available) func toolArguments(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.validatesToolArguments)
    }
    @Test(arguments: TestBackend.available) func chatCompletions(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.chatCompletions)
    }
    @Test(arguments: TestBackend.available) func gatewayParameters(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.gatewayParameters)
    }
    @Test(arguments: TestBackend.available) func embeddings(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.embeddings)
    }
    @Test(arguments: TestBackend.available) func mcpServer(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.mcpServer)
    }
    @Test(arguments: TestBackend.available) func keyLimits(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.keyLimits)
    }
    @Test(arguments: TestBackend.available) func responsesAPI(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.responsesAPI)
    }
    @Test(arguments: TestBackend.available) func responsesStreaming(backend: TestBackend) async throws {
        try await withAgentWorld(backend, GatewayLogChecks.responsesStreaming)
    }
    @Test(arguments: TestBackend.available) func modules(backend: TestBackend) async throws {
        try await withAgentWorld(backend, ModuleChecks.lifecycle)
    }
    @Test(arguments: TestBackend.available) func moduleLimits(backend: TestBackend) async throws {
        try await withAgentWorld(backend, ModuleChecks.limits)
    }
    @Test(arguments: TestBackend.available) func moduleStepsAndTools(backend: TestBackend) async throws {
        try await withAgentWorld(backend, ModuleChecks.stepsAndTools)
    }
    @Test(.enabled(if: ModuleChecks.clang != nil, "needs clang for wasm32"), arguments: TestBackend.available)
    func moduleInC(backend: TestBackend) async throws {
        try await withAgentWorld(backend, ModuleChecks.cExample)
    }
    @Test(arguments: TestBackend.available) func moduleInWAT(backend: TestBackend) async throws {
        try await withAgentWorld(backend, ModuleChecks.watExample)
    }
    @Test(arguments: TestBackend.available) func moduleWASI(backend: TestBackend) async throws {
        try await withAgentWorld(backend, ModuleChecks.wasi)
    }
    @Test(arguments: TestBackend.available) func moduleConsolePages(backend: TestBackend) async throws {
        try await withAgentWorld(backend, ModuleChecks.consolePages)
    }
    @Test(arguments: TestBackend.available) func catalog(backend: TestBackend) async throws {
        try await withAgentWorld(backend, CatalogChecks.catalog)
    }
    @Test(arguments: TestBackend.available) func catalogModules(backend: TestBackend) async throws {
        try await withAgentWorld(backend, CatalogChecks.moduleListing)
    }
    @Test(arguments: TestBackend.available) func catalogTerms(backend: TestBackend) async throws {
        try await withAgentWorld(backend, CatalogChecks.terms)
    }
    @Test(arguments: TestBackend.available) func catalogConsolePages(backend: TestBackend) async throws {
        try await withAgentWorld(backend, CatalogChecks.consolePages)
    }
    @Test(arguments: TestBackend.available) func knowledge(backend: TestBackend) async throws {
        try await withAgentWorld(backend, KnowledgeChecks.collections)
    }
    @Test(arguments: TestBackend.available) func generatedDocuments(backend: TestBackend) async throws {
        try await withAgentWorld(backend, DocumentChecks.generated)
    }
    @Test(arguments: TestBackend.available) func knowledgeConsolePages(backend: TestBackend) async throws {
        try await withAgentWorld(backend, KnowledgeChecks.consolePages)
    }
    @Test(arguments: TestBackend.available) func requestLog(backend: TestBackend) async throws {
        try await withAgentWorld(backend, GatewayLogChecks.requestLog)
    }
    @Test(arguments: TestBackend.available) func responseCache(backend: TestBackend) async throws {
        try await withAgentWorld(backend, configure: { $0.gatewayCacheTTL = .seconds(60) }, AgentChecks.responseCache)
    }
    @Test(arguments: TestBackend.available) func modelRoutes(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.modelRoutes)
    }
    @Test(arguments: TestBackend.available) func workflowSteps(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.llmAndAgentSteps)
    }
    @Test(arguments: TestBackend.available) func threads(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.threadsRemember)
    }
    @Test(arguments: TestBackend.available) func approvals(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.approvalBindsArguments)
    }
    @Test(arguments: TestBackend.available) func consoleTraceAndApproval(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentConsoleChecks.traceAndApproval)
    }
    @Test(arguments: TestBackend.available) func egress(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.egressRefusesProviders)
    }
    @Test(arguments: TestBackend.available) func validation(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.definitionsAndProvidersAreValidated)
    }
    @Test(arguments: TestBackend.available) func stdioMCP(backend: TestBackend) async throws {
        try await withAgentWorld(backend, AgentChecks.usesStdioMCPServer)
    }
    @Test(arguments: TestBackend.available) func deltas(backend: TestBackend) async throws {
        try await withAgentWorld(backend, mode: .live, AgentChecks.streamsDeltas)
    }
}
