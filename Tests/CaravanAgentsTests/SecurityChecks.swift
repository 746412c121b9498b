import CaravanCore
import CaravanEngine
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Reproductions of what an attacker with an ordinary account tried, each a check that must hold on both backends.
enum SecurityChecks {
    /// Starts a workflow run and waits up to 20 s for it to end.
    static func run(_ world: AgentWorld, _ workflow: String, input: JSONValue) async throws -> JSONValue {
        let started = try await world.client.send(
            .post,
            "/v1/workflows/\(workflow)/runs?wait=20s",
            json: JSONValue.object(["input": input]).canonicalText
        )
        #expect(started.status == .created || started.status == .ok, "\(started.json)")
        return started.json
    }

    static func putWorkflow(
        _ world: AgentWorld,
        _ name: String,
        _ yaml: String
    ) async throws -> (status: HTTPResponse.Status, json: JSONValue) {
        let answer = try await world.client.send(
            .put,
            "/v1/workflows/\(name)",
            json: yaml,
            contentType: "application/yaml"
        )
        return (answer.status, answer.json)
    }

    static func pointers(_ problem: JSONValue) -> [String] {
        problem["errors"]?.arrayValue?.compactMap { $0["pointer"]?.stringValue } ?? []
    }

    /// An API user may not choose what runs on the host: only the operator's exact commands, with no variable that
    /// changes what the program loads.
    static func mcpCommandsAreTheOperators(_ world: AgentWorld) async throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent(
            "caravan-pwned-\(UInt64.random(in: 0...UInt64.max))"
        ).path
        let shell = try await world.client.send(
            .put,
            "/v1/agents/pw",
            json: """
                {"model": "local/m1", "tools": [{"mcp": {"name": "pw", "command": ["/bin/sh", "-c", "id > \(marker)"]}}]}
                """
        )
        #expect(shell.status == .unprocessableContent, "\(shell.json)")
        #expect(shell.json["code"] == "validation_failed")
        #expect(pointers(shell.json) == ["/tools/0/mcp/command"])
        let preload = try await world.client.send(
            .put,
            "/v1/agents/pw",
            json: """
                {"model": "local/m1", "tools": [{"mcp": {"name": "pw", "command": ["\(mcpFixturePath)"], "env": {"LD_PRELOAD": "/tmp/x.so"}}}]}
                """
        )
        #expect(preload.status == .unprocessableContent, "\(preload.json)")
        #expect(pointers(preload.json) == ["/tools/0/mcp/env/LD_PRELOAD"])
        let agents = try await world.client.send(.get, "/v1/agents").json["items"]?.arrayValue ?? []
        #expect(agents.isEmpty, "\(agents)")
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    /// A template that repeats a large input stops at the payload limit, for workflow templates and agent
    /// instructions alike, instead of filling memory.
    static func templatesStopAtThePayloadLimit(_ world: AgentWorld) async throws {
        let repeated = String(repeating: "{{ input.x }}", count: 3_000)
        let put = try await putWorkflow(
            world,
            "amplify",
            """
            name: amplify
            steps:
              - {id: big, template: "\(repeated)"}
            """
        )
        #expect(put.status == .created, "\(put.json)")
        let big = String(repeating: "a", count: 900_000)
        let run = try await run(world, "amplify", input: ["x": .string(big)])
        #expect(run["status"] == "failed", "\(run["status"] ?? .null)")
        #expect(run["error"]?["code"] == "output_too_large", "\(run["error"] ?? .null)")

        // Instructions hold at most 256 tags: 256 copies of 900 KB still pass the limit.
        try await world.putAgent(
            "amplifier",
            """
            name: amplifier
            model: local/m1
            instructions: "\(String(repeating: "{{ input.x }}", count: 256))"
            """
        )
        let agentRun = try await world.runAgent("amplifier", input: ["x": .string(big)])
        #expect(agentRun["status"] == "failed", "\(agentRun["status"] ?? .null)")
        #expect(agentRun["error"]?["code"] == "output_too_large", "\(agentRun["error"] ?? .null)")
        // Sections over a long array are bounded the same way.
        try await world.putAgent(
            "looper",
            """
            name: looper
            model: local/m1
            instructions: "{{#input.items}}{{#input.items}}{{ input.x }}{{/input.items}}{{/input.items}}"
            """
        )
        let items = JSONValue.array(Array(repeating: .int(1), count: 5_000))
        let looped = try await world.runAgent(
            "looper",
            input: ["x": .string(String(repeating: "b", count: 1_000)), "items": items]
        )
        #expect(looped["error"]?["code"] == "output_too_large", "\(looped["error"] ?? .null)")
    }

    /// A secret rendered into a refused URL, a host name, or a header stays out of the audit log, the run's error
    /// and its events, in whatever form it comes back.
    static func secretsStayOutOfRecords(_ world: AgentWorld) async throws {
        let secrets = ["a": "Zq9 Secret/Value", "h": "UPPERcaseHostSecret", "crlf": "abcdef\r\nX-Injected: yes"]
        for (name, value) in secrets {
            let body = JSONValue.object(["value": .string(value)]).canonicalText
            try await expectStatus(.created, world.client.send(.put, "/v1/secrets/\(name)", json: body))
        }
        let put = try await putWorkflow(
            world,
            "leaky",
            """
            name: leaky
            input: {type: object, properties: {which: {type: string}}}
            steps:
              - {id: refused, when: "input.which == 'refused'", http: {url: "http://10.0.0.1/x/{{ secrets.a }}?k={{ secrets.a }}"}}
              - {id: host, when: "input.which == 'host'", http: {url: "http://{{ secrets.h }}.invalid/"}}
              - {id: header, when: "input.which == 'header'", http: {url: "\(world.http.baseURL)/ok", headers: {X-Token: "{{ secrets.crlf }}"}}}
            """
        )
        #expect(put.status == .created, "\(put.json)")
        var texts: [String] = []
        for which in ["refused", "host", "header"] {
            let run = try await run(world, "leaky", input: ["which": .string(which)])
            #expect(run["status"] == "failed", "\(which): \(run)")
            texts.append(run.canonicalText)
            texts.append(try await world.events(run["id"]?.stringValue ?? "").map(\.canonicalText).joined())
            if which == "header" { #expect(run["error"]?["code"] == "invalid_header", "\(run["error"] ?? .null)") }
        }
        #expect(world.http.calls("/ok") == 0, "a header with a line break was sent")
        let audit = try await world.client.send(.get, "/v1/audit?limit=500").json
        let denied = audit["items"]?.arrayValue?.filter { $0["action"] == "egress.denied" } ?? []
        #expect(!denied.isEmpty, "the refusal is audited")
        texts.append(audit.canonicalText)
        let forms = [
            "Zq9 Secret/Value", "Zq9%20Secret%2FValue", "Zq9%20Secret/Value", "Zq9+Secret", "uppercasehostsecret",
            "abcdef\\r\\n", "X-Injected",
        ]
        for text in texts {
            for form in forms {
                #expect(
                    text.range(of: form, options: .caseInsensitive) == nil,
                    "'\(form)' leaked: \(text.prefix(2_000))"
                )
            }
        }
    }

    /// A secret restricted to some hosts is sent to no other, by an http step or an http tool.
    static func secretsGoOnlyToTheirHosts(_ world: AgentWorld) async throws {
        try await expectStatus(
            .created,
            world.client.send(
                .put,
                "/v1/secrets/tok",
                json: #"{"value": "tok-value-123", "allowed_hosts": ["api.example.com", "*.example.org"]}"#
            )
        )
        let bad = try await world.client.send(
            .put,
            "/v1/secrets/bad",
            json: #"{"value": "x", "allowed_hosts": ["a/b"]}"#
        )
        #expect(bad.status == .unprocessableContent, "\(bad.json)")
        #expect(pointers(bad.json) == ["/allowed_hosts/0"])
        let listed = try await world.client.send(.get, "/v1/secrets").json["items"]?.arrayValue ?? []
        #expect(listed.first { $0["name"] == "tok" }?["allowed_hosts"] == ["api.example.com", "*.example.org"])
        #expect(
            try await putWorkflow(
                world,
                "send",
                """
                name: send
                steps:
                  - {id: call, http: {method: POST, url: "\(world.http.baseURL)/ok", headers: {X-Token: "{{ secrets.tok }}"}}}
                """
            ).status == .created
        )
        let refused = try await run(world, "send", input: [:])
        #expect(refused["status"] == "failed", "\(refused)")
        #expect(refused["error"]?["code"] == "secret_host_not_allowed", "\(refused["error"] ?? .null)")
        #expect(world.http.calls("/ok") == 0)

        try await world.putAgent(
            "sender",
            """
            name: sender
            model: local/m1
            tools:
              - http: {name: send, method: POST, url: "\(world.http.baseURL)/ok", headers: {X-Token: "{{ secrets.tok }}"}}
            """
        )
        world.openAI.respond { request in
            request.toolResults.isEmpty ? .toolCall("send", arguments: "{}") : .text(request.lastToolResult ?? "")
        }
        let agentRun = try await world.runAgent("sender", input: "send")
        #expect(agentRun["output"]?.stringValue?.contains("allowed_hosts") == true, "\(agentRun)")
        #expect(world.http.calls("/ok") == 0)

        try await expectStatus(
            .ok,
            world.client.send(
                .put,
                "/v1/secrets/tok",
                json: #"{"value": "tok-value-123", "allowed_hosts": ["127.0.0.1"]}"#
            )
        )
        let sent = try await run(world, "send", input: [:])
        #expect(sent["status"] == "succeeded", "\(sent)")
        #expect(world.http.calls("/ok") == 1)
    }

    /// A workflow that starts itself stops at the depth limit; cancelling a run cancels the runs it started.
    static func runsStartRunsWithinLimits(_ world: AgentWorld) async throws {
        let loop = try await putWorkflow(
            world,
            "loop",
            """
            name: loop
            steps:
              - {id: again, workflow: {name: loop}}
            """
        )
        #expect(loop.status == .created, "\(loop.json)")
        let root = try await run(world, "loop", input: [:])
        #expect(root["status"] == "failed", "\(root)")
        let runs = try await world.client.send(.get, "/v1/runs?workflow=loop&limit=500").json["items"]?.arrayValue ?? []
        // The root at depth 0 and one run at each depth up to the limit (4 in this test), each failed.
        #expect(runs.count == 5, "\(runs.count) runs")
        #expect(runs.allSatisfy { $0["status"] == "failed" })
        let deepest = runs.compactMap { $0["error"]?["code"]?.stringValue }
        #expect(deepest.contains("max_depth_exceeded"), "\(deepest)")

        #expect(
            try await putWorkflow(
                world,
                "waiter",
                """
                name: waiter
                steps:
                  - {id: hold, approval: {message: "never"}}
                """
            ).status == .created
        )
        #expect(
            try await putWorkflow(
                world,
                "holder",
                """
                name: holder
                steps:
                  - {id: child, workflow: {name: waiter}}
                """
            ).status == .created
        )
        let holder = try await world.client.send(.post, "/v1/workflows/holder/runs", json: #"{"input": {}}"#).json
        let holderID = try #require(holder["id"]?.stringValue)
        var childID: String?
        for _ in 0..<200 where childID == nil {
            let children = try await world.client.send(.get, "/v1/runs?workflow=waiter").json["items"]?.arrayValue ?? []
            if let child = children.first(where: { $0["status"] == "waiting" }) { childID = child["id"]?.stringValue }
            if childID == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let waiting = try #require(childID, "the child run never waited")
        try await expectStatus(.accepted, world.client.send(.post, "/v1/runs/\(holderID)/cancel", json: "{}"))
        var childStatus: JSONValue?
        for _ in 0..<200 {
            childStatus = try await world.client.send(.get, "/v1/runs/\(waiting)").json["status"]
            if childStatus == "cancelled" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(childStatus == "cancelled", "the child of a cancelled run goes on: \(childStatus ?? .null)")
    }

    /// Values interpolated into a URL are encoded for where they land; `{{{ }}}` asks for the value as it is.
    static func urlValuesAreEncoded(_ world: AgentWorld) async throws {
        let put = try await putWorkflow(
            world,
            "fetch",
            """
            name: fetch
            steps:
              - {id: get, http: {url: "\(world.http.baseURL)/reflect/{{ input.path }}/x?q={{ input.q }}&raw={{{ input.raw }}}"}}
            output: "{{ steps.get.output.body }}"
            """
        )
        #expect(put.status == .created, "\(put.json)")
        let run = try await run(
            world,
            "fetch",
            input: ["path": "../../admin", "q": "a&admin=true#frag", "raw": "x%2By"]
        )
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"]?["path"] == "/reflect/..%2F..%2Fadmin/x", "\(run["output"] ?? .null)")
        #expect(run["output"]?["query"] == "q=a%26admin%3Dtrue%23frag&raw=x%2By", "\(run["output"] ?? .null)")
        let dots = try await Self.run(world, "fetch", input: ["path": "..", "q": "", "raw": ""])
        #expect(dots["output"]?["path"] == "/reflect/%2E%2E/x", "\(dots["output"] ?? .null)")

        // A path that a model chooses for an http tool stays one segment.
        try await world.putAgent(
            "reader",
            """
            name: reader
            model: local/m1
            tools:
              - http: {name: read, url: "\(world.http.baseURL)/reflect/tool/{{ args.path }}", method: GET,
                       parameters: {type: object, required: [path], properties: {path: {type: string}}}}
            """
        )
        world.openAI.respond { request in
            request.toolResults.isEmpty
                ? .toolCall("read", arguments: #"{"path": "../../etc/passwd"}"#) : .text(request.lastToolResult ?? "")
        }
        let agentRun = try await world.runAgent("reader", input: "read")
        #expect(agentRun["status"] == "succeeded", "\(agentRun)")
        #expect(
            agentRun["output"]?.stringValue?.contains(#""path":"\/reflect\/tool\/..%2F..%2Fetc%2Fpasswd""#) == true
                || agentRun["output"]?.stringValue?.contains(#""path":"/reflect/tool/..%2F..%2Fetc%2Fpasswd""#) == true,
            "\(agentRun["output"] ?? .null)"
        )
    }

    /// A definition naming a workflow, an agent or a secret that does not exist is refused with a pointer; one
    /// that disappears later fails the step at once with a clear code.
    static func referencesMustResolve(_ world: AgentWorld) async throws {
        let cases: [(String, String)] = [
            ("steps:\n  - {id: a, workflow: {name: nope}}", "/steps/0/workflow/name"),
            ("steps:\n  - {id: a, agent: {name: nope, input: {}}}", "/steps/0/agent/name"),
            ("steps:\n  - {id: a, http: {url: \"https://example.com/{{ secrets.missing }}\"}}", "/steps/0/http"),
        ]
        for (steps, pointer) in cases {
            let answer = try await putWorkflow(world, "dangling", "name: dangling\n" + steps)
            #expect(answer.status == .unprocessableContent, "\(answer.json)")
            #expect(answer.json["code"] == "validation_failed")
            #expect(pointers(answer.json) == [pointer], "\(answer.json)")
        }
        let agent = try await world.client.send(
            .put,
            "/v1/agents/caller",
            json: """
                {"model": "local/m1", "tools": [{"agent": {"name": "ghost-agent"}}, {"workflow": {"name": "ghost-flow"}},
                 {"http": {"name": "h", "url": "https://example.com/", "headers": {"A": "{{ secrets.missing }}"}}}]}
                """
        )
        #expect(agent.status == .unprocessableContent, "\(agent.json)")
        #expect(
            Set(pointers(agent.json)) == ["/tools/0/agent/name", "/tools/1/workflow/name", "/tools/2/http"],
            "\(agent.json)"
        )

        #expect(
            try await putWorkflow(world, "leaf", "name: leaf\nsteps:\n  - {id: a, template: leaf}").status == .created
        )
        #expect(
            try await putWorkflow(world, "branch", "name: branch\nsteps:\n  - {id: a, workflow: {name: leaf}}").status
                == .created
        )
        try await expectStatus(.noContent, world.client.send(.delete, "/v1/workflows/leaf"))
        let run = try await run(world, "branch", input: [:])
        #expect(run["status"] == "failed", "\(run)")
        #expect(run["error"]?["code"] == "workflow_not_found", "\(run["error"] ?? .null)")
    }
}

/// Every check runs on each available backend (`TestBackend.available`), as one test case per backend; the
/// modes of the data directory are SQLite's alone.
@Suite("Security", .tags(.agents, .security), .timeLimit(.minutes(3)))
struct SecurityTests {
    @Test(arguments: TestBackend.available) func mcpCommands(backend: TestBackend) async throws {
        try await withAgentWorld(backend, SecurityChecks.mcpCommandsAreTheOperators)
    }
    @Test(arguments: TestBackend.available) func templateLimits(backend: TestBackend) async throws {
        try await withAgentWorld(backend, SecurityChecks.templatesStopAtThePayloadLimit)
    }
    @Test(arguments: TestBackend.available) func secretsInRecords(backend: TestBackend) async throws {
        try await withAgentWorld(backend, SecurityChecks.secretsStayOutOfRecords)
    }
    @Test(arguments: TestBackend.available) func secretHosts(backend: TestBackend) async throws {
        try await withAgentWorld(backend, SecurityChecks.secretsGoOnlyToTheirHosts)
    }
    @Test(arguments: TestBackend.available) func runDepth(backend: TestBackend) async throws {
        try await withAgentWorld(
            backend,
            configure: { $0.engine.maxRunDepth = 4 },
            SecurityChecks.runsStartRunsWithinLimits
        )
    }
    @Test(arguments: TestBackend.available) func urlEncoding(backend: TestBackend) async throws {
        try await withAgentWorld(backend, SecurityChecks.urlValuesAreEncoded)
    }
    @Test(arguments: TestBackend.available) func references(backend: TestBackend) async throws {
        try await withAgentWorld(backend, SecurityChecks.referencesMustResolve)
    }

    @Test("The data directory is 0700 and every file in it 0600")
    func fileModes() async throws {
        try await withTemporaryDirectory { parent in
            let directory = parent + "/data"
            try FileManager.default.createDirectory(
                atPath: directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o755]
            )
            try await withTestApplication(.sqlite, configure: { $0.dataDirectory = directory }) { client, _ in
                try await expectStatus(.created, client.send(.put, "/v1/secrets/s", json: #"{"value": "v"}"#))
                let mode = { (path: String) throws -> Int in
                    ((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? NSNumber)?.intValue
                        ?? -1
                }
                #expect(try mode(directory) == 0o700)
                let files = try FileManager.default.contentsOfDirectory(atPath: directory)
                #expect(
                    files.contains("caravan.sqlite") && files.contains("caravan.sqlite-wal")
                        && files.contains("master.key"),
                    "\(files)"
                )
                for file in files {
                    let fileMode = try mode(directory + "/" + file)
                    #expect(fileMode == 0o600, "\(file) is \(String(fileMode, radix: 8))")
                }
            }
        }
    }
}

@Suite("Secret redaction")
struct SecretRedactorTests {
    @Test("masks a secret as it is, in any case, percent-encoded, JSON-escaped and base64-encoded")
    func forms() {
        let redactor = SecretRedactor(values: ["Zq9 Secret/Value\n"])
        let samples = [
            "plain Zq9 Secret/Value\n here", "lower zq9 secret/value\n", "path Zq9%20Secret%2FValue%0A",
            "form Zq9+Secret%2FValue%0A",
            #"json "Zq9 Secret/Value\n""#, "b64 " + Data("Zq9 Secret/Value\n".utf8).base64EncodedString(),
        ]
        for sample in samples {
            let masked = redactor.redact(sample)
            #expect(masked.contains("[redacted]"), "\(sample) -> \(masked)")
            #expect(!masked.lowercased().contains("zq9"), "\(sample) -> \(masked)")
        }
        #expect(SecretRedactor(values: []).redact("nothing") == "nothing")
    }
}
