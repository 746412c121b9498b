import CaravanCore
public import Crypto
import Foundation

/// The keys that link audit chains: HMAC-SHA256 keys derived with HKDF (info `caravan audit chain`) from the
/// master keys, so that only a holder of the master key can write an entry or a head that verifies. The current
/// master key's audit key links new entries; those of earlier master keys still verify what they linked.
public struct AuditKeys: Sendable {
    /// The id of the key new entries and heads are linked with.
    public let currentID: String
    let current: SymmetricKey
    private let byID: [String: SymmetricKey]

    /// - Parameters:
    ///   - current: the current master key.
    ///   - previous: earlier master keys, whose audit keys still verify.
    public init(current: SymmetricKey, previous: [SymmetricKey] = []) {
        let derived = Self.derive(from: current)
        self.current = derived
        self.currentID = Self.identifier(of: derived)
        var byID: [String: SymmetricKey] = [:]
        for master in previous {
            let key = Self.derive(from: master)
            byID[Self.identifier(of: key)] = key
        }
        byID[currentID] = derived
        self.byID = byID
    }

    /// The audit key of a master key.
    public static func derive(from master: SymmetricKey) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: master, info: Array("caravan audit chain".utf8), outputByteCount: 32)
    }

    /// A public name of an audit key (8 bytes of an HMAC under it, in hex); reveals nothing of the key.
    static func identifier(of key: SymmetricKey) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("caravan audit key id".utf8), using: key)
        return mac.prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// The key with `id`, current or earlier.
    func key(id: String) -> SymmetricKey? { byID[id] }
}

/// The signed head of one chain: its last entry's position and hash and its number of entries, under an HMAC.
/// Kept in `audit_heads`, updated in the transaction of every append, and exported periodically (a log line and,
/// with SQLite, `<data>/audit-heads.json`) so that a deletion of a chain's tail, or of the whole chain, shows
/// against a copy kept elsewhere.
public struct AuditHead: Sendable, Hashable {
    public var chain: String
    public var seq: Int64
    public var hash: String
    public var entries: Int64

    public init(chain: String, seq: Int64, hash: String, entries: Int64) {
        self.chain = chain
        self.seq = seq
        self.hash = hash
        self.entries = entries
    }

    /// The MAC of the head under `key`.
    func mac(key: SymmetricKey) -> String {
        AuditDigest.hmacHex("caravan audit head\n\(chain)\n\(seq)\n\(hash)\n\(entries)", key: key)
    }
}

/// A signed export of every chain's head, as written to the log and to `audit-heads.json`.
public struct AuditHeadsExport: Sendable, Hashable {
    /// When the export was taken (Unix milliseconds).
    public var at: Int64
    public var heads: [String: AuditHead]

    public init(at: Int64, heads: [String: AuditHead]) {
        self.at = at
        self.heads = heads
    }

    private var body: JSONValue {
        var heads: [String: JSONValue] = [:]
        for (chain, head) in self.heads {
            heads[chain] = ["seq": .int(head.seq), "hash": .string(head.hash), "entries": .int(head.entries)]
        }
        return ["kind": "caravan.audit_heads", "version": 1, "at": .int(at), "heads": .object(heads)]
    }

    /// The export as one line of JSON, with the id of the key and the HMAC over the rest.
    public func signed(with keys: AuditKeys) -> String {
        guard case .object(var fields) = body else { return "" }
        fields["key"] = .string(keys.currentID)
        fields["mac"] = .string(AuditDigest.hmacHex(body.canonicalText, key: keys.current))
        return JSONValue.object(fields).canonicalText
    }

    /// Reads a signed export and checks its HMAC.
    /// - Throws: `CaravanError` (`validation_failed`) when the text is not an export, its key is not known, or its
    ///   HMAC does not match.
    public static func parse(_ text: String, keys: AuditKeys) throws -> AuditHeadsExport {
        let line = text.split(whereSeparator: \.isNewline).last.map(String.init) ?? ""
        guard let value = try? JSONValue(parsing: Array(line.utf8), maxDepth: 8), case .object(let fields) = value,
            fields["kind"] == "caravan.audit_heads", let at = fields["at"]?.integer,
            case .object(let rawHeads)? = fields["heads"], let keyID = fields["key"]?.stringValue,
            let mac = fields["mac"]?.stringValue
        else { throw CaravanError(.validationFailed, "The file is not a Caravan audit heads export.") }
        guard let key = keys.key(id: keyID) else {
            throw CaravanError(
                .validationFailed,
                "The heads were signed with a master key this server does not hold (key \(keyID))."
            )
        }
        var heads: [String: AuditHead] = [:]
        for (chain, head) in rawHeads {
            guard let seq = head["seq"]?.integer, let hash = head["hash"]?.stringValue,
                let entries = head["entries"]?.integer
            else {
                throw CaravanError(.validationFailed, "The heads export holds a malformed head.")
            }
            heads[chain] = AuditHead(chain: chain, seq: seq, hash: hash, entries: entries)
        }
        let export = AuditHeadsExport(at: at, heads: heads)
        guard AuditDigest.constantTimeEqual(AuditDigest.hmacHex(export.body.canonicalText, key: key), mac) else {
            throw CaravanError(.validationFailed, "The heads export was altered: its signature does not match.")
        }
        return export
    }
}

extension JSONValue {
    /// The integer when this is one.
    fileprivate var integer: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }
}
