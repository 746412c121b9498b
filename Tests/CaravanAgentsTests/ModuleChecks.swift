import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import Testing

/// WebAssembly modules through the HTTP API: upload and versions, refusals, limits, host functions, and modules as
/// workflow steps and agent tools.
enum ModuleChecks {
    /// The allocator every WAT example shares: a bump pointer from 1 KiB.
    static let allocator = """
          (global $heap (mut i32) (i32.const 1024))
          (func $alloc (export "caravan_alloc") (param $size i32) (result i32)
            (local $ptr i32)
            (local.set $ptr (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (local.get $size)))
            (local.get $ptr))
        """

    /// Answers `{"echo": <input>}`, and logs its input.
    static let echo = """
        (module
          (import "caravan" "log" (func $log (param i32 i32)))
          (memory (export "memory") 2)
        \(allocator)
          (data (i32.const 0) "{\\"echo\\":")
          (func (export "caravan_run") (param $ptr i32) (param $len i32) (result i64)
            (local $out i32)
            (call $log (local.get $ptr) (local.get $len))
            (local.set $out (call $alloc (i32.add (local.get $len) (i32.const 9))))
            (memory.copy (local.get $out) (i32.const 0) (i32.const 8))
            (memory.copy (i32.add (local.get $out) (i32.const 8)) (local.get $ptr) (local.get $len))
            (i32.store8 (i32.add (local.get $out) (i32.add (local.get $len) (i32.const 8))) (i32.const 125))
            (i64.or
              (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
              (i64.extend_i32_u (i32.add (local.get $len) (i32.const 9))))))
        """

    /// A module whose `caravan_run` is `body` (which must end the function, e.g. in a trap or a loop).
    static func module(_ body: String, imports: String = "") -> String {
        """
        (module
          \(imports)
          (memory (export "memory") 1)
        \(allocator)
          (func (export "caravan_run") (param $ptr i32) (param $len i32) (result i64)
            \(body)))
        """
    }

    static func put(
        _ world: AgentWorld,
        _ name: String,
        _ fields: [String: JSONValue]
    ) async throws -> (
        status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields
    ) {
        try await world.client.send(.put, "/v1/modules/\(name)", json: JSONValue.object(fields).canonicalText)
    }

    static func call(
        _ world: AgentWorld,
        _ name: String,
        _ input: JSONValue
    ) async throws -> (
        status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields
    ) {
        try await world.client.send(
            .post,
            "/v1/modules/\(name)/call",
            json: JSONValue.object(["input": input]).canonicalText
        )
    }

    /// Upload, versions, calls, deletion; what is refused at upload and why; another organization sees nothing.
    static func lifecycle(_ world: AgentWorld) async throws {
        let schema: JSONValue = ["type": "object", "required": ["text"], "properties": ["text": ["type": "string"]]]
        let first = try await put(world, "echo", ["wat": .string(echo), "input_schema": schema, "description": "Echo"])
        expectStatus(.created, first)
        #expect(first.json["version"] == 1 && first.json["abi"] == "caravan", "\(first.json)")
        #expect(first.json["imports"] == ["caravan.log"] && first.json["sha256"]?.stringValue?.count == 64)
        let again = try await put(world, "echo", ["wat": .string(echo), "input_schema": schema, "description": "Echo"])
        #expect(again.status == .ok && again.json["version"] == 1, "the same module is not a new version")
        let second = try await put(world, "echo", ["wat": .string(echo), "description": "Echo anything"])
        #expect(second.status == .created && second.json["version"] == 2)
        #expect(first.json["sha256"] == second.json["sha256"], "content-addressed: one binary")

        let answered = try await call(world, "echo", ["text": "hi"])
        expectStatus(.ok, answered)
        #expect(answered.json["output"] == ["echo": ["text": "hi"]], "\(answered.json)")
        let pinned = try await world.client.send(
            .post,
            "/v1/modules/echo/call",
            json: #"{"version": 1, "input": {"number": 1}}"#
        )
        #expect(pinned.status.code == 422 && pinned.json["errors"]?.arrayValue?.first?["pointer"] == "/input")

        let shown = try await world.client.send(.get, "/v1/modules/echo")
        #expect(shown.json["version"] == 2 && shown.json["versions"] == [2, 1], "\(shown.json)")
        #expect(try await world.client.send(.get, "/v1/modules/echo?version=1").json["description"] == "Echo")
        #expect(try await world.client.send(.get, "/v1/modules").json["items"]?.arrayValue?.count == 1)

        // Refused at upload, naming what is wrong.
        let garbage = try await put(world, "bad", ["wasm": .string(Data("not a module".utf8).base64EncodedString())])
        #expect(garbage.status.code == 422 && garbage.json["errors"]?.arrayValue?.first?["pointer"] == "/wasm")
        let foreign = try await put(
            world,
            "bad",
            ["wat": .string(module("(unreachable)", imports: #"(import "env" "system" (func (param i32)))"#))]
        )
        #expect(foreign.status.code == 422 && foreign.json["detail"]?.stringValue?.contains("env.system") == true)
        let ungranted = try await put(
            world,
            "bad",
            [
                "wat": .string(
                    module(
                        "(unreachable)",
                        imports: #"(import "caravan" "http_fetch" (func (param i32 i32) (result i64)))"#
                    )
                )
            ]
        )
        #expect(ungranted.json["errors"]?.arrayValue?.first?["pointer"] == "/permissions/http", "\(ungranted.json)")
        let tooMuch = try await put(world, "bad", ["wat": .string(echo), "limits": ["fuel": 100_000_000_000_000]])
        #expect(tooMuch.json["errors"]?.arrayValue?.first?["pointer"] == "/limits/fuel")
        let noSecret = try await put(world, "bad", ["wat": .string(echo), "permissions": ["secrets": ["NOPE"]]])
        #expect(noSecret.json["errors"]?.arrayValue?.first?["pointer"] == "/permissions/secrets")
        #expect(try await world.client.send(.get, "/v1/modules/bad").status == .notFound)

        // Another organization.
        let asOther = try await world.otherOrganization()
        #expect(try await world.client.send(.get, "/v1/modules/echo", headers: asOther).status == .notFound)
        let theirs = try await world.client.send(.post, "/v1/modules/echo/call", json: "{}", headers: asOther)
        #expect(theirs.status == .notFound)

        expectStatus(.noContent, try await world.client.send(.delete, "/v1/modules/echo"))
        #expect(try await call(world, "echo", ["text": "hi"]).status == .notFound)
    }

    /// Each limit ends the call with its own code, and the server goes on.
    static func limits(_ world: AgentWorld) async throws {
        let cases: [(String, String, JSONValue)] = [
            ("spin", "(loop $forever (br $forever)) (unreachable)", ["fuel": 1_000_000]),
            (
                "hog",
                "(loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (unreachable)",
                ["memory_bytes": 1_048_576]
            ),
            // Fuel for a second or two of computing (debug build): past its deadline the computation goes on until its fuel is spent.
            ("slow", "(loop $forever (br $forever)) (unreachable)", ["fuel": 60_000_000, "timeout_ms": 50]),
        ]
        for (name, body, limits) in cases {
            expectStatus(.created, try await put(world, name, ["wat": .string(module(body)), "limits": limits]))
        }
        let deep = """
            (module
              (memory (export "memory") 1)
            \(allocator)
              (func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))
              (func (export "caravan_run") (param i32 i32) (result i64) (drop (call $down (i32.const 0))) (i64.const 0)))
            """
        expectStatus(.created, try await put(world, "deep", ["wat": .string(deep), "limits": ["stack_bytes": 65_536]]))
        let large = module("(unreachable)").replacingOccurrences(
            of: #"(memory (export "memory") 1)"#,
            with: #"(memory (export "memory") 32)"#
        )
        expectStatus(
            .created,
            try await put(world, "large", ["wat": .string(large), "limits": ["memory_bytes": 1_048_576]])
        )
        let tooLarge = try await call(world, "large", [:])
        #expect(tooLarge.json["code"] == "memory_limit", "its initial memory is past its limit: \(tooLarge.json)")
        for (name, code) in [
            ("spin", "fuel_exhausted"), ("hog", "memory_limit"), ("slow", "deadline_exceeded"),
            ("deep", "stack_overflow"),
        ] {
            let answer = try await call(world, name, [:])
            #expect(answer.status.code == 422 && answer.json["code"] == .string(code), "\(name): \(answer.json)")
        }
        let trap = try await put(world, "trap", ["wat": .string(module("(unreachable)"))])
        expectStatus(.created, trap)
        #expect(try await call(world, "trap", [:]).json["code"] == "trap")
        expectStatus(.ok, try await world.client.send(.get, "/healthz"))
    }

    /// A `wasm` step keeps values across its run's calls with `kv_*`, fetches through the egress policy, and a
    /// `wasm` tool answers an agent.
    static func stepsAndTools(_ world: AgentWorld) async throws {
        // Counts its calls in the run's kv store, and fetches the URL it is given.
        let counter = """
            (module
              (import "caravan" "kv_get" (func $kv_get (param i32 i32) (result i64)))
              (import "caravan" "kv_put" (func $kv_put (param i32 i32 i32 i32)))
              (import "caravan" "http_fetch" (func $fetch (param i32 i32) (result i64)))
              (memory (export "memory") 2)
            \(allocator)
              (data (i32.const 0) "n")
              (data (i32.const 16) "{\\"calls\\":1,\\"fetched\\":")
              (func (export "caravan_run") (param $ptr i32) (param $len i32) (result i64)
                (local $got i64) (local $count i32) (local $out i32) (local $answer i64) (local $answerLen i32)
                (local.set $got (call $kv_get (i32.const 0) (i32.const 1)))
                (local.set $count (i32.const 49))
                (if (i64.ne (local.get $got) (i64.const -1))
                  (then (local.set $count
                    (i32.add (i32.load8_u (i32.wrap_i64 (i64.shr_u (local.get $got) (i64.const 32)))) (i32.const 1)))))
                (i32.store8 (i32.const 8) (local.get $count))
                (call $kv_put (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 1))
                (local.set $answer (call $fetch (local.get $ptr) (local.get $len)))
                (local.set $answerLen (i32.wrap_i64 (local.get $answer)))
                (local.set $out (call $alloc (i32.add (local.get $answerLen) (i32.const 22))))
                (memory.copy (local.get $out) (i32.const 16) (i32.const 21))
                (i32.store8 (i32.add (local.get $out) (i32.const 9)) (local.get $count))
                (memory.copy (i32.add (local.get $out) (i32.const 21))
                  (i32.wrap_i64 (i64.shr_u (local.get $answer) (i64.const 32))) (local.get $answerLen))
                (i32.store8 (i32.add (local.get $out) (i32.add (local.get $answerLen) (i32.const 21))) (i32.const 125))
                (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
                  (i64.extend_i32_u (i32.add (local.get $answerLen) (i32.const 22))))))
            """
        let uploaded = try await put(
            world,
            "counter",
            ["wat": .string(counter), "permissions": ["kv": true, "http": true]]
        )
        expectStatus(.created, uploaded)
        let url = "\(world.http.baseURL)/count/module"
        let put = try await SecurityChecks.putWorkflow(
            world,
            "counting",
            """
            name: counting
            steps:
              - id: first
                wasm: {module: counter, input: {url: "\(url)", method: POST}}
              - id: second
                needs: [first]
                wasm: {module: counter, input: {url: "\(url)", method: POST}}
            output: {first: "{{ steps.first.output }}", second: "{{ steps.second.output }}"}
            """
        )
        #expect(put.status == .created, "\(put.json)")
        let run = try await SecurityChecks.run(world, "counting", input: [:])
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"]?["first"]?["calls"] == 1 && run["output"]?["second"]?["calls"] == 2, "\(run)")
        #expect(run["output"]?["second"]?["fetched"]?["status"] == 200)
        #expect(world.http.calls("/count/module") == 2)
        let denied = try await call(world, "counter", ["url": "http://10.0.0.1/x"])
        #expect(denied.status.code == 422 && denied.json["code"] == "egress_denied", "\(denied.json)")

        expectStatus(
            .created,
            try await ModuleChecks.put(world, "echo", ["wat": .string(echo), "description": "Echo"])
        )
        try await world.putAgent(
            "moduled",
            """
            name: moduled
            model: local/m1
            instructions: Use the tool.
            tools:
              - wasm: {name: echo_tool, module: echo}
            """
        )
        world.openAI.respond { request in
            request.lastToolResult == nil
                ? .toolCall("echo_tool", arguments: #"{"word": "ping"}"#, id: "call_1")
                : .text("the tool said \(request.lastToolResult ?? "")")
        }
        let agentRun = try await world.runAgent("moduled", input: "go")
        world.openAI.respond(with: nil)
        #expect(agentRun["status"] == "succeeded", "\(agentRun)")
        #expect(agentRun["output"]?.stringValue?.contains(#"{"echo":{"word":"ping"}}"#) == true, "\(agentRun)")
        #expect(world.openAI.requests.first?.toolNames == ["echo_tool"])
    }

    /// The C compiler that builds `examples/wasm/word_count.c` (the toolchain's clang), if there is one.
    static let clang: String? = ["/opt/swift/usr/bin/clang", "/usr/bin/clang"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// The C example, built from source: it counts words and keeps a total in its kv store.
    static func cExample(_ world: AgentWorld) async throws {
        let source = example("word_count.c")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("word_count-\(UUID()).wasm")
        defer { try? FileManager.default.removeItem(at: output) }
        let compiler = Process()
        compiler.executableURL = URL(fileURLWithPath: try #require(clang))
        compiler.arguments = [
            "--target=wasm32", "-nostdlib", "-O2", "-Wl,--no-entry", "-o", output.path, source.path,
        ]
        try compiler.run()
        compiler.waitUntilExit()
        #expect(compiler.terminationStatus == 0)
        let binary = try Data(contentsOf: output)
        let uploaded = try await put(
            world,
            "word-count",
            ["wasm": .string(binary.base64EncodedString()), "permissions": ["kv": true]]
        )
        expectStatus(.created, uploaded)
        #expect(uploaded.json["imports"] == ["caravan.log", "caravan.kv_get", "caravan.kv_put"], "\(uploaded.json)")
        let first = try await call(world, "word-count", ["text": "one two  three"])
        #expect(first.json["output"] == ["words": 3, "total": 3], "\(first.json)")
        let second = try await call(world, "word-count", ["text": "four five"])
        #expect(second.json["output"] == ["words": 2, "total": 5], "\(second.json)")
    }

    /// The examples' directory.
    static func example(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../examples/wasm/\(name)"
        )
        .standardizedFileURL
    }

    /// The WAT example, uploaded from its file as it is.
    static func watExample(_ world: AgentWorld) async throws {
        let text = try String(contentsOf: example("length.wat"), encoding: .utf8)
        expectStatus(.created, try await put(world, "length", ["wat": .string(text)]))
        let answer = try await call(world, "length", ["a": 1])
        #expect(answer.json["output"] == ["length": 7], "\(answer.json)")  // {"a":1}
        let long = try await call(world, "length", ["text": .string(String(repeating: "x", count: 12_345))])
        #expect(long.json["output"] == ["length": 12_356], "\(long.json)")
    }

    /// WASI preview 1 commands: the C example built from source (input on stdin, output on stdout), and in WAT what a
    /// command may not have: no directory is opened, the clock stays at the epoch, an exit code fails the call. Hostile
    /// commands: pointers outside the memory answer `EFAULT` (the process unharmed), `poll_oneoff` answers `ENOSYS`
    /// at once instead of sleeping, an import of the wrong type is refused at upload.
    static func wasi(_ world: AgentWorld) async throws {
        if let clang {
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("shout-\(UUID()).wasm")
            defer { try? FileManager.default.removeItem(at: output) }
            let compiler = Process()
            compiler.executableURL = URL(fileURLWithPath: clang)
            compiler.arguments = ["--target=wasm32", "-nostdlib", "-O2", "-o", output.path, example("shout.c").path]
            try compiler.run()
            compiler.waitUntilExit()
            #expect(compiler.terminationStatus == 0)
            let binary = try Data(contentsOf: output)
            let uploaded = try await put(world, "shout", ["wasm": .string(binary.base64EncodedString())])
            expectStatus(.created, uploaded)
            #expect(uploaded.json["abi"] == "wasi", "\(uploaded.json)")
            let answer = try await call(world, "shout", ["greeting": "hi \"you\"", "n": 1, "ok": true])
            #expect(answer.json["output"] == ["GREETING": "HI \"YOU\"", "N": 1, "OK": true], "\(answer.json)")
        }
        let sandboxed = """
            (module
              (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
              (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ (param i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "path_open"
                (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (memory (export "memory") 1)
              (data (i32.const 64) "{\\"epoch\\":true}")
              (data (i32.const 96) "/etc/passwd")
              (func (export "_start")
                (i64.store (i32.const 16) (i64.const 99))
                (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 16)))
                (if (i64.ne (i64.load (i32.const 16)) (i64.const 0)) (then (call $exit (i32.const 5))))
                (if (i32.ne (call $prestat (i32.const 3) (i32.const 32)) (i32.const 8)) (then (call $exit (i32.const 6))))
                (drop (call $environ (i32.const 40) (i32.const 44)))
                (if (i32.ne (i32.load (i32.const 40)) (i32.const 0)) (then (call $exit (i32.const 7))))
                (if (i32.eqz (call $open (i32.const 3) (i32.const 0) (i32.const 96) (i32.const 11) (i32.const 0)
                      (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 48)))
                  (then (call $exit (i32.const 8))))
                (i32.store (i32.const 0) (i32.const 64))
                (i32.store (i32.const 4) (i32.const 14))
                (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
            """
        expectStatus(.created, try await put(world, "sandboxed", ["wat": .string(sandboxed)]))
        let answer = try await call(world, "sandboxed", [:])
        #expect(answer.json["output"] == ["epoch": true], "\(answer.json)")
        let exiting = """
            (module
              (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (memory (export "memory") 1)
              (func (export "_start") (call $exit (i32.const 3))))
            """
        expectStatus(.created, try await put(world, "exiting", ["wat": .string(exiting)]))
        let failed = try await call(world, "exiting", [:])
        #expect(failed.status.code == 422 && failed.json["code"] == "exit_failure", "\(failed.json)")
        // Every pointer outside the memory (an iovec array, a buffer an iovec names, where the count goes, where
        // input is read to, where random bytes go) answers EFAULT (21); poll_oneoff answers ENOSYS (52) at once; an fd
        // that is not open answers EBADF (8). The answer lists each errno as two digits.
        let hostile = """
            (module
              (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 400) "[\\"00\\",\\"00\\",\\"00\\",\\"00\\",\\"00\\",\\"00\\",\\"00\\"]")
              (func $put (param $index i32) (param $errno i32)
                (local $at i32)
                (local.set $at (i32.add (i32.const 402) (i32.mul (local.get $index) (i32.const 5))))
                (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
                (i32.store8 (i32.add (local.get $at) (i32.const 1))
                  (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10)))))
              (func (export "_start")
                (call $put (i32.const 0) (call $write (i32.const 1) (i32.const 65535) (i32.const 1) (i32.const 8)))
                (i32.store (i32.const 0) (i32.const 70000))
                (i32.store (i32.const 4) (i32.const 16))
                (call $put (i32.const 1) (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
                (i32.store (i32.const 0) (i32.const 300))
                (i32.store (i32.const 4) (i32.const 4))
                (call $put (i32.const 2) (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const -4)))
                (i32.store (i32.const 0) (i32.const 65534))
                (i32.store (i32.const 4) (i32.const 100))
                (call $put (i32.const 3) (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
                (call $put (i32.const 4) (call $poll (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 8)))
                (call $put (i32.const 5) (call $random (i32.const 65530) (i32.const 100)))
                (call $put (i32.const 6) (call $write (i32.const 9) (i32.const 0) (i32.const 1) (i32.const 8)))
                (i32.store (i32.const 0) (i32.const 400))
                (i32.store (i32.const 4) (i32.const 36))
                (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
            """
        expectStatus(.created, try await put(world, "hostile-wasi", ["wat": .string(hostile)]))
        let errnos = try await call(world, "hostile-wasi", [:])
        #expect(errnos.json["output"] == ["21", "21", "21", "21", "52", "21", "08"], "\(errnos.json)")
        let mistyped = """
            (module
              (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32) (result i32)))
              (memory (export "memory") 1)
              (func (export "_start")))
            """
        let refused = try await put(world, "mistyped", ["wat": .string(mistyped)])
        #expect(
            refused.status.code == 422 && "\(refused.json)".contains("import_not_allowed")
                && "\(refused.json)".contains("fd_write") && "\(refused.json)".contains("another type"),
            "\(refused.json)"
        )
        let unknown = """
            (module
              (import "wasi_snapshot_preview1" "fd_teleport" (func (param i32) (result i32)))
              (memory (export "memory") 1)
              (func (export "_start")))
            """
        let unknownRefused = try await put(world, "teleport", ["wat": .string(unknown)])
        #expect(unknownRefused.status.code == 422 && "\(unknownRefused.json)".contains("fd_teleport"))
        let neither = try await put(world, "neither", ["wat": "(module (memory (export \"memory\") 1))"])
        #expect(neither.status.code == 422 && "\(neither.json)".contains("_start"), "\(neither.json)")
    }

    /// The console's Modules pages: the list, a module's facts, and a call from its form (hostile text shown as text).
    static func consolePages(_ world: AgentWorld) async throws {
        let anonymous = try #require((world.client as? AuthenticatedClient)?.anonymous)
        let browser = ConsoleTestBrowser(anonymous)
        _ = try await browser.signIn(email: "owner@example.com", password: AuthenticatedClient.ownerPassword)
        #expect(try await browser.get("/modules").html.contains("No modules yet"))
        let uploaded = try await put(
            world,
            "echo",
            ["wat": .string(echo), "description": "<script>alert(1)</script>", "permissions": ["kv": true]]
        )
        expectStatus(.created, uploaded)
        let list = try await browser.get("/modules")
        #expect(list.html.contains("href=\"/modules/echo\""), "\(list.html)")
        #expect(list.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !list.html.contains("<script>alert"))
        let page = try await browser.get("/modules/echo")
        #expect(page.status == .ok)
        #expect(page.html.contains(uploaded.json["sha256"]?.stringValue ?? "?"))
        #expect(page.html.contains("<code>caravan.log</code>") && page.html.contains("key-value store"))
        let called = try await browser.post("/modules/echo/call", [("input", #"{"word": "<b>hi</b>"}"#)])
        #expect(called.html.contains("id=\"module-output\""), "\(called.html)")
        #expect(called.html.contains("&lt;b&gt;hi&lt;/b&gt;") && !called.html.contains("<b>hi</b>"))
        let invalid = try await browser.post("/modules/echo/call", [("input", "not json")])
        #expect(invalid.status.code == 422 && invalid.html.contains("The input is not JSON."))
        #expect(try await browser.get("/modules/nothing").status == .notFound)
    }
}
