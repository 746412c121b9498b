import CaravanCore
import HTTPTypes
import Hummingbird

/// Signing up, in and out, and choosing the organization to act in.
struct AuthPages: Sendable {
    let console: Console

    func register(in router: Router<ConsoleRequestContext>) {
        router.get("/") { request, context in
            ConsoleCookie.value(request, ConsoleCookie.access) != nil
                || ConsoleCookie.value(request, ConsoleCookie.refresh) != nil
                ? Console.redirect(to: "/runs") : Console.redirect(to: "/login")
        }
        router.get("/login") { request, context in
            signInForm(request, context, template: "login", title: "Sign in", data: [:])
        }
        router.post("/login") { request, context in
            await submit(request, context, template: "login", title: "Sign in") { form in
                var body: [String: JSONValue] = [
                    "email": .string(form["email"] ?? ""), "password": .string(form["password"] ?? ""),
                ]
                if let code = form.trimmed("totp") { body["totp"] = .string(code) }
                return ("/v1/auth/login", .object(body))
            }
        }
        router.get("/signup") { request, context in
            signInForm(request, context, template: "signup", title: "Create your account", data: [:])
        }
        router.post("/signup") { request, context in
            await submit(request, context, template: "signup", title: "Create your account") { form in
                var body: [String: JSONValue] = [
                    "email": .string(form["email"] ?? ""), "password": .string(form["password"] ?? ""),
                ]
                if let name = form.trimmed("organization") { body["organization"] = .string(name) }
                if let invitation = form.trimmed("invitation") { body["invitation"] = .string(invitation) }
                return ("/v1/auth/signup", .object(body))
            }
        }
        router.post("/logout") { request, context in
            await console.action(request, context) { visit, _ in
                _ = try await console.api.call(.post, "/v1/auth/logout", as: visit.credentials, body: [:])
                return .response(signedOut(secure: visit.secure))
            }
        }
        router.post("/organization") { request, context in
            await console.action(request, context) { visit, form in
                guard let orgID = form["org"], visit.memberships.contains(where: { $0.id == orgID }) else {
                    throw ConsoleProblem(
                        status: 404,
                        code: "not_found",
                        detail: "You are not a member of that organization."
                    )
                }
                var response = Console.redirect(to: "/runs")
                response.setCookie(
                    ConsoleCookie.make(ConsoleCookie.organization, orgID, maxAge: nil, secure: visit.secure)
                )
                return .response(response)
            }
        }
    }

    /// The sign-in or sign-up form, with a CSRF cookie for a browser that has none yet.
    private func signInForm(
        _ request: Request,
        _ context: ConsoleRequestContext,
        template: String,
        title: String,
        data: [String: Any],
        status: HTTPResponse.Status = .ok
    ) -> Response {
        let existing = ConsoleCookie.value(request, ConsoleCookie.csrf)
        let csrf = existing ?? CSRFGuard.newToken()
        var data = data
        data["csrf"] = csrf
        data["next"] = Console.localPath(request.uri.queryParameters.get("next").map { String($0) }) ?? ""
        var response = Console.html(
            console.views.document(title: title, visit: nil, body: console.views.render(template, data)),
            status: status
        )
        if existing == nil {
            response.setCookie(
                ConsoleCookie.make(ConsoleCookie.csrf, csrf, maxAge: nil, secure: ConsoleCookie.isSecure(request))
            )
        }
        return response
    }

    /// Posts the form to the identity endpoint `call` names; on success sets the session's cookies and goes on to
    /// `next` (or the runs), else shows the form again with the API's error beside it.
    private func submit(
        _ request: Request,
        _ context: ConsoleRequestContext,
        template: String,
        title: String,
        call: (ConsoleForm) -> (path: String, body: JSONValue)
    ) async -> Response {
        let form: ConsoleForm
        switch await console.checkedForm(request, context) {
        case .success(let checked): form = checked
        case .failure(let refusal): return refusal.response
        }
        let (path, body) = call(form)
        let secure = ConsoleCookie.isSecure(request)
        let credentials = ConsoleCredentials(
            accessToken: nil,
            orgID: nil,
            remoteAddress: context.sourceAddress,
            requestID: context.requestID
        )
        do {
            let answer = try await console.api.call(.post, path, as: credentials, body: body)
            if let problem = answer.problem {
                var data: [String: Any] = [
                    "email": form["email"] ?? "", "organization": form["organization"] ?? "",
                    "invitation": form["invitation"] ?? "",
                ]
                data["problem"] = ConsoleViews.problem(problem)
                data["needsCode"] = problem.code == "mfa_required" || form.trimmed("totp") != nil
                return signInForm(
                    request,
                    context,
                    template: template,
                    title: title,
                    data: data,
                    status: HTTPResponse.Status(code: problem.status)
                )
            }
            guard let session = console.sessionCookies(answer.json, secure: secure) else {
                throw ConsoleProblem(status: 502, code: "internal", detail: "The sign-in answer had no session.")
            }
            var response = Console.redirect(to: Console.localPath(form["next"]) ?? "/runs")
            for cookie in session.cookies { response.setCookie(cookie) }
            if let orgID = answer.json["organization"]?["id"]?.stringValue {
                response.setCookie(ConsoleCookie.make(ConsoleCookie.organization, orgID, maxAge: nil, secure: secure))
            }
            return response
        } catch let problem as ConsoleProblem {
            return console.errorPage(problem, request: request, context: context)
        } catch {
            return console.errorPage(
                ConsoleProblem(status: 500, code: "internal", detail: "Signing in failed; the server log says more."),
                request: request,
                context: context
            )
        }
    }

    /// Back to the sign-in page with every session cookie deleted.
    private func signedOut(secure: Bool) -> Response {
        var response = Console.redirect(to: "/login")
        for name in [ConsoleCookie.access, ConsoleCookie.refresh, ConsoleCookie.organization] {
            response.setCookie(ConsoleCookie.expired(name, secure: secure))
        }
        return response
    }

    static let templates: [String: String] = [
        "login": """
        <div class="narrow">
        <h1>Sign in to Caravan</h1>
        {{> problem}}
        <form method="post" action="/login" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <input type="hidden" name="next" value="{{next}}">
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="username" required value="{{email}}"{{^needsCode}} autofocus{{/needsCode}}>
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required>
        <label for="totp">Two-factor code <span class="muted">(when your account uses one; or a recovery code)</span></label>
        <input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code"{{#needsCode}} autofocus{{/needsCode}}>
        <button type="submit" class="primary">Sign in</button>
        </form>
        <p>New here? <a href="/signup">Create an account</a>; the first account on a server creates its first organization.</p>
        </div>
        """,
        "signup": """
        <div class="narrow">
        <h1>Create your account</h1>
        {{> problem}}
        <form method="post" action="/signup" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="username" required value="{{email}}" autofocus>
        <label for="password">Password <span class="muted">(at least 12 characters)</span></label>
        <input id="password" name="password" type="password" autocomplete="new-password" required minlength="12">
        <label for="organization">Organization name</label>
        <input id="organization" name="organization" value="{{organization}}">
        <label for="invitation">Invitation token <span class="muted">(when you were invited)</span></label>
        <input id="invitation" name="invitation" value="{{invitation}}" autocomplete="off">
        <button type="submit" class="primary">Create account</button>
        </form>
        <p>Already have an account? <a href="/login">Sign in</a>.</p>
        </div>
        """,
    ]
}
