import CaravanCore
import Foundation
import HTTPTypes
import Hummingbird

/// The settings sections about who may act: API keys, members and invitations, and the signed-in user's own
/// account (two-factor authentication). A key, an invitation token, a TOTP secret and recovery codes are shown
/// once, on the page that answers the form that made them: never in an address, a cookie or a later page.
extension SettingsPages {
    func registerAccess(in router: Router<ConsoleRequestContext>) {
        router.get("/settings/api-keys") { request, context in
            await console.page(request, context) { visit in try await apiKeysPage(visit, request: request) }
        }
        router.post("/settings/api-keys") { request, context in
            await console.action(request, context) { visit, form in try await createAPIKey(visit, form, request) }
        }
        registerDeletion(
            in: router,
            "/settings/api-keys/{id}/revoke",
            api: "/v1/api-keys",
            back: "/settings/api-keys?done=key-revoked"
        )
        router.get("/settings/members") { request, context in
            await console.page(request, context) { visit in try await membersPage(visit, request: request) }
        }
        router.post("/settings/members/invite") { request, context in
            await console.action(request, context) { visit, form in try await invite(visit, form, request) }
        }
        router.post("/settings/members/{user}/role") { request, context in
            let userID = try context.parameters.require("user")
            return await console.action(request, context) { visit, form in
                let path = try Self.membersPath(visit) + "/\(ConsoleMarkup.segment(userID))"
                let body: JSONValue = ["role": .string(form["role"] ?? "")]
                switch try await console.change(.patch, path, body: body, visit) {
                case .success: return .redirect("/settings/members?done=member-role")
                case .failure(let problem): return try await membersPage(visit, request: request, problem: problem)
                }
            }
        }
        router.post("/settings/members/{user}/remove") { request, context in
            let userID = try context.parameters.require("user")
            return await console.action(request, context) { visit, _ in
                let path = try Self.membersPath(visit) + "/\(ConsoleMarkup.segment(userID))"
                switch try await console.change(.delete, path, body: nil, visit) {
                case .success:
                    return .redirect(userID == visit.userID ? "/runs" : "/settings/members?done=member-removed")
                case .failure(let problem): return try await membersPage(visit, request: request, problem: problem)
                }
            }
        }
        router.get("/settings/account") { request, context in
            await console.page(request, context) { visit in try await accountPage(visit, request: request) }
        }
        router.post("/settings/account/mfa") { request, context in
            await console.action(request, context) { visit, _ in try await enrollMFA(visit) }
        }
        router.post("/settings/account/mfa/verify") { request, context in
            await console.action(request, context) { visit, form in
                let body: JSONValue = ["code": .string(form.trimmed("code") ?? "")]
                switch try await console.change(.post, "/v1/auth/mfa/totp/verify", body: body, visit) {
                case .success: return .redirect("/settings/account?done=mfa-on")
                case .failure(let problem):
                    var data = frame(visit, current: "/settings/account")
                    data["problem"] = ConsoleViews.problem(problem)
                    return console.views.page(
                        "settings-mfa-verify",
                        title: "Two-factor authentication",
                        visit: visit,
                        data,
                        status: problem.status
                    )
                }
            }
        }
    }

    // MARK: API keys

    private func apiKeysPage(
        _ visit: ConsoleVisit,
        request: Request,
        form: [String: Any]? = nil,
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let cursor = request.uri.queryParameters.get("cursor").map { String($0) }
        let page = try await console.read(
            "/v1/api-keys?limit=100" + (cursor.map { "&cursor=\(ConsoleMarkup.query($0))" } ?? ""),
            visit
        )
        let keys = page["items"]?.arrayValue ?? []
        var data = frame(visit, current: "/settings/api-keys", request: request)
        data["keys"] = keys.map { key -> [String: Any] in
            let id = key["id"]?.stringValue ?? ""
            return [
                "id": id,
                "name": key["name"]?.stringValue ?? "",
                "role": key["role"]?.stringValue ?? "",
                "prefix": key["prefix"]?.stringValue ?? "",
                "created": ConsoleTime.element(key["created_at"]),
                "expires": key["expires_at"]?.isNull == false ? ConsoleTime.element(key["expires_at"]) : false,
                "used": key["last_used_at"]?.isNull == false ? ConsoleTime.element(key["last_used_at"]) : false,
                "revokeAction": "/settings/api-keys/\(ConsoleMarkup.segment(id))/revoke",
            ]
        }
        data["empty"] = keys.isEmpty && cursor == nil
        data["next"] =
            page["next_cursor"]?.stringValue.map { "/settings/api-keys?cursor=\(ConsoleMarkup.query($0))" } ?? false
        let values = form ?? ["name": "", "role": "developer", "expires": ""]
        var formData = values
        formData["roles"] = SettingsKit.roles(upTo: visit, selected: values["role"] as? String ?? "developer")
        data["form"] = formData
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        return console.views.page(
            "settings-api-keys",
            title: "API keys",
            visit: visit,
            data,
            status: problem?.status ?? 200
        )
    }

    /// `POST /v1/api-keys`, answered by a page that shows the new key this once.
    private func createAPIKey(
        _ visit: ConsoleVisit,
        _ form: ConsoleForm,
        _ request: Request
    ) async throws
        -> ConsoleAnswer
    {
        let values: [String: Any] = [
            "name": form["name"] ?? "", "role": form["role"] ?? "developer", "expires": form["expires_at"] ?? "",
        ]
        var body: [String: JSONValue] = [
            "name": .string(form.trimmed("name") ?? ""), "role": .string(form["role"] ?? ""),
        ]
        if let expires = SettingsKit.time(form["expires_at"], endOfDay: true) { body["expires_at"] = .string(expires) }
        switch try await console.change(.post, "/v1/api-keys", body: .object(body), visit) {
        case .success(let created):
            var data = frame(visit, current: "/settings/api-keys")
            data["key"] = created["key"]?.stringValue ?? ""
            data["name"] = created["name"]?.stringValue ?? ""
            data["role"] = created["role"]?.stringValue ?? ""
            data["expires"] =
                created["expires_at"]?.isNull == false ? ConsoleTime.element(created["expires_at"]) : false
            return console.views.page("settings-api-key-created", title: "API key created", visit: visit, data)
        case .failure(let problem):
            return try await apiKeysPage(visit, request: request, form: values, problem: problem)
        }
    }

    // MARK: Members

    /// `/v1/organizations/{org}/members` of the organization the visit acts in.
    static func membersPath(_ visit: ConsoleVisit) throws -> String {
        "/v1/organizations/\(ConsoleMarkup.segment(try organizationID(visit)))/members"
    }

    /// The organization the visit acts in. - Throws: 404 when the user belongs to none.
    static func organizationID(_ visit: ConsoleVisit) throws -> String {
        guard let orgID = visit.organization?.id else {
            throw ConsoleProblem(status: 404, code: "not_found", detail: "You belong to no organization.")
        }
        return orgID
    }

    private func membersPage(
        _ visit: ConsoleVisit,
        request: Request,
        form: [String: Any]? = nil,
        problem: ConsoleProblem? = nil,
        inviteProblem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        let cursor = request.uri.queryParameters.get("cursor").map { String($0) }
        let page = try await console.read(
            try Self.membersPath(visit) + "?limit=100" + (cursor.map { "&cursor=\(ConsoleMarkup.query($0))" } ?? ""),
            visit
        )
        let members = page["items"]?.arrayValue ?? []
        var data = frame(visit, current: "/settings/members", request: request)
        data["members"] = members.map { member -> [String: Any] in
            let userID = member["user_id"]?.stringValue ?? ""
            let role = member["role"]?.stringValue ?? ""
            return [
                "userID": userID,
                "email": member["email"]?.stringValue ?? "",
                "role": role,
                "joined": ConsoleTime.element(member["joined_at"]),
                "isYou": userID == visit.userID,
                "roles": SettingsKit.roles(upTo: visit, selected: role),
                "roleAction": "/settings/members/\(ConsoleMarkup.segment(userID))/role",
                "removeAction": "/settings/members/\(ConsoleMarkup.segment(userID))/remove",
            ]
        }
        data["next"] =
            page["next_cursor"]?.stringValue.map { "/settings/members?cursor=\(ConsoleMarkup.query($0))" } ?? false
        data["canManage"] = visit.can("admin")
        let values = form ?? ["email": "", "role": "developer"]
        var formData = values
        formData["roles"] = SettingsKit.roles(upTo: visit, selected: values["role"] as? String ?? "developer")
        data["form"] = formData
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        // Beside the invitation form rather than above the list, which the other problems are about.
        data["inviteProblem"] =
            inviteProblem.map { console.views.render("problem", ["problem": ConsoleViews.problem($0) ?? false]) } ?? ""
        let status = (problem ?? inviteProblem)?.status ?? 200
        return console.views.page("settings-members", title: "Members", visit: visit, data, status: status)
    }

    /// `POST …/invitations`, answered by a page that shows the invitation's token this once.
    private func invite(_ visit: ConsoleVisit, _ form: ConsoleForm, _ request: Request) async throws -> ConsoleAnswer {
        let values: [String: Any] = ["email": form["email"] ?? "", "role": form["role"] ?? "developer"]
        let path = "/v1/organizations/\(ConsoleMarkup.segment(try Self.organizationID(visit)))/invitations"
        let body: JSONValue = ["email": .string(form.trimmed("email") ?? ""), "role": .string(form["role"] ?? "")]
        switch try await console.change(.post, path, body: body, visit) {
        case .success(let invitation):
            var data = frame(visit, current: "/settings/members")
            data["token"] = invitation["token"]?.stringValue ?? ""
            data["email"] = invitation["email"]?.stringValue ?? ""
            data["role"] = invitation["role"]?.stringValue ?? ""
            data["expires"] = ConsoleTime.element(invitation["expires_at"])
            return console.views.page("settings-invitation-created", title: "Invitation created", visit: visit, data)
        case .failure(let problem):
            return try await membersPage(visit, request: request, form: values, inviteProblem: problem)
        }
    }

    // MARK: Your account

    private func accountPage(
        _ visit: ConsoleVisit,
        request: Request?,
        problem: ConsoleProblem? = nil
    ) async throws -> ConsoleAnswer {
        var data = frame(visit, current: "/settings/account", request: request)
        data["email"] = visit.email
        data["mfaEnabled"] = visit.mfaEnabled
        data["organizations"] = visit.memberships.map { ["name": $0.name, "role": $0.role] }
        if let problem { data["problem"] = ConsoleViews.problem(problem) }
        return console.views.page(
            "settings-account",
            title: "Your account",
            visit: visit,
            data,
            status: problem?.status ?? 200
        )
    }

    /// `POST /v1/auth/mfa/totp`: the secret, its `otpauth:` address and the recovery codes, shown this once, with
    /// the form that turns two-factor authentication on with a code.
    private func enrollMFA(_ visit: ConsoleVisit) async throws -> ConsoleAnswer {
        switch try await console.change(.post, "/v1/auth/mfa/totp", body: [:], visit) {
        case .success(let enrollment):
            var data = frame(visit, current: "/settings/account")
            data["secret"] = enrollment["secret"]?.stringValue ?? ""
            data["url"] = enrollment["otpauth_url"]?.stringValue ?? ""
            let codes = (enrollment["recovery_codes"]?.arrayValue ?? []).compactMap(\.stringValue)
            data["codes"] = codes.map { ["code": $0] }
            data["hasCodes"] = !codes.isEmpty
            return console.views.page("settings-mfa-enroll", title: "Two-factor authentication", visit: visit, data)
        case .failure(let problem):
            return try await accountPage(visit, request: nil, problem: problem)
        }
    }

    // MARK: Templates

    static let accessTemplates: [String: String] = [
        "settings-api-keys": """
        {{> settings-nav}}
        <h2>API keys</h2>
        <p class="muted">Keys act for this organization with their role, as <code>Authorization: Bearer …</code>. A key is shown once, when it is created.</p>
        {{#empty}}<div class="empty"><p><strong>No API keys yet.</strong> Create one below for a script or a CI job.</p></div>{{/empty}}
        {{^empty}}
        <div class="scroll"><table>
        <caption class="visually-hidden">API keys</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Starts with</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Last used</th><th scope="col">Actions</th></tr></thead>
        <tbody>{{#keys}}<tr><td>{{name}}</td><td>{{role}}</td><td><code>{{prefix}}</code></td><td>{{{created}}}</td>
        <td>{{#expires}}{{{expires}}}{{/expires}}{{^expires}}<span class="muted">never</span>{{/expires}}</td>
        <td>{{#used}}{{{used}}}{{/used}}{{^used}}<span class="muted">never</span>{{/used}}</td>
        <td><details><summary>Revoke</summary>
        <form method="post" action="{{revokeAction}}" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit" class="danger">Revoke key {{name}}</button>
        </form></details></td></tr>{{/keys}}</tbody>
        </table></div>
        {{#next}}<p><a href="{{next}}">More keys</a></p>{{/next}}
        {{/empty}}
        {{#form}}
        <h2 id="key-form">Create an API key</h2>
        {{> problem}}
        <form method="post" action="/settings/api-keys" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="key-name">Name <span class="muted">(what uses it)</span></label>
        <input id="key-name" name="name" required maxlength="400" value="{{name}}" autocomplete="off">
        <label for="key-role">Role <span class="muted">(no higher than yours)</span></label>
        <select id="key-role" name="role">{{#roles}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/roles}}</select>
        <label for="key-expires">Expires <span class="muted">(optional; at the end of that day, UTC)</span></label>
        <input id="key-expires" name="expires_at" type="date" value="{{expires}}">
        <button type="submit" class="primary">Create key</button>
        </form>
        {{/form}}
        """,
        "settings-api-key-created": """
        {{> settings-nav}}
        <h2>API key created</h2>
        <p>The key <strong>{{name}}</strong> acts as <strong>{{role}}</strong>{{#expires}} until {{{expires}}}{{/expires}}. Copy it now:</p>
        <p class="secret" id="new-key">{{key}}</p>
        <p role="note"><strong>It will not be shown again.</strong> Only a digest is kept; if you lose it, revoke it and create another.</p>
        <p><a href="/settings/api-keys">Back to API keys</a></p>
        """,
        "settings-members": """
        {{> settings-nav}}
        <h2>Members</h2>
        {{> problem}}
        <div class="scroll"><table>
        <caption class="visually-hidden">Members</caption>
        <thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Joined</th>{{#canManage}}<th scope="col">Actions</th>{{/canManage}}</tr></thead>
        <tbody>{{#members}}<tr><td>{{email}}{{#isYou}} <span class="muted">(you)</span>{{/isYou}}</td>
        <td>{{#canManage}}<form method="post" action="{{roleAction}}" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="role-{{userID}}" class="visually-hidden">Role of {{email}}</label>
        <select id="role-{{userID}}" name="role">{{#roles}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/roles}}</select>
        <button type="submit">Change role</button>
        </form>{{/canManage}}{{^canManage}}{{role}}{{/canManage}}</td>
        <td>{{{joined}}}</td>
        {{#canManage}}<td><details><summary>Remove</summary>
        <form method="post" action="{{removeAction}}" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit" class="danger">Remove {{email}}</button>
        </form></details></td>{{/canManage}}</tr>{{/members}}</tbody>
        </table></div>
        {{#next}}<p><a href="{{next}}">More members</a></p>{{/next}}
        {{#canManage}}
        {{#form}}
        <h2 id="invite-form">Invite someone</h2>
        {{{inviteProblem}}}
        <form method="post" action="/settings/members/invite" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="invite-email">Email</label>
        <input id="invite-email" name="email" type="email" required value="{{email}}" autocomplete="off">
        <label for="invite-role">Role <span class="muted">(no higher than yours)</span></label>
        <select id="invite-role" name="role">{{#roles}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{value}}</option>{{/roles}}</select>
        <button type="submit" class="primary">Create invitation</button>
        </form>
        {{/form}}
        {{/canManage}}
        """,
        "settings-invitation-created": """
        {{> settings-nav}}
        <h2>Invitation created</h2>
        <p><strong>{{email}}</strong> is invited as <strong>{{role}}</strong> until {{{expires}}}. Send them this token:</p>
        <p class="secret" id="new-invitation">{{token}}</p>
        <p role="note"><strong>It will not be shown again.</strong> They enter it when they create their account at <code>/signup</code>; someone who already has an account accepts it through <code>POST /v1/invitations/accept</code>.</p>
        <p><a href="/settings/members">Back to members</a></p>
        """,
        "settings-account": """
        {{> settings-nav}}
        <h2>Your account</h2>
        <dl class="facts"><dt>Email</dt><dd>{{email}}</dd>
        <dt>Organizations</dt><dd><ul>{{#organizations}}<li>{{name}} <span class="muted">({{role}})</span></li>{{/organizations}}</ul></dd>
        <dt>Two-factor authentication</dt><dd>{{#mfaEnabled}}<span class="badge status-succeeded">on</span>{{/mfaEnabled}}{{^mfaEnabled}}<span class="badge status-pending">off</span>{{/mfaEnabled}}</dd></dl>
        {{> problem}}
        {{^mfaEnabled}}
        <h2>Turn on two-factor authentication</h2>
        <p>Signing in will then ask for a six-digit code from an authenticator app as well as your password.</p>
        <form method="post" action="/settings/account/mfa" class="inline">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <button type="submit" class="primary">Set up two-factor authentication</button>
        </form>
        {{/mfaEnabled}}
        """,
        "settings-mfa-enroll": """
        {{> settings-nav}}
        <h2>Set up two-factor authentication</h2>
        <ol>
        <li><p>Add this key to your authenticator app (as a time-based key):</p>
        <p class="secret" id="totp-secret">{{secret}}</p>
        <p>Or, if it takes an address, this one:</p>
        <p class="secret" id="totp-url">{{url}}</p></li>
        {{#hasCodes}}<li><p>Keep these recovery codes somewhere safe; each signs you in once without the app. <strong>They will not be shown again.</strong></p>
        <ul class="secret" id="recovery-codes">{{#codes}}<li>{{code}}</li>{{/codes}}</ul></li>{{/hasCodes}}
        <li><p>Enter the code the app shows now to turn two-factor authentication on:</p>
        <form method="post" action="/settings/account/mfa/verify" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="totp-code">Six-digit code</label>
        <input id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" required>
        <button type="submit" class="primary">Turn on</button>
        </form></li>
        </ol>
        """,
        "settings-mfa-verify": """
        {{> settings-nav}}
        <h2>Turn on two-factor authentication</h2>
        {{> problem}}
        <form method="post" action="/settings/account/mfa/verify" class="stack">
        <input type="hidden" name="_csrf" value="{{csrf}}">
        <label for="totp-code">Six-digit code from your authenticator app</label>
        <input id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" required autofocus>
        <button type="submit" class="primary">Turn on</button>
        </form>
        <p class="muted">Did not add the key to your app? <a href="/settings/account">Start again</a>: a new key and new recovery codes replace the earlier ones.</p>
        """,
    ]
}
