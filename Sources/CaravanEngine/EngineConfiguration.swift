public import CaravanCore

/// How the engine of one node behaves.
public struct EngineConfiguration: Sendable {
    /// This node's name in leases; unique per process.
    public var nodeID: String = Identifier.make("node")
    /// The most runs this node executes at once; the rest wait in the database for a free slot here or elsewhere.
    public var maxActiveRuns: Int = 4_096
    /// How long a claimed run stays this node's without renewal; after that, another node may take it over.
    public var leaseDuration: CaravanDuration = .seconds(30)
    /// How often leases are renewed.
    public var leaseRenewInterval: CaravanDuration = .seconds(10)
    /// How often an idle node looks for work it was not told about (timers, other nodes' wake-ups).
    public var pollInterval: CaravanDuration = .init(milliseconds: 500)
    /// The most runs one organization may have executing at once; the rest queue.
    public var maxActiveRunsPerOrganization: Int = 10_000
    /// The largest run input or step output, in bytes of JSON.
    public var maxPayloadBytes: Int = 2 << 20
    /// How long finished runs are kept.
    public var retention: CaravanDuration = .init(milliseconds: 30 * 86_400_000)
    /// Transactions the group committer may run at once, each for other organizations (SQLite: always 1).
    public var committers: Int = 4
    /// Runs kept in memory between steps when the next timer is at most this far away.
    public var holdWindow: CaravanDuration = .seconds(2)
    /// How deep runs may start runs (workflow and agent steps, agent and workflow tools): a run at this depth
    /// starts no child; the step that asks fails with `max_depth_exceeded`. A run started by a request is at depth 0.
    public var maxRunDepth: Int = 16

    public init() {}
}
