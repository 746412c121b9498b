import CaravanAudit
import CaravanCore
import CaravanEngine
import CaravanVault

/// Gives the engine the secrets a step sends out, from the organization's sealed store, and writes each use to
/// the audit log (names, never values).
struct VaultSecretResolver: SecretResolver {
    let secrets: SecretStore
    let audit: AuditLog

    func resolve(names: Set<String>, for context: StepContext) async throws -> [String: String] {
        let values = try await secrets.resolve(orgID: context.orgID, names: names)
        try await audit.record(
            AuditRecord(
                orgID: context.orgID,
                actor: AuditActor(.system, "engine"),
                action: "secret.use",
                target: "run:\(context.runID)",
                outcome: values.count == names.count ? "success" : "failure",
                details: [
                    "step": .string(context.stepID), "attempt": .int(Int64(context.attempt)),
                    "secrets": .array(names.sorted().map(JSONValue.string)),
                ]
            )
        )
        return values
    }

    func existing(names: Set<String>, orgID: String) async throws -> Set<String> {
        guard !names.isEmpty else { return [] }
        return Set(try await secrets.resolve(orgID: orgID, names: names).keys)
    }

    func allowedHosts(names: Set<String>, orgID: String) async throws -> [String: [String]] {
        try await secrets.allowedHosts(orgID: orgID, names: names)
    }
}
