public import CaravanCore

/// A kind of step, as far as definitions are concerned: its key and how its configuration is validated. The
/// engine adds how it runs.
public protocol StepKind: Sendable {
    /// The key that names the kind in a step, e.g. `http`.
    static var name: String { get }
    /// The problems with `config`, as field errors under `pointer`.
    static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError]
    /// Whether `{{ secrets.NAME }}` may appear in the configuration: only kinds that send it out of Caravan (a
    /// request header, a URL), never kinds whose configuration becomes stored output.
    static var acceptsSecrets: Bool { get }
    /// Whether `{{ }}` in the configuration is the workflow's interpolation (checked at definition time, rendered
    /// before the step runs). Kinds whose configuration carries templates of their own (an agent's Mustache
    /// instructions) say `false` and get their configuration as written.
    static var interpolatesConfig: Bool { get }
    /// Top-level configuration fields that are URLs: values interpolated into them are percent-encoded for where
    /// they land (`Template.renderURL`).
    static var urlFields: Set<String> { get }
}

extension StepKind {
    public static var acceptsSecrets: Bool { false }
    public static var interpolatesConfig: Bool { true }
    public static var urlFields: Set<String> { [] }
}

/// A kind whose step runs as a child run and waits for it: `workflow` and `agent`. The engine knows children only
/// through this protocol.
public protocol ChildRunStepKind: StepKind {
    /// The workflow a step naming `name` runs, and the input its run takes from the step's rendered `input`.
    static func childRun(name: String, input: JSONValue) -> (workflow: String, input: JSONValue)
    /// Why a step naming `name` cannot run: nothing of that name exists (any more).
    static func missing(_ name: String) -> Failure
}

/// The step kinds a definition may use.
public struct StepKindRegistry: Sendable {
    public private(set) var kinds: [String: any StepKind.Type]

    public init(_ kinds: [any StepKind.Type]) {
        self.kinds = Dictionary(kinds.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// This registry with `kind` added (or replaced).
    public func registering(_ kind: any StepKind.Type) -> StepKindRegistry {
        var copy = self
        copy.kinds[kind.name] = kind
        return copy
    }

    /// The kind named `name` when its steps run as child runs.
    public static func childRunKind(_ name: String) -> (any ChildRunStepKind.Type)? {
        childRunKinds[name]
    }

    private static let childRunKinds = builtIn.kinds.compactMapValues { $0 as? any ChildRunStepKind.Type }

    /// The kinds of the public contract.
    public static let builtIn = StepKindRegistry([
        HTTPStepKind.self, TemplateStepKind.self, ApprovalStepKind.self, SleepStepKind.self, WorkflowStepKind.self,
        AgentStepKind.self, ReceiveStepKind.self,
    ])
}

/// `http: {method, url, headers, body, query}`.
public enum HTTPStepKind: StepKind {
    public static let name = "http"
    public static let acceptsSecrets = true
    public static let urlFields: Set<String> = ["url"]
    static let methods: Set<String> = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys where !["method", "url", "headers", "body", "query"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of an http step"))
        }
        if let method = object["method"] {
            if !(method.stringValue.map { methods.contains($0.uppercased()) } ?? false) {
                errors.append(
                    .init(
                        pointer: pointer + "/method",
                        detail: "must be one of \(methods.sorted().joined(separator: ", "))"
                    )
                )
            }
        }
        guard let url = object["url"]?.stringValue, !url.isEmpty else {
            errors.append(.init(pointer: pointer + "/url", detail: "is required and must be a string"))
            return errors
        }
        if !url.hasPrefix("{{"), !(url.lowercased().hasPrefix("http://") || url.lowercased().hasPrefix("https://")) {
            errors.append(.init(pointer: pointer + "/url", detail: "must be an http:// or https:// URL"))
        }
        if let headers = object["headers"] {
            if let headerObject = headers.objectValue {
                for (key, value) in headerObject where value.stringValue == nil {
                    errors.append(.init(pointer: pointer + "/headers/" + key, detail: "must be a string"))
                }
            } else {
                errors.append(.init(pointer: pointer + "/headers", detail: "must be an object of strings"))
            }
        }
        return errors
    }
}

/// `template: <any JSON with {{ }}>`.
public enum TemplateStepKind: StepKind {
    public static let name = "template"
    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] { [] }
}

/// `approval: {message?, timeout?}`: waits for the signal `approve`.
public enum ApprovalStepKind: StepKind {
    public static let name = "approval"
    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        if config.isNull { return [] }
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys where !["message", "timeout"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of an approval step"))
        }
        if let message = object["message"], message.stringValue == nil {
            errors.append(.init(pointer: pointer + "/message", detail: "must be a string"))
        }
        if let timeout = object["timeout"], timeout.stringValue.flatMap(CaravanDuration.init(parsing:)) == nil {
            errors.append(.init(pointer: pointer + "/timeout", detail: "must be a duration such as 30s, 5m or 1d"))
        }
        return errors
    }
}

/// `receive: {signal, max?, timeout?}`: waits until `max` signals named `signal` have arrived (default 1), or until
/// the timeout has passed (then it succeeds with those that came, possibly none; without a timeout it waits
/// indefinitely). It consumes them; its output is the array of their data, in the order they arrived.
public enum ReceiveStepKind: StepKind {
    public static let name = "receive"
    /// The most signals one step takes at once, so that its output stays within the payload limit's reach.
    public static let maxSignals = 1_000

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys where !["signal", "max", "timeout"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of a receive step"))
        }
        if !(object["signal"]?.stringValue.map { !$0.isEmpty && $0.utf8.count <= 64 } ?? false) {
            errors.append(.init(pointer: pointer + "/signal", detail: "must name a signal (1 to 64 characters)"))
        }
        if let max = object["max"],
            !(max.numberValue.map { $0 == $0.rounded() && $0 >= 1 && $0 <= Double(maxSignals) } ?? false)
        {
            errors.append(.init(pointer: pointer + "/max", detail: "must be an integer from 1 to \(maxSignals)"))
        }
        if let timeout = object["timeout"], timeout.stringValue.flatMap(CaravanDuration.init(parsing:)) == nil {
            errors.append(.init(pointer: pointer + "/timeout", detail: "must be a duration such as 30s, 5m or 1d"))
        }
        return errors
    }

    /// How many signals a step configured with `config` waits for.
    public static func count(_ config: JSONValue) -> Int {
        config["max"]?.numberValue.map { Swift.max(1, Swift.min(maxSignals, Int($0))) } ?? 1
    }
}

/// `sleep: 1h`: a durable timer.
public enum SleepStepKind: StepKind {
    public static let name = "sleep"
    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        config.stringValue.flatMap(CaravanDuration.init(parsing:)) == nil
            ? [.init(pointer: pointer, detail: "must be a duration such as 500ms, 30s, 5m, 2h or 1d")] : []
    }
}

/// `workflow: {name, input?}`: a child run.
public enum WorkflowStepKind: ChildRunStepKind {
    public static let name = "workflow"

    public static func childRun(name: String, input: JSONValue) -> (workflow: String, input: JSONValue) {
        (name, input)
    }

    public static func missing(_ name: String) -> Failure {
        Failure(code: "workflow_not_found", message: "The workflow '\(name)' does not exist.", retryable: false)
    }
    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys where !["name", "input"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of a workflow step"))
        }
        if !(object["name"]?.stringValue.map(DefinitionParser.isValidWorkflowName) ?? false) {
            errors.append(.init(pointer: pointer + "/name", detail: "must name a workflow ([a-z0-9-]{1,64})"))
        }
        return errors
    }
}

/// `agent: {name, input?}`: runs an agent as a child run; the step's output is the agent's final output.
public enum AgentStepKind: ChildRunStepKind {
    public static let name = "agent"

    /// The prefix of the reserved workflow names under which agents' versions are kept and their runs are run.
    /// Workflow names cannot contain `:`, so no workflow can take one.
    public static let workflowPrefix = "agent:"

    /// The reserved workflow name of `agent`.
    public static func workflowName(forAgent agent: String) -> String { workflowPrefix + agent }

    /// The agent's name when `workflow` is an agent's reserved workflow name.
    public static func agentName(ofWorkflow workflow: String) -> String? {
        workflow.hasPrefix(workflowPrefix) ? String(workflow.dropFirst(workflowPrefix.count)) : nil
    }

    /// An agent's run takes `{input, thread?}`.
    public static func childRun(name: String, input: JSONValue) -> (workflow: String, input: JSONValue) {
        (workflowName(forAgent: name), ["input": input])
    }

    public static func missing(_ name: String) -> Failure {
        Failure(code: "agent_not_found", message: "The agent '\(name)' does not exist.", retryable: false)
    }

    public static func validate(_ config: JSONValue, at pointer: String) -> [CaravanError.FieldError] {
        guard let object = config.objectValue else { return [.init(pointer: pointer, detail: "must be an object")] }
        var errors: [CaravanError.FieldError] = []
        for key in object.keys where !["name", "input"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of an agent step"))
        }
        if !(object["name"]?.stringValue.map(DefinitionParser.isValidWorkflowName) ?? false) {
            errors.append(.init(pointer: pointer + "/name", detail: "must name an agent ([a-z0-9-]{1,64})"))
        }
        return errors
    }
}
