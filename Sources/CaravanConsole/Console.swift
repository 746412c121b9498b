public import CaravanCore
import Foundation
import HTTPTypes
public import Hummingbird
import Logging

/// Caravan's web console: server-rendered pages at `/`, over the public API called in process.
///
/// Every page is a client of `/v1`: it signs the user in through `/v1/auth/login`, reads through the same
/// endpoints a script would and changes things through them, so validation, roles, rate limits and the audit log
/// apply unchanged. Pages work without JavaScript; `/assets/console.js` adds live updates over the API's event
/// streams and shows times in the browser's time zone.
public struct Console: Sendable {
    let api: ConsoleAPI
    let views: ConsoleViews
    let refreshes = RefreshCoalescer()

    public init(api: ConsoleAPI) throws {
        self.api = api
        self.views = try ConsoleViews()
    }

    /// The console's router: every page, form and asset.
    public func router() -> Router<ConsoleRequestContext> {
        let router = Router(context: ConsoleRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: ConsoleHeadersMiddleware(console: self))
        ConsoleAssets.register(in: router)
        AuthPages(console: self).register(in: router)
        RunPages(console: self).register(in: router)
        WorkflowPages(console: self).register(in: router)
        SettingsPages(console: self).register(in: router)
        UsagePages(console: self).register(in: router)
        EventsPages(console: self).register(in: router)
        ModulePages(console: self).register(in: router)
        CatalogPages(console: self).register(in: router)
        KnowledgePages(console: self).register(in: router)
        return router
    }

    /// Whether a path belongs to the console rather than the API.
    public static func serves(path: String) -> Bool {
        !(path == "/v1" || path.hasPrefix("/v1/")
            || ["/healthz", "/readyz", "/metrics", "/openapi.json", "/mcp"]
                .contains(path))
    }

    // MARK: Signed-in pages

    /// A page that needs a signed-in user: finds the session (refreshing it when its access token lapsed), reads
    /// who the user is and where they act, and renders `body`'s answer, or the sign-in page, or an error page.
    func page(
        _ request: Request,
        _ context: ConsoleRequestContext,
        _ body: @Sendable (ConsoleVisit) async throws -> ConsoleAnswer
    ) async -> Response {
        do {
            guard var visit = try await signedIn(request, context) else { return signInRedirect(request) }
            let answer = try await body(visit)
            return finish(answer, visit: &visit)
        } catch let problem as ConsoleProblem {
            if problem.status == 401 { return signInRedirect(request) }
            return errorPage(problem, request: request, context: context)
        } catch {
            context.logger.error("A console page failed", metadata: ["error.type": "\(type(of: error))"])
            return errorPage(
                ConsoleProblem(
                    status: 500,
                    code: "internal",
                    detail: "Something went wrong; the server log says more."
                ),
                request: request,
                context: context
            )
        }
    }

    /// A form that changes something: the same as `page`, after the CSRF check, with the submitted form.
    func action(
        _ request: Request,
        _ context: ConsoleRequestContext,
        _ body: @Sendable (ConsoleVisit, ConsoleForm) async throws -> ConsoleAnswer
    ) async -> Response {
        let form: ConsoleForm
        switch await checkedForm(request, context) {
        case .success(let checked): form = checked
        case .failure(let refusal): return refusal.response
        }
        return await page(request, context) { visit in try await body(visit, form) }
    }

    /// A refused form, answered with the error page.
    struct FormRefusal: Error {
        var response: Response
    }

    /// The submitted form once it passed the CSRF check, or the error page to answer instead.
    func checkedForm(_ request: Request, _ context: ConsoleRequestContext) async -> Result<ConsoleForm, FormRefusal> {
        do {
            let form = try await ConsoleForm.read(request)
            try CSRFGuard.check(request, form: form)
            return .success(form)
        } catch let problem as ConsoleProblem {
            return .failure(FormRefusal(response: errorPage(problem, request: request, context: context)))
        } catch {
            let problem = ConsoleProblem(status: 400, code: "invalid_request", detail: "The form could not be read.")
            return .failure(FormRefusal(response: errorPage(problem, request: request, context: context)))
        }
    }

    /// The session of a request, or `nil` when nobody is signed in.
    private func signedIn(_ request: Request, _ context: ConsoleRequestContext) async throws -> ConsoleVisit? {
        let secure = ConsoleCookie.isSecure(request)
        var credentials = ConsoleCredentials(
            accessToken: ConsoleCookie.value(request, ConsoleCookie.access),
            orgID: nil,
            remoteAddress: context.sourceAddress,
            requestID: context.requestID
        )
        var cookies: [Cookie] = []
        var refreshed = false
        if credentials.accessToken == nil {
            guard let tokens = try await refresh(request, credentials: credentials, secure: secure) else { return nil }
            credentials.accessToken = tokens.access
            cookies += tokens.cookies
            refreshed = true
        }
        var me = try await api.call(.get, "/v1/me", as: credentials)
        if me.status == 401, !refreshed {
            guard let tokens = try await refresh(request, credentials: credentials, secure: secure) else { return nil }
            credentials.accessToken = tokens.access
            cookies += tokens.cookies
            me = try await api.call(.get, "/v1/me", as: credentials)
        }
        if me.status == 401 { return nil }
        if let problem = me.problem { throw problem }
        let memberships = (me.json["organizations"]?.arrayValue ?? []).compactMap(ConsoleMembership.init)
        let chosen = ConsoleCookie.value(request, ConsoleCookie.organization)
        let organization = memberships.first { $0.id == chosen } ?? memberships.first
        credentials.orgID = organization?.id
        var csrf = ConsoleCookie.value(request, ConsoleCookie.csrf)
        if csrf == nil {
            let token = CSRFGuard.newToken()
            csrf = token
            cookies.append(ConsoleCookie.make(ConsoleCookie.csrf, token, maxAge: nil, secure: secure))
        }
        return ConsoleVisit(
            credentials: credentials,
            userID: me.json["user"]?["id"]?.stringValue ?? "",
            email: me.json["user"]?["email"]?.stringValue ?? "",
            mfaEnabled: me.json["user"]?["mfa_enabled"] == .bool(true),
            memberships: memberships,
            organization: organization,
            csrf: csrf ?? "",
            path: request.uri.path,
            query: request.uri.query ?? "",
            secure: secure,
            cookies: cookies
        )
    }

    /// Exchanges the refresh cookie for new tokens. - Returns: `nil` when there is none or it no longer works.
    private func refresh(
        _ request: Request,
        credentials: ConsoleCredentials,
        secure: Bool
    ) async throws -> (access: String, cookies: [Cookie])? {
        guard let token = ConsoleCookie.value(request, ConsoleCookie.refresh) else { return nil }
        var anonymous = credentials
        anonymous.accessToken = nil
        let api = self.api
        let caller = anonymous
        let tokens = await refreshes.refresh(token) {
            let answer = try? await api.call(
                .post,
                "/v1/auth/refresh",
                as: caller,
                body: ["refresh_token": .string(token)]
            )
            return answer?.succeeded == true ? answer?.json : nil
        }
        guard let tokens else { return nil }
        return sessionCookies(tokens, secure: secure).map { ($0.access, $0.cookies) }
    }

    /// The cookies of a new session from a token answer (`access_token`, `refresh_token`, `expires_in`).
    func sessionCookies(_ tokens: JSONValue, secure: Bool) -> (access: String, cookies: [Cookie])? {
        guard let access = tokens["access_token"]?.stringValue, let refresh = tokens["refresh_token"]?.stringValue
        else {
            return nil
        }
        let lifetime = tokens["expires_in"]?.numberValue.map { Int($0) } ?? 900
        return (
            access,
            [
                ConsoleCookie.make(ConsoleCookie.access, access, maxAge: max(1, lifetime - 5), secure: secure),
                ConsoleCookie.make(
                    ConsoleCookie.refresh,
                    refresh,
                    maxAge: ConsoleCookie.refreshLifetimeSeconds,
                    secure: secure
                ),
            ]
        )
    }

    private func finish(_ answer: ConsoleAnswer, visit: inout ConsoleVisit) -> Response {
        var response: Response
        switch answer {
        case .html(let html, let status):
            response = Self.html(html, status: status)
        case .redirect(let location):
            response = Self.redirect(to: location)
        case .response(let raw):
            response = raw
        }
        for cookie in visit.cookies { response.setCookie(cookie) }
        return response
    }

    // MARK: Answers

    static func html(_ html: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [.contentType: "text/html; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: html))
        )
    }

    /// `303 See Other` to a path of the console (never to another origin).
    static func redirect(to location: String) -> Response {
        let safe = Self.localPath(location) ?? "/"
        return Response(status: .seeOther, headers: [.location: safe])
    }

    /// `path` when it is a path of this origin (`/…`, not `//…`), else `nil`: where a `next=` may send the user.
    static func localPath(_ path: String?) -> String? {
        guard let path, path.hasPrefix("/"), !path.hasPrefix("//"), !path.hasPrefix("/\\"), path.utf8.count <= 2048,
            !path.contains(where: { $0.isNewline })
        else { return nil }
        return path
    }

    private func signInRedirect(_ request: Request) -> Response {
        let here = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        var response = Self.redirect(
            to: here == "/"
                ? "/login" : "/login?next=" + (here.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/")
        )
        let secure = ConsoleCookie.isSecure(request)
        if request.cookies[ConsoleCookie.access] != nil {
            response.setCookie(ConsoleCookie.expired(ConsoleCookie.access, secure: secure))
        }
        return response
    }

    func errorPage(_ problem: ConsoleProblem, request: Request, context: ConsoleRequestContext) -> Response {
        let title =
            problem.status == 404 ? "Not found" : (problem.status == 403 ? "Not allowed" : "Something went wrong")
        let html = views.document(
            title: title,
            visit: nil,
            body: views.render(
                "error",
                [
                    "title": title, "detail": problem.detail, "code": problem.code, "status": problem.status,
                    "requestID": context.requestID,
                ]
            )
        )
        return Self.html(html, status: HTTPResponse.Status(code: problem.status))
    }
}

/// What a page handler answers.
enum ConsoleAnswer: Sendable {
    case html(String, status: HTTPResponse.Status = .ok)
    case redirect(String)
    case response(Response)
}

/// An organization the signed-in user belongs to.
struct ConsoleMembership: Sendable {
    var id: String
    var name: String
    var role: String

    init?(_ json: JSONValue) {
        guard let id = json["id"]?.stringValue else { return nil }
        self.id = id
        self.name = json["name"]?.stringValue ?? id
        self.role = json["role"]?.stringValue ?? "viewer"
    }

    /// Roles from least to most: what a role may do is what the API allows it; the console only hides buttons a
    /// role could not use.
    static let ranks = ["viewer": 0, "developer": 1, "admin": 2, "owner": 3]

    func atLeast(_ role: String) -> Bool {
        (Self.ranks[self.role] ?? 0) >= (Self.ranks[role] ?? 99)
    }
}

/// One signed-in page request: who, acting in which organization, and the cookies its answer sets.
struct ConsoleVisit: Sendable {
    var credentials: ConsoleCredentials
    var userID: String
    var email: String
    var mfaEnabled: Bool
    var memberships: [ConsoleMembership]
    var organization: ConsoleMembership?
    var csrf: String
    var path: String
    var query: String
    var secure: Bool
    var cookies: [Cookie]

    /// Whether the user's role in the current organization is at least `role`.
    func can(_ role: String) -> Bool { organization?.atLeast(role) ?? false }
}
