public import CaravanCore
public import CaravanStorage
import Crypto
import Foundation
public import Logging
public import ServiceLifecycle

enum AuditDigest {
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    static func sha256Hex(_ text: String) -> String {
        hex(SHA256.hash(data: Array(text.utf8)))
    }

    static func hmacHex(_ text: String, key: SymmetricKey) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: key))
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// The append-only, keyed hash-chained audit log. Each organization has its own chain (and entries of no
/// organization one more), each entry holding the HMAC (under a key derived from the master key) of the one
/// before, so that changing, removing or reordering a stored entry breaks the chain at that entry, and no one
/// without the master key can write a chain that verifies. Each chain's signed head (last position, hash, count)
/// is updated in the same transaction as the appends, and exported periodically, so that a deletion of a chain's
/// tail or of a whole chain shows too. Appends are group-committed: a burst of entries costs one transaction.
public final class AuditLog: Service, Sendable {
    private let database: any Database
    private let queue: CommitQueue<AuditRecord, Void>
    private let logger: Logger
    /// The keys that link the chains.
    public let keys: AuditKeys
    /// Where the signed heads are written periodically (mode 0600), when the server has a data directory.
    public let headsFile: String?
    private let exportInterval: Duration
    private let clock: WallClock

    /// - Parameters:
    ///   - keys: the audit keys, from the master keys.
    ///   - headsFile: where to write the signed heads every `exportInterval` (e.g. `<data>/audit-heads.json`);
    ///     `nil` to only log them.
    public init(
        database: any Database,
        logger: Logger,
        keys: AuditKeys,
        headsFile: String? = nil,
        exportInterval: Duration = .seconds(60),
        clock: WallClock = .system
    ) {
        self.clock = clock
        self.database = database
        self.logger = logger
        self.keys = keys
        self.headsFile = headsFile
        self.exportInterval = exportInterval
        self.queue = CommitQueue(database: database, maxBatch: 256) { records, executor in
            try await Self.append(records, keys: keys, at: clock.nowMilliseconds(), in: executor)
            return records.map { _ in () }
        }
    }

    /// A verifier of this log's chains, with its keys.
    public var verifier: AuditVerifier { AuditVerifier(database: database, keys: keys) }

    /// Appends an entry and waits until it is committed.
    public func record(_ record: AuditRecord) async throws {
        try await queue.submit(record)
    }

    /// Appends an entry; a failure is logged, not thrown (for paths that must answer regardless).
    public func recordLogged(_ record: AuditRecord) async {
        do {
            try await queue.submit(record)
        } catch {
            logger.error(
                "Could not write an audit entry",
                metadata: ["caravan.audit_action": "\(record.action)", "error.message": "\(error)"]
            )
        }
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.queue.run() }
                group.addTask { await self.exportPeriodically() }
                // The queue ends when closed at shutdown; then the exporter stops.
                await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.queue.close()
        }
        // A last export, so that what was appended before shutdown is checkpointed too.
        _ = try? await exportHeads(previous: nil)
    }

    private func exportPeriodically() async {
        var last: [String: AuditHead]?
        while !Task.isCancelled {
            do { try await Task.sleep(for: exportInterval) } catch { return }
            do {
                last = try await exportHeads(previous: last)
            } catch {
                logger.debug("Could not export the audit heads", metadata: ["error.message": "\(error)"])
            }
        }
    }

    /// Every chain's head, signed: logged (when changed since `previous`) and written to `headsFile`.
    /// - Returns: the heads exported.
    @discardableResult
    public func exportHeads(previous: [String: AuditHead]?) async throws -> [String: AuditHead] {
        let heads = try await self.heads()
        guard heads != previous else { return heads }
        let line = AuditHeadsExport(at: clock.nowMilliseconds(), heads: heads).signed(with: keys)
        logger.info("Audit chain heads", metadata: ["caravan.audit_heads": "\(line)"])
        if let headsFile { try Self.writePrivately(line + "\n", to: headsFile) }
        return heads
    }

    /// The heads stored in the database, by chain, as of now (their signatures are checked by the verifier).
    public func heads() async throws -> [String: AuditHead] {
        try await database.read { executor in
            var heads: [String: AuditHead] = [:]
            for row in try await executor.query("SELECT chain, seq, hash, entries FROM audit_heads", []) {
                let head = AuditHead(
                    chain: try row.string("chain"),
                    seq: try row.int("seq"),
                    hash: try row.string("hash"),
                    entries: try row.int("entries")
                )
                heads[head.chain] = head
            }
            return heads
        }
    }

    /// Replaces `path` with `text`, readable by this user only (written beside it, then renamed over it).
    static func writePrivately(_ text: String, to path: String) throws {
        let temporary = path + ".tmp"
        unlink(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw CaravanError(.internal, "Cannot create \(temporary) (errno \(errno)).") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw CaravanError(.internal, "Cannot write \(path).")
        }
    }

    /// Writes `records` at the ends of their chains, and their chains' signed heads, inside the caller's
    /// transaction: the audit log's own group commit, or the transaction of the write being audited (a run start),
    /// so that the write and its entry commit together or not at all. Call it last in a transaction: on
    /// PostgreSQL it holds each chain's lock (taken in chain order, so that two transactions never wait on each
    /// other) until the commit. A chain continues from its head when the head is ahead of the last stored entry, so
    /// that entries deleted from the end of a chain leave a gap the verifier names rather than being written over.
    public static func append(
        _ records: [AuditRecord],
        keys: AuditKeys,
        at now: Int64,
        in executor: any SQLExecutor
    ) async throws {
        var writes = SQLWriteBatch()
        try await append(records, keys: keys, at: now, in: executor, writes: &writes)
        try await writes.execute(in: executor)
    }

    /// Like `append(_:keys:at:in:)`, but the chains are only locked and read here: the entries and heads are added
    /// to `writes`, which the caller executes before its transaction commits (with its own writes, in one round
    /// trip on PostgreSQL).
    /// - Parameter lockedTails: rows the caller already read in this transaction, by chain, with the columns
    ///   `head_seq`, `head_hash`, `tail_seq` and `tail_hash`, locked as `lockedTail(of:in:)` locks them.
    public static func append(
        _ records: [AuditRecord],
        keys: AuditKeys,
        at now: Int64,
        in executor: any SQLExecutor,
        lockedTails: [String: SQLRow] = [:],
        writes: inout SQLWriteBatch
    ) async throws {
        guard !records.isEmpty else { return }
        var tails: [String: (seq: Int64, hash: String)] = [:]
        let order = Set(records.map { $0.orgID ?? "" }).sorted()
        for chain in order {
            if let row = lockedTails[chain] {
                tails[chain] = try tail(from: row)
            } else {
                tails[chain] = try await lockedTail(of: chain, in: executor)
            }
        }
        var values: [String] = []
        var binds: [SQLValue] = []
        for record in records {
            let chain = record.orgID ?? ""
            let tail = tails[chain]!  // read above for every chain of the records
            let seq = tail.seq + 1
            let hash = AuditEntry.hash(
                chain: chain,
                seq: seq,
                at: now,
                record: record,
                previousHash: tail.hash,
                key: keys.current
            )
            tails[chain] = (seq, hash)
            let base = binds.count
            values.append("(" + (1...15).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
            binds += [
                .text(chain), .int(seq), .int(now), .text(record.orgID),
                .text(record.actor.kind.rawValue), .text(record.actor.id), .text(record.action), .text(record.target),
                .text(record.outcome), .text(record.source), .text(record.requestID), .json(record.details),
                .text(tail.hash), .text(hash), .text(keys.currentID),
            ]
        }
        writes.add(
            """
            INSERT INTO audit_log (chain, seq, at, org_id, actor_type, actor_id, action, target, outcome, source,
                request_id, details, previous_hash, hash, hash_key)
            VALUES \(values.joined(separator: ", "))
            """,
            binds
        )
        var headValues: [String] = []
        var headBinds: [SQLValue] = []
        for chain in order {
            guard let tail = tails[chain] else { continue }
            let head = AuditHead(chain: chain, seq: tail.seq, hash: tail.hash, entries: tail.seq)
            let base = headBinds.count
            headValues.append("(" + (1...7).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
            headBinds += [
                .text(chain), .int(head.seq), .text(head.hash), .int(head.entries), .text(keys.currentID),
                .text(head.mac(key: keys.current)), .int(now),
            ]
        }
        writes.add(
            """
            INSERT INTO audit_heads (chain, seq, hash, entries, hash_key, mac, updated_at)
            VALUES \(headValues.joined(separator: ", "))
            ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, entries = excluded.entries,
                hash_key = excluded.hash_key, mac = excluded.mac, updated_at = excluded.updated_at
            """,
            headBinds
        )
    }

    /// A chain's last entry (its head, when the head is ahead of the stored entries), locked until the transaction
    /// ends so that appends to one chain are serialized across nodes while other chains proceed. On PostgreSQL a
    /// chain with a head is locked by its head's row, in the statement that reads it (a concurrent append's head
    /// is read once that append committed); a chain without one yet by an advisory lock, after which the head is
    /// looked for again.
    static func lockedTail(of chain: String, in executor: any SQLExecutor) async throws -> (seq: Int64, hash: String) {
        let lastEntry = """
            (SELECT seq FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1) AS tail_seq,
            (SELECT hash FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1) AS tail_hash
            """
        let headFirst = "SELECT head.seq AS head_seq, head.hash AS head_hash, \(lastEntry)"
        var row: SQLRow?
        if executor.dialect == .postgres {
            let lockedHead = headFirst + " FROM audit_heads head WHERE head.chain = $1 FOR UPDATE OF head"
            row = try await executor.queryFirst(lockedHead, [.text(chain)])
            if row == nil {
                try await executor.execute("SELECT pg_advisory_xact_lock(hashtext('audit:' || $1))", [.text(chain)])
                row = try await executor.queryFirst(lockedHead, [.text(chain)])
            }
        }
        if row == nil {
            row = try await executor.queryFirst(
                """
                SELECT (SELECT seq FROM audit_heads WHERE chain = $1) AS head_seq,
                    (SELECT hash FROM audit_heads WHERE chain = $1) AS head_hash, \(lastEntry)
                """,
                [.text(chain)]
            )
        }
        return try row.map(tail(from:)) ?? (0, AuditEntry.genesisHash)
    }

    /// A chain's tail from a row of its head (`head_seq`, `head_hash`) and last entry (`tail_seq`, `tail_hash`):
    /// the head when it is ahead of the stored entries, the genesis hash for an empty chain.
    static func tail(from row: SQLRow) throws -> (seq: Int64, hash: String) {
        var tail: (seq: Int64, hash: String) = (0, AuditEntry.genesisHash)
        if let seq = try row.optionalInt("tail_seq"), let hash = try row.optionalString("tail_hash") {
            tail = (seq, hash)
        }
        if let seq = try row.optionalInt("head_seq"), seq > tail.seq, let hash = try row.optionalString("head_hash") {
            tail = (seq, hash)
        }
        return tail
    }

    /// An organization's entries, newest first.
    /// - Parameters:
    ///   - before: an entry's `seq` (its id within the organization) from a previous page: entries older than it.
    public func list(orgID: String, before: Int64?, limit: Int, action: String? = nil) async throws -> [AuditEntry] {
        try await database.read { executor in
            var sql = "SELECT \(Self.columns) FROM audit_log WHERE chain = $1 AND seq < $2"
            var binds: [SQLValue] = [.text(orgID), .int(before ?? Int64.max)]
            if let action {
                sql += " AND action = $3"
                binds.append(.text(action))
            }
            let rows = try await executor.query(sql + " ORDER BY seq DESC LIMIT \(limit)", binds)
            var entries: [AuditEntry] = []
            for row in rows { entries.append(try Self.decode(row)) }
            return entries
        }
    }

    static let columns =
        "id, chain, seq, at, org_id, actor_type, actor_id, action, target, outcome, source, request_id, details, previous_hash, hash, hash_key"

    static func decode(_ row: SQLRow) throws -> AuditEntry {
        AuditEntry(
            id: try row.int("id"),
            chain: try row.string("chain"),
            seq: try row.int("seq"),
            at: try row.int("at"),
            record: AuditRecord(
                orgID: try row.optionalString("org_id"),
                actor: AuditActor(
                    AuditActor.Kind(rawValue: try row.string("actor_type")) ?? .anonymous,
                    try row.string("actor_id")
                ),
                action: try row.string("action"),
                target: try row.string("target"),
                outcome: try row.string("outcome"),
                source: try row.optionalString("source"),
                requestID: try row.optionalString("request_id"),
                details: try row.json("details")
            ),
            previousHash: try row.string("previous_hash"),
            hash: try row.string("hash"),
            hashKey: try row.optionalString("hash_key")
        )
    }
}
