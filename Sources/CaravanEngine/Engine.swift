import AsyncHTTPClient
public import CaravanAudit
public import CaravanCore
public import CaravanStorage
public import CaravanWorkflow
public import Logging
public import ServiceLifecycle
import Synchronization

/// The durable execution engine of one node: starts runs, executes their steps, commits every result before
/// anything that depends on it starts, and shares the work with other nodes through leases.
///
/// A run being executed lives in memory on the node that holds its lease; each step result is committed through
/// the group committer (one transaction for everything that finished at about the same time), fenced so that a
/// node that lost its lease cannot overwrite another's progress. Runs that wait for long (a timer, a signal, a
/// queue slot) are released and picked up again by whichever node claims them when they are due.
public final class Engine: Service, Sendable {
    public let configuration: EngineConfiguration
    /// The wall clock of every stamp and due time.
    public let clock: WallClock
    let database: any Database
    public let workflows: WorkflowStore
    /// The step kinds definitions may use: the built-in ones and every registered executor's.
    public let kinds: StepKindRegistry
    let store = RunStore()
    let notifier = RunNotifier()
    /// Live events (token deltas) of runs executing on this node, not stored.
    public let live = LiveEventFeed()
    let executors: [String: any StepExecutor]
    /// The kinds whose steps run in line (`StepExecutor.isInstant`).
    let instantKinds: Set<String>
    let secrets: (any SecretResolver)?
    let logger: Logger
    let commits: CommitQueue<CommitWork, CommitOutcome>
    let signals: ClusterSignals?
    private let dispatch: AsyncStream<ClaimedExecution>
    private let dispatchContinuation: AsyncStream<ClaimedExecution>.Continuation
    private let active = Mutex<Set<String>>([])
    private let claimWake = WakeFlag()
    private let startGate = WakeFlag()

    /// A run this node now executes, with the step launches already committed as started.
    struct ClaimedExecution: Sendable {
        var run: RunRecord
        var fence: Int64
        var launches: [StepLaunch]
        var wakeSeq: Int64 = 0
    }

    /// - Parameters:
    ///   - database: where runs live.
    ///   - executors: the step kinds that run as calls (`template`, `http`, …); the control kinds (`approval`,
    ///     `sleep`, `workflow`) are the engine's own.
    ///   - auditKeys: the audit log's keys, to commit a run start's audit entry with the run.
    ///   - signals: how nodes sharing the database wake each other (a run signalled, cancelled, released or made
    ///     claimable elsewhere), instead of waiting for the next poll.
    ///   - clock: the wall clock of stamps, leases and due times.
    public init(
        database: any Database,
        executors: [any StepExecutor],
        configuration: EngineConfiguration,
        secrets: (any SecretResolver)? = nil,
        auditKeys: AuditKeys? = nil,
        signals: ClusterSignals? = nil,
        clock: WallClock = .system,
        logger: Logger
    ) {
        self.database = database
        self.clock = clock
        self.secrets = secrets
        self.configuration = configuration
        self.logger = logger
        var kinds = StepKindRegistry.builtIn
        for executor in executors { kinds = kinds.registering(type(of: executor)) }
        self.kinds = kinds
        self.workflows = WorkflowStore(database: database, kinds: kinds, signals: signals, clock: clock)
        self.executors = Dictionary(executors.map { (type(of: $0).name, $0) }, uniquingKeysWith: { _, last in last })
        self.instantKinds = Set(self.executors.compactMap { type(of: $0.value).isInstant ? $0.key : nil })
        self.signals = signals
        let applier = CommitApplier(auditKeys: auditKeys, signals: signals, clock: clock)
        // One lane per organization (hashed): its admissions and event order take the organization's locks on
        // PostgreSQL, so its work commits one batch at a time while other organizations' commit beside it.
        self.commits = CommitQueue(
            database: database,
            maxBatch: 512,
            lanes: database.dialect == .sqlite ? 1 : configuration.committers,
            lane: { $0.orgID.hashValue },
            isArrival: \.isArrival,
            linger: .milliseconds(2)
        ) { batch, executor in
            try await applier.apply(batch, in: executor)
        }
        (dispatch, dispatchContinuation) = AsyncStream.makeStream(of: ClaimedExecution.self)
        signals?.subscribe(Self.runsChanged) { [weak self] event in
            guard let self else { return }
            switch event {
            case .signal(let payload):
                self.wake(payload.split(separator: ",", omittingEmptySubsequences: false).map(String.init))
            case .resync: self.pokeClaims()  // wakes may have been missed: look for work now
            }
        }
    }

    /// The topic of the signal that wakes other nodes for runs: a comma-separated list of run ids, where an
    /// empty one says that runs became claimable.
    static let runsChanged = "runs"

    /// What another node's signal asks of this one: wake the runs named if they execute here (else look for
    /// claimable work), and tell their watchers (streams, `?wait=`) they changed.
    private func wake(_ runIDs: [String]) {
        var claim = false
        for id in runIDs {
            if id.isEmpty {
                claim = true
                continue
            }
            notifier.changed(id)
            if !notifier.poke(runID: id) { claim = true }
        }
        if claim { pokeClaims() }
    }

    /// Tells the other nodes, when `executor`'s transaction commits, that `runIDs` changed (none: that runs
    /// became claimable).
    func announce(_ runIDs: [String], in executor: any SQLExecutor) async throws {
        try await signals?.send(
            Self.runsChanged,
            payload: runIDs.isEmpty ? "" : runIDs.joined(separator: ","),
            in: executor
        )
    }

    // MARK: Service

    /// Lets `run()` begin its work: call it once the schema is in place.
    public func schemaIsReady() {
        startGate.signal()
    }

    public func run() async throws {
        await startGate.wait(timeout: nil)
        if Task.isCancelled { return }
        await recoverOwnLeases()
        logger.info("Engine started", metadata: ["caravan.node_id": "\(configuration.nodeID)"])
        await withDiscardingTaskGroup { outer in
            outer.addTask { await self.commits.run() }
            await withDiscardingTaskGroup { group in
                group.addTask { await self.claimLoop() }
                group.addTask { await self.renewLoop() }
                group.addTask { await self.scheduleLoop() }
                group.addTask { await self.retentionLoop() }
                group.addTask {
                    try? await gracefulShutdown()
                    self.logger.info(
                        "Engine stopping: no new runs are claimed; runs in flight are handed back",
                        metadata: ["caravan.runs": "\(self.active.withLock { $0.count })"]
                    )
                    self.dispatchContinuation.finish()
                }
                for await execution in dispatch {
                    group.addTask { await self.execute(execution) }
                }
                // Shutting down: stop the loops and the executions still running; their leases go back below.
                group.cancelAll()
            }
            await releaseLeases()
            commits.close()
        }
        logger.info("Engine stopped", metadata: ["caravan.node_id": "\(configuration.nodeID)"])
    }

    /// Hands back every run this node still holds, so another node (or this one after a restart) continues it
    /// at once instead of waiting for the lease to expire.
    private func releaseLeases() async {
        do {
            try await database.withTransaction { executor in
                try await self.announce([], in: executor)
                try await self.store.releaseLeases(
                    owner: self.configuration.nodeID,
                    now: clock.nowMilliseconds(),
                    in: executor
                )
            }
        } catch {
            logger.warning(
                "Could not hand back leases on shutdown; they expire on their own",
                metadata: ["error.message": "\(error)"]
            )
        }
    }

    /// Takes back, at once, the runs a previous life of this node held when it died: on SQLite every lease
    /// (the data directory's lock proves no other process runs), on PostgreSQL the leases under this node's id.
    private func recoverOwnLeases() async {
        let now = clock.nowMilliseconds()
        do {
            // SQLite: every lease (the data directory's lock proves no other process runs); PostgreSQL: this node's.
            let owner = database.dialect == .sqlite ? nil : configuration.nodeID
            let recovered = try await database.withTransaction { executor in
                try await self.store.releaseLeases(owner: owner, now: now, in: executor)
            }
            if recovered > 0 {
                logger.info(
                    "Resuming runs left in flight by a previous process",
                    metadata: ["caravan.runs": "\(recovered)"]
                )
            }
        } catch {
            logger.warning(
                "Could not take back earlier leases; they resume when they lapse",
                metadata: ["error.message": "\(error)"]
            )
        }
    }

    // MARK: Claiming

    private var leaseUntil: Int64 { clock.nowMilliseconds() + configuration.leaseDuration.milliseconds }

    private func claimLoop() async {
        while !Task.isCancelled {
            let capacity = configuration.maxActiveRuns - active.withLock { $0.count }
            var claimedCount = 0
            let limit = min(capacity, 256)
            if limit > 0 {
                do {
                    let now = clock.nowMilliseconds()
                    let until = leaseUntil
                    let owner = configuration.nodeID
                    let claimed = try await database.withTransaction { executor in
                        try await self.store.claim(
                            owner: owner,
                            now: now,
                            leaseUntil: until,
                            limit: limit,
                            in: executor
                        )
                    }
                    claimedCount = claimed.count
                    for claim in claimed {
                        dispatchLocally(
                            ClaimedExecution(run: claim.run, fence: claim.fence, launches: [], wakeSeq: claim.wakeSeq)
                        )
                    }
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("Claiming runs failed; retrying", metadata: ["error.message": "\(error)"])
                }
            }
            if claimedCount == limit && limit > 0 { continue }
            await claimWake.wait(timeout: configuration.pollInterval.duration)
        }
    }

    /// Makes the claim loop look for work now (a run was woken on this node).
    func pokeClaims() {
        claimWake.signal()
    }

    /// Removes a run from this node's active set; returns whether it was there.
    func removeActive(_ runID: String) -> Bool {
        active.withLock { $0.remove(runID) != nil }
    }

    func dispatchLocally(_ execution: ClaimedExecution) {
        let inserted = active.withLock { $0.insert(execution.run.id).inserted }
        if inserted {
            dispatchContinuation.yield(execution)
        }
    }

    private func renewLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.leaseRenewInterval.duration)
            let ids = Array(active.withLock { $0 })
            guard !ids.isEmpty else { continue }
            do {
                let owner = configuration.nodeID
                let until = leaseUntil
                let held = try await database.withTransaction { executor in
                    try await self.store.renew(owner: owner, ids: ids, leaseUntil: until, in: executor)
                }
                for id in ids where held[id] != false { notifier.poke(runID: id) }  // lost, or cancel requested
            } catch {
                logger.warning("Renewing leases failed", metadata: ["error.message": "\(error)"])
            }
        }
    }

    private func retentionLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(600))
            if Task.isCancelled { return }
            let cutoff = clock.nowMilliseconds() - configuration.retention.milliseconds
            do {
                var deleted = 0
                while true {
                    let count = try await database.withTransaction { executor in
                        try await self.store.deleteFinished(before: cutoff, limit: 500, in: executor)
                    }
                    deleted += count
                    if count < 500 || Task.isCancelled { break }
                }
                if deleted > 0 {
                    logger.info("Deleted finished runs past retention", metadata: ["caravan.deleted": "\(deleted)"])
                }
            } catch is CancellationError {
                return  // shutting down
            } catch {
                logger.warning("Retention sweep failed", metadata: ["error.message": "\(error)"])
            }
        }
    }
}
