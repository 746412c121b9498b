import CaravanAgents
import CaravanAudit
import CaravanCatalog
import CaravanEngine
import CaravanIdentity
import CaravanKnowledge
import CaravanNotify
public import CaravanStorage
import CaravanTriggers
import CaravanVault
import CaravanWasm
import CaravanWebhooks

/// Caravan's schema: the migrations each target owns for its tables, composed into one numbered sequence. The
/// order of the parts is the order of a version's statements (organizations and users before what refers to them).
public enum Schema {
    public static let migrations = Migration.compose([
        IdentitySchema.migrations, VaultSchema.migrations, AuditSchema.migrations, EngineSchema.migrations,
        AgentsSchema.migrations, TriggerSchema.migrations, WebhookSchema.migrations, NotifySchema.migrations,
        WasmModuleStore.migrations, CatalogSchema.migrations, KnowledgeSchema.migrations,
    ])
}
