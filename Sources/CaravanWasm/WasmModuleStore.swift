public import CaravanCore
public import CaravanStorage
import Crypto
import Foundation
import Synchronization

/// The organizations' modules: each version a row naming its binary by SHA-256, the binaries stored once however
/// many versions or organizations upload them. Versions are immutable; uploading the same binary and declarations
/// again is not a new version.
public final class WasmModuleStore: Sendable {
    private let database: any Database
    private let clock: WallClock
    /// Binaries by digest, as read (they never change): a warm call reads none.
    private let binaries = Mutex<[String: [UInt8]]>([:])

    public init(database: any Database, clock: WallClock = .system) {
        self.database = database
        self.clock = clock
    }

    /// The database's migrations of modules.
    public static let migrations: [Migration] = [
        Migration(
            version: 14,
            name: "webassembly modules",
            sqlite: tables(blob: "BLOB"),
            postgres: tables(blob: "BYTEA")
        )
    ]

    private static func tables(blob: String) -> [String] {
        [
            """
            CREATE TABLE wasm_binaries (
                sha256 TEXT PRIMARY KEY,
                bytes \(blob) NOT NULL,
                created_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE wasm_modules (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                version BIGINT NOT NULL,
                sha256 TEXT NOT NULL REFERENCES wasm_binaries (sha256),
                definition TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, name, version)
            )
            """,
            """
            CREATE TABLE wasm_kv (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                scope TEXT NOT NULL,
                key TEXT NOT NULL,
                value \(blob) NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, scope, key)
            )
            """,
        ]
    }

    /// Stores a checked module as the next version of `name`, unless its latest version has the same binary and
    /// declarations.
    /// - Returns: the version, and whether it is new.
    public func put(
        orgID: String,
        name: String,
        binary: [UInt8],
        info: WasmModuleInfo,
        upload: WasmModuleUpload
    ) async throws -> (module: WasmModuleDefinition, created: Bool) {
        let digest = SHA256.hash(data: binary).map { String(format: "%02x", $0) }.joined()
        let now = clock.nowMilliseconds()
        var module = WasmModuleDefinition(
            name: name,
            version: 1,
            sha256: digest,
            abi: info.abi,
            imports: info.imports,
            description: upload.description,
            inputSchema: upload.inputSchema,
            outputSchema: upload.outputSchema,
            permissions: upload.permissions,
            limits: upload.limits,
            size: binary.count,
            createdAt: now
        )
        let stored = module
        let result = try await database.withTransaction { executor -> (WasmModuleDefinition, Bool) in
            var module = stored
            if let latest = try await executor.queryFirst(
                """
                SELECT * FROM wasm_modules WHERE org_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1
                """,
                [.text(orgID), .text(name)]
            ).map(Self.module) {
                if latest.sha256 == module.sha256 && latest.declared == module.declared { return (latest, false) }
                module.version = latest.version + 1
            }
            try await executor.execute(
                "INSERT INTO wasm_binaries (sha256, bytes, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING",
                [.text(module.sha256), .blob(binary), .int(now)]
            )
            try await executor.execute(
                """
                INSERT INTO wasm_modules (org_id, name, version, sha256, definition, created_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                [
                    .text(orgID), .text(name), .int(Int64(module.version)), .text(module.sha256),
                    .json(module.declared), .int(now),
                ]
            )
            return (module, true)
        }
        module = result.0
        return (module, result.1)
    }

    /// Stores `module` (a version read from any organization, its binary already stored) as the next version of
    /// `name` in `orgID`, unless that module's latest version is the same: how an installed listing brings its
    /// modules. - Returns: the stored version.
    public func copy(
        _ module: WasmModuleDefinition,
        toOrgID orgID: String,
        name: String
    ) async throws
        -> WasmModuleDefinition
    {
        let now = clock.nowMilliseconds()
        return try await database.withTransaction { executor in
            var copy = module
            copy.name = name
            copy.version = 1
            copy.createdAt = now
            if let latest = try await executor.queryFirst(
                "SELECT * FROM wasm_modules WHERE org_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
                [.text(orgID), .text(name)]
            ).map(Self.module) {
                if latest.sha256 == module.sha256 && latest.declared == module.declared { return latest }
                copy.version = latest.version + 1
            }
            try await executor.execute(
                """
                INSERT INTO wasm_modules (org_id, name, version, sha256, definition, created_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                [
                    .text(orgID), .text(name), .int(Int64(copy.version)), .text(copy.sha256), .json(copy.declared),
                    .int(now),
                ]
            )
            return copy
        }
    }

    /// A version of the organization's module (the latest when `version` is `nil`).
    public func get(orgID: String, name: String, version: Int? = nil) async throws -> WasmModuleDefinition? {
        try await database.read { executor in
            if let version {
                return try await executor.queryFirst(
                    "SELECT * FROM wasm_modules WHERE org_id = $1 AND name = $2 AND version = $3",
                    [.text(orgID), .text(name), .int(Int64(version))]
                )
            }
            return try await executor.queryFirst(
                "SELECT * FROM wasm_modules WHERE org_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
                [.text(orgID), .text(name)]
            )
        }.map(Self.module)
    }

    /// The organization's modules, each at its latest version, by name after `after`.
    public func list(orgID: String, after: String?, limit: Int) async throws -> [WasmModuleDefinition] {
        try await database.read { executor in
            try await executor.query(
                """
                SELECT m.* FROM wasm_modules m
                WHERE m.org_id = $1 AND m.name > $2
                    AND m.version = (SELECT MAX(version) FROM wasm_modules WHERE org_id = m.org_id AND name = m.name)
                ORDER BY m.name LIMIT $3
                """,
                [.text(orgID), .text(after ?? ""), .int(Int64(limit))]
            )
        }.map(Self.module)
    }

    /// Every version of one module, newest first.
    public func versions(orgID: String, name: String) async throws -> [WasmModuleDefinition] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM wasm_modules WHERE org_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1000",
                [.text(orgID), .text(name)]
            )
        }.map(Self.module)
    }

    /// Deletes every version of a module (runs already holding a version finish with it).
    /// - Returns: whether there was one.
    public func delete(orgID: String, name: String) async throws -> Bool {
        try await database.withTransaction { executor in
            let found = try await executor.queryFirst(
                "SELECT version FROM wasm_modules WHERE org_id = $1 AND name = $2 LIMIT 1",
                [.text(orgID), .text(name)]
            )
            try await executor.execute(
                "DELETE FROM wasm_modules WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(name)]
            )
            return found != nil
        }
    }

    /// The binary of `sha256` (kept in memory once read).
    public func binary(sha256: String) async throws -> [UInt8]? {
        if let kept = binaries.withLock({ $0[sha256] }) { return kept }
        let bytes = try await database.read { executor in
            try await executor.queryFirst("SELECT bytes FROM wasm_binaries WHERE sha256 = $1", [.text(sha256)])
        }.map { try $0.blob("bytes") }
        if let bytes {
            binaries.withLock { kept in
                if kept.count >= 256 { kept.removeAll() }
                kept[sha256] = bytes
            }
        }
        return bytes
    }

    // MARK: The key-value store of `kv_get` and `kv_put`

    public func value(orgID: String, scope: String, key: String) async throws -> [UInt8]? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT value FROM wasm_kv WHERE org_id = $1 AND scope = $2 AND key = $3",
                [.text(orgID), .text(scope), .text(key)]
            )
        }.map { try $0.blob("value") }
    }

    public func setValue(orgID: String, scope: String, key: String, _ value: [UInt8]) async throws {
        let now = clock.nowMilliseconds()
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO wasm_kv (org_id, scope, key, value, updated_at) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (org_id, scope, key) DO UPDATE SET value = $4, updated_at = $5
                """,
                [.text(orgID), .text(scope), .text(key), .blob(value), .int(now)]
            )
        }
    }

    private static func module(_ row: SQLRow) throws -> WasmModuleDefinition {
        WasmModuleDefinition(
            declared: try row.json("definition") ?? [:],
            name: try row.string("name"),
            version: Int(try row.int("version")),
            sha256: try row.string("sha256"),
            createdAt: try row.int("created_at")
        )
    }
}
