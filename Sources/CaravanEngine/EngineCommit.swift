import CaravanAudit
import CaravanCore
public import CaravanStorage
import CaravanWorkflow

/// One unit of work for the group committer.
indirect enum CommitWork: Sendable {
    /// Insert a new run (queued) with its first events; when `start` is given, admit it at once if the
    /// workflow's and the organization's limits allow: then it is inserted as `start` planned it, leased to this
    /// node. `audit` is the entry of the request that started it and `companion` what another module writes
    /// with it, both committed with it (and not at all if the run was not inserted).
    case create(NewRun, events: [RunEvent], start: PlannedStart?, audit: AuditRecord?, companion: RunCompanion?)
    /// Write a run's progress under its lease, with side effects that must commit with it.
    case advance(RunAdvance)
}

extension CommitWork {
    /// The organization whose run this is: the group committer's lane.
    var orgID: String {
        switch self {
        case .create(let new, _, _, _, _): new.run.orgID
        case .advance(let advance): advance.update.run.orgID
        }
    }

    /// Whether a caller outside the engine sent it (a run started by a request, a trigger, a schedule), as
    /// opposed to progress of the runs the engine executes: the group committer's batches may wait a moment for
    /// these (`CommitQueue`'s linger).
    var isArrival: Bool {
        if case .create = self { true } else { false }
    }

    /// Whether committing it may admit a run, and so takes its organization's admission lock.
    var admits: Bool {
        switch self {
        case .create(_, _, let start, _, _): start != nil
        case .advance(let advance): advance.admission != nil
        }
    }
}

/// Rows another module commits in the transaction that inserts a new run, and only if it is inserted: a trigger's
/// delivery record, so that a delivery and the run it started commit together, in one transaction. The companions
/// of one commit batch that carry the same `Row` type are written together, in one call of their writer.
public struct RunCompanion: Sendable {
    /// The writer's key: the type of its rows.
    let kind: ObjectIdentifier
    let row: any Sendable
    let writeAll:
        @Sendable (_ rows: [(runID: String, row: any Sendable)], _ executor: any SQLExecutor) async throws -> Void

    /// - Parameters:
    ///   - row: what to write for this run.
    ///   - writer: writes the rows of every companion of a batch with this `Row` type (one writer a type), each
    ///     with its new run's id. It must not fail for a reason of its own (a conflict is to be ignored,
    ///     `ON CONFLICT DO NOTHING`): a failure fails every run of its commit batch.
    public init<Row: Sendable>(
        _ row: Row,
        writer:
            @escaping @Sendable (_ rows: [(runID: String, row: Row)], _ executor: any SQLExecutor) async throws
            -> Void
    ) {
        self.kind = ObjectIdentifier(Row.self)
        self.row = row
        self.writeAll = { rows, executor in
            try await writer(rows.compactMap { entry in (entry.row as? Row).map { (entry.runID, $0) } }, executor)
        }
    }

    /// Writes the companions of the runs inserted, one call a kind, in the order first seen.
    static func write(
        _ companions: [(runID: String, companion: RunCompanion)],
        in executor: any SQLExecutor
    )
        async throws
    {
        var groups: [(writer: RunCompanion, rows: [(runID: String, row: any Sendable)])] = []
        for (runID, companion) in companions {
            if let index = groups.firstIndex(where: { $0.writer.kind == companion.kind }) {
                groups[index].rows.append((runID, companion.row))
            } else {
                groups.append((companion, [(runID, companion.row)]))
            }
        }
        for group in groups { try await group.writer.writeAll(group.rows, executor) }
    }
}

/// One entry of a step's journal.
struct JournalEntry: Sendable {
    var runID: String
    var step: String
    var key: String
    var value: JSONValue
    var at: Int64
}

/// Concurrency limits to check when admitting a run.
struct Admission: Sendable {
    var workflowLimit: Int?
    var organizationLimit: Int
}

/// A new run as it stands if admitted at creation, planned before the commit (no step runs inside a
/// transaction): started, its root steps planned, and its instant root steps (templates) already run, so that
/// their results commit with the run and the steps that need them start only after that commit.
struct PlannedStart: Sendable {
    var admission: Admission
    var run: RunRecord
    var events: [RunEvent]
    /// The steps to launch once committed.
    var launches: [StepLaunch]
    var owner: String
    var leaseUntil: Int64
}

/// A run's progress under its lease.
struct RunAdvance: Sendable {
    var update: RunUpdate
    var events: [RunEvent]
    var children: [NewRun] = []
    var childEvents: [RunEvent] = []
    var consumedSignals: [Int64] = []
    /// Journal entries of running steps, written only if the lease still holds.
    var journal: [JournalEntry] = []
    /// A parent run to wake because this run finished.
    var wakeParent: String?
    /// A workflow whose oldest parked run should be woken because this run freed a slot.
    var freedSlot: (orgID: String, workflow: String)?
    /// For a queued run: admit it first; if the limits do not allow, park `parkedState` (the run as it was,
    /// unleased and asleep until a slot frees) instead of writing `update` and `events`.
    var admission: Admission?
    var parkedState: RunRecord?
}

/// What became of a unit of work.
enum CommitOutcome: Sendable {
    /// The run was inserted (or, for a duplicate idempotency key, not); when admitted, it is leased to this node
    /// and `launches` were recorded as started.
    case created(inserted: Bool, admitted: AdmittedRun?)
    /// The write landed (`true`), or the lease was lost to another node (`false`).
    case advanced(Bool)
    /// The run could not be admitted and was parked until a slot frees.
    case parked
}

/// A run admitted at creation, with the steps its first commit started.
struct AdmittedRun: Sendable {
    var run: RunRecord
    var fence: Int64
    var launches: [StepLaunch]
}

/// Applies a batch of commit work inside one transaction.
struct CommitApplier: Sendable {
    let store = RunStore()
    /// The keys that link audit entries committed with runs.
    let auditKeys: AuditKeys?
    /// How other nodes learn of runs this batch made claimable (children, woken parents, freed slots).
    let signals: ClusterSignals?
    /// The clock that stamps the audit entries.
    let clock: WallClock

    /// Writes a batch in as few round trips as the order of its parts allows: on PostgreSQL every advisory lock
    /// it needs, the admission counts and the audit chains' tails (locked by their heads' rows) in one statement
    /// (`RunStore.prelude`), the runs' updates and inserts together (when no insert depends on an update
    /// landing), then every remaining insert in one statement (`SQLWriteBatch`): with `BEGIN` and `COMMIT`, five
    /// round trips. A group commit holds one organization's locks from
    /// its start: its lane has one transaction in flight, so nothing of this node waits on them meanwhile.
    func apply(_ batch: [CommitWork], in executor: any SQLExecutor) async throws -> [CommitOutcome] {
        var outcomes = [CommitOutcome?](repeating: nil, count: batch.count)
        var capacity = CapacityLedger()
        var writes = SQLWriteBatch()

        var counting = Set<RunStore.OrganizationWorkflow>()
        var auditChains = Set<String>()
        for work in batch {
            switch work {
            case .create(let new, _, let start, let audit, _):
                if start != nil { counting.insert(.init(orgID: new.run.orgID, workflow: new.run.workflow)) }
                if let audit { auditChains.insert(audit.orgID ?? "") }
            case .advance(let advance):
                if advance.admission != nil {
                    counting.insert(.init(orgID: advance.update.run.orgID, workflow: advance.update.run.workflow))
                }
            }
        }
        let prelude = try await store.prelude(
            admissionsOf: Set(batch.filter(\.admits).map(\.orgID)),
            eventsOf: Set(batch.map(\.orgID)),
            counting: counting,
            auditChains: auditChains,
            in: executor
        )
        capacity.seed(prelude)

        // 1. Admit new runs.
        var newRuns: [NewRun] = []
        var newEvents: [RunEvent] = []
        var admitted: [Int: AdmittedRun] = [:]
        for (index, work) in batch.enumerated() {
            guard case .create(var new, let events, let start, _, _) = work else { continue }
            var allEvents = events
            if let start, try await capacity.take(for: new.run, start.admission, store: store, in: executor) {
                new.run = start.run
                allEvents += start.events
                if !new.run.status.isTerminal {  // a run of instant steps only may already be done
                    new.leaseOwner = start.owner
                    new.leaseExpiresAt = start.leaseUntil
                    new.wakeAt = start.leaseUntil
                }
                admitted[index] = AdmittedRun(run: new.run, fence: 1, launches: start.launches)
            }
            newRuns.append(new)
            newEvents += allEvents
        }

        // 2. Progress of runs under lease (admitting queued ones first), written with the new runs unless some
        // of those are children, which are inserted only if their parent's write landed.
        var updates: [RunUpdate] = []
        var parked = Set<Int>()
        var children = false
        for (index, work) in batch.enumerated() {
            guard case .advance(let advance) = work else { continue }
            children = children || !advance.children.isEmpty
            if let admission = advance.admission,
                !(try await capacity.take(for: advance.update.run, admission, store: store, in: executor))
            {
                var park = advance.update
                park.run = advance.parkedState ?? advance.update.run
                park.newOwner = nil
                park.leaseExpiresAt = nil
                park.wakeAt = nil
                updates.append(park)
                parked.insert(index)
                continue
            }
            updates.append(advance.update)
        }
        var written = Set<String>()
        var inserted = Set<String>()
        if children {
            written = try await store.update(updates, in: executor)
        } else {
            (written, inserted) = try await store.write(updates, inserting: newRuns, in: executor)
        }

        var orgs: [String: String] = [:]
        var events: [RunEvent] = []
        var wakes: [String] = []
        var claimable = false
        for (index, work) in batch.enumerated() {
            guard case .advance(let advance) = work else { continue }
            let landed = written.contains(advance.update.run.id)
            if parked.contains(index) {
                outcomes[index] = landed ? .parked : .advanced(false)
                continue
            }
            outcomes[index] = .advanced(landed)
            guard landed else { continue }
            orgs[advance.update.run.id] = advance.update.run.orgID
            events += advance.events
            newRuns += advance.children
            newEvents += advance.childEvents
            store.insertJournal(advance.journal, into: &writes)
            store.consumeSignals(advance.consumedSignals, at: advance.update.run.updatedAt, into: &writes)
            if let parent = advance.wakeParent {
                try await store.wake(runID: parent, at: advance.update.run.updatedAt, in: executor)
                wakes.append(parent)
            }
            if let slot = advance.freedSlot {
                try await store.wakeQueued(
                    orgID: slot.orgID,
                    workflow: slot.workflow,
                    now: advance.update.run.updatedAt,
                    in: executor
                )
            }
            // Runs another node may now take: children (claimed wherever there is room), freed slots.
            if !advance.children.isEmpty || advance.freedSlot != nil { claimable = true }
        }
        if let signals, !wakes.isEmpty || claimable {
            try await signals.send(
                Engine.runsChanged,
                payload: (wakes + (claimable ? [""] : [])).joined(separator: ","),
                in: executor
            )
        }
        if children {
            inserted = try await store.insert(newRuns, in: executor)
        }

        for new in newRuns where inserted.contains(new.run.id) { orgs[new.run.id] = new.run.orgID }
        events += newEvents.filter { inserted.contains($0.runID) }
        store.append(events, orgs: orgs, into: &writes)

        var audit: [AuditRecord] = []
        var companions: [(runID: String, companion: RunCompanion)] = []
        for (index, work) in batch.enumerated() {
            guard case .create(let new, _, _, let entry, let companion) = work else { continue }
            let isInserted = inserted.contains(new.run.id)
            outcomes[index] = .created(inserted: isInserted, admitted: isInserted ? admitted[index] : nil)
            if isInserted, let companion { companions.append((new.run.id, companion)) }
            if isInserted, var entry {
                entry.target = "run:\(new.run.id)"
                audit.append(entry)
            }
        }
        try await RunCompanion.write(companions, in: executor)
        // On PostgreSQL the audit chains' locks are held from here to the commit.
        if !audit.isEmpty {
            guard let auditKeys else {
                throw CaravanError(.internal, "Runs started with an audit entry need the audit keys.")
            }
            try await AuditLog.append(
                audit,
                keys: auditKeys,
                at: clock.nowMilliseconds(),
                in: executor,
                lockedTails: prelude.auditTails,
                writes: &writes
            )
        }
        try await writes.execute(in: executor)
        return outcomes.map { $0 ?? .advanced(false) }
    }
}

/// Counts of executing runs, read once per organization and workflow in a batch and updated as runs are admitted.
struct CapacityLedger {
    private var organizations: [String: Int] = [:]
    private var workflows: [String: Int] = [:]

    /// Starts from the counts a batch's prelude read under its locks.
    mutating func seed(_ prelude: RunStore.Prelude) {
        organizations = prelude.organizations
        workflows = prelude.workflows
    }

    /// Admits `run` if both limits allow, counting it. The caller holds the organization's admission lock.
    mutating func take(
        for run: RunRecord,
        _ admission: Admission,
        store: RunStore,
        in executor: any SQLExecutor
    ) async throws -> Bool {
        let workflowKey = run.orgID + "/" + run.workflow
        if organizations[run.orgID] == nil || (admission.workflowLimit != nil && workflows[workflowKey] == nil) {
            let counts = try await store.activeCounts(orgID: run.orgID, workflow: run.workflow, in: executor)
            if organizations[run.orgID] == nil { organizations[run.orgID] = counts.org }
            if workflows[workflowKey] == nil { workflows[workflowKey] = counts.workflow }
        }
        let organizationCount = organizations[run.orgID] ?? 0
        let workflowCount = workflows[workflowKey] ?? 0
        guard organizationCount < admission.organizationLimit else { return false }
        if let limit = admission.workflowLimit, workflowCount >= limit { return false }
        organizations[run.orgID] = organizationCount + 1
        workflows[workflowKey] = workflowCount + 1
        return true
    }
}
