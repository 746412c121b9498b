public import CaravanCore
public import CaravanEngine
public import CaravanModels
public import CaravanTools
import CaravanWorkflow
import Mustache

/// An agent: a model (or a route of fallbacks), instructions, tools and limits. Validated; `source` is the
/// normalised definition, stored as the agent's version.
public struct AgentDefinition: Sendable {
    public var name: String
    public var description: String?
    public var route: [ModelRef]
    /// A Mustache template over `{input}`; rendered as text (no HTML escaping).
    public let instructions: String
    public var tools: [AgentTool]
    public var maxTurns: Int
    /// The most output tokens one model call may produce.
    public var maxTokens: Int?
    public var temperature: Double?
    public var budgetTokens: Int64?
    public var budgetCostUSD: Double?
    public var outputSchema: JSONValue?
    public var inputSchema: JSONValue?
    /// The longest one run of the agent may take.
    public var timeout: CaravanDuration
    public var source: JSONValue
    /// `instructions`, parsed by `validate`.
    let instructionsTemplate: BoundedMustache?

    static let topLevelKeys: Set<String> = [
        "name", "description", "model", "instructions", "tools", "max_turns", "max_tokens", "temperature", "budget",
        "output_schema", "input", "timeout",
    ]

    /// The deepest nesting of Mustache sections accepted in instructions. swift-mustache parses sections
    /// recursively: a thousand nested sections (6 KB) overflow the stack and crash the process.
    static let maxSectionDepth = 64

    /// The most Mustache tags accepted in instructions. swift-mustache measures the rest of the template at every
    /// tag, so parsing costs tags × length: 4,000 tags in 100 KB took 0.7 s of CPU to parse, on every `PUT` and
    /// every run. Real instructions hold tens of tags.
    static let maxTags = 256

    typealias MustacheShape = BoundedMustache.Shape

    /// Validates a definition already parsed into JSON.
    /// - Parameter nameFromPath: the name in the URL; it must agree with the body's `name` when both are given.
    /// - Throws: `validation_failed` with every field at fault.
    public static func validate(_ document: JSONValue, nameFromPath: String?) throws(CaravanError) -> AgentDefinition {
        guard var object = document.objectValue else {
            throw CaravanError.validation("", "An agent definition is an object.")
        }
        var errors: [CaravanError.FieldError] = []
        func fail(_ pointer: String, _ detail: String) { errors.append(.init(pointer: pointer, detail: detail)) }
        for key in object.keys.sorted() where !topLevelKeys.contains(key) {
            fail("/" + key, "is not a field of an agent definition")
        }

        var name = object["name"]?.stringValue ?? nameFromPath ?? ""
        if let fromPath = nameFromPath, let given = object["name"]?.stringValue, given != fromPath {
            fail("/name", "is '\(given)' but the URL names '\(fromPath)'")
            name = fromPath
        }
        if !DefinitionParser.isValidWorkflowName(name) { fail("/name", "must match [a-z0-9-]{1,64}") }
        object["name"] = .string(name)

        var route: [ModelRef] = []
        do throws(CaravanError) { route = try ModelGateway.route(object["model"], at: "/model") } catch {
            errors += error.fieldErrors
        }

        let instructions = object["instructions"]?.stringValue ?? ""
        if let value = object["instructions"], value.stringValue == nil { fail("/instructions", "must be a string") }
        if instructions.utf8.count > 100_000 { fail("/instructions", "must be at most 100,000 bytes") }
        var template: BoundedMustache?
        if !instructions.isEmpty {
            // Parsed once, here, as text (no HTML escaping); every run renders this template.
            do throws(CaravanError) {
                template = try BoundedMustache(
                    instructions,
                    escapesHTML: false,
                    maxDepth: Self.maxSectionDepth,
                    maxTags: Self.maxTags,
                    at: "/instructions"
                )
            } catch {
                errors += error.fieldErrors
            }
        }

        var tools: [AgentTool] = []
        var toolNames = Set<String>()
        if let value = object["tools"] {
            if let list = value.arrayValue, list.count <= 64 {
                for (index, item) in list.enumerated() {
                    let pointer = "/tools/\(index)"
                    do throws(CaravanError) {
                        let tool = try AgentTool.parse(item, at: pointer)
                        if !toolNames.insert(tool.name).inserted {
                            fail(pointer, "another tool is named '\(tool.name)'")
                        }
                        tools.append(tool)
                    } catch {
                        errors +=
                            error.fieldErrors.isEmpty
                            ? [.init(pointer: pointer, detail: error.detail)] : error.fieldErrors
                    }
                }
            } else {
                fail("/tools", "must be an array of at most 64 tools")
            }
        }

        func integer(_ key: String, in range: ClosedRange<Int64>) -> Int64? {
            guard let value = object[key] else { return nil }
            if case .int(let number) = value, range.contains(number) { return number }
            fail("/" + key, "must be an integer from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        let maxTurns = Int(integer("max_turns", in: 1...100) ?? 8)
        let maxTokens = integer("max_tokens", in: 1...1_000_000).map { Int($0) }
        var temperature: Double?
        if let value = object["temperature"] {
            if let number = value.numberValue, (0...2).contains(number) {
                temperature = number
            } else {
                fail("/temperature", "must be a number from 0 to 2")
            }
        }
        var budgetTokens: Int64?
        var budgetCost: Double?
        if let budget = object["budget"] {
            if let fields = budget.objectValue {
                for key in fields.keys where !["tokens", "cost_usd"].contains(key) {
                    fail("/budget/" + key, "is not a field of a budget")
                }
                if let tokens = fields["tokens"] {
                    if case .int(let number) = tokens, number > 0 {
                        budgetTokens = number
                    } else {
                        fail("/budget/tokens", "must be a positive integer")
                    }
                }
                if let cost = fields["cost_usd"] {
                    if let number = cost.numberValue, number > 0 {
                        budgetCost = number
                    } else {
                        fail("/budget/cost_usd", "must be a positive number")
                    }
                }
            } else {
                fail("/budget", "must be {tokens?, cost_usd?}")
            }
        }
        let outputSchema = object["output_schema"]
        if let schema = outputSchema, schema.objectValue == nil {
            fail("/output_schema", "must be a JSON Schema object")
        }
        let inputSchema = object["input"]
        if let schema = inputSchema, schema.objectValue == nil { fail("/input", "must be a JSON Schema object") }
        var timeout = CaravanDuration(milliseconds: 600_000)
        if let value = object["timeout"] {
            if let duration = value.stringValue.flatMap(CaravanDuration.init(parsing:)), duration.milliseconds >= 1_000,
                duration.milliseconds <= 86_400_000
            {
                timeout = duration
            } else {
                fail("/timeout", "must be a duration from 1s to 1d, such as 10m")
            }
        }
        if let value = object["description"], value.stringValue == nil { fail("/description", "must be a string") }
        if !errors.isEmpty {
            throw CaravanError(.validationFailed, "The agent definition is not valid.", fieldErrors: errors)
        }
        return AgentDefinition(
            name: name,
            description: object["description"]?.stringValue,
            route: route,
            instructions: instructions,
            tools: tools,
            maxTurns: maxTurns,
            maxTokens: maxTokens,
            temperature: temperature,
            budgetTokens: budgetTokens,
            budgetCostUSD: budgetCost,
            outputSchema: outputSchema,
            inputSchema: inputSchema,
            timeout: timeout,
            source: .object(object),
            instructionsTemplate: template
        )
    }

    /// The workflow that keeps this agent's versions and runs it: one `agent_loop` step over the whole definition.
    /// Runs of it take `{input, thread?}`.
    public var workflowDocument: JSONValue {
        var document: [String: JSONValue] = [
            "name": .string(AgentStepKind.workflowName(forAgent: name)),
            "steps": [
                [
                    "id": .string(AgentLoopStep.stepID),
                    "timeout": .string(timeout.description),
                    "retry": ["max_attempts": 3, "initial_interval": "1s", "backoff": 2.0, "max_interval": "30s"],
                    AgentLoopStep.name: source,
                ]
            ],
            "output": .string("{{ steps.\(AgentLoopStep.stepID).output }}"),
        ]
        if let description { document["description"] = .string(description) }
        return .object(document)
    }

    /// The agents, workflows and secrets its tools name.
    public var references: DefinitionReferences {
        var references = DefinitionReferences()
        for (index, tool) in tools.enumerated() {
            let pointer = "/tools/\(index)"
            switch tool.kind {
            case .agent(let name): references.children.append((AgentStepKind.self, name, pointer + "/agent/name"))
            case .workflow(let name):
                references.children.append((WorkflowStepKind.self, name, pointer + "/workflow/name"))
            case .http(_, let url, let headers, _, _):
                let template: JSONValue = [
                    "url": .string(url), "headers": .object(headers.mapValues(JSONValue.string)),
                ]
                for name in ((try? Template.referencedSecrets(in: template)) ?? []).sorted() {
                    references.secrets.append((name, pointer + "/http"))
                }
            case .mcp, .wasm, .knowledge:
                break
            }
        }
        return references
    }

    /// Refuses MCP servers whose command the operator has not allowed.
    /// - Throws: `validation_failed` pointing at each such `command`.
    public func checkCommands(_ policy: MCPCommandPolicy) throws(CaravanError) {
        var errors: [CaravanError.FieldError] = []
        for (index, tool) in tools.enumerated() {
            if case .mcp(let server, _) = tool.kind, let command = server.command, !policy.permits(command) {
                errors.append(
                    .init(
                        pointer: "/tools/\(index)/mcp/command",
                        detail:
                            "is not a command the operator allows (--mcp-command-allow lists the exact commands MCP servers may run)"
                    )
                )
            }
        }
        if !errors.isEmpty {
            throw CaravanError(
                .validationFailed,
                "The agent names an MCP command that is not allowed.",
                fieldErrors: errors
            )
        }
    }

    /// Renders the instructions over the run's input, stopping at `limit` bytes.
    ///
    /// Every value and every section pass is charged to one budget as it is rendered: a value is rendered only
    /// while the budget lasts (else as nothing), and a section pass costs at most the instructions' own length, so
    /// that a template repeating a large input, or looping over a long array, cannot grow past the limit in memory.
    /// - Throws: `output_too_large` when the rendering would pass `limit`.
    func renderInstructions(input: JSONValue, limit: Int) throws(Failure) -> String {
        guard let template = instructionsTemplate else { return instructions }
        guard let rendered = template.render(["input": input], limit: limit) else {
            throw Failure(
                code: Failure.Code(rawValue: CaravanError.Code.outputTooLarge.rawValue),
                message:
                    "The agent's instructions, rendered over this input, would pass the payload limit of \(limit) bytes.",
                retryable: false
            )
        }
        return rendered
    }
}

extension AgentDefinition {
    /// The names of the agent's `knowledge` tools.
    var knowledgeTools: Set<String> {
        Set(tools.compactMap { tool in if case .knowledge = tool.kind { tool.name } else { nil } })
    }
}

/// One tool of an agent.
public struct AgentTool: Sendable {
    public enum Kind: Sendable {
        /// A request: URL, method, headers and body are templates over `args` (and `secrets` in headers and URL).
        case http(method: String, url: String, headers: [String: String], body: JSONValue?, parameters: JSONValue)
        /// An MCP server's tools, offered as `<name>_<tool>`.
        case mcp(MCPServerConfig, only: Set<String>?)
        /// Another agent, run as a child run with the arguments as its input.
        case agent(String)
        /// A workflow, run as a child run with the arguments as its input.
        case workflow(String)
        /// A WebAssembly module of the organization (its latest version unless one is pinned), called with the
        /// arguments as its input.
        case wasm(module: String, version: Int?)
        /// A search of one of the organization's knowledge collections: the model gives a query, the tool answers the
        /// `k` best passages, numbered across the run so that the answer can cite them as `[n]`.
        case knowledge(collection: String, k: Int)
    }

    public var name: String
    public var description: String
    public var kind: Kind
    /// Whether each call waits for the run's `approve` signal naming the call.
    public var approval: Bool

    static func parse(_ value: JSONValue, at pointer: String) throws(CaravanError) -> AgentTool {
        guard let object = value.objectValue, object.count == 1, let (kindName, config) = object.first else {
            throw CaravanError.validation(
                pointer,
                "a tool is an object with one key: http, mcp, agent, workflow, wasm or knowledge"
            )
        }
        guard let fields = config.objectValue else {
            throw CaravanError.validation(pointer + "/" + kindName, "must be an object")
        }
        let base = pointer + "/" + kindName
        var errors: [CaravanError.FieldError] = []
        func fail(_ field: String, _ detail: String) {
            errors.append(.init(pointer: base + "/" + field, detail: detail))
        }
        let allowed: Set<String>
        switch kindName {
        case "http": allowed = ["name", "description", "url", "method", "headers", "body", "parameters", "approval"]
        case "mcp": allowed = ["name", "command", "url", "headers", "env", "tools", "approval"]
        case "agent", "workflow": allowed = ["name", "description", "approval"]
        case "wasm": allowed = ["name", "description", "module", "version", "approval"]
        case "knowledge": allowed = ["name", "description", "collection", "k", "approval"]
        default: throw CaravanError.validation(base, "is not a tool kind (http, mcp, agent, workflow, wasm, knowledge)")
        }
        for key in fields.keys.sorted() where !allowed.contains(key) {
            fail(key, "is not a field of a \(kindName) tool")
        }
        let name = fields["name"]?.stringValue ?? ""
        if !isValidToolName(name) { fail("name", "must match [a-zA-Z0-9_-]{1,64}") }
        let description = fields["description"]?.stringValue ?? ""
        var approval = false
        if let value = fields["approval"] {
            if case .bool(let flag) = value { approval = flag } else { fail("approval", "must be true or false") }
        }
        var kind: Kind = .agent(name)
        switch kindName {
        case "http":
            let url = fields["url"]?.stringValue ?? ""
            if url.isEmpty { fail("url", "is required") }
            if !url.hasPrefix("{{"), !(url.lowercased().hasPrefix("http://") || url.lowercased().hasPrefix("https://"))
            {
                fail("url", "must be an http:// or https:// URL")
            }
            let method = (fields["method"]?.stringValue ?? "GET").uppercased()
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method) {
                fail("method", "must be GET, POST, PUT, PATCH or DELETE")
            }
            var headers: [String: String] = [:]
            if let value = fields["headers"] {
                if let table = value.objectValue, table.values.allSatisfy({ $0.stringValue != nil }) {
                    headers = table.compactMapValues(\.stringValue)
                } else {
                    fail("headers", "must be an object of strings")
                }
            }
            let parameters = fields["parameters"] ?? ["type": "object", "properties": [:]]
            if parameters.objectValue == nil { fail("parameters", "must be a JSON Schema object") }
            do throws(CaravanError) {
                for path in try Template.referencedPaths(in: config)
                where !["args", "secrets"].contains(path.first ?? "") {
                    fail("url", "'\(path.joined(separator: "."))' is unknown: a tool's templates read args and secrets")
                }
                let bodySecrets = try Template.referencedSecrets(in: fields["body"] ?? .null)
                if !bodySecrets.isEmpty { fail("body", "secrets may be used in the url and headers only") }
            } catch {
                fail("url", error.detail)
            }
            kind = .http(method: method, url: url, headers: headers, body: fields["body"], parameters: parameters)
        case "mcp":
            let command = fields["command"]?.arrayValue?.compactMap(\.stringValue)
            let url = fields["url"]?.stringValue
            if (command == nil) == (url == nil) { fail("command", "give either command (an array of strings) or url") }
            if let command, command.isEmpty { fail("command", "must not be empty") }
            if let url, !(url.lowercased().hasPrefix("http://") || url.lowercased().hasPrefix("https://")) {
                fail("url", "must be an http:// or https:// URL")
            }
            let headers = fields["headers"]?.objectValue?.compactMapValues(\.stringValue) ?? [:]
            let env = fields["env"]?.objectValue?.compactMapValues(\.stringValue) ?? [:]
            for variable in env.keys.sorted() where !MCPServerConfig.mayPassToChild(variable) {
                fail("env/" + variable, "may not be set: it could change what the program runs")
            }
            var only: Set<String>?
            if let list = fields["tools"] {
                if let names = list.arrayValue?.compactMap(\.stringValue) {
                    only = Set(names)
                } else {
                    fail("tools", "must be an array of tool names")
                }
            }
            kind = .mcp(MCPServerConfig(name: name, command: command, url: url, headers: headers, env: env), only: only)
        case "agent":
            if !DefinitionParser.isValidWorkflowName(name) { fail("name", "must name an agent ([a-z0-9-]{1,64})") }
            kind = .agent(name)
        case "wasm":
            let module = fields["module"]?.stringValue ?? ""
            if module.isEmpty || module.count > 140 { fail("module", "is required: the name of a module") }
            var version: Int?
            if let value = fields["version"] {
                if case .int(let number) = value, number >= 1 {
                    version = Int(number)
                } else {
                    fail("version", "must be an integer ≥ 1")
                }
            }
            kind = .wasm(module: module, version: version)
        case "knowledge":
            let collection = fields["collection"]?.stringValue ?? ""
            if !DefinitionParser.isValidWorkflowName(collection) {
                fail("collection", "is required: the name of a collection ([a-z0-9-]{1,64})")
            }
            var k = 5
            if let value = fields["k"] {
                if case .int(let number) = value, (1...20).contains(number) {
                    k = Int(number)
                } else {
                    fail("k", "must be an integer from 1 to 20")
                }
            }
            kind = .knowledge(collection: collection, k: k)
        default:
            if !DefinitionParser.isValidWorkflowName(name) { fail("name", "must name a workflow ([a-z0-9-]{1,64})") }
            kind = .workflow(name)
        }
        if !errors.isEmpty { throw CaravanError(.validationFailed, "The tool is not valid.", fieldErrors: errors) }
        return AgentTool(name: name, description: description, kind: kind, approval: approval)
    }

    static func isValidToolName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy {
                ($0 >= 97 && $0 <= 122) || ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95
            }
    }
}
