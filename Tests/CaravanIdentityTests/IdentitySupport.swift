import CaravanCore
import CaravanServer
import CaravanTestSupport
import Foundation
import HTTPTypes
import HummingbirdOTP
import HummingbirdTesting
import Testing

/// Runs an identity check on `backend` with the first user signed up.
func identityCheck(
    _ backend: TestBackend,
    configure: @escaping @Sendable (inout ServerConfiguration) -> Void = { _ in },
    _ body: @escaping @Sendable (AuthenticatedClient, CaravanApplication) async throws -> Void
) async throws {
    try await withTestApplication(backend, configure: configure) { client, app in
        try await body(try #require(client as? AuthenticatedClient), app)
    }
}

/// Runs an identity check on `backend` with the first user signed up, on a wall clock that the check sets: what
/// identity decides from the time (expiries, backoffs, TOTP steps) follows `time`, which moves only when told.
func identityCheck(
    _ backend: TestBackend,
    configure: @escaping @Sendable (inout ServerConfiguration) -> Void = { _ in },
    time: ManualTime,
    _ body: @escaping @Sendable (AuthenticatedClient, CaravanApplication, ManualTime) async throws -> Void
) async throws {
    try await withTestApplication(backend, configure: configure, clock: time.clock) { client, app in
        try await body(try #require(client as? AuthenticatedClient), app, time)
    }
}

extension HTTPFields {
    static func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }
}

extension AuthenticatedClient {
    /// Invites `email` with `role` as the owner and signs them up with the invitation.
    /// - Returns: their access token and user id.
    func member(_ email: String, role: String) async throws -> (token: String, userID: String) {
        let invitation = try await send(
            .post,
            "/v1/organizations/\(orgID)/invitations",
            json: #"{"email": "\#(email)", "role": "\#(role)"}"#
        )
        #expect(invitation.status == .created, "\(invitation.json)")
        let token = try #require(invitation.json["token"]?.stringValue)
        let signup = try await anonymous.send(
            .post,
            "/v1/auth/signup",
            json: #"{"email": "\#(email)", "password": "a long enough passphrase", "invitation": "\#(token)"}"#
        )
        #expect(signup.status == .created, "\(signup.json)")
        #expect(signup.json["organization"]?["role"]?.stringValue == role)
        return (
            try #require(signup.json["access_token"]?.stringValue),
            try #require(signup.json["user"]?["id"]?.stringValue)
        )
    }
}

/// Replaces `{param}` placeholders of an endpoint path.
func fill(_ path: String, _ values: [String: String]) -> String {
    path.split(separator: "/", omittingEmptySubsequences: false).map { part -> String in
        guard part.hasPrefix("{"), part.hasSuffix("}") else { return String(part) }
        return values[String(part.dropFirst().dropLast())] ?? "missing"
    }.joined(separator: "/")
}
