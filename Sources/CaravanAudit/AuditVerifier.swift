import CaravanStorage

/// The result of checking audit chains.
public struct AuditVerification: Sendable, Hashable {
    /// Where a chain first breaks.
    public struct Break: Sendable, Hashable {
        /// The entry's id (`audit_log.id`).
        public var entryID: Int64
        public var chain: String
        public var seq: Int64
        public var reason: String
    }

    /// How many entries were checked.
    public var checked: Int
    /// The first break, or `nil` when every chain is intact.
    public var firstBreak: Break?

    public var isIntact: Bool { firstBreak == nil }
}

/// Recomputes audit chains: every entry's hash from its fields and its predecessor's hash, and the sequence
/// without gaps, reporting the first entry where a chain breaks.
public struct AuditVerifier: Sendable {
    let database: any Database

    public init(database: any Database) {
        self.database = database
    }

    /// Verifies one organization's chain (`""` for entries of no organization), or every chain when `chain` is
    /// `nil`, stopping at the first break.
    public func verify(chain: String? = nil) async throws -> AuditVerification {
        let chains: [String]
        if let chain {
            chains = [chain]
        } else {
            chains = try await database.read { executor in
                try await executor.query("SELECT DISTINCT chain FROM audit_log ORDER BY chain", []).map { try $0.string("chain") }
            }
        }
        var checked = 0
        for chain in chains {
            var previousHash = AuditEntry.genesisHash
            var expectedSeq: Int64 = 1
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
                        AuditVerification(checked: checked, firstBreak: .init(entryID: id, chain: chain, seq: seq, reason: reason))
                    }
                    guard let entry = try? AuditLog.decode(row) else { return broken("the entry cannot be read") }
                    guard entry.seq == expectedSeq else {
                        return broken("entries \(expectedSeq)..\(entry.seq - 1) of the chain are missing")
                    }
                    guard entry.previousHash == previousHash else {
                        return broken("previous_hash does not match the hash of the entry before")
                    }
                    let recomputed = AuditEntry.hash(
                        chain: chain, seq: entry.seq, at: entry.at, record: entry.record, previousHash: entry.previousHash
                    )
                    guard recomputed == entry.hash else { return broken("the entry was changed after it was written") }
                    checked += 1
                    previousHash = entry.hash
                    expectedSeq += 1
                }
                if page.count < 1000 { break }
            }
        }
        return AuditVerification(checked: checked, firstBreak: nil)
    }
}
