import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// The console's cookies, and the checks every state-changing form passes.
///
/// A console session is the identity service's own session: the access token (short-lived) and the refresh token
/// (usable once) live in `HttpOnly`, `SameSite=Strict` cookies, `Secure` when the console is reached over TLS.
/// When the access token has lapsed, the console exchanges the refresh token for new ones, so a session lasts as
/// long as the identity service allows and is revoked exactly as an API session is (sign-out, password change,
/// member removal).
enum ConsoleCookie {
    static let access = "caravan_access"
    static let refresh = "caravan_refresh"
    static let csrf = "caravan_csrf"
    static let organization = "caravan_org"
    /// How long the refresh cookie is kept by the browser; the identity service decides how long it works.
    static let refreshLifetimeSeconds = 30 * 24 * 3600

    /// A cookie with the console's attributes: `HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` over TLS.
    static func make(_ name: String, _ value: String, maxAge: Int?, secure: Bool) -> Cookie {
        Cookie(
            name: name,
            value: value,
            maxAge: maxAge,
            path: "/",
            secure: secure,
            httpOnly: true,
            sameSite: .strict
        )
    }

    /// A cookie that deletes `name`.
    static func expired(_ name: String, secure: Bool) -> Cookie {
        make(name, "", maxAge: 0, secure: secure)
    }

    /// Whether the page was reached over TLS (directly, or through a proxy that says so).
    static func isSecure(_ request: Request) -> Bool {
        request.head.scheme == "https" || request.headers[.xForwardedProto]?.lowercased() == "https"
    }

    /// Only values made of the token characters the console itself writes are read back.
    static func value(_ request: Request, _ name: String) -> String? {
        guard let value = request.cookies[name]?.value, !value.isEmpty, value.utf8.count <= 4096,
            value.utf8.allSatisfy({ Self.tokenBytes.contains($0) })
        else { return nil }
        return value
    }

    private static let tokenBytes = Set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~".utf8
    )
}

/// Cross-site request forgery protection: every form carries the value of the `caravan_csrf` cookie, which only
/// pages of the console's own origin can read into a form; the browser's own signals of where a request came from
/// (`Origin`, `Sec-Fetch-Site`) must agree.
enum CSRFGuard {
    /// A new random token (256 bits, base64url).
    static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Checks a state-changing request.
    /// - Throws: `ConsoleProblem` 403 `csrf_failed` when the token is missing or wrong, or when the browser says
    ///   the request came from another site.
    static func check(_ request: Request, form: ConsoleForm) throws(ConsoleProblem) {
        if let site = request.headers[.secFetchSite], site != "same-origin", site != "none" {
            throw refusal("The form was sent from another site.")
        }
        if let origin = request.headers[.origin] {
            guard origin != "null", let host = request.head.authority,
                Self.host(ofOrigin: origin) == host.lowercased()
            else { throw refusal("The form was sent from another origin (\(origin.prefix(100))).") }
        }
        guard let expected = ConsoleCookie.value(request, ConsoleCookie.csrf), let sent = form["_csrf"],
            Self.constantTimeEqual(Array(expected.utf8), Array(sent.utf8))
        else { throw refusal("The form's security token is missing or out of date; reload the page and try again.") }
    }

    private static func refusal(_ detail: String) -> ConsoleProblem {
        ConsoleProblem(status: 403, code: "csrf_failed", detail: detail)
    }

    /// `host[:port]` of an `Origin` header, lowercased.
    static func host(ofOrigin origin: String) -> String? {
        guard let range = origin.range(of: "://") else { return nil }
        let rest = origin[range.upperBound...]
        return rest.isEmpty ? nil : rest.lowercased()
    }

    static func constantTimeEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        guard left.count == right.count else { return false }
        var difference: UInt8 = 0
        for index in left.indices { difference |= left[index] ^ right[index] }
        return difference == 0
    }
}

/// A submitted `application/x-www-form-urlencoded` form.
struct ConsoleForm: Sendable {
    /// The largest form the console reads (a workflow definition in the editor is the largest field).
    static let maxBytes = 2 << 20

    private var fields: [(name: String, value: String)]

    init(fields: [(name: String, value: String)]) { self.fields = fields }

    /// Reads and parses the request's body.
    /// - Throws: `ConsoleProblem` 413 when the form is larger than `maxBytes`.
    static func read(_ request: Request) async throws -> ConsoleForm {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: maxBytes) } catch {
            throw ConsoleProblem(status: 413, code: "payload_too_large", detail: "The form is larger than 2 MiB.")
        }
        return ConsoleForm(parsing: String(decoding: buffer.readableBytesView, as: UTF8.self))
    }

    init(parsing text: String) {
        fields = text.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (Self.decode(parts[0]), parts.count > 1 ? Self.decode(parts[1]) : "")
        }
    }

    /// The first value of `name`, or `nil`.
    subscript(_ name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    /// The first value of `name` with surrounding white space removed, or `nil` when it is empty.
    func trimmed(_ name: String) -> String? {
        guard let value = self[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
            return nil
        }
        return value
    }

    private static func decode(_ text: Substring) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }
}

extension HTTPField.Name {
    static let xForwardedProto = HTTPField.Name("X-Forwarded-Proto")!  // a valid token, cannot fail
    static let secFetchSite = HTTPField.Name("Sec-Fetch-Site")!  // a valid token, cannot fail
}
