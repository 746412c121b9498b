public import CaravanCore

/// What a running step may ask of the engine that runs it, for its own run only: look up a workflow of the
/// organization, start a child run and follow it, take a signal sent to the run. Handed to each attempt in its
/// `StepContext` (agents use it for agent and workflow tools and for approvals), so a step kind needs no
/// reference to the engine.
public struct RunControl: Sendable {
    private let engine: Engine
    private let orgID: String
    private let runID: String
    private let stepID: String

    init(engine: Engine, orgID: String, runID: String, stepID: String) {
        self.engine = engine
        self.orgID = orgID
        self.runID = runID
        self.stepID = stepID
    }

    /// The latest version of the organization's workflow `name`, unless it does not exist or was archived.
    public func workflow(named name: String) async throws -> StoredWorkflow? {
        guard let workflow = try await engine.workflows.get(orgID: orgID, name: name), workflow.archivedAt == nil
        else { return nil }
        return workflow
    }

    /// Starts a run of `workflow` as a child of this step (the same run again for the same `idempotencyKey`).
    /// - Throws: as `Engine.startRun`.
    public func startChild(
        workflow: String,
        input: JSONValue,
        idempotencyKey: String,
        requestHash: String
    ) async throws -> RunRecord {
        try await engine.startRun(
            orgID: orgID,
            workflow: workflow,
            input: input,
            idempotencyKey: idempotencyKey,
            requestHash: requestHash,
            parent: (runID, stepID)
        ).run
    }

    /// Waits up to `timeout` for the run `id` of the organization to change, as `Engine.waitForRun`.
    public func waitForRun(id: String, timeout: Duration) async throws -> RunRecord? {
        try await engine.waitForRun(orgID: orgID, id: id, timeout: timeout)
    }

    /// Takes the oldest pending signal `name` sent to this run whose data `matches`, as `Engine.takeSignal`.
    public func takeSignal(
        name: String,
        where matches: @escaping @Sendable (JSONValue) -> Bool
    ) async throws -> (data: JSONValue, sender: String?)? {
        try await engine.takeSignal(runID: runID, name: name, where: matches)
    }
}
