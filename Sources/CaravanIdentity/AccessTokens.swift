import CaravanCore
public import Crypto
public import Foundation
import JWTKit

/// The claims of a session access token.
struct AccessClaims: JWTPayload {
    var sub: SubjectClaim
    var sid: String
    var iss: IssuerClaim
    var aud: AudienceClaim
    var iat: IssuedAtClaim
    var exp: ExpirationClaim

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        guard iss.value == AccessTokens.issuer else {
            throw JWTError.claimVerificationFailure(failedClaim: iss, reason: "wrong issuer")
        }
        try aud.verifyIntendedAudience(includes: AccessTokens.audience)
    }
}

/// What a valid access token says.
public struct VerifiedAccessToken: Sendable, Hashable {
    public var userID: String
    public var sessionID: String
}

/// Short-lived session access tokens: JWTs signed with HS256 under a key derived from the master key. Only
/// HS256 is accepted (never `none`, never another algorithm), with this issuer and audience, before expiry.
public struct AccessTokens: Sendable {
    static let issuer = "caravan"
    static let audience = "caravan-api"

    /// How long an access token lives.
    public let lifetime: Duration
    private let keys: JWTKeyCollection

    public init(signingKey: SymmetricKey, lifetime: Duration = .seconds(900)) async {
        self.lifetime = lifetime
        self.keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(key: signingKey), digestAlgorithm: .sha256)
    }

    /// A signed token for `userID` in session `sessionID`.
    public func issue(userID: String, sessionID: String, now: Date = Date()) async throws -> String {
        let claims = AccessClaims(
            sub: SubjectClaim(value: userID),
            sid: sessionID,
            iss: IssuerClaim(value: Self.issuer),
            aud: AudienceClaim(value: [Self.audience]),
            iat: IssuedAtClaim(value: now),
            exp: ExpirationClaim(value: now.addingTimeInterval(Double(lifetime.components.seconds)))
        )
        return try await keys.sign(claims)
    }

    /// Verifies a token.
    /// - Returns: its user and session, or `nil` when the token is not one of ours, altered, or expired.
    public func verify(_ token: String) async -> VerifiedAccessToken? {
        // The header must name HS256 exactly: a token that asks for `none` or another algorithm is refused
        // before any key is chosen.
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count <= 4096,
            let headerData = Self.decodeBase64URL(String(parts[0])),
            let header = try? JSONValue(parsing: Array(headerData), maxDepth: 4),
            case .object(let fields) = header, fields["alg"] == .string("HS256")
        else { return nil }
        guard let claims = try? await keys.verify(token, as: AccessClaims.self) else { return nil }
        return VerifiedAccessToken(userID: claims.sub.value, sessionID: claims.sid)
    }

    static func decodeBase64URL(_ text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
