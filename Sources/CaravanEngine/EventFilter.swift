public import CaravanStorage

/// Which of an organization's run events a reader wants: by type (exact, or a prefix such as `run.*`), by the
/// workflow of their run (an agent's runs are of the workflow `agent:{name}`), and by run. An empty filter takes
/// every event. Values are checked where they are parsed (`types(_:)`); the engine only reads with them.
public struct EventFilter: Sendable, Hashable {
    /// Exact event types; with `prefixes`, an event matches when its type is one of these or starts with one of
    /// the prefixes. Both empty: any type.
    public var types: Set<String>
    /// Type prefixes, each ending in `.` (`run.*` is the prefix `run.`).
    public var prefixes: Set<String>
    /// Only events of runs of this workflow.
    public var workflow: String?
    /// Only events of this run.
    public var runID: String?

    /// The most types one filter may name.
    public static let maxTypes = 32
    /// The longest type pattern.
    public static let maxTypeLength = 64

    public init(types: Set<String> = [], prefixes: Set<String> = [], workflow: String? = nil, runID: String? = nil) {
        self.types = types
        self.prefixes = prefixes
        self.workflow = workflow
        self.runID = runID
    }

    /// Whether the filter takes every event.
    public var isEmpty: Bool { types.isEmpty && prefixes.isEmpty && workflow == nil && runID == nil }

    /// Whether `event`, of a run of `workflow`, passes the filter (the same test the SQL makes).
    public func matches(_ event: RunEvent, workflow runWorkflow: String) -> Bool {
        if let workflow, workflow != runWorkflow { return false }
        if let runID, runID != event.runID { return false }
        if types.isEmpty && prefixes.isEmpty { return true }
        return types.contains(event.type) || prefixes.contains { event.type.hasPrefix($0) }
    }

    /// Why a list of type patterns is refused.
    public enum PatternError: Error, Equatable {
        case tooMany
        case invalid(String)
    }

    /// The filter's type part from patterns such as `run.*`, `step.failed` or `*`: each made of segments of
    /// `[a-z_]` separated by dots, with `*` only as a whole last segment. `*` alone takes every type.
    public static func types(_ patterns: [String]) throws(PatternError) -> (types: Set<String>, prefixes: Set<String>) {
        guard patterns.count <= maxTypes else { throw .tooMany }
        var types = Set<String>()
        var prefixes = Set<String>()
        var everything = false
        for pattern in patterns {
            guard !pattern.isEmpty, pattern.utf8.count <= maxTypeLength else { throw .invalid(pattern) }
            let segments = pattern.split(separator: ".", omittingEmptySubsequences: false)
            for (index, segment) in segments.enumerated() {
                let isLast = index == segments.count - 1
                if segment == "*" && isLast { continue }
                guard !segment.isEmpty, segment.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }) else {
                    throw .invalid(pattern)
                }
            }
            if pattern == "*" {
                everything = true
            } else if segments.last == "*" {
                prefixes.insert(String(pattern.dropLast()))
            } else {
                types.insert(pattern)
            }
        }
        return everything ? ([], []) : (types, prefixes)
    }
}

/// A page of an organization's events read through a filter.
public struct EventPage: Sendable {
    /// The matching events, in order of position.
    public var events: [RunEvent]
    /// Where the next page starts: the position of the last event read, matching or not (the `after` the page
    /// was read with when it read nothing). Every event up to it was looked at, so resuming there neither skips
    /// nor repeats one.
    public var position: Int64
    /// Whether the page stopped at its limit or its scan window, so more events may follow at once; `false` when
    /// it read up to the newest event.
    public var hasMore: Bool

    public init(events: [RunEvent], position: Int64, hasMore: Bool) {
        self.events = events
        self.position = position
        self.hasMore = hasMore
    }
}

extension Engine {
    /// How many events a filtered page looks at, at most, per event it may return: a filter that matches rarely
    /// still answers promptly, with fewer (or no) events and a position further on.
    public static let eventScanFactor = 10

    /// The organization's events after the global position `after` that pass `filter`: at most `limit` of them,
    /// looking at no more than `limit × eventScanFactor` events.
    public func events(orgID: String, after: Int64, filter: EventFilter, limit: Int) async throws -> EventPage {
        try await database.read { executor in
            try await self.store.events(
                orgID: orgID,
                after: after,
                filter: filter,
                limit: limit,
                window: limit * Self.eventScanFactor,
                in: executor
            )
        }
    }
}

extension RunStore {
    /// A filtered page. The scan window is fixed first (the positions of the next `window` events); the filtered
    /// read is bounded by it. Positions of one organization become visible in order (see `append`), so every
    /// event up to the window's end is visible to the second statement even without one snapshot for both.
    func events(
        orgID: String,
        after: Int64,
        filter: EventFilter,
        limit: Int,
        window: Int,
        in executor: any SQLExecutor
    ) async throws -> EventPage {
        if filter.isEmpty {
            let events = try await events(orgID: orgID, after: after, limit: limit, in: executor)
            return EventPage(events: events, position: events.last?.globalID ?? after, hasMore: events.count == limit)
        }
        let scanned = try await executor.queryFirst(
            """
            SELECT COUNT(*) AS n, MAX(id) AS last FROM (
                SELECT id FROM run_events WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3
            ) AS scanned
            """,
            [.text(orgID), .int(after), .int(Int64(window))]
        )
        let count = try scanned?.optionalInt("n") ?? 0
        guard count > 0, let last = try scanned?.optionalInt("last") else {
            return EventPage(events: [], position: after, hasMore: false)
        }
        var binds: [SQLValue] = [.text(orgID), .int(after), .int(last)]
        var sql = "SELECT e.id, e.run_id, e.seq, e.type, e.step, e.at, e.data FROM run_events e"
        if let workflow = filter.workflow {
            binds.append(.text(workflow))
            sql += " JOIN runs r ON r.id = e.run_id AND r.org_id = e.org_id AND r.workflow = $\(binds.count)"
        }
        sql += " WHERE e.org_id = $1 AND e.id > $2 AND e.id <= $3"
        if let runID = filter.runID {
            binds.append(.text(runID))
            sql += " AND e.run_id = $\(binds.count)"
        }
        var typeTests: [String] = []
        if !filter.types.isEmpty {
            let placeholders = filter.types.sorted().map { type in
                binds.append(.text(type))
                return "$\(binds.count)"
            }
            typeTests.append("e.type IN (\(placeholders.joined(separator: ", ")))")
        }
        for prefix in filter.prefixes.sorted() {
            // The length is a literal (a count, not input text): PostgreSQL's substr takes an integer, not a bigint.
            binds.append(.text(prefix))
            typeTests.append("substr(e.type, 1, \(prefix.utf8.count)) = $\(binds.count)")
        }
        if !typeTests.isEmpty { sql += " AND (" + typeTests.joined(separator: " OR ") + ")" }
        binds.append(.int(Int64(limit)))
        sql += " ORDER BY e.id LIMIT $\(binds.count)"
        let events = try await executor.query(sql, binds).map(Self.decodeEvent)
        if events.count == limit, let position = events.last?.globalID {
            return EventPage(events: events, position: position, hasMore: true)
        }
        return EventPage(events: events, position: last, hasMore: count == window)
    }
}
