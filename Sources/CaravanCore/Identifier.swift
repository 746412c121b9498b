/// Opaque identifiers with a type prefix (`run_…`, `org_…`, `key_…`).
///
/// The body is a time-ordered, random 26-character base32 string (ULID layout), so ids sort by creation time —
/// which keeps index inserts local and makes cursors over ids stable.
public enum Identifier {
    fileprivate static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz".utf8)

    /// A new identifier.
    /// - Parameters:
    ///   - prefix: the type prefix without the underscore, e.g. `run`.
    ///   - milliseconds: the creation time, in Unix milliseconds.
    /// - Returns: e.g. `run_01jd3k…`.
    public static func make(_ prefix: String, milliseconds: Int64 = WallClock.system.nowMilliseconds()) -> String {
        var bytes = [UInt8](repeating: 0, count: 26)
        var time = UInt64(max(0, milliseconds))
        for index in stride(from: 9, through: 0, by: -1) {
            bytes[index] = alphabet[Int(time & 31)]
            time >>= 5
        }
        var generator = SystemRandomNumberGenerator()
        var random = generator.next() as UInt64
        var random2 = generator.next() as UInt64
        for index in 10..<26 {
            if index < 22 {
                bytes[index] = alphabet[Int(random & 31)]
                random >>= 5
            } else {
                bytes[index] = alphabet[Int(random2 & 31)]
                random2 >>= 5
            }
        }
        return prefix + "_" + String(decoding: bytes, as: UTF8.self)
    }
}

/// A stable 64-bit FNV-1a digest, as 16 hex characters: for telling request bodies apart (not for security).
public func stableDigest(_ text: String) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    let hex = String(hash, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}

extension Identifier {
    /// The least identifier of `prefix` made at `milliseconds` or later: identifiers sort by their creation time, so
    /// `id >= bound(at: t)` holds for exactly those made at `t` or later.
    public static func bound(_ prefix: String, milliseconds: Int64) -> String {
        var bytes = [UInt8](repeating: 0, count: 10)
        var time = UInt64(max(0, milliseconds))
        for index in stride(from: 9, through: 0, by: -1) {
            bytes[index] = alphabet[Int(time & 31)]
            time >>= 5
        }
        return prefix + "_" + String(decoding: bytes, as: UTF8.self)
    }

    /// A client-chosen request id, kept when it is short and made of safe characters (letters, digits, `-_.`).
    public static func acceptedRequestID(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 128 else { return nil }
        let safe = value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
        return safe ? value : nil
    }
}
