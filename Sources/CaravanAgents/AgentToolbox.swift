import AsyncHTTPClient
public import CaravanCore
public import CaravanEngine
import CaravanModels
public import CaravanOutbound
public import CaravanTools
public import CaravanWasm
import CaravanWorkflow
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// A tool as offered to the model in one run: its spec and how to call it.
struct OfferedTool: Sendable {
    var spec: ToolSpec
    var tool: AgentTool
    /// For MCP tools: the server's own name of the tool.
    var remoteName: String?
}

/// What a tool call gave back to the model.
struct ToolResult: Sendable, Hashable {
    var content: String
    var isError: Bool
}

/// Lists and calls an agent's tools: http requests (through the egress policy), MCP servers, other agents and
/// workflows (as runs of their own), WebAssembly modules (in the node's sandbox).
public final class AgentToolbox: Sendable {
    let http: EgressHTTPClient
    let mcp: MCPConnectionCache
    let secrets: (any SecretResolver)?
    /// Calls the organization's WebAssembly modules.
    let modules: WasmModuleRunner?
    /// Searches the organization's knowledge collections.
    let knowledge: (any KnowledgeSearcher)?
    /// The largest tool result handed to the model, in bytes.
    static let maxResultBytes = 64 * 1024

    public init(
        http: EgressHTTPClient,
        mcp: MCPConnectionCache,
        secrets: (any SecretResolver)?,
        modules: WasmModuleRunner? = nil,
        knowledge: (any KnowledgeSearcher)? = nil
    ) {
        self.http = http
        self.mcp = mcp
        self.secrets = secrets
        self.modules = modules
        self.knowledge = knowledge
    }

    /// The tools to offer the model.
    /// - Throws: `Failure` when an MCP server cannot be listed or a named agent or workflow does not exist.
    func offer(_ tools: [AgentTool], context: StepContext) async throws(Failure) -> [OfferedTool] {
        var offered: [OfferedTool] = []
        for tool in tools {
            switch tool.kind {
            case .http(_, _, _, _, let parameters):
                offered.append(
                    OfferedTool(
                        spec: ToolSpec(name: tool.name, description: tool.description, parameters: parameters),
                        tool: tool
                    )
                )
            case .mcp(let server, let only):
                let listed: [ToolSpec]
                do {
                    listed = try await mcp.connection(orgID: context.orgID, config: server, logger: context.logger)
                        .listTools()
                } catch {
                    throw Failure(
                        code: error.code,
                        message: "The MCP server '\(server.name)': \(error.message)",
                        retryable: error.retryable
                    )
                }
                for remote in listed where only?.contains(remote.name) ?? true {
                    var spec = remote
                    spec.name = String((server.name + "_" + remote.name).prefix(64))
                    offered.append(OfferedTool(spec: spec, tool: tool, remoteName: remote.name))
                }
            case .agent(let name):
                let definition = try await agentDefinition(name, context: context)
                let description =
                    tool.description.isEmpty ? (definition.description ?? "Ask the agent \(name).") : tool.description
                offered.append(
                    OfferedTool(
                        spec: ToolSpec(
                            name: tool.name,
                            description: description,
                            parameters: definition.inputSchema ?? Self.anyObject
                        ),
                        tool: tool
                    )
                )
            case .workflow(let name):
                guard let workflow = try? await context.runs?.workflow(named: name) else {
                    throw Failure(
                        code: "tool_not_found",
                        message: "The workflow '\(name)' named as a tool does not exist.",
                        retryable: false
                    )
                }
                let description =
                    tool.description.isEmpty
                    ? (workflow.definition.description ?? "Run the workflow \(name).") : tool.description
                offered.append(
                    OfferedTool(
                        spec: ToolSpec(
                            name: tool.name,
                            description: description,
                            parameters: workflow.definition.inputSchema ?? Self.anyObject
                        ),
                        tool: tool
                    )
                )
            case .knowledge(let collection, _):
                offered.append(
                    OfferedTool(
                        spec: ToolSpec(
                            name: tool.name,
                            description: tool.description.isEmpty
                                ? "Search the knowledge collection '\(collection)'. Cite the passages you use as [n]."
                                : tool.description,
                            parameters: [
                                "type": "object", "required": ["query"],
                                "properties": ["query": ["type": "string", "description": "What to look for."]],
                            ]
                        ),
                        tool: tool
                    )
                )
            case .wasm(let name, let version):
                guard let module = try? await modules?.store.get(orgID: context.orgID, name: name, version: version)
                else {
                    throw Failure(
                        code: "tool_not_found",
                        message: "The module '\(name)' named as a tool does not exist.",
                        retryable: false
                    )
                }
                let description =
                    tool.description.isEmpty
                    ? (module.description.isEmpty ? "Run the module \(name)." : module.description) : tool.description
                offered.append(
                    OfferedTool(
                        spec: ToolSpec(
                            name: tool.name,
                            description: description,
                            parameters: module.inputSchema ?? Self.anyObject
                        ),
                        tool: tool
                    )
                )
            }
        }
        return offered
    }

    static let anyObject: JSONValue = ["type": "object", "additionalProperties": true]

    func agentDefinition(_ name: String, context: StepContext) async throws(Failure) -> AgentDefinition {
        guard
            let workflow = try? await context.runs?.workflow(named: AgentStepKind.workflowName(forAgent: name)),
            let config = workflow.definition.steps.first?.config,
            let definition = try? AgentDefinition.validate(config, nameFromPath: name)
        else {
            throw Failure(
                code: "tool_not_found",
                message: "The agent '\(name)' named as a tool does not exist.",
                retryable: false
            )
        }
        return definition
    }

    /// Calls a tool with validated arguments. Failures come back as an error result for the model, never thrown;
    /// only a lost lease or a cancelled run is thrown.
    /// - Parameter firstPassage: the number of a knowledge search's first passage (passages are numbered across
    ///   the run).
    func call(
        _ offered: OfferedTool,
        arguments: JSONValue,
        callID: String,
        firstPassage: Int = 1,
        context: StepContext
    ) async -> ToolResult {
        switch offered.tool.kind {
        case .knowledge(let collection, let k):
            guard let knowledge else { return ToolResult(content: "Knowledge is not available.", isError: true) }
            do {
                let found = try await knowledge.search(
                    orgID: context.orgID,
                    collection: collection,
                    query: arguments["query"]?.stringValue ?? "",
                    k: k
                )
                let passages = found.enumerated().map { index, passage -> JSONValue in
                    [
                        "n": .int(Int64(firstPassage + index)), "document": passage["document"] ?? .null,
                        "document_id": passage["document_id"] ?? .null, "position": passage["position"] ?? .null,
                        "chunk_id": passage["chunk_id"] ?? .null, "text": passage["text"] ?? .null,
                    ]
                }
                return ToolResult(
                    content: JSONValue.object(["passages": .array(passages)]).canonicalText,
                    isError: false
                )
            } catch let error as CaravanError {
                return ToolResult(content: "The search failed (\(error.code.rawValue)): \(error.detail)", isError: true)
            } catch {
                return ToolResult(content: "The search failed: \(error)", isError: true)
            }
        case .http(let method, let url, let headers, let body, _):
            return await callHTTP(
                method: method,
                url: url,
                headers: headers,
                body: body,
                arguments: arguments,
                idempotencyKey: context.idempotencyKey + ":" + callID,
                context: context
            )
        case .mcp(let server, _):
            do {
                let connection = try await mcp.connection(orgID: context.orgID, config: server, logger: context.logger)
                let output = try await connection.callTool(
                    name: offered.remoteName ?? offered.spec.name,
                    arguments: arguments
                )
                return ToolResult(content: Self.clip(output.text), isError: output.isError)
            } catch {
                return ToolResult(content: "The tool failed (\(error.code)): \(error.message)", isError: true)
            }
        case .agent(let name):
            return await runChild(
                workflow: AgentStepKind.workflowName(forAgent: name),
                input: ["input": arguments],
                callID: callID,
                context: context
            )
        case .workflow(let name):
            return await runChild(workflow: name, input: arguments, callID: callID, context: context)
        case .wasm(let name, let version):
            guard let modules else { return ToolResult(content: "Modules are not available.", isError: true) }
            let secrets = self.secrets
            do {
                let output = try await modules.call(
                    WasmModuleRunner.Call(
                        orgID: context.orgID,
                        module: name,
                        version: version,
                        input: arguments,
                        scope: context.runID,
                        meterKey: context.idempotencyKey + ":" + callID,
                        workflow: context.workflow,
                        secrets: { names in try await secrets?.resolve(names: Set(names), for: context) ?? [:] }
                    )
                )
                return ToolResult(content: Self.clip(output.canonicalText), isError: false)
            } catch {
                return ToolResult(content: "The module failed (\(error.code)): \(error.message)", isError: true)
            }
        }
    }

    /// An http tool's request; `idempotencyKey` is the same for every attempt of this call (and differs between calls).
    private func callHTTP(
        method: String,
        url: String,
        headers: [String: String],
        body: JSONValue?,
        arguments: JSONValue,
        idempotencyKey: String,
        context: StepContext
    ) async -> ToolResult {
        let template: JSONValue = [
            "url": .string(url), "headers": .object(headers.mapValues(JSONValue.string)), "body": body ?? .null,
        ]
        var secretValues: [String: String] = [:]
        var secretHosts: [String: [String]] = [:]
        do {
            let names = try Template.referencedSecrets(in: template)
            if !names.isEmpty {
                secretValues = try await secrets?.resolve(names: names, for: context) ?? [:]
                secretHosts = try await secrets?.allowedHosts(names: names, orgID: context.orgID) ?? [:]
                if let missing = names.subtracting(secretValues.keys).sorted().first {
                    return ToolResult(
                        content: "The tool is misconfigured: the secret '\(missing)' does not exist.",
                        isError: true
                    )
                }
            }
        } catch {
            return ToolResult(content: "The tool's secrets could not be read.", isError: true)
        }
        let rendered: JSONValue
        do {
            rendered = try Template.render(
                template,
                scope: ["args": arguments, "secrets": .object(secretValues.mapValues(JSONValue.string))],
                limit: context.maxOutputBytes,
                urlFields: ["url"]
            )
        } catch {
            return ToolResult(content: "The tool's request could not be built: \(error.detail)", isError: true)
        }
        if let name = SecretHostRule.violation(url: rendered["url"]?.stringValue ?? "", restrictions: secretHosts) {
            return ToolResult(
                content: "The tool may not send the secret '\(name)' to this host (see its allowed_hosts).",
                isError: true
            )
        }
        var request = HTTPClientRequest(url: rendered["url"]?.stringValue ?? "")
        request.method = HTTPMethod(rawValue: method)
        request.headers.add(name: "User-Agent", value: "Caravan")
        request.headers.add(name: "Idempotency-Key", value: idempotencyKey)
        let headers = (rendered["headers"]?.objectValue ?? [:]).compactMap { name, value in
            value.stringValue.map { (name: name, value: $0) }
        }
        if let problem = headerProblem(headers) {
            return ToolResult(content: "The tool's request could not be built: \(problem)", isError: true)
        }
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        if let body = rendered["body"], !body.isNull {
            request.body = .bytes(ByteBuffer(string: body.stringValue ?? body.canonicalText))
            if body.stringValue == nil, !request.headers.contains(name: "Content-Type") {
                request.headers.add(name: "Content-Type", value: "application/json")
            }
        }
        let redactor = SecretRedactor(values: Array(secretValues.values))
        // A refusal is audited by the egress client with this tool's secrets masked too.
        let attribution = (EgressAttribution.current ?? EgressAttribution(orgID: context.orgID, runID: context.runID))
            .masking { redactor.redact($0) }
        let prepared = request
        let http = self.http
        let outcome = await EgressAttribution.$current.withValue(attribution) {
            () async -> Result<(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer), Failure> in
            do throws(Failure) {
                return .success(try await http.execute(prepared, timeout: .seconds(30), maxBodyBytes: 1 << 20))
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let response):
            let text = redactor.redact(String(buffer: response.body))
            let ok = (200..<300).contains(Int(response.status.code))
            return ToolResult(content: Self.clip(ok ? text : "HTTP \(response.status.code): \(text)"), isError: !ok)
        case .failure(let error):
            return ToolResult(
                content: redactor.redact("The request failed (\(error.code)): \(error.message)"),
                isError: true
            )
        }
    }

    /// Runs an agent or a workflow as its own run (the same one again after a crash: its idempotency key is the
    /// call's) and waits for its output.
    private func runChild(workflow: String, input: JSONValue, callID: String, context: StepContext) async -> ToolResult
    {
        guard let runs = context.runs else {
            return ToolResult(content: "The engine is not running.", isError: true)
        }
        do {
            let run = try await runs.startChild(
                workflow: workflow,
                input: input,
                idempotencyKey: "tool:\(context.runID):\(callID)",
                requestHash: stableDigest(input.canonicalText)
            )
            var current = run
            while !current.status.isTerminal {
                try Task.checkCancellation()
                guard let next = try await runs.waitForRun(id: run.id, timeout: .seconds(30)) else { break }
                current = next
            }
            switch current.status {
            case .succeeded:
                let output = current.output ?? .null
                return ToolResult(content: Self.clip(output.stringValue ?? output.canonicalText), isError: false)
            default:
                return ToolResult(
                    content: "The run \(run.id) \(current.status.rawValue): \(current.error?.message ?? "")",
                    isError: true
                )
            }
        } catch let error as CaravanError {
            return ToolResult(content: "The tool could not start: \(error.detail)", isError: true)
        } catch {
            return ToolResult(content: "The tool's run could not be followed.", isError: true)
        }
    }

    static func clip(_ text: String) -> String {
        guard text.utf8.count > maxResultBytes else { return text }
        return String(decoding: Array(text.utf8.prefix(maxResultBytes)), as: UTF8.self) + "\n[truncated]"
    }
}

/// Searches a knowledge collection for an agent's `knowledge` tool (the knowledge module provides it).
public protocol KnowledgeSearcher: Sendable {
    /// The `k` best passages for `query`: objects with `document`, `document_id`, `position`, `chunk_id`, `text`.
    func search(orgID: String, collection: String, query: String, k: Int) async throws -> [JSONValue]
}
