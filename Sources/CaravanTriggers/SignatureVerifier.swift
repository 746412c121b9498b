public import CaravanCore
import Crypto
import Foundation

/// The error codes a hook answers when a delivery's credentials do not hold.
extension CaravanError.Code {
    /// A signature or bearer token the scheme needs is not there.
    public static let signatureMissing = CaravanError.Code("signature_missing", status: 401)
    /// The signature or token does not match, or its header cannot be read.
    public static let signatureInvalid = CaravanError.Code("signature_invalid", status: 401)
    /// The signed timestamp is further from the server's clock than the trigger's tolerance.
    public static let signatureExpired = CaravanError.Code("signature_expired", status: 401)
    /// A signature header is too long to be one (refused before any HMAC is computed).
    public static let signatureHeaderTooLarge = CaravanError.Code("signature_header_too_large", status: 400)
}

/// Checks a delivery against its trigger's scheme, in constant time, and names the delivery. Pure: the secret,
/// the headers, the body and the time are passed in.
public enum SignatureVerifier {
    /// The longest signature header read; longer ones are refused before any work.
    public static let maxHeaderBytes = 8 * 1024

    /// What a verified delivery carries: the sender's delivery id, when the scheme names one, or one derived from
    /// the signature.
    public struct Verified: Sendable {
        public var deliveryID: String?
    }

    /// Verifies `body` under `verification`.
    /// - Parameters:
    ///   - header: the request's header `name` (lowercase), or `nil`.
    ///   - secret: the secret's value from the vault (`nil` for `none`).
    ///   - now: the server's clock, in Unix milliseconds.
    /// - Throws: `signature_missing`, `signature_invalid`, `signature_expired`, `signature_header_too_large`.
    public static func verify(
        _ verification: TriggerVerification,
        secret: String?,
        header: (String) -> String?,
        body: [UInt8],
        now: Int64
    ) throws(CaravanError) -> Verified {
        switch verification.scheme {
        case .none:
            return Verified(deliveryID: nil)
        case .bearer:
            guard let value = try read("authorization", header) else {
                throw CaravanError(.signatureMissing, "Send Authorization: Bearer <the trigger's secret>.")
            }
            guard value.count > 7, value.prefix(7).lowercased() == "bearer " else {
                throw CaravanError(.signatureInvalid, "The Authorization header is not a bearer token.")
            }
            let token = Array(value.dropFirst(7).trimmingCharacters(in: .whitespaces).utf8)
            guard constantTimeEqual(token, Array((secret ?? "").utf8)) else {
                throw CaravanError(.signatureInvalid, "The bearer token does not match the trigger's secret.")
            }
            return Verified(deliveryID: nil)
        case .github:
            guard let value = try read("x-hub-signature-256", header) else {
                throw CaravanError(.signatureMissing, "The X-Hub-Signature-256 header is missing.")
            }
            guard value.hasPrefix("sha256="), let given = hexBytes(value.dropFirst(7)), given.count == 32 else {
                throw CaravanError(.signatureInvalid, "X-Hub-Signature-256 must be sha256=<64 hex digits>.")
            }
            let expected = hmac(key: Array((secret ?? "").utf8), message: body)
            guard constantTimeEqual(given, expected) else {
                throw CaravanError(.signatureInvalid, "The signature does not match the body.")
            }
            return Verified(deliveryID: try read("x-github-delivery", header) ?? derived(value))
        case .stripe:
            guard let value = try read("stripe-signature", header) else {
                throw CaravanError(.signatureMissing, "The Stripe-Signature header is missing.")
            }
            var timestamp: Int64?
            var signatures: [[UInt8]] = []
            for part in value.split(separator: ",") {
                let pair = part.split(separator: "=", maxSplits: 1)
                guard pair.count == 2 else { continue }
                let name = pair[0].trimmingCharacters(in: .whitespaces)
                if name == "t" {
                    timestamp = Int64(pair[1].trimmingCharacters(in: .whitespaces))
                } else if name == "v1", let bytes = hexBytes(pair[1].trimmingCharacters(in: .whitespaces)),
                    bytes.count == 32
                {
                    signatures.append(bytes)
                }
            }
            guard let timestamp else {
                throw CaravanError(.signatureInvalid, "Stripe-Signature must carry t=<unix time>.")
            }
            guard !signatures.isEmpty else {
                throw CaravanError(.signatureInvalid, "Stripe-Signature must carry v1=<64 hex digits>.")
            }
            let expected = hmac(key: Array((secret ?? "").utf8), message: Array("\(timestamp).".utf8) + body)
            guard matchesAny(signatures, expected) else {
                throw CaravanError(.signatureInvalid, "No v1 signature matches the body.")
            }
            try checkTime(timestamp, tolerance: verification.tolerance, now: now)
            return Verified(deliveryID: nil)
        case .standardWebhooks:
            guard let id = try read("webhook-id", header), let stamp = try read("webhook-timestamp", header),
                let value = try read("webhook-signature", header)
            else {
                throw CaravanError(
                    .signatureMissing,
                    "Standard Webhooks needs the webhook-id, webhook-timestamp and webhook-signature headers."
                )
            }
            guard let timestamp = Int64(stamp.trimmingCharacters(in: .whitespaces)) else {
                throw CaravanError(.signatureInvalid, "webhook-timestamp must be a Unix time in seconds.")
            }
            var signatures: [[UInt8]] = []
            for item in value.split(separator: " ") {
                guard item.hasPrefix("v1,"), let bytes = Data(base64Encoded: String(item.dropFirst(3))),
                    bytes.count == 32
                else { continue }
                signatures.append(Array(bytes))
            }
            guard !signatures.isEmpty else {
                throw CaravanError(.signatureInvalid, "webhook-signature must carry v1,<base64 HMAC-SHA256>.")
            }
            let expected = hmac(
                key: standardWebhooksKey(secret ?? ""),
                message: Array("\(id).\(timestamp).".utf8) + body
            )
            guard matchesAny(signatures, expected) else {
                throw CaravanError(.signatureInvalid, "No v1 signature matches the body.")
            }
            try checkTime(timestamp, tolerance: verification.tolerance, now: now)
            return Verified(deliveryID: id)
        }
    }

    /// The key of a Standard Webhooks secret: `whsec_<base64>` decoded, any other text as its bytes.
    public static func standardWebhooksKey(_ secret: String) -> [UInt8] {
        if secret.hasPrefix("whsec_"), let bytes = Data(base64Encoded: String(secret.dropFirst(6))) {
            return Array(bytes)
        }
        return Array(secret.utf8)
    }

    /// A delivery id derived from a signature header, for senders that name none: the same signed delivery
    /// sent again has the same id.
    static func derived(_ signature: String) -> String {
        "sig_"
            + SHA256.hash(data: Array(signature.utf8)).prefix(16).map { byte in
                let hex = Array("0123456789abcdef".utf8)
                return String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]], as: UTF8.self)
            }.joined()
    }

    /// The header, refused when longer than a signature header could sensibly be.
    private static func read(_ name: String, _ header: (String) -> String?) throws(CaravanError) -> String? {
        guard let value = header(name) else { return nil }
        guard value.utf8.count <= maxHeaderBytes else {
            throw CaravanError(.signatureHeaderTooLarge, "The \(name) header is longer than \(maxHeaderBytes) bytes.")
        }
        return value
    }

    private static func checkTime(_ seconds: Int64, tolerance: CaravanDuration, now: Int64) throws(CaravanError) {
        let (signedAt, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        guard !overflow, abs(now - signedAt) <= tolerance.milliseconds else {
            throw CaravanError(
                .signatureExpired,
                "The signed timestamp is more than \(tolerance) away from the server's clock."
            )
        }
    }

    static func hmac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    private static func matchesAny(_ candidates: [[UInt8]], _ expected: [UInt8]) -> Bool {
        // Every candidate is compared, so the time taken does not tell which one matched.
        var matched = false
        for candidate in candidates where constantTimeEqual(candidate, expected) { matched = true }
        return matched
    }

    /// Whether two byte strings are equal, in time that depends only on their lengths.
    static func constantTimeEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        var difference = UInt8(left.count == right.count ? 0 : 1)
        let count = max(left.count, right.count)
        for index in 0..<count {
            let a = index < left.count ? left[index] : 0
            let b = index < right.count ? right[index] : 0
            difference |= a ^ b
        }
        return difference == 0
    }

    private static func hexBytes(_ text: some StringProtocol) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
