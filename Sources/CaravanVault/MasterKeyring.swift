public import CaravanCore
public import Crypto
import Foundation
public import Logging

/// The keys that seal secrets at rest: the current master key (new seals) and earlier ones (still opened, and
/// re-sealed under the current key in the background).
public struct MasterKeyring: Sendable {
    /// The key that seals; its id is stored beside every sealed value.
    public let current: SymmetricKey
    public let currentID: String
    /// Earlier keys by id: opened, never used to seal.
    public let previous: [String: SymmetricKey]

    /// A keyring of already decoded keys.
    /// - Throws: `CaravanError` when a key is not 256 bits.
    public init(current: SymmetricKey, previous: [SymmetricKey] = []) throws(CaravanError) {
        guard current.bitCount == 256, previous.allSatisfy({ $0.bitCount == 256 }) else {
            throw CaravanError(.validationFailed, "A master key must be 32 bytes (256 bits).")
        }
        self.current = current
        self.currentID = Self.identifier(of: current)
        var previousKeys: [String: SymmetricKey] = [:]
        for key in previous { previousKeys[Self.identifier(of: key)] = key }
        previousKeys[currentID] = nil
        self.previous = previousKeys
    }

    /// The key with `id`, current or earlier.
    public func key(id: String) -> SymmetricKey? {
        id == currentID ? current : previous[id]
    }

    /// A key for another purpose (e.g. signing session tokens), derived from the current master key with HKDF so
    /// that the master key itself is only ever used to seal.
    public func derivedKey(purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: current,
            info: Array("caravan \(purpose)".utf8),
            outputByteCount: 32
        )
    }

    /// A short public name of a key: 8 bytes of an HMAC under the key, in hex. Reveals nothing of the key.
    public static func identifier(of key: SymmetricKey) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("caravan key id".utf8), using: key)
        return mac.prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// Decodes a key given as base64 (32 bytes).
    public static func decode(_ text: String, name: String) throws(CaravanError) -> SymmetricKey {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), data.count == 32
        else {
            throw CaravanError(
                .validationFailed,
                "\(name) must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)."
            )
        }
        return SymmetricKey(data: data)
    }

    /// The keyring of a server: the configured key, or else the key in `<dataDirectory>/master.key`, generated on
    /// first start (mode 0600) with a warning to back it up.
    /// - Parameters:
    ///   - configured: the master key from configuration (base64), if any.
    ///   - previous: earlier master keys (base64) whose seals are still to be opened and re-sealed.
    ///   - dataDirectory: where the generated key lives when none is configured.
    /// - Throws: `CaravanError` for a malformed key or a key file that cannot be read or written.
    public static func load(
        configured: String?,
        previous: [String],
        dataDirectory: String,
        logger: Logger
    ) throws(CaravanError) -> MasterKeyring {
        var earlier: [SymmetricKey] = []
        for (index, text) in previous.enumerated() where !text.isEmpty {
            earlier.append(try decode(text, name: "previous master key \(index + 1)"))
        }
        if let configured, !configured.isEmpty {
            return try MasterKeyring(current: decode(configured, name: "The master key"), previous: earlier)
        }
        let path = URL(fileURLWithPath: dataDirectory).appendingPathComponent("master.key").path
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            return try MasterKeyring(current: decode(text, name: "The key in \(path)"), previous: earlier)
        }
        do {
            try FileManager.default.createDirectory(
                atPath: dataDirectory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw CaravanError(.internal, "Cannot create the data directory \(dataDirectory): \(error)")
        }
        let key = SymmetricKey(size: .bits256)
        let text = key.withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if descriptor < 0, errno == EEXIST {
            // Another process sharing the directory wrote it first: use theirs.
            usleep(200_000)  // let the other process finish writing its 45 bytes
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                return try MasterKeyring(current: decode(text, name: "The key in \(path)"), previous: earlier)
            }
        }
        guard descriptor >= 0 else {
            throw CaravanError(.internal, "Cannot create the master key file \(path) (errno \(errno)).")
        }
        let written = text.utf8CString.withUnsafeBufferPointer { buffer in
            write(descriptor, buffer.baseAddress, buffer.count - 1)
        }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == text.utf8.count, synced == 0 else {
            throw CaravanError(.internal, "Cannot write the master key file \(path).")
        }
        logger.warning(
            "Generated a new master key: BACK UP THIS FILE. Without it, stored secrets cannot be decrypted. Set CARAVAN_MASTER_KEY on every node to share one key.",
            metadata: ["file.path": "\(path)"]
        )
        return try MasterKeyring(current: key, previous: earlier)
    }
}
