import ArgumentParser
import CaravanCore
import CaravanHarness
import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1
import Synchronization

extension Bench {
    /// Outbound webhooks: W1's runs with a webhook subscribed to every event, posting to a receiver in this
    /// process. Deliveries per second (first to last arrival), and the time from each event to its arrival
    /// (the event's own time is taken when its pass was planned, a little before its commit, so this slightly
    /// overstates the time from commit to delivery). Only the paced runs' own deliveries are timed, once every one
    /// of them has arrived (each run's `run.succeeded` and nothing more for half a second).
    func webhooks() async throws -> [String: Double] {
        let arrivals = Mutex<[Arrival]>([])
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            let arrived = WallClock.system.nowMilliseconds()
            let json = try JSONValue(parsing: body.readableBytesView)
            let at = json["data"]?["event"]?["at"]?.stringValue.flatMap(Clock.parseRFC3339) ?? arrived
            let arrival = Arrival(
                arrived: arrived,
                at: at,
                runID: json["data"]?["run_id"]?.stringValue ?? "",
                finished: json["type"] == "run.succeeded"
            )
            arrivals.withLock { $0.append(arrival) }
            return Response(status: .noContent)
        }
        return try await withLoopbackServer(router) { receiverPort in
            try await withServer(extraArguments: ["--egress-allow", "127.0.0.1"]) { server in
                let base = "http://127.0.0.1:\(server.port)"
                let hook = try await Self.call(
                    .PUT,
                    base + "/v1/webhooks/bench",
                    body: #"{"url": "http://127.0.0.1:\#(receiverPort)/hook", "events": ["*"]}"#
                )
                guard hook.status == 201 else { throw ValidationError("PUT webhook failed: \(hook)") }
                // Throughput: W1 as fast as it goes, every event delivered.
                let total = runs ?? 2_000
                let w1 = try await w1([server], runs: total)
                let burst = try await Self.arrivals(arrivals, finishedRuns: total)
                let first = burst.map(\.arrived).min() ?? 0
                let last = burst.map(\.arrived).max() ?? 0
                // Latency: runs started at a steady 100 a second (600 deliveries a second), for 5 s.
                arrivals.withLock { $0 = [] }
                let paced = 500
                let start = ContinuousClock.now
                let pacedRuns = try await withThrowingTaskGroup(of: String.self) { group in
                    for index in 0..<paced {
                        try await Task.sleep(until: start + .milliseconds(10 * index))
                        group.addTask {
                            let response = try await Self.call(.POST, base + "/v1/workflows/bench-w1/runs", body: "{}")
                            guard response.status == 201, let id = response.json["id"]?.stringValue else {
                                throw ValidationError("start failed: \(response)")
                            }
                            return id
                        }
                    }
                    var ids = Set<String>()
                    for try await id in group { ids.insert(id) }
                    return ids
                }
                let steady = try await Self.arrivals(arrivals, finishedRuns: paced).filter {
                    pacedRuns.contains($0.runID)
                }
                let latencies = steady.map { Double($0.arrived - $0.at) }.sorted()
                return [
                    "deliveries_per_s": Double(burst.count) / max(0.001, Double(last - first) / 1000),
                    "w1_workflows_per_s": w1["workflows_per_s"] ?? 0,
                    "event_to_delivery_p50_ms": Self.percentile(latencies, 0.5),
                    "event_to_delivery_p99_ms": Self.percentile(latencies, 0.99),
                ]
            }
        }
    }

    struct Arrival: Sendable {
        var arrived: Int64
        var at: Int64
        var runID: String
        /// Whether it is a `run.succeeded`.
        var finished: Bool
    }

    /// Waits (at most two minutes) until `finishedRuns` runs' `run.succeeded` have arrived and nothing more has for
    /// half a second; returns what arrived.
    private static func arrivals(_ arrivals: borrowing Mutex<[Arrival]>, finishedRuns: Int) async throws -> [Arrival] {
        let deadline = ContinuousClock.now + .seconds(120)
        var last = -1
        while true {
            let (count, finished) = arrivals.withLock { ($0.count, $0.count { $0.finished }) }
            if finished >= finishedRuns && count == last { return arrivals.withLock { $0 } }
            guard ContinuousClock.now < deadline else {
                throw ValidationError("\(finished) of \(finishedRuns) runs' deliveries arrived")
            }
            last = finished >= finishedRuns ? count : -1
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}
