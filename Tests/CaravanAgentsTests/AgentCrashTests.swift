import CaravanCore
import CaravanSQLite
import CaravanStorage
import CaravanTestSupport
import Foundation
import Testing

@Suite("Agent crash recovery", .serialized)
struct AgentCrashTests {
    /// The journal entries committed before the crash, as `run:key`, read while no server runs.
    static func journal(inDirectory directory: String) async throws -> Set<String> {
        let database = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
        let rows = try await database.read { try await $0.query("SELECT run_id, key FROM run_journal", []) }
        return Set(try rows.map { "\(try $0.string("run_id")):\(try $0.string("key"))" })
    }

    @Test("After kill -9 during a tool call, agent runs resume without asking the model again for answered turns")
    func killDuringToolCall() async throws {
        try await FakeOpenAIServer.with { model in
            try await TestHTTPServer.with { tools in
                try await withTemporaryDirectory { directory in
                    // Turn 1 calls a slow tool, turn 2 a quick one, turn 3 answers.
                    model.respond { request in
                        switch request.messages.filter({ $0["role"] == "tool" }).count {
                        case 0: .toolCall("slow", arguments: "{}", id: "call_slow")
                        case 1: .toolCall("after", arguments: "{}", id: "call_after")
                        default: .text("done: \(request.lastUserText ?? "")")
                        }
                    }
                    let arguments = ["serve", "--port", "0", "--data", directory, "--egress-allow", "127.0.0.1"]
                    let first = try await CaravanProcess(arguments: arguments)
                    let auth = try await bootstrapCredentials(port: first.port)
                    let base = "http://127.0.0.1:\(first.port)"
                    let json = [("Content-Type", "application/json")] + auth
                    let provider =
                        #"{"kind": "openai", "base_url": "\#(model.baseURL)", "models": ["m1"], "timeout": "10s"}"#
                    #expect(
                        try await fetch(base + "/v1/providers/local", method: "PUT", headers: json, body: provider)
                            .status == 201
                    )
                    let agent = """
                        {"model": "local/m1", "instructions": "Work.", "tools": [
                          {"http": {"name": "slow", "method": "POST", "url": "\(tools.baseURL)/slow/3000"}},
                          {"http": {"name": "after", "method": "POST", "url": "\(tools.baseURL)/count/after"}}
                        ]}
                        """
                    #expect(
                        try await fetch(base + "/v1/agents/worker", method: "PUT", headers: json, body: agent).status
                            == 201
                    )
                    var ids: [String: String] = [:]  // run id → its question
                    for index in 0..<4 {
                        let started = try await fetch(
                            base + "/v1/agents/worker/runs",
                            method: "POST",
                            headers: json,
                            body: #"{"input": "question \#(index)"}"#
                        )
                        let id = try #require(try JSONValue(parsing: Array(started.body.utf8))["id"]?.stringValue)
                        ids[id] = "question \(index)"
                    }
                    // Every run has had its first turn answered and is inside the slow tool.
                    for _ in 0..<200 where tools.calls("/slow/3000") < ids.count {
                        try await Task.sleep(for: .milliseconds(25))
                    }
                    try await Task.sleep(for: .milliseconds(300))
                    first.send(signal: SIGKILL)
                    _ = try await first.waitForExit()
                    let committed = try await Self.journal(inDirectory: directory)

                    let second = try await CaravanProcess(arguments: arguments)
                    let secondBase = "http://127.0.0.1:\(second.port)"
                    var finished: [String: JSONValue] = [:]
                    let deadline = ContinuousClock.now + .seconds(30)
                    while finished.count < ids.count, ContinuousClock.now < deadline {
                        for id in ids.keys where finished[id] == nil {
                            let run = try JSONValue(
                                parsing: Array(try await fetch(secondBase + "/v1/runs/\(id)", headers: auth).body.utf8)
                            )
                            if run["status"] == "succeeded" || run["status"] == "failed" { finished[id] = run }
                        }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    for (id, question) in ids {
                        #expect(
                            finished[id]?["status"] == "succeeded",
                            "\(finished[id] ?? .null)\n\(second.log.suffix(2000))"
                        )
                        #expect(finished[id]?["output"] == .string("done: \(question)"))
                        #expect(committed.contains("\(id):turn:1"), "the crash came after the first turn was answered")
                        #expect(!committed.contains("\(id):turn:3"), "the crash came before the run ended")
                    }
                    // Each turn of each run reached the model once; the requests tell turns apart by the answers
                    // they carry.
                    var asked: [String: Int] = [:]
                    for request in model.requests {
                        let turn = request.messages.filter { $0["role"] == "assistant" }.count + 1
                        asked["\(request.lastUserText ?? ""):\(turn)", default: 0] += 1
                    }
                    for question in ids.values {
                        for turn in 1...3 {
                            #expect(
                                asked["\(question):\(turn)"] == 1,
                                "turn \(turn) of '\(question)' was asked \(asked["\(question):\(turn)"] ?? 0) times"
                            )
                        }
                    }
                    #expect(model.callCount == ids.count * 3)
                    // The tool in flight ran at most once more, with the same key; the next one exactly once.
                    for id in ids.keys {
                        let slowKeys = tools.keys("/slow/3000").filter { $0 == "\(id):agent:1-0" }
                        #expect((1...2).contains(slowKeys.count))
                        #expect(tools.keys("/count/after").filter { $0 == "\(id):agent:2-0" }.count == 1)
                    }
                    second.send(signal: SIGTERM)
                    #expect(try await second.waitForExit() == 0)
                }
            }
        }
    }

    @Test(
        "After kill -9 during a long module call, the run resumes and the call is made once more, the steps around it once"
    )
    func killDuringModuleCall() async throws {
        try await TestHTTPServer.with { tools in
            try await withTemporaryDirectory { directory in
                let arguments = ["serve", "--port", "0", "--data", directory, "--egress-allow", "127.0.0.1"]
                let first = try await CaravanProcess(arguments: arguments)
                let auth = try await bootstrapCredentials(port: first.port)
                let base = "http://127.0.0.1:\(first.port)"
                let json = [("Content-Type", "application/json")] + auth
                // Waits on a slow endpoint through `http_fetch`, then answers {"done":true}.
                let waiter = """
                    (module
                      (import "caravan" "http_fetch" (func $fetch (param i32 i32) (result i64)))
                      (memory (export "memory") 2)
                    \(ModuleChecks.allocator)
                      (data (i32.const 0) "{\\"done\\":true}")
                      (func (export "caravan_run") (param $ptr i32) (param $len i32) (result i64)
                        (drop (call $fetch (local.get $ptr) (local.get $len)))
                        (i64.const 13)))
                    """
                let module: JSONValue = [
                    "wat": .string(waiter), "permissions": ["http": true], "limits": ["timeout_ms": 20_000],
                ]
                let uploaded = try await fetch(
                    base + "/v1/modules/waiter",
                    method: "PUT",
                    headers: json,
                    body: module.canonicalText
                )
                #expect(uploaded.status == 201, "\(uploaded.body)")
                let workflow = """
                    {"steps": [
                      {"id": "before", "http": {"method": "POST", "url": "\(tools.baseURL)/count/before"}},
                      {"id": "long", "needs": ["before"],
                       "wasm": {"module": "waiter", "input": {"method": "POST", "url": "\(tools.baseURL)/slow/3000"}}},
                      {"id": "after", "needs": ["long"], "http": {"method": "POST", "url": "\(tools.baseURL)/count/after"}}
                    ]}
                    """
                #expect(
                    try await fetch(base + "/v1/workflows/longcall", method: "PUT", headers: json, body: workflow)
                        .status == 201
                )
                let started = try await fetch(
                    base + "/v1/workflows/longcall/runs",
                    method: "POST",
                    headers: json,
                    body: #"{"input": {}}"#
                )
                let id = try #require(try JSONValue(parsing: Array(started.body.utf8))["id"]?.stringValue)
                for _ in 0..<200 where tools.calls("/slow/3000") < 1 {
                    try await Task.sleep(for: .milliseconds(25))
                }
                try await Task.sleep(for: .milliseconds(300))
                first.send(signal: SIGKILL)
                _ = try await first.waitForExit()
                #expect(tools.calls("/count/after") == 0, "the crash came during the module call")

                let second = try await CaravanProcess(arguments: arguments)
                let secondBase = "http://127.0.0.1:\(second.port)"
                var run: JSONValue = .null
                let deadline = ContinuousClock.now + .seconds(30)
                while run["status"] != "succeeded" && run["status"] != "failed", ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    run = try JSONValue(
                        parsing: Array(try await fetch(secondBase + "/v1/runs/\(id)", headers: auth).body.utf8)
                    )
                }
                #expect(run["status"] == "succeeded", "\(run)\n\(second.log.suffix(2000))")
                #expect(run["steps"]?.arrayValue?.first { $0["id"] == "long" }?["output"] == ["done": true], "\(run)")
                #expect(tools.calls("/count/before") == 1, "a completed step ran again")
                #expect(tools.calls("/slow/3000") == 2, "the interrupted call is made once more, not more")
                #expect(tools.calls("/count/after") == 1)
                second.send(signal: SIGTERM)
                #expect(try await second.waitForExit() == 0)
            }
        }
    }
}
