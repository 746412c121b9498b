import CaravanCore
import CaravanWorkflow

@testable import CaravanEngine

/// A workflow definition from YAML, named `w`.
func definition(_ yaml: String) throws -> WorkflowDefinition {
    try DefinitionParser.parse(Array(yaml.utf8), format: .yaml, nameFromPath: "w")
}

/// A new, queued run of `definition` in `org_1`, created at `now`.
func newRun(_ definition: WorkflowDefinition, input: JSONValue = [:], id: String = "run_1", now: Int64 = 0) -> RunRecord
{
    RunRecord(
        id: id,
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
        createdAt: now,
        startedAt: nil,
        finishedAt: nil,
        updatedAt: now,
        lastSeq: 1,
        cancelRequested: false
    )
}
