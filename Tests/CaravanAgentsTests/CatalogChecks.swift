import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import Testing

/// The catalog through the HTTP API, between two organizations: A publishes an agent that calls a module of its own,
/// B installs and runs it, and the ledger charges B and credits A once per run; neither sees what is the other's.
enum CatalogChecks {
    typealias Answer = (status: HTTPResponse.Status, json: JSONValue, headers: HTTPFields)

    /// Polls `read` every 200 ms for up to 15 s until `done` holds of its answer, and returns the last answer.
    static func eventually(
        _ read: () async throws -> JSONValue,
        until done: (JSONValue) -> Bool
    ) async throws -> JSONValue {
        var answer = try await read()
        for _ in 0..<75 where !done(answer) {
            try await Task.sleep(for: .milliseconds(200))
            answer = try await read()
        }
        return answer
    }

    static func entries(_ ledger: JSONValue, account: String) -> [JSONValue] {
        (ledger["items"]?.arrayValue ?? []).filter { $0["account"]?.stringValue == account }
    }

    /// Organization B: the providers and secrets an installer of A's agent needs, with a price for `m1` so that its
    /// model calls cost something.
    static func installer(_ world: AgentWorld) async throws -> HTTPFields {
        let b = try await world.otherOrganization()
        expectStatus(
            .created,
            try await world.client.send(
                .put,
                "/v1/secrets/openai_key",
                json: #"{"value": "sk-openai-test"}"#,
                headers: b
            )
        )
        let provider: JSONValue = [
            "kind": "openai", "base_url": .string(world.openAI.baseURL), "api_key_secret": "openai_key",
            "models": ["m1"], "prices": ["m1": ["input_per_million": 1, "output_per_million": 2]],
        ]
        expectStatus(
            .created,
            try await world.client.send(.put, "/v1/providers/local", json: provider.canonicalText, headers: b)
        )
        return b
    }

    static func catalog(_ world: AgentWorld) async throws {
        let client = world.client
        // A: a module that needs a secret, an agent that calls it, published at 2,500 micro-dollars a run.
        expectStatus(
            .created,
            try await client.send(.put, "/v1/secrets/echo_key", json: #"{"value": "publisher-only-value"}"#)
        )
        expectStatus(
            .created,
            try await ModuleChecks.put(
                world,
                "echo",
                ["wat": .string(ModuleChecks.echo), "permissions": ["secrets": ["echo_key"]]]
            )
        )
        try await world.putAgent(
            "helper",
            """
            name: helper
            model: local/m1
            instructions: Use the tool.
            tools:
              - wasm: {name: echo_tool, module: echo}
            """
        )
        let publish: JSONValue = [
            "kind": "agent", "source": "helper", "description": "Echoes words back", "tags": ["text", "demo"],
            "price_micros": 2_500,
        ]
        let published = try await client.send(.post, "/v1/catalog/listings", json: publish.canonicalText)
        expectStatus(.created, published)
        let listingID = try #require(published.json["id"]?.stringValue)
        #expect(published.json["version"]?["requires"]?["secrets"] == ["echo_key"], "\(published.json)")
        #expect(published.json["version"]?["requires"]?["providers"] == ["local"], "\(published.json)")
        #expect(published.json["version"]?["modules"] == ["echo"])
        let again = try await client.send(.post, "/v1/catalog/listings", json: publish.canonicalText)
        #expect(again.status == .ok && again.json["latest_version"] == 1, "\(again.json)")

        // Bad publications: a clear problem, nothing stored.
        let unknown = try await client.send(
            .post,
            "/v1/catalog/listings",
            json: #"{"kind": "agent", "source": "nope"}"#
        )
        #expect(
            unknown.status.code == 422 && unknown.json["errors"]?.arrayValue?.first?["pointer"] == "/source",
            "\(unknown.json)"
        )
        let negative = try await client.send(
            .post,
            "/v1/catalog/listings",
            json: #"{"kind": "agent", "source": "helper", "price_micros": -1}"#
        )
        #expect(
            negative.status.code == 422 && negative.json["errors"]?.arrayValue?.first?["pointer"] == "/price_micros"
        )
        let wrongKind = try await client.send(
            .post,
            "/v1/catalog/listings",
            json: #"{"kind": "module", "source": "echo", "name": "helper"}"#
        )
        #expect(wrongKind.status == .conflict, "\(wrongKind.json)")
        for (body, status, pointer) in [
            ("not json", 400, nil),
            (#"{"kind": "agent", "source": "helper", "tags": ["Bad Tag"]}"#, 422, "/tags"),
            (#"{"kind": "agent", "source": "helper", "owner": "someone else"}"#, 422, "/owner"),
            (#"{"kind": "robot", "source": "helper"}"#, 422, "/kind"),
            (#"{"kind": "agent", "source": "../helper"}"#, 422, "/source"),
        ] as [(String, Int, String?)] {
            let refused = try await client.send(.post, "/v1/catalog/listings", json: body)
            #expect(refused.status.code == status, "\(body): \(refused.json)")
            #expect(refused.headers[.contentType] == "application/problem+json")
            if let pointer {
                #expect(refused.json["errors"]?.arrayValue?.first?["pointer"] == .string(pointer), "\(refused.json)")
            }
        }

        // B finds it, and cannot install it without the secret it needs.
        let b = try await installer(world)
        let found = try await client.send(.get, "/v1/catalog/listings?q=ECHOES%20words&tag=demo", headers: b)
        #expect(found.json["items"]?.arrayValue?.map { $0["id"] } == [.string(listingID)], "\(found.json)")
        let none = try await client.send(.get, "/v1/catalog/listings?tag=finance", headers: b)
        #expect(none.json["items"] == [])
        let tooLong = try await client.send(
            .get,
            "/v1/catalog/listings?q=\(String(repeating: "a", count: 300))",
            headers: b
        )
        #expect(tooLong.status.code == 422 && tooLong.json["code"] == "validation_failed")
        let missing = try await client.send(
            .post,
            "/v1/catalog/installs",
            json: #"{"listing": "\#(listingID)"}"#,
            headers: b
        )
        #expect(missing.status.code == 422 && missing.json["code"] == "requirement_missing", "\(missing.json)")
        #expect(missing.json["errors"]?.arrayValue?.first?["pointer"] == "/secrets/echo_key", "\(missing.json)")
        for (body, status) in [
            (#"{"listing": 5}"#, 422), (#"{"listing": "lst_nothing"}"#, 404),
            (#"{"listing": "\#(listingID)", "secrets": {"echo_key": 5}}"#, 422),
            (#"{"listing": "\#(listingID)", "secrets": {"other": "x"}}"#, 422),
            (#"{"listing": "\#(listingID)", "name": "Not A Name"}"#, 422),
        ] as [(String, Int)] {
            let refused = try await client.send(.post, "/v1/catalog/installs", json: body, headers: b)
            #expect(refused.status.code == status, "\(body): \(refused.json)")
        }
        #expect(try await client.send(.get, "/v1/catalog/installs", headers: b).json["items"] == [])
        let own = try await client.send(.post, "/v1/catalog/installs", json: #"{"listing": "\#(listingID)"}"#)
        #expect(own.status == .conflict, "\(own.json)")
        let installed = try await client.send(
            .post,
            "/v1/catalog/installs",
            json: #"{"listing": "\#(listingID)", "secrets": {"echo_key": "installer-value"}}"#,
            headers: b
        )
        expectStatus(.created, installed)
        let installID = try #require(installed.json["id"]?.stringValue)
        let twice = try await client.send(
            .post,
            "/v1/catalog/installs",
            json: #"{"listing": "\#(listingID)"}"#,
            headers: b
        )
        #expect(twice.status == .conflict, "\(twice.json)")

        // In B the agent calls its own copy of the module, and B cannot edit what the install keeps.
        let agent = try await client.send(.get, "/v1/agents/helper", headers: b)
        #expect(
            agent.json["definition"]?["tools"]?.arrayValue?.first?["wasm"]?["module"] == "agent:helper.echo",
            "\(agent.json)"
        )
        // The copy answers only the install's own runs: not B's calls through the API, nor B's own workflows.
        let direct = try await client.send(
            .post,
            "/v1/modules/agent:helper.echo/call",
            json: #"{"input": {"word": "free"}}"#,
            headers: b
        )
        #expect(direct.status.code == 422 && direct.json["code"] == "module_not_callable", "\(direct.json)")
        let borrowing = "name: borrow\nsteps:\n  - id: e\n    wasm: {module: \"agent:helper.echo\", input: {word: x}}\n"
        expectStatus(
            .created,
            try await client.send(
                .put,
                "/v1/workflows/borrow",
                json: borrowing,
                contentType: "application/yaml",
                headers: b
            )
        )
        let borrowed = try await client.send(
            .post,
            "/v1/workflows/borrow/runs?wait=20s",
            json: #"{"input": {}}"#,
            headers: b
        )
        #expect(
            borrowed.json["status"] == "failed" && "\(borrowed.json)".contains("module_not_callable"),
            "\(borrowed.json)"
        )
        // What B installed is A's: B cannot publish it as its own.
        let republished = try await client.send(
            .post,
            "/v1/catalog/listings",
            json: #"{"kind": "agent", "source": "helper", "price_micros": 1}"#,
            headers: b
        )
        #expect(republished.status.code == 422 && "\(republished.json)".contains("installed"), "\(republished.json)")
        let missingRating = try await client.send(
            .put,
            "/v1/catalog/listings/lst_missing/rating",
            json: #"{"stars": 5}"#,
            headers: b
        )
        #expect(missingRating.status == .notFound, "\(missingRating.json)")
        let edit = try await client.send(
            .put,
            "/v1/agents/helper",
            json: #"{"model": "local/m1", "instructions": "mine now"}"#,
            headers: b
        )
        #expect(edit.status == .conflict, "\(edit.json)")

        // B runs it twice; each run is charged once, however many passes the meter makes.
        world.openAI.respond { request in
            request.lastToolResult == nil
                ? .toolCall("echo_tool", arguments: #"{"word": "ping"}"#, id: "call_1")
                : .text("the tool said \(request.lastToolResult ?? "")")
        }
        var runIDs: [String] = []
        for _ in 0..<2 {
            let run = try await client.send(
                .post,
                "/v1/agents/helper/runs?wait=20s",
                json: #"{"input": "go"}"#,
                headers: b
            )
            #expect(run.json["status"] == "succeeded", "\(run.json)")
            runIDs.append(try #require(run.json["id"]?.stringValue))
        }
        let bLedger = try await eventually({ try await client.send(.get, "/v1/ledger", headers: b).json }) {
            entries($0, account: "purchases").count == 2
        }
        let purchases = entries(bLedger, account: "purchases")
        #expect(purchases.map(\.["amount_micros"]) == [.int(-2_500), .int(-2_500)], "\(bLedger)")
        #expect(Set(purchases.compactMap { $0["run_id"]?.stringValue }) == Set(runIDs))
        #expect(entries(bLedger, account: "model_costs").count == 2, "\(bLedger)")
        #expect(entries(bLedger, account: "model_costs").allSatisfy { ($0["amount_micros"]?.numberValue ?? 0) < 0 })
        let aLedger = try await client.send(.get, "/v1/ledger").json
        let sales = entries(aLedger, account: "sales")
        #expect(sales.map(\.["amount_micros"]) == [.int(2_250), .int(2_250)], "\(aLedger)")
        #expect(sales.allSatisfy { $0["run_id"] == .null && $0["install_id"] == .null }, "the publisher sees no run")
        #expect(entries(aLedger, account: "model_costs").isEmpty)
        try await Task.sleep(for: .milliseconds(2_500))
        let later = try await client.send(.get, "/v1/ledger", headers: b).json
        #expect(entries(later, account: "purchases").count == 2, "a run charged again: \(later)")

        // B's own agent calls the installed one as a tool: that call is a run of it, charged on its own.
        let boss = "name: boss\nmodel: local/m1\ninstructions: Delegate.\ntools:\n  - agent: {name: helper}\n"
        expectStatus(
            .created,
            try await client.send(.put, "/v1/agents/boss", json: boss, contentType: "application/yaml", headers: b)
        )
        world.openAI.respond { request in
            if request.systemPrompt?.contains("Delegate") == true {
                return request.lastToolResult == nil
                    ? .toolCall("helper", arguments: #"{"input": "ping"}"#, id: "call_boss") : .text("delegated")
            }
            return request.lastToolResult == nil
                ? .toolCall("echo_tool", arguments: #"{"word": "ping"}"#, id: "call_1") : .text("echoed")
        }
        let delegated = try await client.send(
            .post,
            "/v1/agents/boss/runs?wait=20s",
            json: #"{"input": "go"}"#,
            headers: b
        )
        #expect(delegated.json["status"] == "succeeded", "\(delegated.json)")
        let composed = try await eventually({ try await client.send(.get, "/v1/ledger", headers: b).json }) {
            entries($0, account: "purchases").count == 3
        }
        let bossRunID = delegated.json["id"]?.stringValue
        #expect(entries(composed, account: "purchases").count == 3, "\(composed)")
        #expect(!entries(composed, account: "purchases").contains { $0["run_id"]?.stringValue == bossRunID })
        let statement = try await client.send(.get, "/v1/ledger/statement", headers: b).json
        #expect(statement["accounts"]?["purchases"] == -7_500, "\(statement)")
        let aStatement = try await client.send(.get, "/v1/ledger/statement").json
        #expect(aStatement["accounts"]?["sales"] == 6_750 && aStatement["balance_micros"] == 6_750, "\(aStatement)")
        let otherMonth = try await client.send(.get, "/v1/ledger/statement?month=2020-01", headers: b).json
        #expect(otherMonth["balance_micros"] == 0)
        let badMonth = try await client.send(.get, "/v1/ledger?month=2026-13", headers: b)
        #expect(badMonth.status.code == 422)

        // Isolation: A cannot read B's runs; B's copy of the module got B's secret, never A's.
        for runID in runIDs {
            #expect(try await client.send(.get, "/v1/runs/\(runID)").status == .notFound)
        }
        let bSecrets = try await client.send(.get, "/v1/secrets", headers: b).json
        #expect(bSecrets["items"]?.arrayValue?.contains { $0["name"] == "echo_key" } == true)
        // A's next version of the agent is not published: the listing still offers version 1.
        try await world.putAgent("helper", "name: helper\nmodel: local/m1\ninstructions: Unpublished.\n")
        let listing = try await client.send(.get, "/v1/catalog/listings/\(listingID)", headers: b).json
        #expect(listing["latest_version"] == 1 && listing["versions"]?.arrayValue?.count == 1, "\(listing)")
        #expect(
            listing["reputation"]?["uses"] == 3 && listing["reputation"]?["success_rate"]?.numberValue == 1,
            "\(listing)"
        )

        // Ratings: only an installer rates.
        let selfRating = try await client.send(
            .put,
            "/v1/catalog/listings/\(listingID)/rating",
            json: #"{"stars": 5}"#
        )
        #expect(selfRating.status == .forbidden, "\(selfRating.json)")
        let badRating = try await client.send(
            .put,
            "/v1/catalog/listings/\(listingID)/rating",
            json: #"{"stars": 9}"#,
            headers: b
        )
        #expect(badRating.status.code == 422)
        let rated = try await client.send(
            .put,
            "/v1/catalog/listings/\(listingID)/rating",
            json: #"{"stars": 4, "review": "Does what it says."}"#,
            headers: b
        )
        #expect(
            rated.json["reputation"]?["average_stars"]?.numberValue == 4 && rated.json["reputation"]?["ratings"] == 1
        )

        // A publishes version 2 and deprecates version 1; B upgrades, explicitly.
        try await world.putAgent(
            "helper",
            "name: helper\nmodel: local/m1\ninstructions: Use the tool, twice.\ntools:\n  - wasm: {name: echo_tool, module: echo}\n"
        )
        let second = try await client.send(
            .post,
            "/v1/catalog/listings",
            json: #"{"kind": "agent", "source": "helper", "price_micros": 3000}"#
        )
        #expect(second.status == .created && second.json["latest_version"] == 2, "\(second.json)")
        let notYours = try await client.send(
            .post,
            "/v1/catalog/listings/\(listingID)/versions/1/deprecate",
            headers: b
        )
        #expect(notYours.status == .notFound)
        expectStatus(.ok, try await client.send(.post, "/v1/catalog/listings/\(listingID)/versions/1/deprecate"))
        let backwards = try await client.send(
            .post,
            "/v1/catalog/installs/\(installID)/upgrade",
            json: #"{"version": 1}"#,
            headers: b
        )
        #expect(backwards.status == .conflict, "\(backwards.json)")
        let upgraded = try await client.send(.post, "/v1/catalog/installs/\(installID)/upgrade", json: "{}", headers: b)
        #expect(upgraded.json["version"] == 2, "\(upgraded.json)")
        let newAgent = try await client.send(.get, "/v1/agents/helper", headers: b).json
        #expect(newAgent["definition"]?["instructions"] == "Use the tool, twice.", "\(newAgent)")

        // Removing the install archives the agent and keeps the ledger.
        expectStatus(.noContent, try await client.send(.delete, "/v1/catalog/installs/\(installID)", headers: b))
        let gone = try await client.send(.post, "/v1/agents/helper/runs", json: #"{"input": "go"}"#, headers: b)
        #expect(gone.status == .notFound, "\(gone.json)")
        let kept = try await client.send(.get, "/v1/ledger", headers: b).json
        #expect(entries(kept, account: "purchases").count == 3)
    }

    /// A module listing is charged per call, through the API or a workflow step; a failed call is counted for the
    /// listing's reputation, not charged.
    static func moduleListing(_ world: AgentWorld) async throws {
        let client = world.client
        let trap = ModuleChecks.module("(unreachable)")
        expectStatus(.created, try await ModuleChecks.put(world, "echo", ["wat": .string(ModuleChecks.echo)]))
        let published = try await client.send(
            .post,
            "/v1/catalog/listings",
            json: #"{"kind": "module", "source": "echo", "name": "echoer", "price_micros": 7}"#
        )
        expectStatus(.created, published)
        expectStatus(.created, try await ModuleChecks.put(world, "trap", ["wat": .string(trap)]))
        let trapListing = try await client.send(
            .post,
            "/v1/catalog/listings",
            json: #"{"kind": "module", "source": "trap", "price_micros": 1000}"#
        )
        let b = try await world.otherOrganization()
        for (listing, name) in [(published.json, "words"), (trapListing.json, "trap")] {
            let id = try #require(listing["id"]?.stringValue)
            expectStatus(
                .created,
                try await client.send(
                    .post,
                    "/v1/catalog/installs",
                    json: #"{"listing": "\#(id)", "name": "\#(name)"}"#,
                    headers: b
                )
            )
        }
        for word in ["a", "b", "c"] {
            let called = try await client.send(
                .post,
                "/v1/modules/words/call",
                json: #"{"input": {"w": "\#(word)"}}"#,
                headers: b
            )
            #expect(called.json["output"]?["echo"]?["w"] == .string(word), "\(called.json)")
        }
        let failed = try await client.send(.post, "/v1/modules/trap/call", json: #"{"input": {}}"#, headers: b)
        #expect(failed.status.code == 422, "\(failed.json)")
        // A workflow step of B's that calls the installed module is charged like any call.
        let workflow = """
            name: twice
            steps:
              - id: words
                wasm: {module: words, input: {from: step}}
              - id: each
                needs: [words]
                for_each: input.items
                wasm: {module: words, input: {item: "{{ item }}"}}
            """
        expectStatus(
            .created,
            try await client.send(
                .put,
                "/v1/workflows/twice",
                json: workflow,
                contentType: "application/yaml",
                headers: b
            )
        )
        let run = try await client.send(
            .post,
            "/v1/workflows/twice/runs?wait=20s",
            json: #"{"input": {"items": ["x", "y", "z"]}}"#,
            headers: b
        )
        #expect(run.json["status"] == "succeeded", "\(run.json)")
        // The step's call and each of the for_each step's three: seven calls in all, each charged.
        let ledger = try await client.send(.get, "/v1/ledger", headers: b).json
        let purchases = entries(ledger, account: "purchases")
        #expect(purchases.count == 7 && purchases.allSatisfy { $0["amount_micros"] == -7 }, "\(ledger)")
        let trapID = try #require(trapListing.json["id"]?.stringValue)
        let trapStats = try await client.send(.get, "/v1/catalog/listings/\(trapID)", headers: b).json
        #expect(trapStats["reputation"]?["uses"] == 1 && trapStats["reputation"]?["succeeded"] == 0, "\(trapStats)")
        let aStatement = try await client.send(.get, "/v1/ledger/statement").json
        // 7 micro-dollars less a 10 % fee rounded down: 7 each.
        #expect(aStatement["accounts"]?["sales"] == 49, "\(aStatement)")
        let bEdit = try await client.send(
            .put,
            "/v1/modules/words",
            json: JSONValue.object(["wat": .string(ModuleChecks.echo)]).canonicalText,
            headers: b
        )
        #expect(bEdit.status == .conflict, "\(bEdit.json)")
    }

    /// What a run is charged: by the version installed when it started, even once the install is upgraded or removed
    /// before it ends; a failed run retried is charged its price once it succeeds.
    static func terms(_ world: AgentWorld) async throws {
        let client = world.client
        // Fails the first time it is called in a run, and answers {"ok": true} from then on (its kv store is the
        // run's, kept across a retry).
        let secondTime = """
            (module
              (import "caravan" "kv_get" (func $kv_get (param i32 i32) (result i64)))
              (import "caravan" "kv_put" (func $kv_put (param i32 i32 i32 i32)))
              (memory (export "memory") 2)
            \(ModuleChecks.allocator)
              (data (i32.const 0) "n")
              (data (i32.const 16) "{\\"ok\\":true}")
              (func (export "caravan_run") (param $ptr i32) (param $len i32) (result i64)
                (if (i64.eq (call $kv_get (i32.const 0) (i32.const 1)) (i64.const -1))
                  (then (call $kv_put (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)) (unreachable)))
                (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 11))))
            """
        expectStatus(
            .created,
            try await ModuleChecks.put(world, "second-time", ["wat": .string(secondTime), "permissions": ["kv": true]])
        )
        let flaky = """
            name: flaky
            steps:
              - id: once
                retry: {max_attempts: 1}
                wasm: {module: second-time, input: {}}
            """
        let napper = "name: napper\nsteps:\n  - {id: nap, sleep: 3s}\n"
        for (name, definition) in [("flaky", flaky), ("napper", napper)] {
            expectStatus(
                .created,
                try await client.send(.put, "/v1/workflows/\(name)", json: definition, contentType: "application/yaml")
            )
        }
        func publish(_ source: String, price: Int) async throws -> String {
            let published = try await client.send(
                .post,
                "/v1/catalog/listings",
                json: #"{"kind": "workflow", "source": "\#(source)", "price_micros": \#(price)}"#
            )
            #expect(published.status == .created, "\(published.json)")
            return try #require(published.json["id"]?.stringValue)
        }
        let flakyID = try await publish("flaky", price: 500)
        let napperID = try await publish("napper", price: 100)
        let b = try await world.otherOrganization()
        var installs: [String: String] = [:]
        for id in [flakyID, napperID] {
            let installed = try await client.send(
                .post,
                "/v1/catalog/installs",
                json: #"{"listing": "\#(id)"}"#,
                headers: b
            )
            #expect(installed.status == .created, "\(installed.json)")
            installs[id] = installed.json["id"]?.stringValue
        }

        // A failed run, retried: charged its price once, when it succeeds.
        let failed = try await client.send(.post, "/v1/workflows/flaky/runs?wait=20s", json: "{}", headers: b)
        #expect(failed.json["status"] == "failed", "\(failed.json)")
        let runID = try #require(failed.json["id"]?.stringValue)
        // Its failure is settled first (no price, no model cost: a use that did not succeed).
        let settled = try await eventually({
            try await client.send(.get, "/v1/catalog/listings/\(flakyID)", headers: b).json
        }) { $0["reputation"]?["uses"] == 1 }
        #expect(settled["reputation"]?["succeeded"] == 0, "\(settled)")
        expectStatus(.accepted, try await client.send(.post, "/v1/runs/\(runID)/retry", headers: b))
        let retried = try await eventually({ try await client.send(.get, "/v1/runs/\(runID)", headers: b).json }) {
            $0["status"] == "succeeded"
        }
        #expect(retried["status"] == "succeeded", "\(retried)")
        let charged = try await eventually({ try await client.send(.get, "/v1/ledger", headers: b).json }) {
            !entries($0, account: "purchases").isEmpty
        }
        #expect(entries(charged, account: "purchases").map(\.["amount_micros"]) == [-500], "\(charged)")
        let flakyListing = try await client.send(.get, "/v1/catalog/listings/\(flakyID)", headers: b).json
        #expect(
            flakyListing["reputation"]?["uses"] == 2 && flakyListing["reputation"]?["succeeded"] == 1,
            "\(flakyListing)"
        )

        // A run started under version 1 (100) is charged 100, one started under version 2 (300) 300, though the
        // install moved to version 2 and was then removed before either ended.
        let first = try await client.send(.post, "/v1/workflows/napper/runs", json: "{}", headers: b)
        #expect(first.status.code == 201 || first.status.code == 202, "\(first.json)")
        expectStatus(
            .created,
            try await client.send(
                .put,
                "/v1/workflows/napper",
                json: "name: napper\nsteps:\n  - {id: nap, sleep: 2s}\n",
                contentType: "application/yaml"
            )
        )
        _ = try await publish("napper", price: 300)
        let napperInstall = try #require(installs[napperID])
        let upgraded = try await client.send(
            .post,
            "/v1/catalog/installs/\(napperInstall)/upgrade",
            json: "{}",
            headers: b
        )
        #expect(upgraded.json["version"] == 2, "\(upgraded.json)")
        let second = try await client.send(.post, "/v1/workflows/napper/runs", json: "{}", headers: b)
        #expect(second.status.code == 201 || second.status.code == 202, "\(second.json)")
        expectStatus(.noContent, try await client.send(.delete, "/v1/catalog/installs/\(napperInstall)", headers: b))
        let both = try await eventually({ try await client.send(.get, "/v1/ledger", headers: b).json }) {
            entries($0, account: "purchases").count == 3
        }
        let byRun = Dictionary(
            entries(both, account: "purchases").compactMap { entry in
                entry["run_id"]?.stringValue.map { ($0, entry["amount_micros"]) }
            },
            uniquingKeysWith: { first, _ in first }
        )
        #expect(byRun[try #require(first.json["id"]?.stringValue)] == -100, "\(both)")
        #expect(byRun[try #require(second.json["id"]?.stringValue)] == -300, "\(both)")
    }

    /// The console's catalog: a listing of another organization found, installed, rated and charged, all from the
    /// pages; what a publisher wrote is shown as text.
    static func consolePages(_ world: AgentWorld) async throws {
        let client = world.client
        let b = try await world.otherOrganization()
        let module = JSONValue.object(["wat": .string(ModuleChecks.echo)]).canonicalText
        expectStatus(.created, try await client.send(.put, "/v1/modules/echo", json: module, headers: b))
        let listing: JSONValue = [
            "kind": "module", "source": "echo", "name": "echoer", "price_micros": 1_000,
            "description": "<script>alert(1)</script> echoes",
        ]
        let published = try await client.send(.post, "/v1/catalog/listings", json: listing.canonicalText, headers: b)
        expectStatus(.created, published)
        let id = try #require(published.json["id"]?.stringValue)

        let owner = try #require(client as? AuthenticatedClient)
        let browser = ConsoleTestBrowser(owner.anonymous)
        _ = try await browser.signIn(email: "owner@example.com", password: AuthenticatedClient.ownerPassword)
        // The owner belongs to both organizations; the console acts in A's, the installer.
        _ = try await browser.post("/organization", [("org", owner.orgID)])
        let catalog = try await browser.get("/catalog")
        #expect(catalog.html.contains("href=\"/catalog/\(id)\""), "\(catalog.html)")
        #expect(catalog.html.contains("$0.001000 a call"))
        #expect(catalog.html.contains("&lt;script&gt;") && !catalog.html.contains("<script>alert"))
        #expect(try await browser.get("/catalog?q=nothing-like-it").html.contains("No listings found"))
        let page = try await browser.get("/catalog/\(id)")
        #expect(page.html.contains("action=\"/catalog/\(id)/install\""), "\(page.html)")
        let installed = try await browser.post("/catalog/\(id)/install", [("name", "words"), ("secret_names", "")])
        #expect(
            installed.html.contains("Installed") && installed.html.contains("<strong>words</strong>"),
            "\(installed.html)"
        )
        #expect(!installed.html.contains("action=\"/catalog/\(id)/install\""))
        let taken = try await browser.post("/catalog/\(id)/install", [("name", "words")])
        #expect(taken.status == .conflict, "\(taken.status)")

        let called = try await client.send(.post, "/v1/modules/words/call", json: #"{"input": {"w": 1}}"#)
        #expect(called.json["output"]?["echo"]?["w"] == 1, "\(called.json)")
        let ledger = try await browser.get("/ledger")
        #expect(ledger.html.contains("−$0.001000"), "\(ledger.html)")
        #expect(ledger.html.contains("href=\"/catalog/\(id)\""))
        let rated = try await browser.post("/catalog/\(id)/rate", [("stars", "5"), ("review", "<b>great</b>")])
        #expect(rated.html.contains("★★★★★") && rated.html.contains("&lt;b&gt;great&lt;/b&gt;"), "\(rated.html)")
        let badStars = try await browser.post("/catalog/\(id)/rate", [("stars", "0")])
        #expect(badStars.status.code == 422)
        #expect(try await browser.get("/catalog/lst_nothing").status == .notFound)
        let installID = try #require(
            try await client.send(.get, "/v1/catalog/installs").json["items"]?.arrayValue?.first?["id"]?.stringValue
        )
        let removed = try await browser.post("/catalog/\(id)/remove", [("install", installID)])
        #expect(removed.html.contains("action=\"/catalog/\(id)/install\""), "\(removed.html)")
        #expect(try await client.send(.post, "/v1/modules/words/call", json: #"{"input": {}}"#).status == .notFound)
    }
}
