import CaravanCore
import CaravanIdentity
import HTTPTypes
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
        self.responses = responses
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
}

/// Registers routes on the router and records each one in the catalog; used while the application is built.
struct RouteRegistrar {
    let router: Router<CaravanRequestContext>
    let catalog: RouteCatalog
    let access: AccessControl

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
