public import CaravanAudit
public import CaravanCore
import CaravanIdentity
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Synchronization

/// What a handler adds to its request's audit entry: a more precise target, details, or (for the endpoints that
/// sign people in) who the actor turned out to be.
public final class AuditNote: Sendable {
    struct Fields {
        var target: String?
        var details: JSONValue?
        var actor: AuditActor?
        var orgID: String?
        /// The entry a successful request will write, as the gate prepared it.
        var success: AuditRecord?
        /// Whether the handler's own write committed that entry.
        var committed = false
    }

    private let fields = Mutex(Fields())

    public init() {}

    /// Names what the request acted on, e.g. `run:run_…`.
    public func target(_ target: String) { fields.withLock { $0.target = target } }
    /// Adds details (never secret values).
    public func details(_ details: JSONValue) { fields.withLock { $0.details = details } }
    /// Names the actor and organization of a request that had no credentials (signup, login).
    public func actor(_ actor: AuditActor, orgID: String? = nil) {
        fields.withLock {
            $0.actor = actor
            if let orgID { $0.orgID = orgID }
        }
    }

    /// The entry this request writes if it succeeds, for a handler whose write commits it in its own transaction
    /// (a run start): pass it to that write, then call `committedWithWrite()` if the write happened. `nil` for a
    /// request that is not audited.
    public var entryForWrite: AuditRecord? {
        fields.withLock { fields in
            guard var entry = fields.success else { return nil }
            if let target = fields.target { entry.target = target }
            if case .object(let extra) = fields.details, case .object(var details) = entry.details {
                details.merge(extra) { first, _ in first }
                entry.details = .object(details)
            }
            return entry
        }
    }

    /// Says that the write committed `entryForWrite`: the gate does not write it again.
    public func committedWithWrite() { fields.withLock { $0.committed = true } }

    func prepare(_ success: AuditRecord) { fields.withLock { $0.success = success } }

    var snapshot: Fields { fields.withLock { $0 } }
}

/// The gate every endpoint passes: it refuses credentials in URLs, checks the bearer credential, applies the
/// caller's rate limit, checks the endpoint's permission against `AccessPolicy`, and writes the audit entry of
/// every change, sign-in and denial. Routes register through `RouteRegistrar`, which puts every handler behind
/// it, so no route can forget a check.
struct AccessControl: Sendable {
    let identity: IdentityService
    let limiter: RequestRateLimiter
    let audit: AuditLog

    static let organizationHeader = HTTPField.Name("Caravan-Organization")!  // a valid token, cannot fail

    func guarding(
        _ endpoint: EndpointDescription,
        _ handler: @escaping @Sendable (Request, CaravanRequestContext) async throws -> Response
    ) -> @Sendable (Request, CaravanRequestContext) async throws -> Response {
        let audited = endpoint.audited
        return { request, context in
            var context = context
            do {
                try Self.refuseCredentialsInURL(request)
                if endpoint.access != .open {
                    try await authorize(endpoint, request: request, context: &context)
                }
                if audited {
                    context.audit.prepare(entry(endpoint, request: request, context: context, outcome: "success"))
                }
                var response = try await handler(request, context)
                if audited, response.status.code < 400, !context.audit.snapshot.committed {
                    await record(endpoint, request: request, context: context, outcome: "success")
                }
                if let state = context.rateLimit {
                    for (name, value) in Self.headerValues(state) { response.headers[name] = value }
                }
                return response
            } catch {
                let status = Self.status(of: error)
                if status == 403 || (status == 401 && endpoint.access == .open && audited) {
                    await record(
                        endpoint,
                        request: request,
                        context: context,
                        outcome: status == 403 ? "denied" : "failure"
                    )
                }
                throw error
            }
        }
    }

    static let rateLimitHeaders = (
        limit: HTTPField.Name("x-ratelimit-limit-requests")!,
        remaining: HTTPField.Name("x-ratelimit-remaining-requests")!,
        reset: HTTPField.Name("x-ratelimit-reset-requests")!
    )

    /// The caller's request budget, as OpenAI's `x-ratelimit-*-requests` headers state it.
    static func headerValues(_ state: RateLimitState) -> [(HTTPField.Name, String)] {
        [
            (rateLimitHeaders.limit, "\(state.limit)"), (rateLimitHeaders.remaining, "\(state.remaining)"),
            (rateLimitHeaders.reset, state.resetText),
        ]
    }

    private func authorize(
        _ endpoint: EndpointDescription,
        request: Request,
        context: inout CaravanRequestContext
    ) async throws {
        guard let header = request.headers[.authorization], header.count > 7,
            header.prefix(7).lowercased() == "bearer "
        else {
            throw CaravanError(.unauthenticated, "Send credentials as Authorization: Bearer <API key or access token>.")
        }
        let bearer = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        let requestedOrganization = context.parameters.get("org") ?? request.headers[Self.organizationHeader]
        let principal = try await identity.authenticate(bearer: bearer, organization: requestedOrganization)
        context.principal = principal
        context.logger[metadataKey: "caravan.org_id"] = principal.orgID.map { .string($0) }
        let state = limiter.account(principal.rateLimitKey, perMinute: principal.rateLimitPerMinute)
        context.rateLimit = state
        if let wait = state?.retryAfterSeconds {
            throw CaravanError.rateLimited("This credential has used its requests for now.", retryAfter: wait)
        }
        guard case .organization(let permission) = endpoint.access else { return }
        let orgID = try context.organizationID()
        guard let role = principal.role, AccessPolicy.allows(role, permission) else {
            throw CaravanError(
                .forbidden,
                "Your role (\(principal.role?.rawValue ?? "none")) in \(orgID) does not allow this; it needs \(AccessPolicy.minimumRole[permission]?.rawValue ?? "owner")."
            )
        }
    }

    /// A credential in a query string ends up in logs and browser history: such requests are refused outright.
    static func refuseCredentialsInURL(_ request: Request) throws {
        guard let query = request.uri.query, !query.isEmpty else { return }
        let names: Set<String> = ["api_key", "apikey", "access_token", "token", "key", "authorization", "bearer"]
        let suspicious = request.uri.queryParameters.contains { name, value in
            names.contains(name.lowercased()) || value.hasPrefix("cvk_") || value.hasPrefix("Bearer")
        }
        if suspicious {
            throw CaravanError(
                .invalidRequest,
                "Credentials are never accepted in the URL; send them in the Authorization header (and revoke a key that was sent in a URL)."
            )
        }
    }

    private func record(
        _ endpoint: EndpointDescription,
        request: Request,
        context: CaravanRequestContext,
        outcome: String
    ) async {
        await audit.recordLogged(entry(endpoint, request: request, context: context, outcome: outcome))
    }

    /// The audit entry of a request, with what its handler noted so far.
    private func entry(
        _ endpoint: EndpointDescription,
        request: Request,
        context: CaravanRequestContext,
        outcome: String
    ) -> AuditRecord {
        let note = context.audit.snapshot
        let actor: AuditActor
        switch context.principal?.credential {
        case .session(let userID, _): actor = AuditActor(.user, userID)
        case .apiKey(let id): actor = AuditActor(.apiKey, id)
        case nil: actor = note.actor ?? AuditActor(.anonymous, "unknown")
        }
        var details: [String: JSONValue] = ["method": .string(endpoint.method.rawValue)]
        if case .object(let extra) = note.details { details.merge(extra) { first, _ in first } }
        return AuditRecord(
            orgID: note.orgID ?? context.principal?.orgID,
            actor: actor,
            action: outcome == "denied" ? "permission.denied" : endpoint.operationID,
            target: note.target ?? request.uri.path,
            outcome: outcome,
            source: context.sourceAddress,
            requestID: context.requestID,
            details: .object(details)
        )
    }

    static func status(of error: any Error) -> Int {
        switch error {
        case let error as CaravanError: error.code.status
        case let error as any HTTPResponseError: Int(error.status.code)
        default: 500
        }
    }
}
