import CaravanCore
import Testing

@testable import CaravanEngine

/// The step list is written straight to text on every commit; it must be exactly the canonical text of its JSON
/// form, which is what is read back.
@Suite("Step list text")
struct StepListTests {
    @Test("The written text is the canonical text of the steps' JSON, and reads back to the same steps")
    func textIsCanonical() throws {
        var done = StepState(id: "fetch \"quoted\" \\ id")
        done.status = .succeeded
        done.attempts = 2
        done.output = ["rows": [1, 2.5, "x\ny", nil, true], "ä": ["nested": [:]]]
        done.startedAt = 1_700_000_000_000
        done.finishedAt = 1_700_000_000_123
        var failed = StepState(id: "b")
        failed.status = .failed
        failed.attempts = 1
        failed.error = RunFailure(code: "step_failed", message: "tab\there\u{1}", step: "b")
        failed.wakeAt = 42
        var child = StepState(id: "c")
        child.status = .waiting
        child.childRunID = "run_01"
        for steps in [[], [StepState(id: "a")], [done, failed, child]] {
            let text = StepList.text(steps)
            #expect(text == StepList.encode(steps).canonicalText)
            #expect(try StepList.decode(JSONValue(parsing: Array(text.utf8))) == steps)
        }
    }
}
