import CaravanCore
import CaravanEngine
import CaravanWorkflow
import Hummingbird
import ServiceLifecycle

/// What a live event stream sends next; the SSE and WebSocket writers each put it on their own wire.
enum EventStreamItem: Sendable {
    /// Stored events, each with the position a client resumes after.
    case events([(position: Int64, event: RunEvent)])
    /// A run's live events (token deltas): never stored, without a position.
    case live([RunEvent])
    /// 15 s have passed without an event.
    case quiet
    /// This node is stopping: the client should resume elsewhere from its last position.
    case shutdown
}

/// Follows an event log from a position and hands its writer batches as they come: the one loop behind the SSE
/// streams and the WebSocket. Between batches it waits for a change of `key` (or a second, the bound for changes
/// made on another node), and it stops when the client leaves, the log says it is finished, or the node stops.
struct EventFollower: Sendable {
    let engine: Engine
    /// The change topic to wait on: a run id, or `org:` and an organization id.
    let key: String
    let after: Int64
    /// With a run id, that run's live events are handed out too.
    var liveRunID: String?
    /// The position of a stored event (its global id, or its sequence number in a run's own stream).
    let position: @Sendable (RunEvent) -> Int64
    /// The page after a position, and whether the log is finished (a run that has ended).
    let next: @Sendable (Int64) async throws -> (page: EventPage, finished: Bool)

    /// Runs until the client leaves (cancellation or a failed `send`), the log is finished, or the node stops
    /// (after sending `.shutdown`).
    func run(_ send: (EventStreamItem) async throws -> Void) async throws {
        var current = after
        var quiet = ContinuousClock.now
        let subscription = engine.subscribe(to: key)
        let live = liveRunID.map { ($0, engine.live.subscribe(runID: $0)) }
        defer {
            subscription.cancel()
            if let (runID, id) = live { engine.live.unsubscribe(runID: runID, subscription: id) }
        }
        while !Task.isCancelled {
            if Task.isShuttingDownGracefully {
                try await send(.shutdown)
                return
            }
            if let (runID, id) = live {
                let events = engine.live.drain(runID: runID, subscription: id)
                if !events.isEmpty { try await send(.live(events)) }
            }
            let (page, finished) = try await next(current)
            current = page.position
            if !page.events.isEmpty {
                try await send(.events(page.events.map { (position($0), $0) }))
                quiet = ContinuousClock.now
            }
            if page.hasMore { continue }
            if finished { return }
            if ContinuousClock.now - quiet > .seconds(15) {
                try await send(.quiet)
                quiet = ContinuousClock.now
            }
            await subscription.wait(timeout: .seconds(1))
        }
    }

    /// Every event of the organization that passes `filter`, from `after`, until the client leaves.
    static func organization(engine: Engine, orgID: String, filter: EventFilter, after: Int64) -> EventFollower {
        EventFollower(engine: engine, key: "org:" + orgID, after: after, position: \.globalID) { position in
            (try await engine.events(orgID: orgID, after: position, filter: filter, limit: 500), false)
        }
    }

    /// A run's events after `seq`, with its live events, until its last event.
    static func run(engine: Engine, runID: String, after: Int64) -> EventFollower {
        EventFollower(engine: engine, key: runID, after: after, liveRunID: runID, position: \.seq) { position in
            // The status is read before the events, so a run that has ended has all its events in this batch.
            let finished = try await engine.runStatus(id: runID)?.isTerminal ?? true
            let events = try await engine.events(runID: runID, after: position, limit: 500)
            let page = EventPage(events: events, position: events.last?.seq ?? position, hasMore: events.count == 500)
            return (page, finished)
        }
    }
}

/// The query parameters that filter `GET /v1/events` and `GET /v1/events/ws`.
enum EventQuery {
    static let parameters = [
        QueryParameter(
            "types",
            "Only events of these types, comma-separated (at most 32): exact (`step.failed`) or ending in a wildcard segment (`run.*`); `*` for all.",
            schema: ["type": "string", "maxLength": 2200, "pattern": "^[a-z_.*,]*$"]
        ),
        QueryParameter(
            "workflow",
            "Only events of runs of this workflow.",
            schema: ["type": "string", "pattern": "^[a-z0-9-]{1,64}$"]
        ),
        QueryParameter(
            "agent",
            "Only events of runs of this agent.",
            schema: ["type": "string", "pattern": "^[a-z0-9-]{1,64}$"]
        ),
        QueryParameter("run", "Only events of this run.", schema: ["type": "string", "maxLength": 64]),
    ]

    /// The filter the request's query names.
    /// - Throws: `validation_failed` naming the parameter (`/types`, `/workflow`, `/agent`, `/run`).
    static func filter(_ request: Request) throws -> EventFilter {
        let query = request.uri.queryParameters
        var filter = EventFilter()
        let typeValues: [String] = query.getAll("types").map { String($0) }
        if !typeValues.isEmpty {
            let patterns: [String] = typeValues.flatMap { value in
                value.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingSpaces }
            }
            do {
                (filter.types, filter.prefixes) = try EventFilter.types(patterns)
            } catch EventFilter.PatternError.tooMany {
                throw CaravanError.validation("/types", "types names at most \(EventFilter.maxTypes) event types")
            } catch EventFilter.PatternError.invalid(let pattern) {
                throw CaravanError.validation(
                    "/types",
                    "'\(pattern.prefix(64))' is not an event type pattern: segments of [a-z_] separated by dots, with * only as a whole last segment (run.*, step.failed, *)"
                )
            }
        }
        let workflow: String? = query.get("workflow").map { String($0) }
        let agent: String? = query.get("agent").map { String($0) }
        if let workflow {
            guard DefinitionParser.isValidWorkflowName(workflow) else {
                throw CaravanError.validation("/workflow", "workflow must be a workflow name ([a-z0-9-]{1,64})")
            }
            filter.workflow = workflow
        }
        if let agent {
            guard workflow == nil else {
                throw CaravanError.validation("/agent", "give workflow or agent, not both")
            }
            guard DefinitionParser.isValidWorkflowName(agent) else {
                throw CaravanError.validation("/agent", "agent must be an agent name ([a-z0-9-]{1,64})")
            }
            filter.workflow = AgentStepKind.workflowName(forAgent: agent)
        }
        if let run: String = query.get("run").map({ String($0) }) {
            guard !run.isEmpty, run.utf8.count <= 64,
                run.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F })
            else {
                throw CaravanError.validation("/run", "run must be a run id (run_…)")
            }
            filter.runID = run
        }
        return filter
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
