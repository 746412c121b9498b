public import CaravanCore
import Crypto
import Foundation

/// Signs deliveries the Standard Webhooks way (https://www.standardwebhooks.com): the receiver checks
/// `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), where the
/// key is the base64 part of the `whsec_…` secret. While a secret is being rotated both are valid: the header then
/// carries one signature per secret, separated by a space, and a receiver accepts the delivery if any matches.
public enum WebhookSigner {
    /// A new secret: `whsec_` and 32 random bytes in base64.
    public static func makeSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return "whsec_" + Data(bytes).base64EncodedString()
    }

    /// The key bytes of a `whsec_` secret.
    /// - Throws: `internal` for a secret that is not one (never stored: secrets are made here).
    static func key(of secret: String) throws(CaravanError) -> SymmetricKey {
        guard secret.hasPrefix("whsec_"), let bytes = Data(base64Encoded: String(secret.dropFirst(6))) else {
            throw CaravanError(.internal, "A webhook secret is not in the whsec_ form.")
        }
        return SymmetricKey(data: bytes)
    }

    /// The `webhook-signature` header's value for a delivery, one `v1,` signature per secret.
    public static func signature(
        id: String,
        timestamp: Int64,
        body: [UInt8],
        secrets: [String]
    ) throws(CaravanError)
        -> String
    {
        var signed = Array("\(id).\(timestamp).".utf8)
        signed += body
        var parts: [String] = []
        for secret in secrets {
            let mac = HMAC<SHA256>.authenticationCode(for: signed, using: try key(of: secret))
            parts.append("v1," + Data(mac).base64EncodedString())
        }
        return parts.joined(separator: " ")
    }
}
