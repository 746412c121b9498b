import AsyncHTTPClient
import CaravanCore
import Foundation
import NIOCore
import NIOHTTP1

/// An answer fetched over real HTTP.
public struct FetchedResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: String

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Sends one request with AsyncHTTPClient, for tests that talk to a separate `caravan` process.
public func fetch(
    _ url: String,
    method: String = "GET",
    headers: [(String, String)] = [],
    body: String? = nil,
    timeout: Duration = .seconds(30)
) async throws -> FetchedResponse {
    var request = HTTPClientRequest(url: url)
    request.method = HTTPMethod(rawValue: method)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body { request.body = .bytes(ByteBuffer(string: body)) }
    let response = try await HTTPClient.shared.execute(
        request,
        timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)
    )
    let buffer = try await response.body.collect(upTo: 64 << 20)
    return FetchedResponse(
        status: Int(response.status.code),
        headers: response.headers.map { ($0.name, $0.value) },
        body: String(buffer: buffer)
    )
}

/// The password of the first user the harness signs up.
public let ownerAccountPassword = "correct horse battery staple"

public enum TestSetupError: Error {
    case failed(String)
}

/// Signs up the first user of a running `caravan` process and returns an owner API key, as headers to send.
public func bootstrapCredentials(port: Int) async throws -> [(String, String)] {
    let signup = try await fetch(
        "http://127.0.0.1:\(port)/v1/auth/signup",
        method: "POST",
        headers: [("Content-Type", "application/json")],
        body:
            #"{"email": "owner@example.com", "password": "\#(ownerAccountPassword)", "organization": "Acme"}"#
    )
    let signupJSON = try JSONValue(parsing: Array(signup.body.utf8))
    guard signup.status == 201, let token = signupJSON["access_token"]?.stringValue else {
        throw TestSetupError.failed("signup answered \(signup.status): \(signup.body)")
    }
    let key = try await fetch(
        "http://127.0.0.1:\(port)/v1/api-keys",
        method: "POST",
        headers: [("Content-Type", "application/json"), ("Authorization", "Bearer \(token)")],
        body: #"{"name": "tests", "role": "owner"}"#
    )
    guard key.status == 201, let apiKey = try JSONValue(parsing: Array(key.body.utf8))["key"]?.stringValue else {
        throw TestSetupError.failed("creating an API key answered \(key.status): \(key.body)")
    }
    return [("Authorization", "Bearer \(apiKey)")]
}
