import CaravanCore
import CaravanStorage
import Crypto
import Logging
import ServiceLifecycle

enum AuditDigest {
    static func sha256Hex(_ text: String) -> String {
        SHA256.hash(data: Array(text.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

/// The append-only, hash-chained audit log. Each organization has its own chain (and entries of no organization
/// one more), each entry holding the hash of the one before, so that changing, removing or reordering a stored
/// entry breaks the chain at that entry. Appends are group-committed: a burst of entries costs one transaction.
public final class AuditLog: Service, Sendable {
    private let database: any Database
    private let queue: CommitQueue<AuditRecord, Void>
    private let logger: Logger

    public init(database: any Database, logger: Logger) {
        self.database = database
        self.logger = logger
        self.queue = CommitQueue(database: database, maxBatch: 256) { records, executor in
            try await Self.append(records, in: executor)
            return records.map { _ in () }
        }
    }

    /// Appends an entry and waits until it is committed.
    public func record(_ record: AuditRecord) async throws {
        try await queue.submit(record)
    }

    /// Appends an entry; a failure is logged, not thrown (for paths that must answer regardless).
    public func recordLogged(_ record: AuditRecord) async {
        do {
            try await queue.submit(record)
        } catch {
            logger.error("Could not write an audit entry", metadata: ["caravan.audit_action": "\(record.action)", "error.message": "\(error)"])
        }
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await queue.run(committers: 1)
        } onGracefulShutdown: {
            self.queue.close()
        }
    }

    /// Writes `records` at the ends of their chains, inside the caller's transaction.
    static func append(_ records: [AuditRecord], in executor: any SQLExecutor) async throws {
        var tails: [String: (seq: Int64, hash: String)] = [:]
        let now = Clock.nowMilliseconds()
        var values: [String] = []
        var binds: [SQLValue] = []
        for record in records {
            let chain = record.orgID ?? ""
            if tails[chain] == nil {
                if executor.dialect == .postgres {
                    // Appends to one chain are serialized across nodes; other chains proceed.
                    try await executor.execute("SELECT pg_advisory_xact_lock(hashtext('audit:' || $1))", [.text(chain)])
                }
                let row = try await executor.queryFirst(
                    "SELECT seq, hash FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1", [.text(chain)]
                )
                if let row {
                    tails[chain] = (try row.int("seq"), try row.string("hash"))
                } else {
                    tails[chain] = (0, AuditEntry.genesisHash)
                }
            }
            let tail = tails[chain]!
            let seq = tail.seq + 1
            let hash = AuditEntry.hash(chain: chain, seq: seq, at: now, record: record, previousHash: tail.hash)
            tails[chain] = (seq, hash)
            let base = binds.count
            values.append("(" + (1...14).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
            binds += [
                .text(chain), .int(seq), .int(now), .text(record.orgID),
                .text(record.actor.kind.rawValue), .text(record.actor.id), .text(record.action), .text(record.target),
                .text(record.outcome), .text(record.source), .text(record.requestID), .json(record.details),
                .text(tail.hash), .text(hash),
            ]
        }
        try await executor.execute(
            """
            INSERT INTO audit_log (chain, seq, at, org_id, actor_type, actor_id, action, target, outcome, source,
                request_id, details, previous_hash, hash)
            VALUES \(values.joined(separator: ", "))
            """,
            binds
        )
    }

    /// An organization's entries, newest first.
    /// - Parameters:
    ///   - before: an entry id from a previous page: entries older than it.
    public func list(orgID: String, before: Int64?, limit: Int, action: String? = nil) async throws -> [AuditEntry] {
        try await database.read { executor in
            var sql = "SELECT \(Self.columns) FROM audit_log WHERE chain = $1 AND id < $2"
            var binds: [SQLValue] = [.text(orgID), .int(before ?? Int64.max)]
            if let action {
                sql += " AND action = $3"
                binds.append(.text(action))
            }
            let rows = try await executor.query(sql + " ORDER BY id DESC LIMIT \(limit)", binds)
            var entries: [AuditEntry] = []
            for row in rows { entries.append(try Self.decode(row)) }
            return entries
        }
    }

    static let columns =
        "id, chain, seq, at, org_id, actor_type, actor_id, action, target, outcome, source, request_id, details, previous_hash, hash"

    static func decode(_ row: SQLRow) throws -> AuditEntry {
        AuditEntry(
            id: try row.int("id"),
            chain: try row.string("chain"),
            seq: try row.int("seq"),
            at: try row.int("at"),
            record: AuditRecord(
                orgID: try row.optionalString("org_id"),
                actor: AuditActor(AuditActor.Kind(rawValue: try row.string("actor_type")) ?? .anonymous, try row.string("actor_id")),
                action: try row.string("action"),
                target: try row.string("target"),
                outcome: try row.string("outcome"),
                source: try row.optionalString("source"),
                requestID: try row.optionalString("request_id"),
                details: try row.json("details")
            ),
            previousHash: try row.string("previous_hash"),
            hash: try row.string("hash")
        )
    }
}
