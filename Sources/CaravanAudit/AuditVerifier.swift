import CaravanCore
public import CaravanStorage
import Crypto

/// The result of checking audit chains.
public struct AuditVerification: Sendable, Hashable {
    /// Where a chain first breaks.
    public struct Break: Sendable, Hashable {
        /// The entry's row id (`audit_log.id`), for operators; `nil` when the break is entries that are missing.
        public var entryID: Int64?
        public var chain: String
        /// The entry's position in its chain (its id within the organization), or the first missing position.
        public var seq: Int64
        public var reason: String
    }

    /// How many entries were checked.
    public var checked: Int
    /// The first break, or `nil` when every chain is intact.
    public var firstBreak: Break?
    /// Chains written before chains were keyed and not appended to since: they have no signed head, so the
    /// deletion of their last entries cannot be told from the database alone.
    public var unsignedChains: [String] = []

    public var isIntact: Bool { firstBreak == nil }
}

/// Recomputes audit chains: every entry's HMAC link from its fields and its predecessor's hash, the sequence
/// without gaps, and each chain's end against its signed head (in `audit_heads`, and in a saved heads export when
/// one is given), reporting the first place where a chain breaks.
///
/// Entries written before chains were keyed (no `hash_key`) are checked with plain SHA-256, and only at the start
/// of a chain: an unkeyed entry after a keyed one, or after the chain's signed head, is a break.
public struct AuditVerifier: Sendable {
    let database: any Database
    let keys: AuditKeys

    public init(database: any Database, keys: AuditKeys) {
        self.database = database
        self.keys = keys
    }

    /// Verifies one organization's chain (`""` for entries of no organization), or every chain when `chain` is
    /// `nil`, stopping at the first break.
    /// - Parameters:
    ///   - saved: a heads export kept elsewhere (`AuditHeadsExport.parse`): every chain it names must still reach
    ///     its position with its hash.
    public func verify(chain: String? = nil, saved: AuditHeadsExport? = nil) async throws -> AuditVerification {
        let chains: [String]
        if let chain {
            chains = [chain]
        } else {
            var names = Set(
                try await database.read { executor in
                    try await executor.query(
                        "SELECT DISTINCT chain FROM audit_log UNION SELECT chain FROM audit_heads",
                        []
                    )
                    .map { try $0.string("chain") }
                }
            )
            names.formUnion(saved?.heads.keys ?? [:].keys)
            chains = names.sorted()
        }
        var checked = 0
        var unsigned: [String] = []
        for chain in chains {
            // The head is read before the entries: appends that land meanwhile only add entries beyond it.
            let headRow = try await database.read { executor in
                try await executor.queryFirst(
                    "SELECT seq, hash, entries, hash_key, mac FROM audit_heads WHERE chain = $1",
                    [.text(chain)]
                )
            }
            var head: AuditHead?
            if let headRow {
                let stored = AuditHead(
                    chain: chain,
                    seq: try headRow.int("seq"),
                    hash: try headRow.string("hash"),
                    entries: try headRow.int("entries")
                )
                let keyID = try headRow.string("hash_key")
                func broken(_ reason: String) -> AuditVerification {
                    AuditVerification(
                        checked: checked,
                        firstBreak: .init(entryID: nil, chain: chain, seq: stored.seq, reason: reason)
                    )
                }
                guard let key = keys.key(id: keyID) else {
                    return broken(
                        "the chain's head is signed with a master key this server does not hold (key \(keyID))"
                    )
                }
                guard AuditDigest.constantTimeEqual(stored.mac(key: key), try headRow.string("mac")),
                    stored.entries == stored.seq
                else {
                    return broken("the chain's signed head was altered")
                }
                head = stored
            }
            let savedHead = saved?.heads[chain]
            var previousHash = AuditEntry.genesisHash
            var expectedSeq: Int64 = 1
            var keyed = false
            while true {
                let page = try await database.read { [expectedSeq] executor in
                    try await executor.query(
                        "SELECT \(AuditLog.columns) FROM audit_log WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT 1000",
                        [.text(chain), .int(expectedSeq)]
                    )
                }
                for row in page {
                    let id = (try? row.int("id")) ?? -1
                    let seq = (try? row.int("seq")) ?? -1
                    func broken(_ reason: String) -> AuditVerification {
                        AuditVerification(
                            checked: checked,
                            firstBreak: .init(entryID: id, chain: chain, seq: seq, reason: reason)
                        )
                    }
                    guard let entry = try? AuditLog.decode(row) else { return broken("the entry cannot be read") }
                    guard entry.seq == expectedSeq else {
                        return broken("entries \(expectedSeq)..\(entry.seq - 1) of the chain are missing")
                    }
                    guard entry.previousHash == previousHash else {
                        return broken("previous_hash does not match the hash of the entry before")
                    }
                    var key: SymmetricKey?
                    if let keyID = entry.hashKey {
                        guard let found = keys.key(id: keyID) else {
                            return broken(
                                "the entry is linked with a master key this server does not hold (key \(keyID))"
                            )
                        }
                        key = found
                        keyed = true
                    } else {
                        guard !keyed, head.map({ entry.seq <= $0.seq }) ?? true else {
                            return broken(
                                "the entry is linked without the audit key after keyed entries: it was rewritten"
                            )
                        }
                    }
                    let recomputed = AuditEntry.hash(
                        chain: chain,
                        seq: entry.seq,
                        at: entry.at,
                        record: entry.record,
                        previousHash: entry.previousHash,
                        key: key
                    )
                    guard AuditDigest.constantTimeEqual(recomputed, entry.hash) else {
                        return broken("the entry was changed after it was written")
                    }
                    if let head, entry.seq == head.seq, entry.hash != head.hash {
                        return broken("the entry does not match the chain's signed head")
                    }
                    if let savedHead, entry.seq == savedHead.seq, entry.hash != savedHead.hash {
                        return broken("the entry does not match the saved heads: the chain was rewritten")
                    }
                    checked += 1
                    previousHash = entry.hash
                    expectedSeq += 1
                }
                if page.count < 1000 { break }
            }
            let last = expectedSeq - 1
            func missing(_ reason: String) -> AuditVerification {
                AuditVerification(
                    checked: checked,
                    firstBreak: .init(entryID: nil, chain: chain, seq: last + 1, reason: reason)
                )
            }
            if let head, last < head.seq {
                return missing(
                    last == 0
                        ? "the whole chain (\(head.seq) entries, per its signed head) was deleted"
                        : "entries \(last + 1)..\(head.seq) at the end of the chain were deleted (its signed head is at \(head.seq))"
                )
            }
            if let savedHead, last < savedHead.seq {
                return missing(
                    "entries \(last + 1)..\(savedHead.seq) at the end of the chain were deleted (the saved heads reach \(savedHead.seq))"
                )
            }
            if head == nil, keyed {
                return missing("the chain's signed head was deleted")
            }
            if head == nil, last > 0 { unsigned.append(chain) }
        }
        return AuditVerification(checked: checked, firstBreak: nil, unsignedChains: unsigned)
    }
}
