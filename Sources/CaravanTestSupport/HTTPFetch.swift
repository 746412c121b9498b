import AsyncHTTPClient
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
