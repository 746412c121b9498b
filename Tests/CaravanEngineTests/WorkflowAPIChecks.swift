import CaravanCore
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

let benchW1 = """
    name: bench-w1
    steps:
      - {id: a, template: "a"}
      - {id: b, needs: [a], template: "{{ steps.a.output }}b"}
      - {id: c, needs: [b], template: "{{ steps.b.output }}c"}
    output: "{{ steps.c.output }}"
    """

extension TestClientProtocol {
    func putYAML(
        _ name: String,
        _ yaml: String
    ) async throws -> (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields) {
        try await send(.put, "/v1/workflows/\(name)", json: yaml, contentType: "application/yaml")
    }

    func start(
        _ name: String,
        input: String = "{}",
        wait: String? = "10s",
        headers: HTTPFields = [:]
    ) async throws
        -> (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields)
    {
        try await send(
            .post,
            "/v1/workflows/\(name)/runs" + (wait.map { "?wait=\($0)" } ?? ""),
            json: #"{"input":\#(input)}"#,
            headers: headers
        )
    }

    func run(_ id: String) async throws -> JSONValue {
        try await send(.get, "/v1/runs/\(id)").json
    }

    /// Polls until the run's status is one of `statuses`.
    func waitFor(_ id: String, _ statuses: Set<String>, timeout: Duration = .seconds(20)) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while true {
            let run = try await run(id)
            if let status = run["status"]?.stringValue, statuses.contains(status) { return run }
            if ContinuousClock.now > deadline {
                Issue.record("run \(id) did not reach \(statuses); it is \(run["status"] ?? .null)")
                return run
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

func step(_ run: JSONValue, _ id: String) -> JSONValue? {
    run["steps"]?.arrayValue?.first { $0["id"] == .string(id) }
}

/// The workflow engine's behaviour through the HTTP API. Each check runs unchanged on SQLite and PostgreSQL.
enum EngineChecks {
    static func definitionsAreVersioned(_ client: any TestClientProtocol) async throws {
        let first = try await client.putYAML("bench-w1", benchW1)
        #expect(first.status == .created)
        #expect(first.json["version"] == 1)
        let same = try await client.putYAML("bench-w1", benchW1)
        #expect(same.status == .ok)
        #expect(same.json["version"] == 1)
        // The same definition as JSON, keys reordered: still unchanged.
        let json =
            #"{"output":"{{ steps.c.output }}","steps":[{"template":"a","id":"a"},{"id":"b","needs":["a"],"template":"{{ steps.a.output }}b"},{"id":"c","needs":["b"],"template":"{{ steps.b.output }}c"}]}"#
        let asJSON = try await client.send(.put, "/v1/workflows/bench-w1", json: json)
        #expect(asJSON.json["version"] == 1)
        let changed = try await client.putYAML("bench-w1", benchW1.replacingOccurrences(of: "\"a\"}", with: "\"A\"}"))
        #expect(changed.status == .created)
        #expect(changed.json["version"] == 2)
        let old = try await client.send(.get, "/v1/workflows/bench-w1?version=1")
        #expect(old.json["version"] == 1)
        #expect(old.json["latest_version"] == 2)
        let list = try await client.send(.get, "/v1/workflows")
        #expect(list.json["items"]?.arrayValue?.count == 1)
        let missing = try await client.send(.get, "/v1/workflows/bench-w1?version=9")
        #expect(missing.status == .notFound)
        #expect(try await client.send(.delete, "/v1/workflows/bench-w1").status == .noContent)
        let afterArchive = try await client.start("bench-w1")
        #expect(afterArchive.status == .notFound)
        #expect(afterArchive.json["code"] == "not_found")
    }

    static func runsToTheEnd(_ client: any TestClientProtocol) async throws {
        _ = try await client.putYAML("bench-w1", benchW1)
        let started = try await client.start("bench-w1")
        #expect(started.status == .created)
        let run = started.json
        #expect(run["status"] == "succeeded")
        #expect(run["output"] == "abc")
        #expect(run["workflow_version"] == 1)
        for id in ["a", "b", "c"] {
            #expect(step(run, id)?["status"] == "succeeded")
            #expect(step(run, id)?["attempts"] == 1)
        }
        let id = try #require(run["id"]?.stringValue)
        let events = try await client.send(.get, "/v1/runs/\(id)/events").json["items"]?.arrayValue ?? []
        let types = events.compactMap { $0["type"]?.stringValue }
        #expect(
            types == [
                "run.queued", "run.started", "step.started", "step.succeeded", "step.started", "step.succeeded",
                "step.started", "step.succeeded", "run.succeeded",
            ]
        )
        #expect(events.compactMap { $0["seq"] } == (1...9).map { JSONValue.int(Int64($0)) })
        // Steps started only after what they need had succeeded.
        let order = events.map { "\($0["type"]?.stringValue ?? "")/\($0["step"]?.stringValue ?? "")" }
        #expect(order.firstIndex(of: "step.succeeded/a")! < order.firstIndex(of: "step.started/b")!)
    }

    static func branchesSkipsAndForEach(_ client: any TestClientProtocol) async throws {
        let yaml = """
            name: branches
            input: {type: object, required: [tags], properties: {tags: {type: array}}}
            steps:
              - {id: root, template: {count: "{{ input.count }}", tags: "{{ input.tags }}"}}
              - {id: left, needs: [root], template: "left"}
              - {id: right, needs: [root], when: "steps.root.output.count > 5", template: "right"}
              - {id: after_right, needs: [right], template: "never"}
              - {id: each, needs: [root], for_each: steps.root.output.tags, template: "tag {{ item }}"}
              - {id: join, needs: [left, each], template: {n: "{{ steps.each.output }}"}}
            output: {left: "{{ steps.left.output }}", each: "{{ steps.each.output }}", right: "{{ steps.right.status }}"}
            """
        #expect(try await client.putYAML("branches", yaml).status == .created)
        let run = try await client.start("branches", input: #"{"count": 3, "tags": ["x", "y"]}"#).json
        #expect(run["status"] == "succeeded")
        #expect(step(run, "right")?["status"] == "skipped")
        #expect(step(run, "after_right")?["status"] == "skipped")
        #expect(step(run, "each")?["output"] == ["tag x", "tag y"])
        #expect(run["output"] == ["left": "left", "each": ["tag x", "tag y"], "right": "skipped"])
        // The input schema is enforced.
        let bad = try await client.start("branches", input: #"{"count": 3}"#)
        #expect(bad.status == .unprocessableContent)
        #expect(bad.json["errors"]?.arrayValue?.first?["pointer"] == "/input/tags")
    }

    static func httpStepsRetryWithOneIdempotencyKey(
        _ client: any TestClientProtocol,
        _ server: TestHTTPServer
    ) async throws {
        let yaml = """
            name: calls
            defaults: {retry: {max_attempts: 4, initial_interval: 10ms, max_interval: 50ms}}
            steps:
              - {id: flaky, http: {method: POST, url: "\(server.baseURL)/fail/2/503", body: {who: "{{ input.who }}"}}}
              - {id: fine, needs: [flaky], http: {method: GET, url: "\(server.baseURL)/ok"}}
            output: "{{ steps.flaky.output.body.attempt }}"
            """
        #expect(try await client.putYAML("calls", yaml).status == .created)
        let run = try await client.start("calls", input: #"{"who": "ann"}"#).json
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == 3)
        #expect(step(run, "flaky")?["attempts"] == 3)
        #expect(step(run, "fine")?["output"]?["status"] == 200)
        let keys = server.keys("/fail/2/503")
        #expect(keys.count == 3)
        #expect(Set(keys).count == 1, "every attempt carries the same Idempotency-Key")
        #expect(keys.first == "\(run["id"]?.stringValue ?? ""):flaky")
        let events =
            try await client.send(.get, "/v1/runs/\(run["id"]?.stringValue ?? "")/events").json["items"]?.arrayValue
            ?? []
        #expect(events.filter { $0["type"] == "step.retrying" }.count == 2)
    }

    static func clientErrorsFailAtOnce(_ client: any TestClientProtocol, _ server: TestHTTPServer) async throws {
        let yaml = """
            name: not-found
            steps:
              - {id: call, http: {method: POST, url: "\(server.baseURL)/status/404"}}
              - {id: later, needs: [call], template: "never"}
            """
        _ = try await client.putYAML("not-found", yaml)
        let run = try await client.start("not-found").json
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "http_404")
        #expect(run["error"]?["step"] == "call")
        #expect(step(run, "call")?["attempts"] == 1)
        #expect(step(run, "later")?["status"] == "cancelled")
        #expect(server.calls("/status/404") == 1)
    }

    static func timeoutsAreRetried(_ client: any TestClientProtocol, _ server: TestHTTPServer) async throws {
        let yaml = """
            name: slow
            steps:
              - {id: call, http: {method: POST, url: "\(server.baseURL)/slow/2000"}, timeout: 100ms,
                 retry: {max_attempts: 2, initial_interval: 10ms}}
            """
        _ = try await client.putYAML("slow", yaml)
        let run = try await client.start("slow").json
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "timeout")
        #expect(step(run, "call")?["attempts"] == 2)
    }

    static func egressIsRefusedUnlessAllowed(_ client: any TestClientProtocol) async throws {
        let yaml = """
            name: egress
            steps:
              - {id: metadata, http: {url: "http://169.254.169.254/latest/meta-data"}}
            """
        _ = try await client.putYAML("egress", yaml)
        let run = try await client.start("egress").json
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "egress_denied")
    }

    static func approvals(_ client: any TestClientProtocol) async throws {
        let yaml = """
            name: approve
            steps:
              - {id: ask, approval: {message: "Send to {{ input.who }}?"}}
              - {id: done, needs: [ask], template: "sent by {{ steps.ask.output.by }}: {{ steps.ask.output.data.note }}"}
            output: "{{ steps.done.output }}"
            """
        _ = try await client.putYAML("approve", yaml)
        let waiting = try await client.start("approve", input: #"{"who":"bo"}"#, wait: "300ms")
        #expect(waiting.status == .accepted)
        #expect(waiting.json["status"] == "waiting")
        let id = try #require(waiting.json["id"]?.stringValue)
        #expect(step(waiting.json, "ask")?["status"] == "waiting")
        let signal = try await client.send(
            .post,
            "/v1/runs/\(id)/signals/approve",
            json: #"{"approved": true, "data": {"note": "ok"}}"#
        )
        #expect(signal.status == .accepted)
        let run = try await client.waitFor(id, ["succeeded", "failed"])
        #expect(run["status"] == "succeeded")
        #expect(step(run, "ask")?["output"]?["approved"] == true)
        // The approval names who gave it: the API key the test client sends.
        #expect(step(run, "ask")?["output"]?["by"]?.stringValue?.hasPrefix("api_key:key_") == true)
        #expect(run["output"]?.stringValue?.hasPrefix("sent by api_key:key_") == true)
        #expect(run["output"]?.stringValue?.hasSuffix(": ok") == true)

        let rejected = try await client.start("approve", input: #"{"who":"cy"}"#, wait: nil).json
        let rejectedID = try #require(rejected["id"]?.stringValue)
        _ = try await client.waitFor(rejectedID, ["waiting"])
        _ = try await client.send(.post, "/v1/runs/\(rejectedID)/signals/approve", json: #"{"approved": false}"#)
        let failed = try await client.waitFor(rejectedID, ["succeeded", "failed"])
        #expect(failed["status"] == "failed")
        #expect(failed["error"]?["code"] == "rejected")
        // A finished run takes no more signals.
        let late = try await client.send(.post, "/v1/runs/\(rejectedID)/signals/approve", json: #"{"approved": true}"#)
        #expect(late.status == .conflict)
    }

    /// A child workflow as the very first step (its parent is admitted, and its first steps started, in the
    /// creation commit, which creates no children): the child still runs and the parent finishes.
    static func rootChildWorkflow(_ client: any TestClientProtocol) async throws {
        _ = try await client.putYAML(
            "leaf",
            "steps:\n  - {id: a, template: \"leaf {{ input.n }}\"}\noutput: \"{{ steps.a.output }}\"\n"
        )
        _ = try await client.putYAML(
            "trunk",
            "steps:\n  - {id: c, workflow: {name: leaf, input: {n: 7}}}\noutput: \"{{ steps.c.output }}\"\n"
        )
        let run = try await client.start("trunk").json
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "leaf 7")
    }

    static func sleepsAndChildren(_ client: any TestClientProtocol) async throws {
        _ = try await client.putYAML(
            "child",
            """
            name: child
            steps: [{id: echo, template: "child got {{ input.text }}"}]
            output: "{{ steps.echo.output }}"
            """
        )
        _ = try await client.putYAML(
            "parent",
            """
            name: parent
            steps:
              - {id: nap, sleep: 300ms}
              - {id: call, needs: [nap], workflow: {name: child, input: {text: "{{ input.text }}"}}}
            output: "{{ steps.call.output }}"
            """
        )
        let started = ContinuousClock.now
        let run = try await client.start("parent", input: #"{"text": "hi"}"#, wait: "15s").json
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "child got hi")
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        let childID = try #require(step(run, "call")?["child_run_id"]?.stringValue)
        let child = try await client.run(childID)
        #expect(child["parent_run_id"] == run["id"])
        #expect(child["status"] == "succeeded")
    }

    static func cancelStopsEverything(_ client: any TestClientProtocol) async throws {
        _ = try await client.putYAML(
            "cancel-me",
            """
            name: cancel-me
            steps:
              - {id: wait, approval: {}}
              - {id: never, needs: [wait], template: "x"}
            """
        )
        let run = try await client.start("cancel-me", wait: nil).json
        let id = try #require(run["id"]?.stringValue)
        _ = try await client.waitFor(id, ["waiting"])
        let cancel = try await client.send(.post, "/v1/runs/\(id)/cancel")
        #expect(cancel.status == .accepted)
        let cancelled = try await client.waitFor(id, ["cancelled"])
        #expect(step(cancelled, "wait")?["status"] == "cancelled")
        #expect(step(cancelled, "never")?["status"] == "cancelled")
        #expect(try await client.send(.post, "/v1/runs/\(id)/cancel").status == .conflict)
        #expect(try await client.send(.post, "/v1/runs/run_nope/cancel").status == .notFound)
    }

    static func retryKeepsWhatSucceeded(_ client: any TestClientProtocol, _ server: TestHTTPServer) async throws {
        _ = try await client.putYAML(
            "retry-me",
            """
            name: retry-me
            steps:
              - {id: first, http: {method: POST, url: "\(server.baseURL)/ok"}}
              - {id: second, needs: [first], http: {method: POST, url: "\(server.baseURL)/switch"}, retry: {max_attempts: 1}}
            output: "{{ steps.second.output.body.switched }}"
            """
        )
        let failed = try await client.start("retry-me").json
        #expect(failed["status"] == "failed")
        let id = try #require(failed["id"]?.stringValue)
        server.switchOn()
        let retried = try await client.send(.post, "/v1/runs/\(id)/retry")
        #expect(retried.status == .accepted)
        let run = try await client.waitFor(id, ["succeeded", "failed"])
        #expect(run["status"] == "succeeded")
        #expect(run["output"] == true)
        #expect(server.calls("/ok") == 1, "the step that succeeded did not run again")
        #expect(server.calls("/switch") == 2)
        #expect(try await client.send(.post, "/v1/runs/\(id)/retry").status == .conflict)
    }

    static func idempotentStarts(_ client: any TestClientProtocol) async throws {
        _ = try await client.putYAML("bench-w1", benchW1)
        let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "order-17"]
        let first = try await client.start("bench-w1", input: #"{"n": 1}"#, headers: key)
        #expect(first.status == .created)
        let again = try await client.start("bench-w1", input: #"{"n": 1}"#, headers: key)
        #expect(again.status == .ok)
        #expect(again.json["id"] == first.json["id"])
        let other = try await client.start("bench-w1", input: #"{"n": 2}"#, headers: key)
        #expect(other.status == .conflict)
        #expect(other.json["code"] == "idempotency_conflict")
    }

    static func listsPageWithCursors(_ client: any TestClientProtocol) async throws {
        _ = try await client.putYAML("bench-w1", benchW1)
        var ids: [String] = []
        for _ in 0..<7 { ids.append(try await client.start("bench-w1").json["id"]?.stringValue ?? "") }
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = try await client.send(
                .get,
                "/v1/runs?workflow=bench-w1&limit=3" + (cursor.map { "&cursor=\($0)" } ?? "")
            )
            #expect(page.status == .ok)
            seen += page.json["items"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
            cursor = page.json["next_cursor"]?.stringValue
        } while cursor != nil
        #expect(seen == ids.reversed())

        // A creation-time range: from the fourth run's time (inclusive) to the sixth's (exclusive).
        var created: [(id: String, at: String)] = []
        for id in ids { created.append((id, try await client.run(id)["created_at"]?.stringValue ?? "")) }
        let from = created[3].at
        let to = created[5].at
        let ranged = try await client.send(.get, "/v1/runs?workflow=bench-w1&from=\(from)&to=\(to)")
        #expect(ranged.status == .ok)
        let expected = created.filter { $0.at >= from && $0.at < to }.map(\.id).reversed()
        #expect(ranged.json["items"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == Array(expected))
        #expect(try await client.send(.get, "/v1/runs?from=yesterday").status == .unprocessableContent)

        let filtered = try await client.send(.get, "/v1/runs?status=failed")
        #expect(filtered.json["items"]?.arrayValue?.isEmpty == true)
        #expect(try await client.send(.get, "/v1/runs?limit=0").status == .unprocessableContent)
        #expect(try await client.send(.get, "/v1/runs?limit=501").status == .unprocessableContent)
        #expect(try await client.send(.get, "/v1/runs?status=bogus").status == .unprocessableContent)
        #expect(try await client.send(.get, "/v1/runs?cursor=%%%").status == .unprocessableContent)
    }

    static func concurrencyQueuesRuns(_ client: any TestClientProtocol) async throws {
        _ = try await client.putYAML(
            "one-at-a-time",
            """
            name: one-at-a-time
            concurrency: 1
            steps: [{id: hold, approval: {}}]
            """
        )
        let first = try await client.start("one-at-a-time", wait: nil).json
        let second = try await client.start("one-at-a-time", wait: nil).json
        let firstID = try #require(first["id"]?.stringValue)
        let secondID = try #require(second["id"]?.stringValue)
        _ = try await client.waitFor(firstID, ["waiting"])
        #expect(try await client.run(secondID)["status"] == "queued")
        _ = try await client.send(.post, "/v1/runs/\(firstID)/signals/approve", json: #"{"approved": true}"#)
        _ = try await client.waitFor(firstID, ["succeeded"])
        _ = try await client.waitFor(secondID, ["waiting"])
        _ = try await client.send(.post, "/v1/runs/\(secondID)/signals/approve", json: #"{"approved": true}"#)
        #expect(try await client.waitFor(secondID, ["succeeded"])["status"] == "succeeded")
        // The second run started only once the first had finished and freed the one slot.
        func time(of type: String, in runID: String) async throws -> Int64? {
            let events = try await client.send(.get, "/v1/runs/\(runID)/events").json["items"]?.arrayValue ?? []
            return events.first { $0["type"]?.stringValue == type }?["at"]?.stringValue.flatMap(Clock.parseRFC3339)
        }
        let firstFinished = try #require(try await time(of: "run.succeeded", in: firstID))
        let secondStarted = try #require(try await time(of: "run.started", in: secondID))
        #expect(secondStarted >= firstFinished)
    }
}
