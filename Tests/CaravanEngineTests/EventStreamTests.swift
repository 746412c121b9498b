import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

@Suite("Event streams")
struct EventStreamTests {
    @Test("A run's SSE stream follows it live, resumes after Last-Event-ID, and ends after the last event")
    func runStream() async throws {
        try await withTestApplication(.sqlite, mode: .live) { client, _ in
            _ = try await client.putYAML(
                "gate",
                """
                name: gate
                steps:
                  - {id: wait, approval: {}}
                  - {id: done, needs: [wait], template: ok}
                """
            )
            let run = try await client.start("gate", wait: nil).json
            let id = try #require(run["id"]?.stringValue)
            let port = try #require(client.port)
            // Approve shortly after the stream has begun: the stream must deliver what follows, then end.
            async let approve: Void = {
                try await Task.sleep(for: .milliseconds(300))
                _ = try await fetch(
                    "http://127.0.0.1:\(port)/v1/runs/\(id)/signals/approve",
                    method: "POST",
                    headers: [("Content-Type", "application/json")] + client.authorization,
                    body: #"{"approved": true}"#
                )
            }()
            let stream = try await fetch(
                "http://127.0.0.1:\(port)/v1/runs/\(id)/events",
                headers: [("Accept", "text/event-stream")] + client.authorization,
                timeout: .seconds(20)
            )
            try await approve
            #expect(stream.status == 200)
            #expect(stream.header("Content-Type") == "text/event-stream")
            let frames = stream.body.components(separatedBy: "\n\n").filter { $0.contains("event: ") }
            let types = frames.compactMap { $0.split(separator: "\n").first { $0.hasPrefix("event: ") }?.dropFirst(7) }
                .map(String.init)
            #expect(types.first == "run.queued")
            #expect(types.contains("signal.received"))
            #expect(types.last == "run.succeeded")
            let ids = frames.compactMap {
                $0.split(separator: "\n").first { $0.hasPrefix("id: ") }.flatMap { Int($0.dropFirst(4)) }
            }
            #expect(ids == Array(1...ids.count))

            let resumed = try await fetch(
                "http://127.0.0.1:\(port)/v1/runs/\(id)/events",
                headers: [("Accept", "text/event-stream"), ("Last-Event-ID", "\(ids.count - 2)")] + client.authorization
            )
            let resumedIDs = resumed.body.components(separatedBy: "\n\n").compactMap {
                $0.split(separator: "\n").first { $0.hasPrefix("id: ") }.flatMap { Int($0.dropFirst(4)) }
            }
            #expect(resumedIDs == [ids.count - 1, ids.count])
        }
    }
}
