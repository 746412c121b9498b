import CaravanCore
public import CaravanStorage

/// A stored run event with what a subscriber outside the engine needs to route it: the run's workflow and parent.
public struct FeedEvent: Sendable, Hashable {
    public var event: RunEvent
    /// The run's workflow (`agent:{name}` for an agent's run).
    public var workflow: String
    public var parentRunID: String?
}

extension Engine {
    /// The organization's events after the global position `after`, in commit order, each with its run's workflow:
    /// the feed that outbound deliveries follow. An event is in the feed once its transaction has committed, and
    /// on PostgreSQL the organization's event lock makes positions commit in order, so a reader that remembers the
    /// last position it saw misses nothing.
    public func feed(orgID: String, after: Int64, limit: Int, in executor: any SQLExecutor) async throws -> [FeedEvent]
    {
        try await executor.query(
            """
            SELECT e.id, e.run_id, e.seq, e.type, e.step, e.at, e.data, r.workflow, r.parent_run_id
            FROM run_events e JOIN runs r ON r.id = e.run_id
            WHERE e.org_id = $1 AND e.id > $2 ORDER BY e.id LIMIT $3
            """,
            [.text(orgID), .int(after), .int(Int64(limit))]
        ).map { row in
            FeedEvent(
                event: try RunStore.decodeEvent(row),
                workflow: try row.string("workflow"),
                parentRunID: try row.optionalString("parent_run_id")
            )
        }
    }

    /// The newest global event position of the organization, inside a transaction of the caller's.
    public func latestEventID(orgID: String, in executor: any SQLExecutor) async throws -> Int64 {
        try await store.latestEventID(orgID: orgID, in: executor)
    }
}
