import CaravanCore
import CaravanStorage
public import CaravanVault
import Foundation
import HummingbirdOTP

/// What a user gets when enrolling TOTP: the secret for their authenticator, and recovery codes shown once.
public struct TOTPEnrollment: Sendable {
    /// The secret in base32, for typing into an authenticator.
    public var secret: String
    /// An `otpauth://` URL, for a QR code.
    public var url: String
    public var recoveryCodes: [String]
}

extension IdentityService {
    static let totpStep: Int64 = 30

    static func totpContext(userID: String) -> String { "totp:\(userID)" }

    /// Starts TOTP enrolment: a new secret (sealed at rest) and ten recovery codes (stored hashed). MFA is on
    /// once `verifyTOTP` accepts a code.
    /// - Throws: `conflict` when MFA is already on.
    public func enrollTOTP(userID: String) async throws -> TOTPEnrollment {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        var generator = SystemRandomNumberGenerator()
        let secret = String((0..<20).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
        let codes = (0..<10).map { _ in OpaqueToken.recoveryCode() }
        let sealed = box.seal(Array(secret.utf8), context: Self.totpContext(userID: userID))
        let email = try await database.withTransaction { executor -> String in
            guard let state = try await store.totpState(userID: userID, in: executor) else {
                throw CaravanError(.unauthenticated, "The account no longer exists.")
            }
            guard !state.enabled else {
                throw CaravanError(.conflict, "Two-factor authentication is already on for this account.")
            }
            try await store.setTOTPSecret(userID: userID, sealed: sealed, at: clock.nowMilliseconds(), in: executor)
            try await store.replaceRecoveryCodes(userID: userID, digests: codes.map(OpaqueToken.digest), in: executor)
            return state.email
        }
        let url = TOTP(secret: secret).createAuthenticatorURL(label: email, issuer: "Caravan")
        let base32 = URLComponents(string: url)?.queryItems?.first { $0.name == "secret" }?.value ?? ""
        return TOTPEnrollment(secret: base32, url: url, recoveryCodes: codes)
    }

    /// Turns MFA on once the user shows a code from their authenticator.
    public func verifyTOTP(userID: String, code: String?) async throws {
        guard let code, code.count == 6, code.allSatisfy(\.isNumber) else {
            throw CaravanError.validation("/code", "code must be the 6 digits your authenticator shows")
        }
        let accepted = try await database.withTransaction { executor -> Bool in
            guard let secret = try await store.totpSecret(userID: userID, in: executor) else {
                throw CaravanError(.conflict, "Start enrolment first: POST /v1/auth/mfa/totp.")
            }
            guard
                let step = try matchingStep(code: code, sealed: secret.sealed, userID: userID, after: secret.lastStep)
            else {
                return false
            }
            try await store.enableTOTP(userID: userID, step: step, at: clock.nowMilliseconds(), in: executor)
            return true
        }
        guard accepted else {
            throw CaravanError.validation("/code", "The code is wrong or expired; try the next one.")
        }
    }

    /// The time step whose code is `code`, among the current step (on the injected clock) and one either side,
    /// later than `after`.
    func matchingStep(code: String, sealed: String, userID: String, after: Int64) throws -> Int64? {
        let secret = String(decoding: try box.open(sealed, context: Self.totpContext(userID: userID)), as: UTF8.self)
        let totp = TOTP(secret: secret)
        let now = clock.nowMilliseconds() / 1000 / Self.totpStep
        for step in [now - 1, now, now + 1] where step > after {
            let expected = totp.compute(date: Date(timeIntervalSince1970: Double(step * Self.totpStep)))
            if String(format: "%06d", expected) == code { return step }
        }
        return nil
    }

    /// Checks and uses up a second factor: a TOTP code (each time step once) or a recovery code (each once).
    func consumeSecondFactor(userID: String, code: String) async throws -> Bool {
        let trimmed = code.trimmingCharacters(in: .whitespaces).lowercased()
        guard trimmed.utf8.count <= 64 else { return false }
        return try await database.withTransaction { executor in
            if trimmed.count == 6, trimmed.allSatisfy(\.isNumber) {
                guard let secret = try await store.totpSecret(userID: userID, in: executor),
                    let step = try matchingStep(
                        code: trimmed,
                        sealed: secret.sealed,
                        userID: userID,
                        after: secret.lastStep
                    )
                else { return false }
                return try await store.useTOTPStep(userID: userID, step: step, in: executor)
            }
            return try await store.useRecoveryCode(
                userID: userID,
                digest: OpaqueToken.digest(trimmed),
                at: clock.nowMilliseconds(),
                in: executor
            )
        }
    }
}

extension IdentityService {
    /// Where TOTP secrets are sealed, for re-sealing after a master key rotation.
    public static let sealedTOTPColumn = SealedColumn(table: "users", keyColumns: ["id"], column: "totp_secret") {
        totpContext(userID: $0[0])
    }
}
