public import CaravanCore
import Crypto

/// Who did something: a user, an API key, the system itself, or someone not signed in.
public struct AuditActor: Sendable, Hashable {
    public enum Kind: String, Sendable {
        case user
        case apiKey = "api_key"
        case system, anonymous
    }

    public var kind: Kind
    /// The user or key id; for `anonymous`, what they claimed to be (e.g. the email of a failed login).
    public var id: String

    public init(_ kind: Kind, _ id: String) {
        self.kind = kind
        self.id = id
    }

    public static let system = AuditActor(.system, "caravan")
}

/// What happened: an entry of the audit log, as recorded.
public struct AuditRecord: Sendable, Hashable {
    /// The organization it happened in; `nil` for what belongs to none (e.g. a failed login of an unknown email).
    public var orgID: String?
    public var actor: AuditActor
    /// A stable dotted name, e.g. `workflow.put`, `auth.login_failed`, `secret.use`, `permission.denied`.
    public var action: String
    /// What it was done to, e.g. `workflow:billing` or `run:run_…`.
    public var target: String
    /// `success`, `failure` or `denied`.
    public var outcome: String
    /// The client's address, when it came over HTTP.
    public var source: String?
    public var requestID: String?
    /// Anything else worth keeping (never a secret value).
    public var details: JSONValue?

    public init(
        orgID: String?,
        actor: AuditActor,
        action: String,
        target: String,
        outcome: String = "success",
        source: String? = nil,
        requestID: String? = nil,
        details: JSONValue? = nil
    ) {
        self.orgID = orgID
        self.actor = actor
        self.action = action
        self.target = target
        self.outcome = outcome
        self.source = source
        self.requestID = requestID
        self.details = details
    }
}

/// A stored entry: the record, its place in its organization's chain and the hashes that link it.
public struct AuditEntry: Sendable, Hashable {
    /// The row's id in the database: for operators (`caravan audit verify`), never shown through the API, where it
    /// would reveal how much other organizations do.
    public var id: Int64
    /// The chain the entry belongs to: its organization's id, or `""` for entries of no organization.
    public var chain: String
    /// 1 for the chain's first entry, then consecutive: the entry's id within its organization.
    public var seq: Int64
    public var at: Int64
    public var record: AuditRecord
    public var previousHash: String
    public var hash: String
    /// The id of the audit key whose HMAC links the entry (`AuditKeys`); `nil` for entries written before chains
    /// were keyed, linked with plain SHA-256.
    public var hashKey: String?

    /// The text a link is computed over: the previous entry's hash and the entry's canonical JSON.
    static func linkText(chain: String, seq: Int64, at: Int64, record: AuditRecord, previousHash: String) -> String {
        let body: JSONValue = [
            "chain": .string(chain),
            "seq": .int(seq),
            "at": .int(at),
            "org_id": record.orgID.map(JSONValue.string) ?? .null,
            "actor_type": .string(record.actor.kind.rawValue),
            "actor_id": .string(record.actor.id),
            "action": .string(record.action),
            "target": .string(record.target),
            "outcome": .string(record.outcome),
            "source": record.source.map(JSONValue.string) ?? .null,
            "request_id": record.requestID.map(JSONValue.string) ?? .null,
            "details": record.details ?? .null,
        ]
        return previousHash + "\n" + body.canonicalText
    }

    /// The hash that links an entry: HMAC-SHA256 under the audit key of the link text, or, with no key (entries
    /// written before chains were keyed), its plain SHA-256.
    static func hash(
        chain: String,
        seq: Int64,
        at: Int64,
        record: AuditRecord,
        previousHash: String,
        key: SymmetricKey?
    ) -> String {
        let text = linkText(chain: chain, seq: seq, at: at, record: record, previousHash: previousHash)
        guard let key else { return AuditDigest.sha256Hex(text) }
        return AuditDigest.hmacHex(text, key: key)
    }

    /// The `previous_hash` of a chain's first entry.
    static let genesisHash = String(repeating: "0", count: 64)
}
