public import CaravanCore
import Crypto
public import Foundation

/// Seals values with AES-256-GCM under the keyring's current key. A sealed value is text:
/// `v1.<key id>.<base64 of nonce | ciphertext | tag>`. The `context` (e.g. the organization and secret name) is
/// authenticated but not stored in the seal, so a sealed value copied to another row does not open.
public struct SecretBox: Sendable {
    public let keyring: MasterKeyring

    public init(keyring: MasterKeyring) {
        self.keyring = keyring
    }

    /// Seals `plaintext`, bound to `context`.
    public func seal(_ plaintext: some DataProtocol, context: String) -> String {
        // AES.GCM.seal only fails for a key of the wrong size, which MasterKeyring rules out.
        let box = try! AES.GCM.seal(plaintext, using: keyring.current, authenticating: Array(context.utf8))
        return "v1.\(keyring.currentID).\(box.combined!.base64EncodedString())"
    }

    /// Opens a sealed value.
    /// - Throws: `CaravanError` `.internal` when the key is unknown or the value or its context was altered.
    public func open(_ sealed: String, context: String) throws(CaravanError) -> [UInt8] {
        let parts = sealed.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "v1", let data = Data(base64Encoded: String(parts[2])) else {
            throw CaravanError(.internal, "A sealed value is malformed.")
        }
        guard let key = keyring.key(id: String(parts[1])) else {
            throw CaravanError(
                .internal,
                "A value is sealed under master key \(parts[1]), which this server was not given."
            )
        }
        do {
            let box = try AES.GCM.SealedBox(combined: data)
            return Array(try AES.GCM.open(box, using: key, authenticating: Array(context.utf8)))
        } catch {
            throw CaravanError(.internal, "A sealed value does not open: it was altered or moved.")
        }
    }

    /// Whether `sealed` was sealed under a key other than the current one.
    public func needsResealing(_ sealed: String) -> Bool {
        let parts = sealed.split(separator: ".", maxSplits: 2)
        return parts.count != 3 || parts[1] != keyring.currentID
    }

    /// Random bytes from the system's secure generator.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        SymmetricKey(size: SymmetricKeySize(bitCount: count * 8)).withUnsafeBytes { Array($0) }
    }
}
