import AsyncHTTPClient
import CaravanCore
import CaravanIdentity
import CaravanKnowledge
import CaravanOutbound
import CaravanWorkflow
import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1

/// `/v1/collections…`: knowledge collections, their documents (extracted when they arrive, then cut, embedded and
/// indexed by a run of the engine) and search over them.
struct KnowledgeRoutes {
    let knowledge: KnowledgeStore
    /// Adds documents through runs of the engine.
    let ingestion: DocumentIngestion
    /// Fetches the documents given by `url`, through the egress policy.
    let egress: EgressHTTPClient

    /// Documents are larger than other bodies: an uploaded file (a PDF, a DOCX) up to `maxFileBytes`.
    static let documents = RequestBodyReader(maxBytes: maxFileBytes + 65_536)
    /// A JSON document carries its text, up to `KnowledgeStore.maxDocumentBytes`.
    static let textDocuments = RequestBodyReader(maxBytes: KnowledgeStore.maxDocumentBytes + 65_536)
    /// The most an uploaded or fetched file may hold; its text may hold `KnowledgeStore.maxDocumentBytes`.
    static let maxFileBytes = 64 << 20
    static let bodies = RequestBodyReader(maxBytes: 65_536)

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .put,
                "/v1/collections/{name}",
                operationID: "putCollection",
                summary:
                    "Create or change a collection: `{embedding_model: provider/model, chunking?: {size, overlap}}` (characters).",
                tag: "knowledge",
                access: .organization(.write),
                requestSchema: object,
                responses: [201: ("Created", object, "application/json"), 200: ("Changed", object, "application/json")]
            )
        ) { request, context in
            let name = try Self.name(context)
            let (collection, created) = try await knowledge.putCollection(
                orgID: try context.organizationID(),
                name: name,
                body: try await Self.bodies.json(of: request)
            )
            context.audit.target("collection:\(name)")
            return .json(collection.json, status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/collections",
                operationID: "listCollections",
                summary: "The organization's collections.",
                tag: "knowledge",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("A page of collections", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await knowledge.collections(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.name, json: \.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/collections/{name}",
                operationID: "getCollection",
                summary: "A collection.",
                tag: "knowledge",
                access: .organization(.read),
                responses: [200: ("The collection", object, "application/json")]
            )
        ) { _, context in
            let name = try Self.name(context)
            guard let collection = try await knowledge.collection(orgID: try context.organizationID(), name: name)
            else {
                throw CaravanError.notFound("The collection '\(name)'")
            }
            return .json(collection.json)
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/collections/{name}",
                operationID: "deleteCollection",
                summary: "Delete a collection with its documents, chunks and vectors.",
                tag: "knowledge",
                access: .organization(.write),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let name = try Self.name(context)
            guard try await knowledge.deleteCollection(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The collection '\(name)'")
            }
            context.audit.target("collection:\(name)")
            return Response(status: .noContent)
        }
        registerDocuments(in: routes)
    }

    private func registerDocuments(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .post,
                "/v1/collections/{name}/documents",
                operationID: "addDocument",
                summary:
                    "Add a document, or replace the one of the same name: `{name, text, format?: text | markdown | html | csv | json, metadata?}`, `{url, name?, format?, metadata?}`, or a `multipart/form-data` upload with a `file` part (its format from `format`, else its file name or media type; its name from `name`, else the file name) and optional `metadata` (JSON). Its text is extracted before the answer (a file Caravan cannot read is refused, nothing changed); a run of `knowledge:ingest` (`run_id`) then cuts, embeds and indexes it, and the same text is not embedded twice. `?wait=30s` (the default; at most 60s, `0s` answers at once) answers 201 once it is indexed, else 202 while it is ingested.",
                tag: "knowledge",
                access: .organization(.write),
                requestSchema: object,
                query: [APISchemas.wait],
                responses: [
                    201: ("The document, indexed", object, "application/json"),
                    202: ("The document, still being ingested by its run", object, "application/json"),
                ]
            )
        ) { request, context in
            let collection = try await existing(context)
            let wait = try APIRequest.wait(request) ?? .seconds(30)
            var upload = try await DocumentUpload.read(request)
            if let url = upload.url {
                try await upload.fetch(url, orgID: try context.organizationID(), through: egress)
            }
            let (document, indexed) = try await ingestion.add(
                orgID: try context.organizationID(),
                collection: collection,
                document: upload.name,
                text: upload.text,
                format: upload.format,
                metadata: upload.metadata,
                wait: wait
            )
            context.audit.target("collection:\(collection)")
            return .json(document, status: indexed ? .created : .accepted)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/collections/{name}/documents",
                operationID: "listDocuments",
                summary: "The collection's documents.",
                tag: "knowledge",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("A page of documents", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await knowledge.documents(
                orgID: try context.organizationID(),
                collection: try await existing(context),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(
                APIRequest.page(page, limit: limit, cursor: { $0["id"]?.stringValue ?? "" }, json: { $0 })
            )
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/collections/{name}/documents/{id}",
                operationID: "getDocument",
                summary: "A document, with its chunks.",
                tag: "knowledge",
                access: .organization(.read),
                responses: [200: ("The document", object, "application/json")]
            )
        ) { _, context in
            guard
                let document = try await ingestion.document(
                    orgID: try context.organizationID(),
                    collection: try Self.name(context),
                    id: try context.parameters.require("id")
                )
            else { throw CaravanError.notFound("The document") }
            return .json(document)
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/collections/{name}/documents/{id}",
                operationID: "deleteDocument",
                summary:
                    "Delete a document with its chunks and vectors (cancelling its ingestion if it is still going).",
                tag: "knowledge",
                access: .organization(.write),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let collection = try Self.name(context)
            guard
                try await ingestion.delete(
                    orgID: try context.organizationID(),
                    collection: collection,
                    id: try context.parameters.require("id")
                )
            else { throw CaravanError.notFound("The document") }
            context.audit.target("collection:\(collection)")
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/collections/{name}/search",
                operationID: "searchCollection",
                summary:
                    "Search a collection: `{query, k?: 1–50 (5), mode?: hybrid | vector | text, filter?: {metadata key: value}}`; chunks with their document, position, score and text.",
                tag: "knowledge",
                access: .organization(.read),
                requestSchema: object,
                responses: [200: ("The chunks found", object, "application/json")]
            )
        ) { request, context in
            let collection = try await existing(context)
            let fields = try BodyFields(
                try await Self.bodies.json(of: request),
                allowed: ["query", "k", "mode", "filter"]
            )
            guard let query = try fields.string("query", maxLength: 2_000), !query.isEmpty else {
                throw CaravanError.validation("/query", "is required: up to 2,000 characters")
            }
            let k = try fields.integer("k") ?? 5
            guard (1...50).contains(k) else { throw CaravanError.validation("/k", "must be an integer from 1 to 50") }
            var mode = SearchMode.hybrid
            if let value = try fields.string("mode") {
                guard let parsed = SearchMode(rawValue: value) else {
                    throw CaravanError.validation("/mode", "must be hybrid, vector or text")
                }
                mode = parsed
            }
            var filter: [String: JSONValue] = [:]
            if let value = fields.object["filter"] {
                guard let object = value.objectValue else {
                    throw CaravanError.validation("/filter", "must be an object of metadata keys and values")
                }
                filter = object
            }
            let results = try await knowledge.search(
                orgID: try context.organizationID(),
                collection: collection,
                query: query,
                k: k,
                mode: mode,
                filter: filter,
                requestID: context.requestID
            )
            return .json(["items": .array(results)])
        }
    }

    /// The collection the path names, which must exist in the caller's organization (checked before the body is
    /// read, so that another organization's collection is not found rather than its request invalid).
    func existing(_ context: CaravanRequestContext) async throws -> String {
        let name = try Self.name(context)
        guard try await knowledge.collection(orgID: try context.organizationID(), name: name) != nil else {
            throw CaravanError.notFound("The collection '\(name)'")
        }
        return name
    }

    static func name(_ context: CaravanRequestContext) throws -> String {
        let name = try context.parameters.require("name")
        guard DefinitionParser.isValidWorkflowName(name) else {
            throw CaravanError.validation("/name", "must match [a-z0-9-]{1,64}")
        }
        return name
    }
}

/// A document as a request brings it: JSON `{name, text, format?, metadata?}`, or a `multipart/form-data` upload.
struct DocumentUpload {
    var name: String
    var text: String
    var format: DocumentFormat
    var metadata: JSONValue
    /// Where the text is to be fetched from (JSON `url`), and whether the request named its format.
    var url: URL?
    var formatGiven = false

    /// How long fetching a document may take.
    static let fetchTimeout: TimeAmount = .seconds(30)

    /// Fetches the document at `url` through the egress policy (a refusal is audited in `orgID`): its text, and its
    /// format from its path or media type unless the request named one.
    /// - Throws: `egress_denied`, `document_fetch_failed` (a transport error, or a status other than 2xx),
    ///   `payload_too_large`, `unsupported_media_type`.
    mutating func fetch(_ url: URL, orgID: String, through egress: EgressHTTPClient) async throws {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.headers.add(name: "Accept", value: "text/*, application/json;q=0.9, */*;q=0.1")
        let fetched = await EgressAttribution.$current.withValue(EgressAttribution(orgID: orgID, runID: nil)) {
            () async -> Result<(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer), Failure> in
            do throws(Failure) {
                return .success(
                    try await egress.execute(
                        request,
                        timeout: Self.fetchTimeout,
                        maxBodyBytes: KnowledgeRoutes.maxFileBytes
                    )
                )
            } catch {
                return .failure(error)
            }
        }
        let response: (status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer)
        switch fetched {
        case .success(let answer): response = answer
        case .failure(let failure) where failure.code.rawValue == CaravanError.Code.egressDenied.rawValue:
            throw CaravanError(
                .egressDenied,
                failure.message,
                fieldErrors: [.init(pointer: "/url", detail: failure.message)]
            )
        case .failure(let failure) where failure.code.rawValue == "response_too_large":
            throw CaravanError(.payloadTooLarge, "The document is larger than \(KnowledgeRoutes.maxFileBytes) bytes.")
        case .failure(let failure):
            throw CaravanError(Self.fetchFailed, "The document could not be fetched: \(failure.message)")
        }
        guard (200..<300).contains(response.status.code) else {
            throw CaravanError(Self.fetchFailed, "Fetching the document answered \(response.status.code).")
        }
        let file = MultipartForm.Part(
            name: "url",
            filename: url.lastPathComponent.contains(".") ? url.lastPathComponent : nil,
            contentType: response.headers.first(name: "content-type"),
            body: Array(response.body.readableBytesView)
        )
        if !formatGiven { format = try Self.format(of: file) }
        text = try await Self.content(of: file, format: format)
    }

    /// The text of an uploaded or fetched file: a PDF read by `PDFExtractor`, anything else as UTF-8 text.
    static func content(of file: MultipartForm.Part, format: DocumentFormat) async throws(CaravanError) -> String {
        switch format {
        case .pdf: return try await PDFExtractor.text(of: file.body)
        case .docx: return try DOCXExtractor.text(of: file.body)
        default: break
        }
        guard let content = file.text else {
            throw CaravanError(
                .unsupportedMediaType,
                "The file is not UTF-8 text; Caravan reads \(DocumentFormat.names) documents.",
                fieldErrors: [.init(pointer: "/file", detail: "must be UTF-8 text")]
            )
        }
        return content
    }

    /// A document the URL of which could not be fetched.
    static let fetchFailed = CaravanError.Code("document_fetch_failed", status: 422)

    static func read(_ request: Request) async throws -> DocumentUpload {
        let contentType = request.headers[.contentType]
        guard MultipartForm.isMultipart(contentType), let contentType else {
            let fields = try BodyFields(
                try await KnowledgeRoutes.textDocuments.json(of: request),
                allowed: ["name", "text", "url", "format", "metadata"]
            )
            let text = try fields.string("text", maxBytes: KnowledgeStore.maxDocumentBytes)
            let url = try fields.string("url", maxLength: 2_048)
            guard (text == nil) != (url == nil) else {
                throw CaravanError.validation("/text", "is required, or a url instead (one of the two)")
            }
            let format = try fields.string("format").map(Self.format(named:))
            if let format, [.pdf, .docx].contains(format), url == nil {
                throw CaravanError.validation(
                    "/format",
                    "\(format.rawValue) is for a file uploaded or fetched by url, not for text"
                )
            }
            var source: URL?
            if let url {
                guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme?.lowercased() ?? ""),
                    let host = parsed.host, !host.isEmpty
                else { throw CaravanError.validation("/url", "must be an http or https URL") }
                source = parsed
            }
            // A fetched document is named after its URL's last path component (or host) unless named.
            let last = source?.lastPathComponent ?? ""
            var upload = try DocumentUpload(
                name: try fields.string("name", maxLength: 256)
                    ?? source.map { String((last.isEmpty || last == "/" ? $0.host ?? "document" : last).prefix(256)) },
                text: text ?? "",
                format: format ?? .text,
                metadata: fields.object["metadata"] ?? [:]
            )
            upload.url = source
            upload.formatGiven = format != nil
            return upload
        }
        let form = try MultipartForm.parse(
            Array(try await KnowledgeRoutes.documents.bytes(of: request).readableBytesView),
            contentType: contentType
        )
        for part in form.parts where !["name", "format", "metadata", "file", "text"].contains(part.name) {
            throw CaravanError.validation("/" + part.name, "is not a field of a document upload")
        }
        func text(_ field: String) throws(CaravanError) -> String? {
            guard let part = form.part(field) else { return nil }
            guard let text = part.text else { throw CaravanError.validation("/" + field, "must be UTF-8 text") }
            return text
        }
        guard let file = form.part("file") ?? form.part("text") else {
            throw CaravanError.validation("/file", "is required: the document, as a file part")
        }
        guard file.body.count <= KnowledgeRoutes.maxFileBytes else {
            throw CaravanError(
                .payloadTooLarge,
                "The file is larger than \(KnowledgeRoutes.maxFileBytes) bytes."
            )
        }
        let format: DocumentFormat
        if let named = try text("format") {
            format = try Self.format(named: named)
        } else {
            format = try Self.format(of: file)
        }
        let content = try await Self.content(of: file, format: format)
        var metadata: JSONValue = [:]
        if let raw = try text("metadata") {
            do { metadata = try JSONValue(parsing: Array(raw.utf8)) } catch {
                throw CaravanError.validation("/metadata", "must be a JSON object")
            }
        }
        return try DocumentUpload(
            name: try text("name") ?? file.filename,
            text: content,
            format: format,
            metadata: metadata
        )
    }

    private init(name: String?, text: String, format: DocumentFormat, metadata: JSONValue) throws(CaravanError) {
        guard let name, !name.isEmpty, name.count <= 256 else {
            throw CaravanError.validation("/name", "is required: the document's name (up to 256 characters)")
        }
        guard metadata.objectValue != nil else { throw CaravanError.validation("/metadata", "must be an object") }
        self.name = name
        self.text = text
        self.format = format
        self.metadata = metadata
    }

    static func format(named value: String) throws(CaravanError) -> DocumentFormat {
        guard let format = DocumentFormat(rawValue: value) else {
            throw CaravanError(
                .unsupportedMediaType,
                "The format '\(value)' is not one Caravan reads here: \(DocumentFormat.names).",
                fieldErrors: [.init(pointer: "/format", detail: "must be \(DocumentFormat.names)")]
            )
        }
        return format
    }

    /// An uploaded file's format, from its name's extension, else its media type; text when neither says.
    static func format(of file: MultipartForm.Part) throws(CaravanError) -> DocumentFormat {
        let byExtension: [String: DocumentFormat] = [
            "txt": .text, "text": .text, "md": .markdown, "markdown": .markdown, "html": .html, "htm": .html,
            "csv": .csv, "json": .json, "pdf": .pdf, "docx": .docx,
        ]
        let byMediaType: [String: DocumentFormat] = [
            "text/plain": .text, "text/markdown": .markdown, "text/html": .html, "text/csv": .csv,
            "application/json": .json, "application/pdf": .pdf,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document": .docx,
        ]
        let fileExtension = file.filename.flatMap { name in
            name.contains(".") ? name.split(separator: ".").last.map { $0.lowercased() } : nil
        }
        let mediaType = file.contentType?.split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        if let fileExtension, let format = byExtension[fileExtension] { return format }
        if let mediaType, let format = byMediaType[mediaType] { return format }
        if fileExtension == nil && (mediaType == nil || mediaType == "application/octet-stream") { return .text }
        throw CaravanError(
            .unsupportedMediaType,
            "The file '\(file.filename ?? "")' (\(mediaType ?? "no media type")) is not a format Caravan reads: \(DocumentFormat.names).",
            fieldErrors: [.init(pointer: "/file", detail: "must be \(DocumentFormat.names)")]
        )
    }
}
