import CaravanCore
import CaravanWorkflow
import Testing

@testable import CaravanEngine
@testable import CaravanServer

/// A run's public form is written straight to bytes on the hot paths; it must be exactly the canonical text of
/// the JSON value that documents it.
@Suite("Run encoding")
struct RunEncodingTests {
    static func run(workflow: String, input: JSONValue) -> RunRecord {
        var done = StepState(id: "fetch \"all\"")
        done.status = .succeeded
        done.attempts = 2
        done.output = ["rows": [1, 2.5, "tab\there", nil], "ü": [:]]
        done.startedAt = 1_733_435_401_123
        done.finishedAt = 1_733_435_401_999
        var failed = StepState(id: "b")
        failed.status = .failed
        failed.attempts = 1
        failed.error = RunFailure(code: "step_failed", message: "no \\ luck\n", step: "b")
        var child = StepState(id: "c")
        child.status = .waiting
        child.childRunID = "run_child"
        return RunRecord(
            id: "run_1",
            orgID: "org_1",
            kind: "workflow",
            workflow: workflow,
            workflowVersion: 3,
            status: .failed,
            input: input,
            output: ["answer": 42],
            error: RunFailure(code: "step_failed", message: "b failed", step: "b"),
            steps: [done, failed, child, StepState(id: "d")],
            idempotencyKey: nil,
            requestHash: nil,
            parentRunID: "run_parent",
            parentStep: "s",
            createdAt: 1_733_435_400_001,
            startedAt: 1_733_435_400_002,
            finishedAt: nil,
            updatedAt: 0,
            lastSeq: 9,
            cancelRequested: false
        )
    }

    @Test func aWorkflowRunIsWrittenAsItsCanonicalJSON() {
        for run in [
            Self.run(workflow: "bench-w1", input: ["n": 1, "s": "é\u{1}"]),
            Self.run(workflow: "bench-w1", input: .null),
        ] {
            #expect(String(decoding: APIRequest.encoded(run), as: UTF8.self) == APIRequest.json(run).canonicalText)
        }
    }

    @Test func anAgentRunIsWrittenAsItsCanonicalJSON() {
        let run = Self.run(
            workflow: AgentStepKind.workflowPrefix + "helper",
            input: ["input": "hello", "thread": "thr_1"]
        )
        let text = String(decoding: APIRequest.encoded(run), as: UTF8.self)
        #expect(text == APIRequest.json(run).canonicalText)
        #expect(text.contains(#""agent":"helper""#) && text.contains(#""thread":"thr_1""#))
    }
}
