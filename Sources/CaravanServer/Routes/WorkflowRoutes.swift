import CaravanAgents
import CaravanCatalog
import CaravanCore
import CaravanEngine
import CaravanIdentity
import CaravanStorage
import CaravanWorkflow
import HTTPTypes
import Hummingbird
import NIOCore

/// `/v1/workflows`: definitions and their versions.
struct WorkflowRoutes {
    let engine: Engine
    let bodies: RequestBodyReader
    /// Refuses changes to a workflow that an install keeps.
    let catalog: Catalog

    func register(in routes: RouteRegistrar) {
        routes.add(
            EndpointDescription(
                .put,
                "/v1/workflows/{name}",
                operationID: "putWorkflow",
                summary: "Create a workflow, or a new version of it (an unchanged definition keeps its version).",
                tag: "workflows",
                access: .organization(.write),
                requestSchema: APISchemas.definition,
                responses: [
                    201: ("A new version", APISchemas.workflow, "application/json"),
                    200: ("Unchanged", APISchemas.workflow, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            guard DefinitionParser.isValidWorkflowName(name) else {
                throw CaravanError.validation("/name", "must match [a-z0-9-]{1,64}")
            }
            try await catalog.refuseChange(orgID: orgID, kind: .workflow, name: name)
            let format = try Self.format(of: request)
            let body = try await bodies.bytes(of: request)
            let definition = try DefinitionParser.parse(
                Array(body.readableBytesView),
                format: format,
                nameFromPath: name,
                kinds: engine.kinds
            )
            if format == .json { try RequestBodyReader.refuseDuplicateKeys(body.readableBytesView) }
            // The agent loop is the one step of an agent's own workflow; workflows run agents with `agent` steps.
            if let index = definition.steps.firstIndex(where: { $0.kind == AgentLoopStep.name }) {
                throw CaravanError.validation(
                    "/steps/\(index)/\(AgentLoopStep.name)",
                    "is not a known step kind; run an agent with an agent step"
                )
            }
            let unresolved = try await engine.unresolved(DefinitionReferences(workflow: definition), orgID: orgID)
            if !unresolved.isEmpty {
                throw CaravanError(
                    .validationFailed,
                    "The workflow names what does not exist.",
                    fieldErrors: unresolved
                )
            }
            let (workflow, created) = try await engine.workflows.put(orgID: orgID, definition: definition)
            return .json(APIRequest.json(workflow), status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/workflows",
                operationID: "listWorkflows",
                summary: "List workflows (latest versions).",
                tag: "workflows",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("A page of workflows", APISchemas.list(of: APISchemas.workflow), "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let limit = try APIRequest.limit(request)
            let page = try await engine.workflows.list(
                orgID: orgID,
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.name, json: APIRequest.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/workflows/{name}",
                operationID: "getWorkflow",
                summary: "A workflow: its latest version, or `?version=N`.",
                tag: "workflows",
                access: .organization(.read),
                query: [APISchemas.version],
                responses: [200: ("The workflow", APISchemas.workflow, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            var version: Int?
            if let text = request.uri.queryParameters.get("version") {
                guard let number = Int(text), number >= 1 else {
                    throw CaravanError.validation("/version", "version must be a positive integer")
                }
                version = number
            }
            guard let workflow = try await engine.workflows.get(orgID: orgID, name: name, version: version) else {
                throw CaravanError.notFound("The workflow '\(name)'\(version.map { " version \($0)" } ?? "")")
            }
            return .json(APIRequest.json(workflow))
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/workflows/{name}",
                operationID: "archiveWorkflow",
                summary: "Archive a workflow: no new runs, no schedule; runs already started go on.",
                tag: "workflows",
                access: .organization(.write),
                responses: [204: ("Archived", nil, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            try await catalog.refuseChange(orgID: orgID, kind: .workflow, name: name)
            guard try await engine.workflows.archive(orgID: orgID, name: name) else {
                throw CaravanError.notFound("The workflow '\(name)'")
            }
            return Response(status: .noContent)
        }
    }

    /// JSON unless the body is declared YAML.
    static func format(of request: Request) throws -> DefinitionFormat {
        guard let type = request.headers[.contentType]?.lowercased() else { return .json }
        if type.hasPrefix("application/yaml") || type.hasPrefix("application/x-yaml") || type.hasPrefix("text/yaml") {
            return .yaml
        }
        if type.hasPrefix("application/json") { return .json }
        throw CaravanError(.unsupportedMediaType, "Send the definition as application/json or application/yaml.")
    }
}
