import CaravanCore
import Foundation
public import HTTPTypes
public import HummingbirdTesting
import NIOCore
import Synchronization

/// A browser as far as the console's HTTP contract goes: a cookie jar, forms posted with the page's CSRF token,
/// redirects followed. For tests of the console's pages without a real browser.
public final class ConsoleTestBrowser: Sendable {
    /// A page as the browser received it.
    public struct Page: Sendable {
        public var status: HTTPResponse.Status
        public var headers: HTTPFields
        public var html: String
        /// The path the browser ended on after following redirects.
        public var path: String
    }

    private let client: any TestClientProtocol
    private let jar = Mutex<[String: String]>([:])

    public init(_ client: any TestClientProtocol) {
        self.client = client
    }

    /// The value of a cookie the browser holds.
    public func cookie(_ name: String) -> String? { jar.withLock { $0[name] } }

    /// Forgets a cookie, as a browser does when it expires.
    public func forget(_ name: String) { _ = jar.withLock { $0.removeValue(forKey: name) } }

    /// `GET path`, following redirects.
    public func get(_ path: String, headers: HTTPFields = [:]) async throws -> Page {
        try await request(.get, path, body: nil, headers: headers)
    }

    /// Posts a form with the browser's CSRF token (unless `csrf` is `false`), following the redirect it answers.
    public func post(
        _ path: String,
        _ fields: [(String, String)],
        csrf: Bool = true,
        headers: HTTPFields = [:]
    ) async throws -> Page {
        var fields = fields
        if csrf, let token = cookie("caravan_csrf") { fields.append(("_csrf", token)) }
        let body = fields.map { "\(Self.encode($0.0))=\(Self.encode($0.1))" }.joined(separator: "&")
        var headers = headers
        headers[.contentType] = "application/x-www-form-urlencoded"
        return try await request(.post, path, body: Array(body.utf8), headers: headers)
    }

    /// Posts a `multipart/form-data` form (files chosen in a file input) with the browser's CSRF token (unless
    /// `csrf` is `false`).
    public func upload(
        _ path: String,
        files: [(name: String, filename: String, body: [UInt8])],
        csrf: Bool = true
    ) async throws -> Page {
        var parts = files.map {
            MultipartForm.Part(name: $0.name, filename: $0.filename, contentType: nil, body: $0.body)
        }
        if csrf, let token = cookie("caravan_csrf") {
            parts.insert(.init(name: "_csrf", filename: nil, contentType: nil, body: Array(token.utf8)), at: 0)
        }
        let (body, contentType) = MultipartForm.encode(parts)
        return try await request(.post, path, body: body, headers: [.contentType: contentType])
    }

    /// Opens the sign-up page and creates an account through its form.
    @discardableResult
    public func signUp(email: String, password: String, organization: String) async throws -> Page {
        _ = try await get("/signup")
        return try await post("/signup", [("email", email), ("password", password), ("organization", organization)])
    }

    /// Opens the sign-in page and signs in through its form.
    @discardableResult
    public func signIn(email: String, password: String, totp: String? = nil) async throws -> Page {
        _ = try await get("/login")
        var fields = [("email", email), ("password", password)]
        if let totp { fields.append(("totp", totp)) }
        return try await post("/login", fields)
    }

    /// Invites `email` into `orgID` with `role` through the API (as the user of `inviterToken`), signs them up with
    /// the invitation, and hands back their browser, signed in to the console.
    public static func invited(
        _ client: any TestClientProtocol,
        email: String,
        password: String,
        role: String,
        orgID: String,
        inviterToken: String
    ) async throws -> ConsoleTestBrowser {
        let invitation = try await client.send(
            .post,
            "/v1/organizations/\(orgID)/invitations",
            json: #"{"email": "\#(email)", "role": "\#(role)"}"#,
            headers: [.authorization: "Bearer \(inviterToken)"]
        )
        guard let token = invitation.json["token"]?.stringValue else {
            throw TestSetupError.failed("inviting \(email) answered \(invitation.status): \(invitation.json)")
        }
        let joined = try await client.send(
            .post,
            "/v1/auth/signup",
            json: #"{"email": "\#(email)", "password": "\#(password)", "invitation": "\#(token)"}"#
        )
        guard joined.status == .created else {
            throw TestSetupError.failed("signing up \(email) answered \(joined.status): \(joined.json)")
        }
        let browser = ConsoleTestBrowser(client)
        try await browser.signIn(email: email, password: password)
        return browser
    }

    private func request(
        _ method: HTTPRequest.Method,
        _ path: String,
        body: [UInt8]?,
        headers: HTTPFields
    ) async throws
        -> Page
    {
        var method = method
        var path = path
        var body = body
        for _ in 0..<5 {
            var fields = headers
            let cookies = jar.withLock { jar in jar.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
            if !cookies.isEmpty { fields[.cookie] = cookies }
            let response = try await client.execute(
                uri: path,
                method: method,
                headers: fields,
                body: body.map { ByteBuffer(bytes: $0) }
            )
            store(response.headers[values: .setCookie])
            if [301, 302, 303, 307].contains(response.status.code), let location = response.headers[.location] {
                path = location.hasPrefix("http") ? (URL(string: location)?.path ?? "/") : location
                if response.status.code == 303 {
                    method = .get
                    body = nil
                }
                continue
            }
            return Page(
                status: response.status,
                headers: response.headers,
                html: String(decoding: response.body.readableBytesView, as: UTF8.self),
                path: path
            )
        }
        throw TestSetupError.failed("too many redirects from \(path)")
    }

    private func store(_ setCookies: [String]) {
        jar.withLock { jar in
            for line in setCookies {
                let pair = line.split(separator: ";", maxSplits: 1)[0].split(separator: "=", maxSplits: 1)
                guard let name = pair.first.map({ String($0).trimmingCharacters(in: .whitespaces) }) else { continue }
                let value = pair.count > 1 ? String(pair[1]) : ""
                let expired = line.lowercased().contains("max-age=0")
                if expired || value.isEmpty { jar.removeValue(forKey: name) } else { jar[name] = value }
            }
        }
    }

    private static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-_.~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}
