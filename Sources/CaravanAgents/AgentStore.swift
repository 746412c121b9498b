public import CaravanAudit
public import CaravanCore
public import CaravanEngine
import CaravanWorkflow

/// A stored version of an agent.
public struct StoredAgent: Sendable {
    public var name: String
    public var version: Int
    public var latestVersion: Int
    public var definition: AgentDefinition
    public var createdAt: Int64
    public var updatedAt: Int64
    public var archived: Bool
}

/// Agents and their versions, kept as workflows under reserved names (`agent:NAME`, one `agent_loop` step), so an
/// agent's run is a run like any other: events, streams, cancel, retry, leases and crash recovery.
public final class AgentStore: Sendable {
    let engine: Engine
    let threads: ThreadStore

    public init(engine: Engine, threads: ThreadStore) {
        self.engine = engine
        self.threads = threads
    }

    /// Creates the agent or a new version of it; an unchanged definition keeps its version.
    public func put(orgID: String, _ definition: AgentDefinition) async throws -> (agent: StoredAgent, created: Bool) {
        let workflow = try DefinitionParser.validate(
            definition.workflowDocument,
            nameFromPath: AgentStepKind.workflowName(forAgent: definition.name),
            kinds: engine.kinds
        )
        let (stored, created) = try await engine.workflows.put(orgID: orgID, definition: workflow)
        return (try Self.agent(stored), created)
    }

    public func get(orgID: String, name: String, version: Int? = nil) async throws -> StoredAgent? {
        guard
            let stored = try await engine.workflows.get(
                orgID: orgID,
                name: AgentStepKind.workflowName(forAgent: name),
                version: version
            )
        else { return nil }
        return try Self.agent(stored)
    }

    /// A page of agents (latest versions), by name; `cursor` is the last name of the previous page.
    public func list(orgID: String, after cursor: String?, limit: Int) async throws -> [StoredAgent] {
        try await engine.workflows.list(
            orgID: orgID,
            after: cursor.map(AgentStepKind.workflowName(forAgent:)) ?? "agent:",
            limit: limit,
            reservedPrefix: AgentStepKind.workflowPrefix
        ).map(Self.agent)
    }

    public func archive(orgID: String, name: String) async throws -> Bool {
        try await engine.workflows.archive(orgID: orgID, name: AgentStepKind.workflowName(forAgent: name))
    }

    /// Starts a run of the agent's latest version, on `thread` if given.
    /// - Throws: `not_found` (agent or thread), `validation_failed` (input), `conflict` (the thread is busy),
    ///   `idempotency_conflict`.
    public func startRun(
        orgID: String,
        name: String,
        input: JSONValue,
        thread: String?,
        idempotencyKey: String?,
        requestHash: String?,
        audit: AuditRecord? = nil
    ) async throws -> (run: RunRecord, created: Bool) {
        guard let agent = try await get(orgID: orgID, name: name), !agent.archived else {
            throw CaravanError.notFound("The agent '\(name)'")
        }
        if let schema = agent.definition.inputSchema {
            let problems = JSONSchemaCheck.problems(of: input, against: schema, at: "/input")
            if !problems.isEmpty {
                throw CaravanError(
                    .validationFailed,
                    "The input does not match the agent's input schema.",
                    fieldErrors: problems
                )
            }
        }
        let engine = self.engine
        let isFinished: @Sendable (String) async throws -> Bool = { runID in
            try await engine.run(orgID: orgID, id: runID)?.status.isTerminal ?? true
        }
        if let thread {
            guard let current = try await threads.get(orgID: orgID, id: thread) else {
                throw CaravanError.notFound("The thread")
            }
            if let holder = current.activeRunID, try await !isFinished(holder) {
                throw CaravanError(
                    .conflict,
                    "The run \(holder) is still running on this thread; wait for it to finish."
                )
            }
        }
        var envelope: [String: JSONValue] = ["input": input]
        if let thread { envelope["thread"] = .string(thread) }
        let (run, created) = try await engine.startRun(
            orgID: orgID,
            workflow: AgentStepKind.workflowName(forAgent: name),
            input: .object(envelope),
            idempotencyKey: idempotencyKey,
            requestHash: requestHash,
            audit: audit
        )
        if let thread, created {
            do {
                try await threads.claim(orgID: orgID, id: thread, runID: run.id, isFinished: isFinished)
            } catch {
                _ = try? await engine.cancel(orgID: orgID, id: run.id)
                throw error
            }
        }
        return (run, created)
    }

    static func agent(_ stored: StoredWorkflow) throws -> StoredAgent {
        guard let name = AgentStepKind.agentName(ofWorkflow: stored.name),
            let config = stored.definition.steps.first?.config
        else {
            throw CaravanError(.internal, "A stored agent is malformed.")
        }
        return StoredAgent(
            name: name,
            version: stored.version,
            latestVersion: stored.latestVersion,
            definition: try AgentDefinition.validate(config, nameFromPath: name),
            createdAt: stored.createdAt,
            updatedAt: stored.updatedAt,
            archived: stored.archivedAt != nil
        )
    }
}
