import CaravanCore
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import Testing

/// The organization's event stream with filters (JSON pages, SSE) and as a WebSocket, over real HTTP on loopback.
@Suite("Event filters and the event WebSocket", .serialized)
struct EventStreamTests {
    @Test(
        "Filters by type (with wildcards), workflow, agent and run give exactly the matching events, in JSON and SSE",
        arguments: TestBackend.available
    )
    func filtersOnListAndSSE(backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live) { raw, _ in
            let client = try #require(raw as? AuthenticatedClient)
            let world = try await EventWorld.make(client, alphaRuns: 3, betaRuns: 2)
            let cases: [(query: String, matches: @Sendable (StoredEvent) -> Bool)] = [
                ("types=run.*", { $0.type.hasPrefix("run.") }),
                (
                    "types=step.succeeded,run.succeeded&workflow=beta",
                    {
                        ["step.succeeded", "run.succeeded"].contains($0.type) && $0.workflow == "beta"
                    }
                ),
                ("types=*&workflow=alpha", { $0.workflow == "alpha" }),
                ("agent=helper", { $0.workflow == "agent:helper" }),
                (
                    "types=step.*&run=\(world.betaRunIDs[0])",
                    { $0.type.hasPrefix("step.") && $0.runID == world.betaRunIDs[0] }
                ),
            ]
            for (query, matches) in cases {
                let expected = world.all.filter(matches).map(\.id)
                #expect(!expected.isEmpty, "\(query) must match something to prove anything")
                #expect(expected.count < world.all.count, "\(query) must leave something out")
                let page = try await client.send(.get, "/v1/events?after=0&limit=500&\(query)")
                #expect(page.status == .ok, "\(page.json)")
                let ids = page.json["items"]?.arrayValue?.compactMap { $0["id"]?.integer } ?? []
                #expect(ids == expected, "\(query)")

                let port = try #require(client.port)
                let sse = try await readSSE(
                    port: port,
                    query: "after=0&\(query)",
                    key: client.apiKey,
                    until: expected.last!
                )
                #expect(sse == expected, "SSE \(query)")
            }
        }
    }

    @Test(
        "Paging with filters neither loses nor repeats events, and a page that matches nothing still advances",
        arguments: TestBackend.available
    )
    func pagingWithFilters(backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live) { raw, _ in
            let client = try #require(raw as? AuthenticatedClient)
            // Alpha's runs come first: with a small limit, the first pages look only at alpha's events.
            let world = try await EventWorld.make(client, alphaRuns: 6, betaRuns: 2)
            let filters: [(query: String, matches: @Sendable (StoredEvent) -> Bool)] = [
                ("workflow=beta", { $0.workflow == "beta" }),
                ("types=run.succeeded,step.*", { $0.type == "run.succeeded" || $0.type.hasPrefix("step.") }),
                ("types=run.failed", { $0.type == "run.failed" }),
                ("agent=helper&types=run.*", { $0.workflow == "agent:helper" && $0.type.hasPrefix("run.") }),
            ]
            var sawEmptyPageThatAdvanced = false
            for (query, matches) in filters {
                for limit in [1, 2, 3, 7, 500] {
                    var collected: [Int64] = []
                    var cursor: Int64 = 0
                    var pages = 0
                    while true {
                        pages += 1
                        try #require(pages < 500, "paging \(query) with limit \(limit) does not end")
                        let page = try await client.send(.get, "/v1/events?after=\(cursor)&limit=\(limit)&\(query)")
                        #expect(page.status == .ok, "\(page.json)")
                        let items = page.json["items"]?.arrayValue ?? []
                        #expect(items.count <= limit)
                        collected += items.compactMap { $0["id"]?.integer }
                        guard let next = page.json["next_cursor"]?.stringValue.flatMap({ Int64($0) }) else { break }
                        #expect(next > cursor, "the cursor must advance")
                        if items.isEmpty { sawEmptyPageThatAdvanced = true }
                        cursor = next
                    }
                    let expected = world.all.filter(matches).map(\.id)
                    #expect(collected == expected, "\(query) limit \(limit)")
                }
            }
            #expect(sawEmptyPageThatAdvanced)
        }
    }

    @Test("Invalid filters are problems that name their query parameter", arguments: TestBackend.available)
    func invalidFilters(backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live) { raw, _ in
            let client = try #require(raw as? AuthenticatedClient)
            let cases: [(query: String, pointer: String)] = [
                ("types=RUN.*", "/types"), ("types=*.run", "/types"), ("types=run.*.x", "/types"),
                ("types=run..x", "/types"), ("types=run.st*", "/types"), ("types=run.*,,step.*", "/types"),
                (
                    "types=\((0..<33).map { "type\(String(Character(UnicodeScalar(UInt8(97 + $0 % 26)))))" }.joined(separator: ","))",
                    "/types"
                ),
                ("types=\(String(repeating: "a", count: 65))", "/types"),
                ("types=%27%3B--", "/types"),
                ("workflow=Bad_Name", "/workflow"), ("agent=a%20b", "/agent"), ("workflow=a&agent=b", "/agent"),
                ("run=..%2Fx", "/run"),
            ]
            for (query, pointer) in cases {
                for accept in ["application/json", "text/event-stream"] {
                    let answer = try await client.send(.get, "/v1/events?\(query)", headers: [.accept: accept])
                    #expect(answer.status == .unprocessableContent, "\(query): \(answer.json)")
                    #expect(answer.headers[.contentType] == "application/problem+json")
                    #expect(answer.json["code"]?.stringValue == "validation_failed")
                    #expect(answer.json["errors"]?.arrayValue?.first?["pointer"]?.stringValue == pointer, "\(query)")
                }
            }
            // 32 types are fine.
            let many = (0..<32).map {
                "type\(String(Character(UnicodeScalar(UInt8(97 + $0 % 26)))))\($0 < 26 ? "" : "_b")"
            }
            #expect(
                try await client.send(.get, "/v1/events?types=\(many.joined(separator: ","))").status == .ok
            )
        }
    }

    @Test(
        "The WebSocket delivers events as they happen, filtered, and resumes after an id without gap or repeat",
        arguments: TestBackend.available
    )
    func webSocketLiveAndResume(backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live) { raw, _ in
            let client = try #require(raw as? AuthenticatedClient)
            let port = try #require(client.port)
            _ = try await EventWorld.putWorkflows(client)
            // Live: the socket opens at the newest event; runs started after it are delivered.
            let received = Mutex<[(Int64, JSONValue)]>([])
            let startedIDs = Mutex<[String]>([])
            let close = try await WebSocketClient.connect(
                url: "ws://127.0.0.1:\(port)/v1/events/ws?types=run.*",
                configuration: .init(additionalHeaders: [.authorization: "Bearer \(client.apiKey)"]),
                logger: Logger(label: "ws")
            ) { inbound, outbound, _ in
                for name in ["alpha", "beta"] {
                    let run = try await client.send(.post, "/v1/workflows/\(name)/runs?wait=10s", json: "{}")
                    startedIDs.withLock { $0.append(run.json["id"]?.stringValue ?? "") }
                }
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    guard case .text(let text) = message else { continue }
                    let json = try JSONValue(parsing: Array(text.utf8))
                    received.withLock { $0.append((json["id"]?.integer ?? -1, json["event"] ?? .null)) }
                    let done = received.withLock { list in
                        list.filter { $0.1["type"]?.stringValue == "run.succeeded" }.count == 2
                    }
                    if done { break }
                }
                try await outbound.close(.normalClosure, reason: nil)
            }
            #expect(close?.closeCode == .normalClosure)
            let all = try await EventWorld.allEvents(client)
            let runIDs = startedIDs.withLock { $0 }
            let expected = all.filter { runIDs.contains($0.runID) && $0.type.hasPrefix("run.") }
            let got = received.withLock { $0 }
            #expect(got.map(\.0) == expected.map(\.id))
            #expect(got.map { $0.1["type"]?.stringValue ?? "" } == expected.map(\.type))
            #expect(got.allSatisfy { $0.1["run_id"]?.stringValue != nil })

            // Resume: after an id in the middle, exactly the later matching events, in order.
            let middle = expected[expected.count / 2 - 1].id
            let missed = all.filter { $0.id > middle && $0.type.hasPrefix("run.") }.map(\.id)
            let resumed = try await readSocketEvents(
                port: port,
                query: "types=run.*&after=\(middle)",
                until: missed.last!,
                headers: [.authorization: "Bearer \(client.apiKey)"]
            ).map(\.id)
            #expect(resumed == missed)
        }
    }

    @Test(
        "The WebSocket takes the same credentials as the API: header or subprotocol, never the URL; one organization",
        arguments: TestBackend.available
    )
    func webSocketAuthorization(backend: TestBackend) async throws {
        try await withTestApplication(backend, mode: .live) { raw, _ in
            let client = try #require(raw as? AuthenticatedClient)
            let port = try #require(client.port)
            let world = try await EventWorld.make(client, alphaRuns: 1, betaRuns: 0)
            let upgrade = { (path: String, headers: [String]) async throws -> String in
                let connection = try RawHTTPConnection(port: port)
                let request =
                    ([
                        "GET \(path) HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
                    ] + headers).joined(separator: "\r\n") + "\r\n\r\n"
                #expect(connection.send(request))
                return try await connection.receive(timeout: .seconds(3)).text
            }
            let anonymous = try await upgrade("/v1/events/ws", [])
            #expect(anonymous.hasPrefix("HTTP/1.1 401"), "\(anonymous)")
            #expect(anonymous.contains("application/problem+json") && anonymous.contains("\"unauthenticated\""))
            let wrong = try await upgrade("/v1/events/ws", ["Authorization: Bearer cvk_not_a_key"])
            #expect(wrong.hasPrefix("HTTP/1.1 401"), "\(wrong)")
            let inURL = try await upgrade("/v1/events/ws?token=\(client.apiKey)", [])
            #expect(inURL.hasPrefix("HTTP/1.1 400"), "\(inURL)")
            #expect(inURL.contains("never accepted in the URL"))
            let badFilter = try await upgrade("/v1/events/ws?types=Run", ["Authorization: Bearer \(client.apiKey)"])
            #expect(badFilter.hasPrefix("HTTP/1.1 422") && badFilter.contains("/types"), "\(badFilter)")
            let badProtocol = try await upgrade(
                "/v1/events/ws",
                ["Authorization: Bearer \(client.apiKey)", "Sec-WebSocket-Protocol: chat"]
            )
            #expect(badProtocol.hasPrefix("HTTP/1.1 422"), "\(badProtocol)")
            let viaProtocol = try await upgrade(
                "/v1/events/ws",
                ["Sec-WebSocket-Protocol: caravan.v1, bearer.\(client.apiKey)"]
            )
            #expect(viaProtocol.hasPrefix("HTTP/1.1 101"), "\(viaProtocol)")
            #expect(viaProtocol.lowercased().contains("sec-websocket-protocol: caravan.v1\r\n"))
            #expect(!viaProtocol.contains(client.apiKey))
            let plain = try await client.send(.get, "/v1/events/ws")
            #expect(plain.status == .badRequest)

            // The subprotocol credential streams like the header.
            let all = world.all.map(\.id)
            let viaSubprotocol = try await readSocketEvents(
                port: port,
                query: "after=0",
                until: all.last!,
                headers: [.secWebSocketProtocol: "caravan.v1, bearer.\(client.apiKey)"]
            ).map(\.id)
            #expect(viaSubprotocol == all)

            // Another organization's key sees its own events only.
            let other = try await client.send(
                .post,
                "/v1/organizations",
                json: #"{"name": "Other"}"#,
                headers: [.authorization: "Bearer \(client.accessToken)"]
            )
            let otherOrg = try #require(other.json["id"]?.stringValue ?? other.json["organization"]?["id"]?.stringValue)
            let key = try await client.send(
                .post,
                "/v1/api-keys",
                json: #"{"name": "other", "role": "viewer"}"#,
                headers: [
                    .authorization: "Bearer \(client.accessToken)", HTTPField.Name("Caravan-Organization")!: otherOrg,
                ]
            )
            let otherKey = try #require(key.json["key"]?.stringValue, "\(key.json)")
            let ownerKey = try await client.send(
                .post,
                "/v1/api-keys",
                json: #"{"name": "other-owner", "role": "owner"}"#,
                headers: [
                    .authorization: "Bearer \(client.accessToken)", HTTPField.Name("Caravan-Organization")!: otherOrg,
                ]
            )
            let otherOwner = try #require(ownerKey.json["key"]?.stringValue)
            let asOther: HTTPFields = [.authorization: "Bearer \(otherOwner)"]
            try await EventWorld.putWorkflows(client, headers: asOther, agent: false)
            let otherRun = try await client.send(
                .post,
                "/v1/workflows/alpha/runs?wait=10s",
                json: "{}",
                headers: asOther
            )
            let otherRunID = try #require(otherRun.json["id"]?.stringValue)
            let otherEvents = try await EventWorld.allEvents(client, headers: asOther)
            #expect(otherEvents.allSatisfy { $0.runID == otherRunID })
            let seen = try await readSocketEvents(
                port: port,
                query: "after=0",
                until: otherEvents.last!.id,
                headers: [.authorization: "Bearer \(otherKey)"]
            )
            #expect(seen.map(\.id) == otherEvents.map(\.id))
            #expect(seen.allSatisfy { $0.runID == otherRunID })
        }
    }

    @Test("A node's graceful shutdown ends the WebSocket with a close frame", arguments: TestBackend.available)
    func webSocketShutdown(backend: TestBackend) async throws {
        let closed = try await withTestApplication(backend, mode: .live) { raw, _ in
            let client = try #require(raw as? AuthenticatedClient)
            let port = try #require(client.port)
            let opened = AsyncStream<Void>.makeStream()
            let key = client.apiKey
            let socket = Task {
                try await WebSocketClient.connect(
                    url: "ws://127.0.0.1:\(port)/v1/events/ws",
                    configuration: .init(additionalHeaders: [.authorization: "Bearer \(key)"]),
                    logger: Logger(label: "ws")
                ) { inbound, _, _ in
                    opened.continuation.yield()
                    for try await _ in inbound {}
                }
            }
            for await _ in opened.stream { break }
            return socket
        }
        let frame = try await closed.value
        #expect(frame?.closeCode == .goingAway || frame?.closeCode == .normalClosure, "\(String(describing: frame))")
    }
}

/// An event as the full, unfiltered list gives it, with its run's workflow.
struct StoredEvent: Sendable {
    var id: Int64
    var type: String
    var runID: String
    var workflow: String
}

/// Workflows, an agent and their runs, and every event they made.
struct EventWorld: Sendable {
    var all: [StoredEvent]
    var betaRunIDs: [String]

    static func putWorkflows(
        _ client: any TestClientProtocol,
        headers: HTTPFields = [:],
        agent: Bool = true
    ) async throws {
        for name in ["alpha", "beta"] {
            let answer = try await client.send(
                .put,
                "/v1/workflows/\(name)",
                json: "name: \(name)\nsteps:\n  - {id: a, template: ok}\n  - {id: b, needs: [a], template: done}\n",
                contentType: "application/yaml",
                headers: headers
            )
            #expect(answer.status == .created || answer.status == .ok, "\(answer.json)")
        }
        if agent {
            let answer = try await client.send(
                .put,
                "/v1/agents/helper",
                json: "name: helper\nmodel: nowhere/m1\n",
                contentType: "application/yaml"
            )
            #expect(answer.status == .created || answer.status == .ok, "\(answer.json)")
        }
    }

    static func make(_ client: AuthenticatedClient, alphaRuns: Int, betaRuns: Int) async throws -> EventWorld {
        try await putWorkflows(client)
        for _ in 0..<alphaRuns {
            _ = try await client.send(.post, "/v1/workflows/alpha/runs?wait=10s", json: "{}")
        }
        var betaRunIDs: [String] = []
        for _ in 0..<betaRuns {
            let run = try await client.send(.post, "/v1/workflows/beta/runs?wait=10s", json: "{}")
            betaRunIDs.append(run.json["id"]?.stringValue ?? "")
        }
        // The agent has no provider: its run fails, which gives run.failed and step.failed events.
        _ = try await client.send(.post, "/v1/agents/helper/runs?wait=10s", json: #"{"input": "hi"}"#)
        return EventWorld(all: try await allEvents(client), betaRunIDs: betaRunIDs)
    }

    static func allEvents(_ client: any TestClientProtocol, headers: HTTPFields = [:]) async throws -> [StoredEvent] {
        let page = try await client.send(.get, "/v1/events?after=0&limit=500", headers: headers)
        var workflows: [String: String] = [:]
        let runs = try await client.send(.get, "/v1/runs?limit=200", headers: headers)
        for run in runs.json["items"]?.arrayValue ?? [] {
            workflows[run["id"]?.stringValue ?? ""] = run["workflow"]?.stringValue
        }
        return (page.json["items"]?.arrayValue ?? []).map { item in
            let runID = item["run_id"]?.stringValue ?? ""
            return StoredEvent(
                id: item["id"]?.integer ?? -1,
                type: item["type"]?.stringValue ?? "",
                runID: runID,
                workflow: workflows[runID] ?? "?"
            )
        }
    }
}

/// The ids of an SSE stream of `/v1/events` until the frame with id `last` (or 20 s).
func readSSE(port: Int, query: String, key: String, until last: Int64) async throws -> [Int64] {
    let connection = try RawHTTPConnection(port: port)
    #expect(
        connection.send(
            "GET /v1/events?\(query) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer \(key)\r\n\r\n"
        )
    )
    var text = ""
    let deadline = ContinuousClock.now + .seconds(20)
    while !text.contains("id: \(last)\n") && ContinuousClock.now < deadline {
        let chunk = try await connection.receive(timeout: .milliseconds(300))
        text += chunk.text
        if chunk.closed { break }
    }
    // Split on scalars: the chunked encoding's "\r\n" is one Character, which would glue a chunk's size line to
    // the frame's first line.
    return text.unicodeScalars.split(separator: "\n").compactMap { scalars in
        let line = String(String.UnicodeScalarView(scalars))
        return line.hasPrefix("id: ") ? Int64(line.dropFirst(4)) : nil
    }
}

/// The events the event WebSocket sends until the one with id `last`.
func readSocketEvents(port: Int, query: String, until last: Int64, headers: HTTPFields) async throws -> [StoredEvent] {
    let received = Mutex<[StoredEvent]>([])
    try await WebSocketClient.connect(
        url: "ws://127.0.0.1:\(port)/v1/events/ws?\(query)",
        configuration: .init(additionalHeaders: headers),
        logger: Logger(label: "ws")
    ) { inbound, outbound, _ in
        for try await message in inbound.messages(maxSize: 1 << 20) {
            guard case .text(let text) = message else { continue }
            let json = try JSONValue(parsing: Array(text.utf8))
            let event = StoredEvent(
                id: json["id"]?.integer ?? -1,
                type: json["event"]?["type"]?.stringValue ?? "",
                runID: json["event"]?["run_id"]?.stringValue ?? "",
                workflow: ""
            )
            received.withLock { $0.append(event) }
            if event.id >= last { break }
        }
        try await outbound.close(.normalClosure, reason: nil)
    }
    return received.withLock { $0 }
}

extension JSONValue {
    /// The value as a whole number, if it is one.
    fileprivate var integer: Int64? {
        if case .int(let value) = self { return value }
        return numberValue.flatMap { $0 == $0.rounded() ? Int64(exactly: $0) : nil }
    }
}
