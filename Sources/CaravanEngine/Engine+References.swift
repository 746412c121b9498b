public import CaravanCore
public import CaravanWorkflow

/// What a definition names outside itself, and whether it is there.
public struct DefinitionReferences: Sendable {
    /// Workflows and agents named by steps or tools: the child-run kind that names each, the name, and the pointer
    /// of the field that names it.
    public var children: [(kind: any ChildRunStepKind.Type, name: String, pointer: String)] = []
    /// Secrets interpolated as `{{ secrets.NAME }}`.
    public var secrets: [(name: String, pointer: String)] = []

    public init() {}

    /// The references of a workflow's steps.
    public init(workflow definition: WorkflowDefinition) {
        for (index, step) in definition.steps.enumerated() {
            let pointer = "/steps/\(index)/\(step.kind)"
            // A workflow may name itself (recursion is bounded by the run depth).
            if let kind = StepKindRegistry.childRunKind(step.kind), let name = step.config["name"]?.stringValue,
                kind.childRun(name: name, input: .null).workflow != definition.name
            {
                children.append((kind, name, pointer + "/name"))
            }
            if step.interpolatesConfig, let names = try? Template.referencedSecrets(in: step.config) {
                for name in names.sorted() { secrets.append((name, pointer)) }
            }
        }
    }
}

extension Engine {
    /// The references of `references` that do not resolve in `orgID`, as field errors (empty when all do).
    /// - Parameter itself: the workflow that keeps the definition being stored (an agent's reserved one), which
    ///   may name itself.
    public func unresolved(
        _ references: DefinitionReferences,
        orgID: String,
        itself: String? = nil
    ) async throws
        -> [CaravanError.FieldError]
    {
        var errors: [CaravanError.FieldError] = []
        for (kind, name, pointer) in references.children {
            let workflow = kind.childRun(name: name, input: .null).workflow
            guard workflow != itself else { continue }
            let stored = try await workflows.get(orgID: orgID, name: workflow)
            if stored == nil || stored?.archivedAt != nil {
                errors.append(.init(pointer: pointer, detail: "names the \(kind.name) '\(name)', which does not exist"))
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
