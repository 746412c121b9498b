import Crypto
import Foundation

/// Random bearer secrets (API keys, refresh tokens, invitations, recovery codes): generated with 256 bits of
/// entropy, shown once, stored only as their SHA-256 (a slow hash adds nothing to secrets this long).
public enum OpaqueToken {
    /// A new token: `prefix` then 43 base64url characters.
    public static func make(prefix: String) -> String {
        prefix + base64URL(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    /// The stored form of a token.
    public static func digest(_ token: String) -> String {
        SHA256.hash(data: Array(token.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// A recovery code: ten characters of an unambiguous alphabet, grouped `xxxxx-xxxxx`.
    public static func recoveryCode() -> String {
        let alphabet = Array("abcdefghjkmnpqrstuvwxyz23456789")
        var generator = SystemRandomNumberGenerator()
        let characters = (0..<10).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] }
        return String(characters[0..<5]) + "-" + String(characters[5..<10])
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
