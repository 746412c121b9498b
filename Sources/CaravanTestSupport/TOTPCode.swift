public import Foundation
import HummingbirdOTP

/// A TOTP code for the base32 secret an enrolment answered, for the time step that holds `date`.
public func totpCode(base32 secret: String, at date: Date) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    var bits = 0
    var value = 0
    var bytes: [UInt8] = []
    for character in secret.uppercased() {
        guard let index = alphabet.firstIndex(of: character) else { continue }
        value = (value << 5) | index
        bits += 5
        if bits >= 8 {
            bytes.append(UInt8((value >> (bits - 8)) & 0xFF))
            bits -= 8
        }
    }
    let code = TOTP(secret: String(decoding: bytes, as: UTF8.self)).compute(date: date)
    return String(format: "%06d", code)
}
