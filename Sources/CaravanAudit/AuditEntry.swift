import CaravanCore

/// Who did something: a user, an API key, the system itself, or someone not signed in.
public struct AuditActor: Sendable, Hashable {
    public enum Kind: String, Sendable {
        case user, apiKey = "api_key", system, anonymous
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
        orgID: String?, actor: AuditActor, action: String, target: String, outcome: String = "success",
        source: String? = nil, requestID: String? = nil, details: JSONValue? = nil
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
    public var id: Int64
    /// The chain the entry belongs to: its organization's id, or `""` for entries of no organization.
    public var chain: String
    /// 1 for the chain's first entry, then consecutive.
    public var seq: Int64
    public var at: Int64
    public var record: AuditRecord
    public var previousHash: String
    public var hash: String

    /// The hash that links an entry: SHA-256 of the previous entry's hash and the entry's canonical JSON.
    static func hash(chain: String, seq: Int64, at: Int64, record: AuditRecord, previousHash: String) -> String {
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
        return AuditDigest.sha256Hex(previousHash + "\n" + body.canonicalText)
    }

    /// The `previous_hash` of a chain's first entry.
    static let genesisHash = String(repeating: "0", count: 64)
}
