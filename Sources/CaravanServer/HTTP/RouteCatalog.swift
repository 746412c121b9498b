public import CaravanCore
public import CaravanIdentity
public import HTTPTypes
import Hummingbird
import Synchronization

/// Who may call an endpoint.
public enum EndpointAccess: Sendable, Hashable {
    /// Anyone, without credentials (health, metrics, the document, signing in).
    case open
    /// Any signed-in user or API key; no organization needed (e.g. `/v1/me`).
    case signedIn
    /// A caller acting in an organization whose role there holds the permission (see `AccessPolicy`).
    case organization(Permission)
}

/// One endpoint as the OpenAPI document describes it.
public struct EndpointDescription: Sendable {
    public var method: HTTPRequest.Method
    /// The path in OpenAPI form, e.g. `/v1/runs/{id}`.
    public var path: String
    public var operationID: String
    public var summary: String
    public var tag: String
    /// Who may call it.
    public var access: EndpointAccess
    /// Whether the endpoint needs credentials.
    public var authenticated: Bool { access != .open }
    /// The request body's JSON Schema, if the endpoint takes one.
    public var requestSchema: JSONValue?
    /// Whether a request must carry the body (`false`: an absent body means `{}`).
    public var requestBodyRequired: Bool
    /// The query parameters the endpoint reads, each with the schema of the values it accepts.
    public var query: [QueryParameter]
    /// Successful answers: status code → description and JSON Schema (`nil` for no body or non-JSON bodies).
    public var responses: [Int: (description: String, schema: JSONValue?, mediaType: String)]
    /// Whether a successful call is written to the audit log: every change is; reads, and calls that change
    /// nothing (a model completion, metered in the usage table instead), are not.
    public var audited: Bool

    public init(
        _ method: HTTPRequest.Method,
        _ path: String,
        operationID: String,
        summary: String,
        tag: String,
        access: EndpointAccess,
        requestSchema: JSONValue? = nil,
        requestBodyRequired: Bool = true,
        query: [QueryParameter] = [],
        responses: [Int: (description: String, schema: JSONValue?, mediaType: String)],
        audited: Bool? = nil
    ) {
        self.audited = audited ?? (method != .get && method != .head)
        self.method = method
        self.path = path
        self.operationID = operationID
        self.summary = summary
        self.tag = tag
        self.access = access
        self.requestSchema = requestSchema
        self.requestBodyRequired = requestBodyRequired
        self.query = query
        self.responses = responses
    }

    /// Whether `path` (a request path, e.g. `/v1/runs/run_1`) is an instance of this endpoint's path template.
    func matches(path: String) -> Bool {
        let template = self.path.split(separator: "/")
        let parts = path.split(separator: "/")
        guard template.count == parts.count else { return false }
        return zip(template, parts).allSatisfy { pattern, part in
            (pattern.hasPrefix("{") && pattern.hasSuffix("}")) || pattern == part
        }
    }
}

/// A query parameter of an endpoint, as the OpenAPI document lists it.
public struct QueryParameter: Sendable {
    public var name: String
    public var description: String
    /// The JSON Schema of the values the server accepts.
    public var schema: JSONValue

    public init(_ name: String, _ description: String, schema: JSONValue) {
        self.name = name
        self.description = description
        self.schema = schema
    }
}

/// Every endpoint's description, so that `/openapi.json` describes exactly the endpoints that exist.
public final class RouteCatalog: Sendable {
    private let entries = Mutex<[EndpointDescription]>([])

    init() {}

    /// Every endpoint registered so far.
    public var endpoints: [EndpointDescription] { entries.withLock { $0 } }

    func record(_ endpoint: EndpointDescription) {
        entries.withLock { $0.append(endpoint) }
    }

    /// The methods declared on the paths that `path` is an instance of; empty for an unknown path.
    func methods(forPath path: String) -> [HTTPRequest.Method] {
        let methods = Set(endpoints.filter { $0.matches(path: path) }.map(\.method.rawValue))
        return methods.sorted().compactMap { HTTPRequest.Method($0) }
    }
}

/// Answers a request whose path exists but whose method no endpoint declares (TRACE, or DELETE on a list) with
/// `405 method_not_allowed` and an `Allow` header, where the router alone would answer 404.
struct MethodNotAllowedMiddleware: RouterMiddleware {
    typealias Context = CaravanRequestContext
    let catalog: RouteCatalog

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let declared = catalog.methods(forPath: request.uri.path)
            // No endpoint at this path (or the endpoint itself answered 404): the 404 stands.
            guard !declared.isEmpty, !declared.contains(request.method) else { throw error }
            // The router answers HEAD wherever GET is declared.
            let allowed = declared.contains(.get) ? declared + [.head] : declared
            let list = allowed.map(\.rawValue).sorted().joined(separator: ", ")
            throw HTTPError(
                .methodNotAllowed,
                headers: [.allow: list],
                message: "\(request.method.rawValue) is not allowed on this path; it allows \(list)."
            )
        }
    }
}

/// Registers routes on the router and records each one in the catalog; used while the application is built.
struct RouteRegistrar {
    let router: Router<CaravanRequestContext>
    let catalog: RouteCatalog
    let access: AccessControl

    /// Also puts `MethodNotAllowedMiddleware` on the router (inside the middleware already added, so that its
    /// 405 becomes problem+json): the catalog it reads is this registrar's, filled as routes are added.
    init(router: Router<CaravanRequestContext>, catalog: RouteCatalog, access: AccessControl) {
        self.router = router
        self.catalog = catalog
        self.access = access
        router.add(middleware: MethodNotAllowedMiddleware(catalog: catalog))
    }

    /// Registers `handler` for the endpoint.
    func add(
        _ endpoint: EndpointDescription,
        handler: @escaping @Sendable (Request, CaravanRequestContext) async throws -> Response
    ) {
        catalog.record(endpoint)
        let routerPath = endpoint.path
            .split(separator: "/", omittingEmptySubsequences: false)
            .map { part in part.hasPrefix("{") && part.hasSuffix("}") ? ":" + part.dropFirst().dropLast() : part }
            .joined(separator: "/")
        router.on(RouterPath(routerPath), method: endpoint.method, use: access.guarding(endpoint, handler))
    }
}
