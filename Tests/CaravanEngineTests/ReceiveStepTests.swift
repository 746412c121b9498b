import CaravanCore
import CaravanTestSupport
import HTTPTypes
import HummingbirdTesting
import Testing

/// The `receive` step: a run waits (released, like an approval) until enough signals of a name arrived or its
/// timeout passed, and takes them as its output, in order.
@Suite("Receive steps", .tags(.engine), .timeLimit(.minutes(3)))
struct ReceiveStepTests {
    @Test(arguments: TestBackend.available) func waitsForMaxSignalsInOrder(backend: TestBackend) async throws {
        try await check(backend) { client, _ in
            let yaml = """
                steps:
                  - {id: take, receive: {signal: event, max: 2}}
                  - {id: done, needs: [take], template: "{{ steps.take.output }}"}
                output: "{{ steps.take.output }}"
                """
            #expect(try await client.putYAML("collect", yaml).status == .created)
            let started = try await client.start("collect", wait: "300ms").json
            let id = try #require(started["id"]?.stringValue)
            #expect(started["status"] == "waiting")
            // A signal of another name is not taken.
            _ = try await client.send(.post, "/v1/runs/\(id)/signals/other", json: #"{"n": 0}"#)
            _ = try await client.send(.post, "/v1/runs/\(id)/signals/event", json: #"{"n": 1}"#)
            // One of two: still waiting.
            try await Task.sleep(for: .milliseconds(400))
            let waiting = try await client.run(id)
            #expect(waiting["status"] == "waiting")
            #expect(step(waiting, "take")?["status"] == "waiting")
            _ = try await client.send(.post, "/v1/runs/\(id)/signals/event", json: #"{"n": 2}"#)
            let run = try await client.waitFor(id, ["succeeded", "failed"])
            #expect(run["status"] == "succeeded", "\(run)")
            #expect(run["output"] == [["n": 1], ["n": 2]])
            let events = try await client.send(.get, "/v1/runs/\(id)/events").json
            let received = events["items"]?.arrayValue?.filter { $0["type"] == "signal.received" } ?? []
            #expect(received.count == 2)
        }
    }

    @Test(arguments: TestBackend.available) func timeoutSucceedsWithWhatCame(backend: TestBackend) async throws {
        try await check(backend) { client, _ in
            let yaml = """
                steps:
                  - {id: take, receive: {signal: event, max: 5, timeout: 1s}}
                output: "{{ steps.take.output }}"
                """
            _ = try await client.putYAML("partial", yaml)
            let started = try await client.start("partial", wait: nil).json
            let id = try #require(started["id"]?.stringValue)
            _ = try await client.waitFor(id, ["waiting"])
            _ = try await client.send(.post, "/v1/runs/\(id)/signals/event", json: #"{"only": true}"#)
            let run = try await client.waitFor(id, ["succeeded", "failed"])
            #expect(run["status"] == "succeeded", "\(run)")
            #expect(run["output"] == [["only": true]])

            // Nothing at all by the timeout: an empty array.
            let empty = try await client.start("partial", wait: nil).json
            let emptyID = try #require(empty["id"]?.stringValue)
            let finished = try await client.waitFor(emptyID, ["succeeded", "failed"])
            #expect(finished["status"] == "succeeded")
            #expect(finished["output"] == [])
        }
    }

    @Test(arguments: TestBackend.available) func definitionsAreChecked(backend: TestBackend) async throws {
        try await check(backend) { client, _ in
            let bad = try await client.putYAML(
                "bad-receive",
                "steps:\n  - {id: a, receive: {max: 0, timeout: soon, extra: 1}}\n"
            )
            #expect(bad.status == .unprocessableContent)
            let pointers = Set(bad.json["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? [])
            #expect(
                pointers.isSuperset(of: [
                    "/steps/0/receive/signal", "/steps/0/receive/max", "/steps/0/receive/timeout",
                    "/steps/0/receive/extra",
                ]),
                "\(bad.json)"
            )
        }
    }
}
