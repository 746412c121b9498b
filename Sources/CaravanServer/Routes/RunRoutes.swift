import CaravanCore
import CaravanEngine
import CaravanIdentity
import CaravanStorage
import CaravanWorkflow
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle

/// `/v1/workflows/{name}/runs`, `/v1/runs…` and `/v1/events`: starting, reading, following and steering runs.
struct RunRoutes {
    let engine: Engine
    let bodies: RequestBodyReader

    func register(in routes: RouteRegistrar) {
        let runResponse: (description: String, schema: JSONValue?, mediaType: String) = (
            "The run", APISchemas.run, "application/json"
        )
        routes.add(
            EndpointDescription(
                .post,
                "/v1/workflows/{name}/runs",
                operationID: "startRun",
                summary: "Start a run. `Idempotency-Key` makes retries safe; `?wait=30s` answers when it has finished.",
                tag: "runs",
                access: .organization(.write),
                requestSchema: APISchemas.startRun,
                query: [APISchemas.wait],
                responses: [
                    201: runResponse, 200: ("The run this Idempotency-Key started", APISchemas.run, "application/json"),
                    202: ("Still running when the wait ended", APISchemas.run, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            guard DefinitionParser.isValidWorkflowName(name) else {
                throw CaravanError.notFound("The workflow '\(name)'")
            }
            let wait = try APIRequest.wait(request)
            let key = try Self.idempotencyKey(request)
            let body = try await bodies.json(of: request)
            guard let object = body.objectValue else {
                throw CaravanError.validation("", "The body must be a JSON object.")
            }
            for field in object.keys where field != "input" {
                throw CaravanError.validation("/" + field, "is not a field of a run request")
            }
            let input = object["input"] ?? .object([:])
            let (run, created) = try await engine.startRun(
                orgID: orgID,
                workflow: name,
                input: input,
                idempotencyKey: key,
                requestHash: key == nil ? nil : stableDigest(body.canonicalText),
                audit: context.audit.entryForWrite
            )
            if created { context.audit.committedWithWrite() } else { context.audit.target("run:\(run.id)") }
            return try await Self.answer(run, created: created, wait: wait, engine: engine)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/runs",
                operationID: "listRuns",
                summary:
                    "List runs, newest first; filter by `workflow`, `agent`, `status` and creation time (`from`, `to`).",
                tag: "runs",
                access: .organization(.read),
                query: APISchemas.page + APISchemas.runFilters,
                responses: [200: ("A page of runs", APISchemas.list(of: APISchemas.run), "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let limit = try APIRequest.limit(request)
            var status: RunStatus?
            if let text = request.uri.queryParameters.get("status") {
                guard let parsed = RunStatus(rawValue: text) else {
                    throw CaravanError.validation(
                        "/status",
                        "status must be one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                status = parsed
            }
            var workflow: String? = request.uri.queryParameters.get("workflow").map { String($0) }
            if let agent = request.uri.queryParameters.get("agent") {
                workflow = AgentStepKind.workflowName(forAgent: String(agent))
            }
            var created = CreatedRange()
            for (name, bound) in [("from", \CreatedRange.from), ("to", \CreatedRange.to)] {
                guard let text = request.uri.queryParameters.get(name) else { continue }
                guard let milliseconds = Clock.parseRFC3339(String(text)) else {
                    throw CaravanError.validation(
                        "/\(name)",
                        "\(name) must be an RFC 3339 time, e.g. 2026-12-04T10:00:00Z"
                    )
                }
                created[keyPath: bound] = milliseconds
            }
            let page = try await engine.runs(
                orgID: orgID,
                workflow: workflow,
                status: status,
                created: created,
                cursor: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.id, json: APIRequest.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/runs/{id}",
                operationID: "getRun",
                summary: "A run with its steps.",
                tag: "runs",
                access: .organization(.read),
                responses: [200: runResponse]
            )
        ) { request, context in
            let run = try await self.run(request, context)
            return .json(bytes: APIRequest.encoded(run))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/runs/{id}/events",
                operationID: "listRunEvents",
                summary:
                    "A run's events; with `Accept: text/event-stream`, a live stream that ends after the run's last event.",
                tag: "runs",
                access: .organization(.read),
                query: [APISchemas.after, APISchemas.limit],
                responses: [
                    200: (
                        "Events (JSON), or a text/event-stream", APISchemas.list(of: APISchemas.event),
                        "application/json"
                    )
                ]
            )
        ) { request, context in
            let run = try await self.run(request, context)
            let after = try Self.position(request)
            if Self.wantsStream(request) {
                return stream(EventFollower.run(engine: engine, runID: run.id, after: after))
            }
            let limit = try APIRequest.limit(request)
            let events = try await engine.events(runID: run.id, after: after, limit: limit)
            return .json([
                "items": .array(events.map(APIRequest.json)),
                "next_cursor": events.count == limit ? .string(String(events.last?.seq ?? 0)) : .null,
            ])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/events",
                operationID: "streamEvents",
                summary:
                    "Every run event of the organization, filtered by `types` (`run.*`, `step.failed`), `workflow`, `agent` or `run`: JSON after `?after=` (a page may hold fewer events than `limit`, or none, and still have a `next_cursor`: it looked at up to ten times `limit` events), or a live text/event-stream (also as a WebSocket at `/v1/events/ws`).",
                tag: "runs",
                access: .organization(.read),
                query: [APISchemas.after, APISchemas.limit] + EventQuery.parameters,
                responses: [200: ("Events", APISchemas.list(of: APISchemas.event), "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let explicit = try Self.optionalPosition(request)
            let filter = try EventQuery.filter(request)
            if Self.wantsStream(request) {
                var start = explicit ?? 0
                if explicit == nil { start = try await engine.latestEventID(orgID: orgID) }
                return stream(EventFollower.organization(engine: engine, orgID: orgID, filter: filter, after: start))
            }
            let limit = try APIRequest.limit(request)
            let page = try await engine.events(orgID: orgID, after: explicit ?? 0, filter: filter, limit: limit)
            return .json([
                "items": .array(page.events.map(Self.organizationJSON)),
                "next_cursor": page.hasMore ? .string(String(page.position)) : .null,
            ])
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/runs/{id}/cancel",
                operationID: "cancelRun",
                summary: "Cancel a run: running steps are told and stop; nothing new starts.",
                tag: "runs",
                access: .organization(.write),
                responses: [202: ("Cancellation requested", APISchemas.run, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let id = try context.parameters.require("id")
            let run = try await engine.cancel(orgID: orgID, id: id)
            return .json(bytes: APIRequest.encoded(run), status: .accepted)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/runs/{id}/signals/{name}",
                operationID: "signalRun",
                summary: "Send a signal to a run; `approve` answers an approval step: `{approved, data}`.",
                tag: "runs",
                access: .organization(.write),
                requestSchema: APISchemas.signal,
                responses: [202: ("Signal stored", ["type": "object"], "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let id = try context.parameters.require("id")
            let name = try context.parameters.require("name")
            guard !name.isEmpty, name.utf8.count <= 64 else {
                throw CaravanError.validation("/name", "signal names are 1 to 64 characters")
            }
            let body = try await bodies.json(of: request)
            guard body.objectValue != nil else { throw CaravanError.validation("", "The body must be a JSON object.") }
            if name == "approve", let approved = body["approved"],
                !(approved == .bool(true) || approved == .bool(false))
            {
                throw CaravanError.validation("/approved", "approved must be true or false")
            }
            // Who sent it is recorded with it: an approval step's output names who approved (`by`).
            try await engine.signal(orgID: orgID, id: id, name: name, data: body, sender: context.principal?.actorName)
            return .json(["run_id": .string(id), "signal": .string(name), "status": "accepted"], status: .accepted)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/runs/{id}/retry",
                operationID: "retryRun",
                summary: "Re-run a failed run from its failed steps, keeping what succeeded.",
                tag: "runs",
                access: .organization(.write),
                responses: [202: ("Queued again", APISchemas.run, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let id = try context.parameters.require("id")
            let run = try await engine.retry(orgID: orgID, id: id)
            return .json(bytes: APIRequest.encoded(run), status: .accepted)
        }
    }

    private func run(_ request: Request, _ context: CaravanRequestContext) async throws -> RunRecord {
        let orgID = try context.organizationID()
        let id = try context.parameters.require("id")
        guard let run = try await engine.run(orgID: orgID, id: id) else { throw CaravanError.notFound("The run") }
        return run
    }

    /// The answer to a request that started a run: `201` (or `200` for a repeated `Idempotency-Key`) once it has
    /// finished or without `wait`; `202` when it is still running after `wait`.
    static func answer(_ run: RunRecord, created: Bool, wait: Duration?, engine: Engine) async throws -> Response {
        var run = run
        if let wait, !run.status.isTerminal {
            run = try await engine.waitForRun(orgID: run.orgID, id: run.id, timeout: wait) ?? run
            if !run.status.isTerminal { return .json(bytes: APIRequest.encoded(run), status: .accepted) }
        }
        return .json(bytes: APIRequest.encoded(run), status: created ? .created : .ok)
    }

    /// The `Idempotency-Key` header, if sent: 1 to 255 characters.
    static func idempotencyKey(_ request: Request) throws -> String? {
        let key = request.headers[HTTPField.Name("Idempotency-Key")!]  // a valid token, cannot fail
        if let key, key.isEmpty || key.utf8.count > 255 {
            throw CaravanError.validation("/Idempotency-Key", "Idempotency-Key must be 1 to 255 characters")
        }
        return key
    }

    static func wantsStream(_ request: Request) -> Bool {
        request.headers[.accept]?.contains("text/event-stream") ?? false
    }

    /// Where to resume: `Last-Event-ID`, else `?after=`, else the beginning.
    static func position(_ request: Request) throws -> Int64 {
        try optionalPosition(request) ?? 0
    }

    static func optionalPosition(_ request: Request) throws -> Int64? {
        let after: String? = request.uri.queryParameters.get("after").map { String($0) }
        if let text = request.headers[HTTPField.Name("Last-Event-ID")!] ?? after {
            guard let value = Int64(text), value >= 0 else {
                throw CaravanError.validation("/after", "Last-Event-ID and after are non-negative integers")
            }
            return value
        }
        return nil
    }

    private static let streamHeaders: HTTPFields = [
        .contentType: "text/event-stream", .cacheControl: "no-cache", HTTPField.Name("X-Accel-Buffering")!: "no",
    ]

    /// The last frame of a stream cut short by the node's shutdown: reconnect (with `Last-Event-ID`) in a second.
    static let shutdownFrame = ByteBuffer(
        string:
            "retry: 1000\nevent: shutdown\ndata: {\"reason\":\"the server is shutting down; reconnect with Last-Event-ID\"}\n\n"
    )

    static func frame(_ event: RunEvent, id: Int64) -> ByteBuffer {
        var text = "id: \(id)\nevent: \(event.type)\ndata: "
        APIRequest.json(event).write(to: &text)
        text += "\n\n"
        return ByteBuffer(string: text)
    }

    /// An event of the organization's stream as JSON: the event with its global position as `id`.
    static func organizationJSON(_ event: RunEvent) -> JSONValue {
        var json = APIRequest.json(event)
        if case .object(var object) = json {
            object["id"] = .int(event.globalID)
            json = .object(object)
        }
        return json
    }

    /// Server-sent events from `follower`: each stored event with its position as `id:`, live events without,
    /// a comment every 15 s of silence, and a last frame when the node stops.
    private func stream(_ follower: EventFollower) -> Response {
        Response(
            status: .ok,
            headers: Self.streamHeaders,
            body: ResponseBody { writer in
                try await writer.write(ByteBuffer(string: ": caravan events\n\n"))
                try await follower.run { item in
                    switch item {
                    case .events(let events):
                        for (position, event) in events { try await writer.write(Self.frame(event, id: position)) }
                    case .live(let events):
                        for event in events {
                            var text = "event: \(event.type)\ndata: "
                            APIRequest.json(event).write(to: &text)
                            try await writer.write(ByteBuffer(string: text + "\n\n"))
                        }
                    case .quiet:
                        try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    case .shutdown:
                        // This node is stopping: say so, and let the client resume (Last-Event-ID) on another node.
                        try await writer.write(Self.shutdownFrame)
                    }
                }
                try await writer.finish(nil)
            }
        )
    }
}
