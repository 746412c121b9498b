import CaravanAgents
import CaravanCatalog
import CaravanCore
import CaravanEngine
import CaravanIdentity
import CaravanTools
import CaravanWorkflow
import HTTPTypes
import Hummingbird
import NIOCore

/// `/v1/agents…` and `/v1/threads…`: agent definitions, their runs, and conversation threads.
struct AgentRoutes {
    let agents: AgentStore
    let threads: ThreadStore
    let engine: Engine
    let bodies: RequestBodyReader
    /// The commands MCP servers over stdio may run; an agent naming another is refused.
    let mcpCommands: MCPCommandPolicy
    /// Refuses changes to an agent that an install keeps.
    let catalog: Catalog

    static func json(_ agent: StoredAgent) -> JSONValue {
        [
            "name": .string(agent.name), "version": .int(Int64(agent.version)),
            "latest_version": .int(Int64(agent.latestVersion)),
            "description": agent.definition.description.map(JSONValue.string) ?? .null,
            "definition": agent.definition.source,
            "archived": .bool(agent.archived), "created_at": .string(Clock.rfc3339(agent.createdAt)),
            "updated_at": .string(Clock.rfc3339(agent.updatedAt)),
        ]
    }

    func register(in routes: RouteRegistrar) {
        let object: JSONValue = ["type": "object"]
        let agentSchema: JSONValue = ["type": "object", "required": ["name", "version", "definition"]]
        routes.add(
            EndpointDescription(
                .put,
                "/v1/agents/{name}",
                operationID: "putAgent",
                summary:
                    "Create an agent, or a new version of it (an unchanged definition keeps its version). JSON or YAML.",
                tag: "agents",
                access: .organization(.write),
                requestSchema: object,
                responses: [
                    201: ("A new version", agentSchema, "application/json"),
                    200: ("Unchanged", agentSchema, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            try await catalog.refuseChange(orgID: orgID, kind: .agent, name: name)
            let body = try await bodies.bytes(of: request)
            let format = try WorkflowRoutes.format(of: request)
            let document = try DefinitionParser.document(Array(body.readableBytesView), format: format)
            if format == .json { try RequestBodyReader.refuseDuplicateKeys(body.readableBytesView) }
            let definition = try AgentDefinition.validate(document, nameFromPath: name)
            try definition.checkCommands(mcpCommands)
            let unresolved = try await engine.unresolved(
                definition.references,
                orgID: orgID,
                itself: AgentStepKind.workflowName(forAgent: name)
            )
            if !unresolved.isEmpty {
                throw CaravanError(.validationFailed, "The agent names what does not exist.", fieldErrors: unresolved)
            }
            let (agent, created) = try await agents.put(orgID: orgID, definition)
            return .json(Self.json(agent), status: created ? .created : .ok)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/agents",
                operationID: "listAgents",
                summary: "List agents (latest versions).",
                tag: "agents",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("A page of agents", APISchemas.list(of: agentSchema), "application/json")]
            )
        ) { request, context in
            let limit = try APIRequest.limit(request)
            let page = try await agents.list(
                orgID: try context.organizationID(),
                after: try APIRequest.cursor(request),
                limit: limit
            )
            return .json(APIRequest.page(page, limit: limit, cursor: \.name, json: Self.json))
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/agents/{name}",
                operationID: "getAgent",
                summary: "An agent: its latest version, or `?version=N`.",
                tag: "agents",
                access: .organization(.read),
                query: [APISchemas.version],
                responses: [200: ("The agent", agentSchema, "application/json")]
            )
        ) { request, context in
            let name = try context.parameters.require("name")
            var version: Int?
            if let text = request.uri.queryParameters.get("version") {
                guard let number = Int(text), number >= 1 else {
                    throw CaravanError.validation("/version", "version must be a positive integer")
                }
                version = number
            }
            guard DefinitionParser.isValidWorkflowName(name),
                let agent = try await agents.get(orgID: try context.organizationID(), name: name, version: version)
            else { throw CaravanError.notFound("The agent '\(name)'") }
            return .json(Self.json(agent))
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/agents/{name}",
                operationID: "archiveAgent",
                summary: "Archive an agent: no new runs; runs already started go on.",
                tag: "agents",
                access: .organization(.write),
                responses: [204: ("Archived", nil, "application/json")]
            )
        ) { _, context in
            let name = try context.parameters.require("name")
            try await catalog.refuseChange(orgID: try context.organizationID(), kind: .agent, name: name)
            guard DefinitionParser.isValidWorkflowName(name),
                try await agents.archive(orgID: try context.organizationID(), name: name)
            else {
                throw CaravanError.notFound("The agent '\(name)'")
            }
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/agents/{name}/runs",
                operationID: "startAgentRun",
                summary:
                    "Run an agent: `{input, thread?}`. A run like any other; `Idempotency-Key` and `?wait=` work as for workflows.",
                tag: "agents",
                access: .organization(.write),
                requestSchema: APISchemas.startAgentRun,
                query: [APISchemas.wait],
                responses: [
                    201: ("The run", APISchemas.run, "application/json"),
                    200: ("The run this Idempotency-Key started", APISchemas.run, "application/json"),
                    202: ("Still running when the wait ended", APISchemas.run, "application/json"),
                ]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let name = try context.parameters.require("name")
            guard DefinitionParser.isValidWorkflowName(name) else { throw CaravanError.notFound("The agent '\(name)'") }
            let wait = try APIRequest.wait(request)
            let key = try RunRoutes.idempotencyKey(request)
            let body = try await bodies.json(of: request)
            let fields = try BodyFields(body, allowed: ["input", "thread"])
            let thread = try fields.string("thread", maxLength: 100)
            let (run, created) = try await agents.startRun(
                orgID: orgID,
                name: name,
                input: fields.object["input"] ?? .object([:]),
                thread: thread,
                idempotencyKey: key,
                requestHash: key == nil ? nil : stableDigest(body.canonicalText),
                audit: context.audit.entryForWrite
            )
            if created { context.audit.committedWithWrite() } else { context.audit.target("run:\(run.id)") }
            return try await RunRoutes.answer(run, created: created, wait: wait, engine: engine)
        }
        routes.add(
            EndpointDescription(
                .post,
                "/v1/threads",
                operationID: "createThread",
                summary: "Start a conversation thread: `{metadata?}`.",
                tag: "agents",
                access: .organization(.write),
                requestSchema: APISchemas.createThread,
                requestBodyRequired: false,
                responses: [201: ("The thread", object, "application/json")]
            )
        ) { request, context in
            let orgID = try context.organizationID()
            let body = try await bodies.optionalJSON(of: request) ?? .object([:])
            let fields = try BodyFields(body, allowed: ["metadata"])
            let metadata = fields.object["metadata"] ?? .object([:])
            guard metadata.objectValue != nil, metadata.canonicalText.utf8.count <= 16_384 else {
                throw CaravanError.validation("/metadata", "metadata must be an object of at most 16 KiB")
            }
            let thread = try await threads.create(orgID: orgID, metadata: metadata)
            return .json(thread.json, status: .created)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/threads/{id}",
                operationID: "getThread",
                summary: "A thread.",
                tag: "agents",
                access: .organization(.read),
                responses: [200: ("The thread", object, "application/json")]
            )
        ) { _, context in
            let id = try context.parameters.require("id")
            guard let thread = try await threads.get(orgID: try context.organizationID(), id: id) else {
                throw CaravanError.notFound("The thread")
            }
            return .json(thread.json)
        }
        routes.add(
            EndpointDescription(
                .delete,
                "/v1/threads/{id}",
                operationID: "deleteThread",
                summary: "Delete a thread and its messages.",
                tag: "agents",
                access: .organization(.write),
                responses: [204: ("Deleted", nil, "application/json")]
            )
        ) { _, context in
            let id = try context.parameters.require("id")
            guard try await threads.delete(orgID: try context.organizationID(), id: id) else {
                throw CaravanError.notFound("The thread")
            }
            return Response(status: .noContent)
        }
        routes.add(
            EndpointDescription(
                .get,
                "/v1/threads/{id}/messages",
                operationID: "listThreadMessages",
                summary: "A thread's messages, oldest first; `?cursor=` continues.",
                tag: "agents",
                access: .organization(.read),
                query: APISchemas.page,
                responses: [200: ("Messages", APISchemas.list(of: object), "application/json")]
            )
        ) { request, context in
            let id = try context.parameters.require("id")
            guard try await threads.get(orgID: try context.organizationID(), id: id) != nil else {
                throw CaravanError.notFound("The thread")
            }
            let limit = try APIRequest.limit(request)
            var after: Int64 = 0
            if let cursor = try APIRequest.cursor(request) {
                guard let value = Int64(cursor) else {
                    throw CaravanError.validation("/cursor", "cursor is not one this server gave out")
                }
                after = value
            }
            let page = try await threads.messages(threadID: id, after: after, limit: limit)
            return .json(
                APIRequest.page(page, limit: limit, cursor: { String($0.seq) }) { item in
                    var message = item.message.objectValue ?? [:]
                    message["seq"] = .int(item.seq)
                    message["run_id"] = item.runID.map(JSONValue.string) ?? .null
                    message["created_at"] = .string(Clock.rfc3339(item.at))
                    return .object(message)
                }
            )
        }
    }
}
