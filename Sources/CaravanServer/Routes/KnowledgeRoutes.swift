import CaravanCore
import CaravanIdentity
import CaravanKnowledge
import CaravanWorkflow
import Hummingbird

/// `/v1/collections…`: knowledge collections, their documents (extracted, chunked and embedded as they are added)
/// and search over them.
struct KnowledgeRoutes {
    let knowledge: KnowledgeStore

    /// Documents are larger than other bodies.
    static let documents = RequestBodyReader(maxBytes: KnowledgeStore.maxDocumentBytes + 65_536)
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
                    "Add a document, or replace the one of the same name: `{name, text, format?: text | markdown | html | csv | json, metadata?}`. It is extracted, chunked and embedded before the answer; the same text is not embedded twice.",
                tag: "knowledge",
                access: .organization(.write),
                requestSchema: object,
                responses: [201: ("The document", object, "application/json")]
            )
        ) { request, context in
            let collection = try await existing(context)
            let fields = try BodyFields(
                try await Self.documents.json(of: request),
                allowed: ["name", "text", "format", "metadata"]
            )
            guard let name = try fields.string("name", maxLength: 256), !name.isEmpty else {
                throw CaravanError.validation("/name", "is required: the document's name (up to 256 characters)")
            }
            guard let text = try fields.string("text", maxBytes: KnowledgeStore.maxDocumentBytes) else {
                throw CaravanError.validation("/text", "is required: the document's text")
            }
            var format = DocumentFormat.text
            if let value = try fields.string("format") {
                guard let parsed = DocumentFormat(rawValue: value) else {
                    throw CaravanError(
                        .unsupportedMediaType,
                        "The format '\(value)' is not one Caravan reads here: \(DocumentFormat.names).",
                        fieldErrors: [.init(pointer: "/format", detail: "must be \(DocumentFormat.names)")]
                    )
                }
                format = parsed
            }
            let metadata = fields.object["metadata"] ?? [:]
            guard metadata.objectValue != nil else {
                throw CaravanError.validation("/metadata", "must be an object")
            }
            let document = try await knowledge.addDocument(
                orgID: try context.organizationID(),
                collection: collection,
                document: name,
                text: text,
                format: format,
                metadata: metadata,
                requestID: context.requestID
            )
            context.audit.target("collection:\(collection)")
            return .json(document, status: .created)
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
                let document = try await knowledge.document(
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
                summary: "Delete a document with its chunks and vectors.",
                tag: "knowledge",
                access: .organization(.write),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let collection = try Self.name(context)
            guard
                try await knowledge.deleteDocument(
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
