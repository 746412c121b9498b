import ArgumentParser
import CaravanCore
import CaravanHarness
import Crypto
import Foundation
import NIOHTTP1

extension Bench {
    /// Inbound triggers: Standard Webhooks deliveries, each signed with its own id, sent by `wrk` (cheaper than
    /// any Swift client, so the server keeps most of the machine) over 32 connections until each is sent once.
    /// - direct: each delivery starts a run of a one-step workflow; deliveries/s over wrk's run, then every run
    ///   is checked to have succeeded (one per delivery).
    /// - split: the same with 100 events a delivery (`split: body.readings`), as devices send their readings.
    /// - batch: `max_events: 1000, window: 1s`; events/s over wrk's run, then the batches' runs are checked to
    ///   hold every event exactly once.
    func triggers() async throws -> [String: Double] {
        let direct = runs ?? 20_000
        let batched = 5 * direct
        return try await withServer { server in
            let base = "http://127.0.0.1:\(server.port)"
            let secret = "whsec_" + Data((0..<24).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            try await Self.expect(.PUT, base + "/v1/secrets/bench_hook", body: #"{"value": "\#(secret)"}"#)
            for name in ["bench-direct", "bench-batch", "bench-split"] {
                try await Self.expect(
                    .PUT,
                    base + "/v1/workflows/\(name)",
                    body: "name: \(name)\nsteps:\n  - {id: a, template: \"ok\"}\n",
                    contentType: "application/yaml"
                )
            }
            let verify = #""verify": {"scheme": "standard_webhooks", "secret": "bench_hook"}"#
            let directHook = try await Self.expect(
                .PUT,
                base + "/v1/triggers/bench-direct",
                body: #"{"workflow": "bench-direct", "input": "{{ body }}", \#(verify)}"#
            )
            let batchHook = try await Self.expect(
                .PUT,
                base + "/v1/triggers/bench-batch",
                body: #"""
                    {"workflow": "bench-batch", "input": "{{ body }}", \#(verify),
                     "mode": {"batch": {"max_events": 1000, "window": "1s"}}}
                    """#
            )
            let splitHook = try await Self.expect(
                .PUT,
                base + "/v1/triggers/bench-split",
                body: #"""
                    {"workflow": "bench-split", \#(verify),
                     "mode": {"batch": {"max_events": 1000, "window": "1s", "split": "body.readings"}}}
                    """#
            )
            guard let directPath = directHook["url"]?.stringValue, let batchPath = batchHook["url"]?.stringValue,
                let splitPath = splitHook["url"]?.stringValue
            else {
                throw ValidationError("a trigger has no url: \(directHook)")
            }
            let key = SymmetricKey(data: Data(base64Encoded: String(secret.dropFirst(6)))!)

            let directRate = try await Self.sendSigned(
                count: direct,
                port: server.port,
                path: directPath,
                key: key,
                tag: "d"
            )
            try await Self.waitUntilIdle(base: base)
            var runIDs = Set<String>()
            var cursor: String?
            repeat {
                let page = try await Self.call(
                    .GET,
                    base + "/v1/runs?workflow=bench-direct&limit=500" + (cursor.map { "&cursor=\($0)" } ?? "")
                )
                for run in page.json["items"]?.arrayValue ?? [] {
                    guard run["status"] == "succeeded" else { throw ValidationError("a run did not succeed: \(run)") }
                    runIDs.insert(run["id"]?.stringValue ?? "")
                }
                cursor = page.json["next_cursor"]?.stringValue
            } while cursor != nil
            if runIDs.count != direct {
                var outcomes: [String: Int] = [:]
                var unlisted: [JSONValue] = []
                repeat {
                    let page = try await Self.call(
                        .GET,
                        base + "/v1/triggers/bench-direct/deliveries?limit=500" + (cursor.map { "&cursor=\($0)" } ?? "")
                    )
                    for delivery in page.json["items"]?.arrayValue ?? [] {
                        outcomes[delivery["reason"]?.stringValue ?? "?", default: 0] += 1
                        if let run = delivery["run_id"]?.stringValue, !runIDs.contains(run) {
                            unlisted.append(delivery)
                        }
                    }
                    cursor = page.json["next_cursor"]?.stringValue
                } while cursor != nil
                for delivery in unlisted.prefix(3) {
                    let run = try await Self.call(.GET, base + "/v1/runs/\(delivery["run_id"]?.stringValue ?? "")")
                    print("unlisted: \(delivery) -> \(run)")
                }
                throw ValidationError("\(runIDs.count) runs for \(direct) deliveries; deliveries: \(outcomes)")
            }

            let batchRate = try await Self.sendSigned(
                count: batched,
                port: server.port,
                path: batchPath,
                key: key,
                tag: "b"
            ) { #"{"n":\#($0)}"# }
            let batches = try await Self.checkBatches(base: base, workflow: "bench-batch", events: batched)
            // Telemetry as devices send it: 100 readings a request, each an event of its own (`split`).
            let perDelivery = 100
            let splitRate = try await Self.sendSigned(
                count: batched / perDelivery,
                port: server.port,
                path: splitPath,
                key: key,
                tag: "s"
            ) { index in
                let readings = (index * perDelivery..<(index + 1) * perDelivery).map { #"{"n":\#($0),"t":21.5}"# }
                return #"{"device":"d\#(index % 50)","readings":[\#(readings.joined(separator: ","))]}"#
            }
            let splitBatches = try await Self.checkBatches(base: base, workflow: "bench-split", events: batched)
            return [
                "direct_deliveries_per_s": directRate, "batch_events_per_s": batchRate,
                "batch_runs": Double(batches), "split_events_per_s": splitRate * Double(perDelivery),
                "split_runs": Double(splitBatches),
            ]
        }
    }

    /// Waits until the runs of `workflow` hold events `{"n": 0}` to `{"n": events - 1}`, each in exactly one run
    /// (the windows close within a second, then the runs finish); returns how many runs.
    static func checkBatches(base: String, workflow: String, events: Int) async throws -> Int {
        var seen = Set<Int>()
        var batches = 0
        let deadline = ContinuousClock.now + .seconds(120)
        while seen.count < events {
            guard ContinuousClock.now < deadline else {
                throw ValidationError("\(seen.count) of \(events) batched events reached a run")
            }
            try await Task.sleep(for: .milliseconds(500))
            try await waitUntilIdle(base: base)
            seen = []
            batches = 0
            var cursor: String?
            repeat {
                let page = try await call(
                    .GET,
                    base + "/v1/runs?workflow=\(workflow)&limit=100" + (cursor.map { "&cursor=\($0)" } ?? "")
                )
                for run in page.json["items"]?.arrayValue ?? [] {
                    guard let id = run["id"]?.stringValue else { continue }
                    let full = try await call(.GET, base + "/v1/runs/\(id)")
                    batches += 1
                    for event in full.json["input"]?["events"]?.arrayValue ?? [] {
                        guard let n = event["n"]?.numberValue, seen.insert(Int(n)).inserted else {
                            throw ValidationError("an event reached two runs, or none: \(event)")
                        }
                    }
                }
                cursor = page.json["next_cursor"]?.stringValue
            } while cursor != nil
        }
        return batches
    }

    /// Calls and throws unless the answer is 200 or 201; returns its body.
    @discardableResult
    static func expect(
        _ method: HTTPMethod,
        _ url: String,
        body: String,
        contentType: String = "application/json"
    ) async throws -> JSONValue {
        let response = try await call(method, url, body: body, contentType: contentType)
        guard response.status == 200 || response.status == 201 else {
            throw ValidationError("\(method) \(url) answered \(response.status): \(response.json)")
        }
        return response.json
    }

    /// Waits (at most two minutes) until no run is queued or running.
    static func waitUntilIdle(base: String) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while true {
            let running = try await call(.GET, base + "/v1/runs?status=running&limit=1")
            let queued = try await call(.GET, base + "/v1/runs?status=queued&limit=1")
            if running.json["items"]?.arrayValue?.isEmpty == true && queued.json["items"]?.arrayValue?.isEmpty == true {
                return
            }
            guard ContinuousClock.now < deadline else { throw ValidationError("runs still going after 2 minutes") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Sends `count` deliveries, `body(i)` each (`{"n": i}` by default), to the hook at `path`, each signed the Standard Webhooks way with the id
    /// `<tag>-<i>`, through wrk; every answer must be 2xx.
    /// - Returns: deliveries per second, from both wrk threads having read their requests to both having every
    ///   answer (wrk's own summary is not used: it runs for its whole `-d`, and is then killed).
    static func sendSigned(
        count: Int,
        port: Int,
        path: String,
        key: SymmetricKey,
        tag: String,
        body: (Int) -> String = { #"{"n":\#($0)}"# }
    ) async throws -> Double {
        try await withTemporaryDirectory { directory in
            let threads = 2
            // One file per wrk thread: a line per request, "id timestamp signature body".
            let timestamp = String(Int(Date().timeIntervalSince1970))
            for thread in 0..<threads {
                var lines = ""
                lines.reserveCapacity(count / threads * 120)
                for index in stride(from: thread, to: count, by: threads) {
                    let id = "\(tag)-\(index)"
                    let body = body(index)
                    let mac = HMAC<SHA256>.authenticationCode(for: Data("\(id).\(timestamp).\(body)".utf8), using: key)
                    lines += "\(id) \(timestamp) v1,\(Data(mac).base64EncodedString()) \(body)\n"
                }
                try lines.write(toFile: "\(directory)/requests-\(thread)", atomically: false, encoding: .utf8)
            }
            // Each thread parses its file in init() and says so, then sends its requests in turn as fast as its
            // connections take them, from the first again when it reaches the end (wrk may drop a request now and
            // then, and a delivery sent twice is answered 200 as a replay) until every one was answered 202 (or
            // one was refused); then holds its connections idle (`delay`) and says so.
            let script = """
                local counter = 0
                function setup(thread)
                  thread:set("slice", counter)
                  counter = counter + 1
                end
                local requests = {}
                local next_index = 1
                local accepted = 0
                local refused = 0
                function init(args)
                  directory = args[1]
                  for line in io.lines(directory .. "/requests-" .. slice) do
                    local id, ts, sig, body = line:match("^(%S+) (%S+) (%S+) (.*)$")
                    requests[#requests + 1] = wrk.format("POST", "\(path)", {
                      ["Content-Type"] = "application/json", ["webhook-id"] = id,
                      ["webhook-timestamp"] = ts, ["webhook-signature"] = sig }, body)
                  end
                  io.open(directory .. "/ready-" .. slice, "w"):close()
                end
                function delay()
                  if accepted >= #requests or refused > 0 then return 3600000 end
                  return 0
                end
                function request()
                  local r = requests[next_index]
                  next_index = next_index % #requests + 1
                  return r
                end
                function response(status, headers, body)
                  if status == 202 then
                    accepted = accepted + 1
                  elseif status ~= 200 then
                    refused = refused + 1
                  end
                  if accepted == #requests or refused == 1 then
                    local file = io.open(directory .. "/partial-" .. slice, "w")
                    file:write(refused)
                    file:close()
                    os.rename(directory .. "/partial-" .. slice, directory .. "/done-" .. slice)
                  end
                end
                """
            try script.write(toFile: "\(directory)/send.lua", atomically: false, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
            process.arguments = [
                "-t\(threads)", "-c32", "-d3600s", "--timeout", "30s", "-s", "\(directory)/send.lua",
                "http://127.0.0.1:\(port)", "--", directory,
            ]
            let output = "\(directory)/wrk.out"
            FileManager.default.createFile(atPath: output, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            process.standardError = process.standardOutput
            try process.run()
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            func all(_ name: String) -> Bool {
                (0..<threads).allSatisfy { FileManager.default.fileExists(atPath: "\(directory)/\(name)-\($0)") }
            }
            let deadline = ContinuousClock.now + .seconds(600)
            let readyBy = ContinuousClock.now + .seconds(60)
            while !all("ready") {
                guard process.isRunning, ContinuousClock.now < readyBy else {
                    throw ValidationError(
                        "wrk did not start: \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")"
                    )
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            let started = ContinuousClock.now
            print("    wrk sending \(count) deliveries")
            while !all("done") {
                guard process.isRunning, ContinuousClock.now < deadline else {
                    throw ValidationError(
                        "wrk did not finish: \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")"
                    )
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            let elapsed = Self.milliseconds(ContinuousClock.now - started) / 1000
            let refused = (0..<threads).map {
                Int((try? String(contentsOfFile: "\(directory)/done-\($0)", encoding: .utf8)) ?? "") ?? -1
            }
            guard refused.allSatisfy({ $0 == 0 }) else {
                throw ValidationError("deliveries were refused (or unread), per wrk thread: \(refused)")
            }
            return Double(count) / elapsed
        }
    }
}
