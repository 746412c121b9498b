import CaravanCore
import CaravanWorkflow

@testable import CaravanEngine

/// A workflow definition from YAML, named `w`.
func definition(_ yaml: String) throws -> WorkflowDefinition {
    try DefinitionParser.parse(Array(yaml.utf8), format: .yaml, nameFromPath: "w")
}

/// A new, queued run `run_1` of `definition` in `org_1`, created at time 0.
func newRun(_ definition: WorkflowDefinition, input: JSONValue = [:]) -> RunRecord {
    RunRecord(
        id: "run_1",
        orgID: "org_1",
        kind: "workflow",
        workflow: "w",
        workflowVersion: 1,
        status: .queued,
        input: input,
        output: nil,
        error: nil,
        steps: definition.steps.map { StepState(id: $0.id) },
        idempotencyKey: nil,
        requestHash: nil,
        parentRunID: nil,
        parentStep: nil,
        createdAt: 0,
        startedAt: nil,
        finishedAt: nil,
        updatedAt: 0,
        lastSeq: 1,
        cancelRequested: false
    )
}
