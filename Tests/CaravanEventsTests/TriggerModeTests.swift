import CaravanCore
import CaravanTestSupport
import HTTPTypes
import HummingbirdTesting
import Testing

/// Batch and route modes: many deliveries, few runs.
@Suite("Inbound trigger modes", .timeLimit(.minutes(3)))
struct TriggerModeTests {
    /// The workflow `sink`, whose output is its input.
    static func putSink(_ client: AuthenticatedClient) async throws {
        let sink = """
            steps:
              - {id: a, template: "{{ input }}"}
            output: "{{ steps.a.output }}"
            """
        _ = try await client.send(.put, "/v1/workflows/sink", json: sink, contentType: "application/yaml")
    }

    @Test(arguments: TestBackend.available) func batchesStartOneRunPerWindowOrMaxEvents(
        backend: TestBackend
    ) async throws {
        try await withTriggerServer(backend) { client in
            try await Self.putSink(client)
            let hook = try await client.putTrigger(
                "telemetry",
                #"{"workflow": "sink", "input": "{{ body.n }}", "verify": {"scheme": "none"}, "mode": {"batch": {"max_events": 10, "window": "1500ms"}}}"#
            )
            for index in 0..<25 {
                let sent = try await client.deliver(
                    hook,
                    #"{"n": \#(index)}"#,
                    headers: [HTTPField.Name("Idempotency-Key")!: "event-\(index)"]
                )
                #expect(sent.status == .accepted, "\(sent.json)")
                #expect(sent.json["status"] == "buffered")
            }
            // A replay of a buffered delivery is not buffered again.
            let replay = try await client.deliver(
                hook,
                #"{"n": 3}"#,
                headers: [HTTPField.Name("Idempotency-Key")!: "event-3"]
            )
            #expect(replay.status == .ok)
            #expect(replay.json["status"] == "duplicate")

            var runs: [JSONValue] = []
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                runs = try await client.runs(of: "sink")
                if runs.count >= 3, runs.allSatisfy({ $0["status"] == "succeeded" }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(runs.count == 3, "\(runs.count) runs")
            // Oldest first: every event once, in arrival order; 10, 10, 5.
            let batches = runs.reversed().map { $0["output"]?["events"]?.arrayValue ?? [] }
            #expect(batches.map(\.count) == [10, 10, 5])
            #expect(batches.flatMap { $0 } == (0..<25).map { JSONValue.int(Int64($0)) })
            let first = try #require(runs.last)
            #expect(first["output"]?["trigger"]?["name"] == "telemetry")
            #expect(first["output"]?["window"]?["start"]?.stringValue != nil)
            // A little later, still three: nothing is started twice.
            try await Task.sleep(for: .milliseconds(2_000))
            #expect(try await client.runs(of: "sink").count == 3)
        }
    }

    /// A device sends its readings in one request: with `split`, each item of the array is an event of its own.
    @Test(arguments: TestBackend.available) func splitDeliveriesBufferEachItem(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            try await Self.putSink(client)
            // `item` belongs to a split's scope only.
            let unsplit = try await client.send(
                .put,
                "/v1/triggers/wrong",
                json: #"{"workflow": "sink", "input": "{{ item }}", "verify": {"scheme": "none"}}"#
            )
            #expect(unsplit.status == .unprocessableContent)
            #expect(unsplit.json["errors"]?.arrayValue?.first?["pointer"] == "/input")
            let badPath = try await client.send(
                .put,
                "/v1/triggers/wrong",
                json:
                    #"{"workflow": "sink", "verify": {"scheme": "none"}, "mode": {"batch": {"max_events": 5, "window": "1s", "split": "len(body)"}}}"#
            )
            #expect(badPath.json["errors"]?.arrayValue?.first?["pointer"] == "/mode/batch/split")
            let hook = try await client.putTrigger(
                "readings",
                #"{"workflow": "sink", "verify": {"scheme": "none"}, "mode": {"batch": {"max_events": 5, "window": "1s", "split": "body.readings"}}}"#
            )
            let first = try await client.deliver(hook, #"{"device": "d1", "readings": [1, 2, 3, 4]}"#)
            #expect(first.status == .accepted && first.json["status"] == "buffered", "\(first.json)")
            let second = try await client.deliver(hook, #"{"device": "d1", "readings": [5, 6, 7]}"#)
            #expect(second.status == .accepted)
            // No array where the split points: refused, and nothing buffered.
            let none = try await client.deliver(hook, #"{"device": "d1", "readings": 8}"#)
            #expect(none.status == .unprocessableContent)
            #expect(none.json["errors"]?.arrayValue?.first?["pointer"] == "/mode/batch/split")

            var runs: [JSONValue] = []
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                runs = try await client.runs(of: "sink")
                if runs.count >= 2, runs.allSatisfy({ $0["status"] == "succeeded" }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let batches = runs.reversed().map { $0["output"]?["events"]?.arrayValue ?? [] }
            #expect(batches.map(\.count) == [5, 2])
            #expect(batches.flatMap { $0 } == (1...7).map { JSONValue.int(Int64($0)) })
        }
    }

    /// Deleting a batching trigger drops what it buffered: no run starts from it, and a trigger made again under
    /// the same name starts from an empty buffer.
    @Test(arguments: TestBackend.available) func aDeletedTriggerDropsItsBuffer(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            try await Self.putSink(client)
            let definition =
                #"{"workflow": "sink", "input": "{{ body.n }}", "verify": {"scheme": "none"}, "mode": {"batch": {"max_events": 100, "window": "1s"}}}"#
            let hook = try await client.putTrigger("buffered", definition)
            for index in 0..<5 {
                #expect(try await client.deliver(hook, #"{"n": \#(index)}"#).json["status"] == "buffered")
            }
            #expect(try await client.send(.delete, "/v1/triggers/buffered").status == .noContent)
            let again = try await client.putTrigger("buffered", definition)
            #expect(try await client.deliver(again, #"{"n": 99}"#).json["status"] == "buffered")
            #expect(try await client.deliveries("buffered").count == 1, "the old trigger's records went with it")
            var runs: [JSONValue] = []
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                runs = try await client.runs(of: "sink")
                if !runs.isEmpty, runs.allSatisfy({ $0["status"] == "succeeded" }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            // Past both windows, one run, of the new trigger's one event.
            try await Task.sleep(for: .milliseconds(1_500))
            runs = try await client.runs(of: "sink")
            #expect(runs.count == 1, "\(runs)")
            #expect(runs.first?["output"]?["events"] == [99])
        }
    }

    @Test(arguments: TestBackend.available) func routesStartOneRunPerKey(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            let session = """
                steps:
                  - {id: more, receive: {signal: event, max: 1, timeout: 20s}}
                output: {key: "{{ input.key }}", first: "{{ input.event }}", more: "{{ steps.more.output }}"}
                """
            _ = try await client.send(.put, "/v1/workflows/session", json: session, contentType: "application/yaml")
            let hook = try await client.putTrigger(
                "sessions",
                #"{"workflow": "session", "input": "{{ body.n }}", "verify": {"scheme": "none"}, "mode": {"route": {"key": "{{ body.user }}", "signal": "event"}}}"#
            )
            let a1 = try await client.deliver(hook, #"{"user": "a", "n": 1}"#)
            let b1 = try await client.deliver(hook, #"{"user": "b", "n": 2}"#)
            let a2 = try await client.deliver(hook, #"{"user": "a", "n": 3}"#)
            #expect(a1.status == .accepted && b1.status == .accepted && a2.status == .accepted)
            #expect(a1.json["status"] == "started" && b1.json["status"] == "started")
            #expect(a2.json["status"] == "signalled", "\(a2.json)")
            let runA = try #require(a1.json["run_id"]?.stringValue)
            #expect(a2.json["run_id"]?.stringValue == runA)
            #expect(b1.json["run_id"]?.stringValue != runA)
            #expect(try await client.runOutput(runA) == ["key": "a", "first": 1, "more": [3]])
            #expect(try await client.runs(of: "session").count == 2)

            // Once a's run has finished, a's next event starts a new run.
            let a3 = try await client.deliver(hook, #"{"user": "a", "n": 4}"#)
            #expect(a3.json["status"] == "started")
            #expect(a3.json["run_id"]?.stringValue != runA)
            #expect(try await client.runs(of: "session").count == 3)
            // A body without a key is refused, clearly.
            let keyless = try await client.deliver(hook, #"{"n": 5}"#)
            #expect(keyless.status == .unprocessableContent)
        }
    }

    @Test(arguments: TestBackend.available) func concurrentFirstEventsStartOneRun(backend: TestBackend) async throws {
        try await withTriggerServer(backend) { client in
            let session = """
                steps:
                  - {id: more, receive: {signal: event, max: 7, timeout: 3s}}
                output: "{{ steps.more.output }}"
                """
            _ = try await client.send(.put, "/v1/workflows/race", json: session, contentType: "application/yaml")
            let hook = try await client.putTrigger(
                "race",
                #"{"workflow": "race", "input": "{{ body.n }}", "verify": {"scheme": "none"}, "mode": {"route": {"key": "{{ body.user }}", "signal": "event"}}}"#
            )
            let answers = try await withThrowingTaskGroup(of: JSONValue.self) { group in
                for index in 0..<8 {
                    group.addTask { try await client.deliver(hook, #"{"user": "z", "n": \#(index)}"#).json }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let runIDs = Set(answers.compactMap { $0["run_id"]?.stringValue })
            #expect(runIDs.count == 1, "\(answers)")
            #expect(answers.filter { $0["status"] == "started" }.count == 1)
            // The run took the seven other events as signals.
            let output = try await client.runOutput(try #require(runIDs.first))
            #expect(output.arrayValue?.count == 7, "\(output)")
        }
    }
}
