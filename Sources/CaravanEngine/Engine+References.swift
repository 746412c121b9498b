public import CaravanCore
public import CaravanWorkflow

/// What a definition names outside itself, and whether it is there.
public struct DefinitionReferences: Sendable {
    /// Workflows named by steps or tools, with the pointer of the field that names each.
    public var workflows: [(name: String, pointer: String)] = []
    /// Agents named by steps or tools.
    public var agents: [(name: String, pointer: String)] = []
    /// Secrets interpolated as `{{ secrets.NAME }}`.
    public var secrets: [(name: String, pointer: String)] = []

    public init() {}

    /// The references of a workflow's steps.
    public init(workflow definition: WorkflowDefinition) {
        for (index, step) in definition.steps.enumerated() {
            let pointer = "/steps/\(index)/\(step.kind)"
            switch step.kind {
            case WorkflowStepKind.name:
                if let name = step.config["name"]?.stringValue, name != definition.name {
                    workflows.append((name, pointer + "/name"))
                }
            case AgentStepKind.name:
                if let name = step.config["name"]?.stringValue { agents.append((name, pointer + "/name")) }
            default:
                break
            }
            if step.interpolatesConfig, let names = try? Template.referencedSecrets(in: step.config) {
                for name in names.sorted() { secrets.append((name, pointer)) }
            }
        }
    }
}

extension Engine {
    /// The references of `references` that do not resolve in `orgID`, as field errors (empty when all do).
    /// - Parameter selfAgent: the agent being defined, which may name itself.
    public func unresolved(
        _ references: DefinitionReferences,
        orgID: String,
        selfAgent: String? = nil
    ) async throws
        -> [CaravanError.FieldError]
    {
        var errors: [CaravanError.FieldError] = []
        for (name, pointer) in references.workflows {
            let stored = try await workflows.get(orgID: orgID, name: name)
            if stored == nil || stored?.archivedAt != nil {
                errors.append(.init(pointer: pointer, detail: "names the workflow '\(name)', which does not exist"))
            }
        }
        for (name, pointer) in references.agents where name != selfAgent {
            let stored = try await workflows.get(orgID: orgID, name: AgentStepKind.workflowName(forAgent: name))
            if stored == nil || stored?.archivedAt != nil {
                errors.append(.init(pointer: pointer, detail: "names the agent '\(name)', which does not exist"))
            }
        }
        let secretNames = Set(references.secrets.map(\.name))
        if !secretNames.isEmpty {
            let existing = try await secrets?.existing(names: secretNames, orgID: orgID) ?? []
            for (name, pointer) in references.secrets where !existing.contains(name) {
                errors.append(
                    .init(
                        pointer: pointer,
                        detail: "uses the secret '\(name)', which does not exist (PUT /v1/secrets/\(name) first)"
                    )
                )
            }
        }
        return errors
    }
}
