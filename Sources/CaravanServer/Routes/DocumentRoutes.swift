import CaravanCore
import CaravanEngine
import CaravanIdentity
import CaravanKnowledge
import CaravanWorkflow
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `/v1/templates…` (the Mustache templates of `document` steps) and the artifacts runs produce
/// (`/v1/runs/{id}/artifacts`, `/v1/artifacts/{id}`).
struct DocumentRoutes {
    let artifacts: ArtifactStore
    let engine: Engine

    static let bodies = RequestBodyReader(maxBytes: ArtifactStore.maxTemplateBytes * 2 + 65_536)

    func register(in routes: RouteRegistrar) {
        registerTemplates(in: routes)
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .get,
                "/v1/runs/{id}/artifacts",
                operationID: "listRunArtifacts",
                summary: "The artifacts a run produced (its `document` steps' files), oldest first.",
                tag: "runs",
                access: .organization(.read),
                responses: [200: ("The run's artifacts", APISchemas.list(of: object), "application/json")]
            )
        ) { _, context in
            let orgID = try context.organizationID()
            let runID = try context.parameters.require("id")
            guard try await engine.run(orgID: orgID, id: runID) != nil else { throw CaravanError.notFound("The run") }
            let items = try await artifacts.artifacts(orgID: orgID, runID: runID)
            return .json(["items": .array(items.map(\.json))])
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/artifacts/{id}",
                operationID: "downloadArtifact",
                summary:
                    "Download an artifact, with its content type, as an attachment (sandboxed: an HTML artifact runs nothing in Caravan's origin).",
                tag: "runs",
                access: .organization(.read),
                responses: [200: ("The artifact's content", nil, "application/octet-stream")]
            )
        ) { _, context in
            guard
                let (artifact, content) = try await artifacts.artifact(
                    orgID: try context.organizationID(),
                    id: try context.parameters.require("id")
                )
            else { throw CaravanError.notFound("The artifact") }
            let quoted = artifact.name.unicodeScalars.filter { $0.isASCII && $0 != "\"" && $0.value >= 0x20 }
            var headers: HTTPFields = [
                .contentType: artifact.contentType,
                .contentDisposition: "attachment; filename=\"\(String(String.UnicodeScalarView(quoted)))\"",
                .contentSecurityPolicy: "sandbox; default-src 'none'",
                .cacheControl: "private, no-store",
            ]
            headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: content)))
        }
    }

    private func registerTemplates(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        routes.add(
            EndpointDescription(
                .put,
                "/v1/templates/{name}",
                operationID: "putTemplate",
                summary:
                    "Create or replace a document template: `{source, format?: markdown | html (markdown), description?}`, or the source itself as a `text/markdown` or `text/html` body. HTML templates escape `{{value}}` (`{{{value}}}` does not); Markdown ones do not.",
                tag: "documents",
                access: .organization(.write),
                requestSchema: object,
                responses: [
                    201: ("Created", object, "application/json"), 200: ("Replaced", object, "application/json"),
                ]
            )
        ) { request, context in
            let name = try Self.name(context)
            let mediaType = request.headers[.contentType]?.split(separator: ";").first.map {
                $0.trimmingCharacters(in: .whitespaces).lowercased()
            }
            let source: String
            var format = DocumentTemplate.Format.markdown
            var description: String?
            if mediaType == "text/markdown" || mediaType == "text/html" {
                let bytes = try await Self.bodies.bytes(of: request)
                guard let text = String(validating: bytes.readableBytesView, as: UTF8.self) else {
                    throw CaravanError.validation("/source", "must be UTF-8 text")
                }
                source = text
                format = mediaType == "text/html" ? .html : .markdown
            } else {
                let fields = try BodyFields(
                    try await Self.bodies.json(of: request),
                    allowed: ["source", "format", "description", "name"]
                )
                guard let text = try fields.string("source") else {
                    throw CaravanError.validation("/source", "is required: the template, in Mustache")
                }
                source = text
                if let value = try fields.string("format") {
                    guard let parsed = DocumentTemplate.Format(rawValue: value) else {
                        throw CaravanError.validation("/format", "must be markdown or html")
                    }
                    format = parsed
                }
                description = try fields.string("description", maxLength: 1_000)
                if let given = try fields.string("name"), given != name {
                    throw CaravanError.validation("/name", "is '\(given)' but the URL names '\(name)'")
                }
            }
            let (template, created) = try await artifacts.putTemplate(
                orgID: try context.organizationID(),
                name: name,
                format: format,
                source: source,
                description: description
            )
            context.audit.target("template:\(name)")
            return .json(template.json, status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/templates",
                operationID: "listTemplates",
                summary: "The organization's document templates.",
                tag: "documents",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("A page of templates", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await artifacts.templates(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.name, json: \.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/templates/{name}",
                operationID: "getTemplate",
                summary: "A document template.",
                tag: "documents",
                access: .organization(.read),
                responses: [200: ("The template", object, "application/json")]
            )
        ) { _, context in
            let name = try Self.name(context)
            guard let template = try await artifacts.template(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The template '\(name)'")
            }
            return .json(template.json)
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/templates/{name}",
                operationID: "deleteTemplate",
                summary: "Delete a document template (steps that name it then fail with template_not_found).",
                tag: "documents",
                access: .organization(.write),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let name = try Self.name(context)
            guard try await artifacts.deleteTemplate(orgID: try context.organizationID(), name: name) else {
                throw CaravanError.notFound("The template '\(name)'")
            }
            context.audit.target("template:\(name)")
            return Response(status: .noContent)
        }
    }

    static func name(_ context: CaravanRequestContext) throws -> String {
        let name = try context.parameters.require("name")
        guard DefinitionParser.isValidWorkflowName(name) else { throw CaravanError.notFound("The template '\(name)'") }
        return name
    }
}
