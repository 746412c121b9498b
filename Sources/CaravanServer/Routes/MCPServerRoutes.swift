import CaravanAgents
import CaravanCore
import CaravanEngine
import CaravanIdentity
import CaravanWorkflow
import HTTPTypes
import Hummingbird
import NIOCore

/// `/mcp`: Caravan as an MCP server (streamable HTTP, JSON answers), so that MCP clients can call the
/// organization's workflows and agents as tools. Authenticated like every endpoint (an API key as bearer).
///
/// Stateless: no session is kept, so any node answers any request. Methods: `initialize`, `ping`, `tools/list`
/// (each workflow as `workflow-NAME`, each agent as `agent-NAME`, with its input schema) and `tools/call` (starts a
/// run with the arguments as its input and waits up to `callWait` for it: its output as the tool's result, a
/// failed run as an error result, one still running as its id and status). Notifications are accepted (202); a
/// `GET` (the server-initiated stream) answers 405, as the transport allows.
struct MCPServerRoutes {
    let engine: Engine
    let agents: AgentStore
    let bodies: RequestBodyReader
    /// How long `tools/call` waits for its run to finish.
    var callWait: Duration = .seconds(60)

    static let protocolVersions = ["2025-06-18", "2025-03-26", "2024-11-05"]
    static let workflowPrefix = "workflow-"
    static let agentPrefix = "agent-"

    func register(in routes: RouteRegistrar) {
        routes.add(
            EndpointDescription(
                .post,
                "/mcp",
                operationID: "mcp",
                summary:
                    "MCP (streamable HTTP, JSON-RPC): `tools/list` lists the organization's workflows and agents, `tools/call` runs one.",
                tag: "agents",
                access: .organization(.write),
                requestSchema: ["type": "object"],
                responses: [
                    200: ("A JSON-RPC response", ["type": "object"], "application/json"),
                    202: ("A notification, accepted", nil, "application/json"),
                ]
            )
        ) { request, context in
            let message = try await bodies.json(of: request)
            guard let id = message["id"], !id.isNull else {
                // A notification (`notifications/initialized`) or a response: nothing to answer.
                guard message["method"]?.stringValue != nil || message["result"] != nil || message["error"] != nil
                else {
                    return Self.answer(Self.failure(id: .null, code: -32600, "Not a JSON-RPC 2.0 request."))
                }
                return Response(status: .accepted)
            }
            guard message["jsonrpc"] == "2.0", let method = message["method"]?.stringValue else {
                return Self.answer(Self.failure(id: id, code: -32600, "Not a JSON-RPC 2.0 request."))
            }
            let params = message["params"] ?? .object([:])
            let orgID = try context.organizationID()
            switch method {
            case "initialize":
                let asked = params["protocolVersion"]?.stringValue ?? ""
                let version = Self.protocolVersions.contains(asked) ? asked : Self.protocolVersions[0]
                return Self.answer(
                    Self.success(
                        id: id,
                        [
                            "protocolVersion": .string(version),
                            "capabilities": ["tools": ["listChanged": false]],
                            "serverInfo": ["name": "caravan", "version": .string(caravanVersion)],
                            "instructions":
                                "Each tool runs one of the organization's workflows or agents with the arguments as its input.",
                        ]
                    )
                )
            case "ping":
                return Self.answer(Self.success(id: id, [:]))
            case "tools/list":
                return Self.answer(Self.success(id: id, ["tools": .array(try await tools(orgID: orgID))]))
            case "tools/call":
                return Self.answer(try await call(params, id: id, orgID: orgID, context: context))
            default:
                return Self.answer(Self.failure(id: id, code: -32601, "The method '\(method)' is not offered."))
            }
        }
    }

    /// Every workflow and agent of the organization, as MCP tools.
    private func tools(orgID: String) async throws -> [JSONValue] {
        let workflows = try await Self.everyPage(name: \.name) { cursor in
            try await engine.workflows.list(orgID: orgID, after: cursor, limit: Self.pageSize)
        }
        let agents = try await Self.everyPage(name: \.name) { cursor in
            try await self.agents.list(orgID: orgID, after: cursor, limit: Self.pageSize)
        }
        let workflowTools = workflows.filter { $0.archivedAt == nil }.map { workflow in
            Self.tool(
                Self.workflowPrefix + workflow.name,
                description: workflow.definition.description ?? "Runs the workflow '\(workflow.name)'.",
                schema: workflow.definition.inputSchema
            )
        }
        let agentTools = agents.filter { !$0.archived }.map { agent in
            Self.tool(
                Self.agentPrefix + agent.name,
                description: agent.definition.description ?? "Asks the agent '\(agent.name)'.",
                schema: agent.definition.inputSchema
            )
        }
        return workflowTools + agentTools
    }

    static let pageSize = 200

    /// Every item of a list read a page at a time, each page after the last item's name.
    static func everyPage<Item>(name: (Item) -> String, page: (String?) async throws -> [Item]) async throws -> [Item] {
        var items: [Item] = []
        var cursor: String?
        repeat {
            let next = try await page(cursor)
            items += next
            cursor = next.count == pageSize ? next.last.map(name) : nil
        } while cursor != nil
        return items
    }

    static func tool(_ name: String, description: String, schema: JSONValue?) -> JSONValue {
        var inputSchema = schema ?? ["type": "object"]
        if inputSchema["type"] != "object" { inputSchema = ["type": "object", "properties": [:]] }
        return ["name": .string(name), "description": .string(description), "inputSchema": inputSchema]
    }

    /// Runs the workflow or agent a tool names and answers with its outcome.
    private func call(
        _ params: JSONValue,
        id: JSONValue,
        orgID: String,
        context: CaravanRequestContext
    ) async throws
        -> JSONValue
    {
        guard let name = params["name"]?.stringValue else {
            return Self.failure(id: id, code: -32602, "tools/call needs a tool name.")
        }
        let arguments = params["arguments"] ?? .object([:])
        guard arguments.objectValue != nil else {
            return Self.failure(id: id, code: -32602, "The arguments must be an object.")
        }
        let started: (run: RunRecord, created: Bool)
        do {
            if name.hasPrefix(Self.workflowPrefix) {
                started = try await engine.startRun(
                    orgID: orgID,
                    workflow: String(name.dropFirst(Self.workflowPrefix.count)),
                    input: arguments,
                    idempotencyKey: nil,
                    requestHash: nil,
                    audit: context.audit.entryForWrite
                )
            } else if name.hasPrefix(Self.agentPrefix) {
                started = try await agents.startRun(
                    orgID: orgID,
                    name: String(name.dropFirst(Self.agentPrefix.count)),
                    input: arguments,
                    thread: nil,
                    idempotencyKey: nil,
                    requestHash: nil,
                    audit: context.audit.entryForWrite
                )
            } else {
                return Self.failure(id: id, code: -32602, "No tool named '\(name)'.")
            }
        } catch let error as CaravanError where error.code == .notFound || error.code == .validationFailed {
            // A tool that does not exist is a protocol error; arguments the input schema refuses are the tool's.
            if error.code == .notFound { return Self.failure(id: id, code: -32602, "No tool named '\(name)'.") }
            return Self.success(id: id, Self.result(text: error.detail, structured: nil, isError: true))
        }
        context.audit.committedWithWrite()
        context.audit.target("run:\(started.run.id)")
        let run = try await engine.waitForRun(orgID: orgID, id: started.run.id, timeout: callWait) ?? started.run
        switch run.status {
        case .succeeded:
            let output = run.output ?? .null
            let structured: JSONValue? = output.objectValue != nil ? output : nil
            return Self.success(
                id: id,
                Self.result(text: output.stringValue ?? output.canonicalText, structured: structured, isError: false)
            )
        case .failed, .cancelled:
            let detail = run.error?.message ?? "The run \(run.status.rawValue)."
            return Self.success(id: id, Self.result(text: detail, structured: nil, isError: true))
        default:
            let status: JSONValue = ["run_id": .string(run.id), "status": .string(run.status.rawValue)]
            let text = "The run \(run.id) is still \(run.status.rawValue); follow it at /v1/runs/\(run.id)."
            return Self.success(id: id, Self.result(text: text, structured: status, isError: false))
        }
    }

    static func result(text: String, structured: JSONValue?, isError: Bool) -> JSONValue {
        var result: [String: JSONValue] = [
            "content": [["type": "text", "text": .string(text)]], "isError": .bool(isError),
        ]
        if let structured { result["structuredContent"] = structured }
        return .object(result)
    }

    static func success(id: JSONValue, _ result: JSONValue) -> JSONValue {
        ["jsonrpc": "2.0", "id": id, "result": result]
    }

    static func failure(id: JSONValue, code: Int64, _ message: String) -> JSONValue {
        ["jsonrpc": "2.0", "id": id, "error": ["code": .int(code), "message": .string(message)]]
    }

    static func answer(_ message: JSONValue) -> Response {
        .json(message)
    }
}
