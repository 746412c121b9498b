public import CaravanCore
public import HTTPTypes
public import Hummingbird
import NIOCore
import Synchronization

/// The public API as the console calls it: in process, through the same router, middleware, access control,
/// rate limits and audit log as any client, with the signed-in user's access token as the bearer credential. The
/// console holds no privilege of its own: what a user cannot do with `curl`, they cannot do here.
public struct ConsoleAPI: Sendable {
    /// Hands a request to the API's router, as if it had come from `remoteAddress`.
    public typealias Dispatch = @Sendable (Request, _ remoteAddress: String) async throws -> Response

    let dispatch: Dispatch

    public init(dispatch: @escaping Dispatch) {
        self.dispatch = dispatch
    }

    /// An API answer read whole.
    struct Answer: Sendable {
        var status: Int
        var headers: HTTPFields
        var json: JSONValue

        var succeeded: Bool { (200..<300).contains(status) }

        /// The problem this answer carries, when it is an error.
        var problem: ConsoleProblem? {
            guard !succeeded else { return nil }
            return ConsoleProblem(
                status: status,
                code: json["code"]?.stringValue ?? "error",
                detail: json["detail"]?.stringValue ?? json["title"]?.stringValue ?? "The request failed.",
                pointer: json["errors"]?.arrayValue?.first?["pointer"]?.stringValue
                    ?? json["pointer"]?.stringValue,
                errors: (json["errors"]?.arrayValue ?? []).compactMap { error in
                    guard let detail = error["detail"]?.stringValue else { return nil }
                    return (error["pointer"]?.stringValue ?? "", detail)
                }
            )
        }
    }

    /// The most the console reads of one answer; a larger one is refused rather than held in memory.
    static let maxAnswerBytes = 64 << 20

    /// A request body: JSON, text of another type (a YAML definition), or bytes (a file in a form).
    enum Body: Sendable, ExpressibleByDictionaryLiteral {
        case json(JSONValue)
        case text(String, contentType: String)
        case bytes([UInt8], contentType: String)

        init(dictionaryLiteral elements: (String, JSONValue)...) {
            self = .json(.object(Dictionary(elements, uniquingKeysWith: { first, _ in first })))
        }
    }

    /// Calls `method path` (path with its query) as `credentials`, with an optional JSON body.
    func call(
        _ method: HTTPRequest.Method,
        _ path: String,
        as credentials: ConsoleCredentials,
        body: JSONValue? = nil,
        headers extra: HTTPFields = [:]
    ) async throws -> Answer {
        try await call(method, path, as: credentials, sending: body.map(Body.json), headers: extra)
    }

    /// Calls `method path` as `credentials` with a body of any type.
    func call(
        _ method: HTTPRequest.Method,
        _ path: String,
        as credentials: ConsoleCredentials,
        sending body: Body?,
        headers extra: HTTPFields = [:]
    ) async throws -> Answer {
        let response = try await send(method, path, as: credentials, sending: body, headers: extra)
        let collector = BodyCollector(limit: Self.maxAnswerBytes)
        try await response.body.write(collector)
        let json: JSONValue
        if collector.buffer.readableBytes == 0 {
            json = .null
        } else {
            json = (try? JSONValue(parsing: collector.buffer.readableBytesView)) ?? .null
        }
        return Answer(status: Int(response.status.code), headers: response.headers, json: json)
    }

    /// Calls the API and hands back its response as it is, for streams the browser reads itself.
    func send(
        _ method: HTTPRequest.Method,
        _ path: String,
        as credentials: ConsoleCredentials,
        sending body: Body? = nil,
        headers extra: HTTPFields = [:]
    ) async throws -> Response {
        var fields = extra
        if let bearer = credentials.accessToken { fields[.authorization] = "Bearer \(bearer)" }
        if let orgID = credentials.orgID { fields[.caravanOrganization] = orgID }
        fields[.requestID] = credentials.requestID
        var buffer = ByteBuffer()
        switch body {
        case .json(let value):
            fields[.contentType] = "application/json"
            var text = ""
            value.write(to: &text)
            buffer.writeString(text)
        case .text(let text, let contentType):
            fields[.contentType] = contentType
            buffer.writeString(text)
        case .bytes(let bytes, let contentType):
            fields[.contentType] = contentType
            buffer.writeBytes(bytes)
        case nil:
            break
        }
        let head = HTTPRequest(method: method, scheme: "http", authority: "console", path: path, headerFields: fields)
        return try await dispatch(Request(head: head, body: RequestBody(buffer: buffer)), credentials.remoteAddress)
    }
}

/// Who the console acts as in one API call.
struct ConsoleCredentials: Sendable {
    var accessToken: String?
    var orgID: String?
    /// The browser's address, so that rate limits and sign-in throttles see the person, not the console.
    var remoteAddress: String
    /// The page request's id, so that the API's log lines and audit entries name the same request.
    var requestID: String
}

/// An error the API answered, as the console shows it.
struct ConsoleProblem: Error, Sendable {
    var status: Int
    var code: String
    var detail: String
    /// The JSON pointer of the field a validation error is about.
    var pointer: String?
    /// Every field error of a validation failure: pointer and detail.
    var errors: [(pointer: String, detail: String)] = []
}

/// Reads a response body into one buffer, up to a limit. The body consumes its writer, so what it read lives in a
/// box the caller keeps.
struct BodyCollector: ResponseBodyWriter {
    final class Storage: Sendable {
        let bytes = Mutex(ByteBuffer())
    }

    let limit: Int
    let storage = Storage()

    init(limit: Int) { self.limit = limit }

    var buffer: ByteBuffer { storage.bytes.withLock { $0 } }

    func write(_ buffer: ByteBuffer) async throws {
        let fits = storage.bytes.withLock { bytes in
            guard bytes.readableBytes + buffer.readableBytes <= limit else { return false }
            bytes.writeImmutableBuffer(buffer)
            return true
        }
        guard fits else {
            throw ConsoleProblem(
                status: 502,
                code: "answer_too_large",
                detail: "The API's answer was too large to show."
            )
        }
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

extension HTTPField.Name {
    static let caravanOrganization = HTTPField.Name("Caravan-Organization")!  // a valid token, cannot fail
    static let requestID = HTTPField.Name("Request-Id")!  // a valid token, cannot fail
}

extension Console {
    /// The most items a page reads of one list by following its cursors.
    static let maxListItems = 1000

    /// Reads a JSON resource of the API. - Throws: the API's problem.
    func read(_ path: String, _ visit: ConsoleVisit) async throws -> JSONValue {
        let answer = try await api.call(.get, path, as: visit.credentials)
        if let problem = answer.problem { throw problem }
        return answer.json
    }

    /// Every item of a paged list (`{items, next_cursor}`), page by page, up to `maxListItems`.
    func readAll(_ path: String, _ visit: ConsoleVisit) async throws -> [JSONValue] {
        var items: [JSONValue] = []
        var cursor: String?
        let separator = path.contains("?") ? "&" : "?"
        repeat {
            let page = try await read(
                path + separator + "limit=100" + (cursor.map { "&cursor=\(ConsoleMarkup.query($0))" } ?? ""),
                visit
            )
            items += page["items"]?.arrayValue ?? []
            cursor = page["next_cursor"]?.stringValue
        } while cursor != nil && items.count < Self.maxListItems
        return items
    }

    /// Calls the API to change something.
    /// - Returns: the answer when it succeeded, or the problem to show beside the form that was sent.
    /// - Throws: a problem that is not about what the form said (not signed in, not allowed, not found), which
    ///   ends the page with the error page.
    func change(
        _ method: HTTPRequest.Method,
        _ path: String,
        body: JSONValue?,
        _ visit: ConsoleVisit
    ) async throws -> Result<JSONValue, ConsoleProblem> {
        let answer = try await api.call(method, path, as: visit.credentials, body: body)
        guard let problem = answer.problem else { return .success(answer.json) }
        if [401, 403, 404].contains(problem.status) { throw problem }
        return .failure(problem)
    }
}
