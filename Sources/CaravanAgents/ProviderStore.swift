public import CaravanCore
public import CaravanModels
public import CaravanStorage
import Foundation
import Synchronization

/// A configured model provider of an organization, as stored (the key stays a secret's name).
public struct ProviderConfig: Sendable, Hashable {
    public var name: String
    public var kind: ProviderKind
    public var baseURL: String
    /// The name of the organization's secret that holds the API key, if the provider needs one.
    public var apiKeySecret: String?
    /// The models this provider serves; requests for others are refused before any call.
    public var models: [String]
    public var timeoutMilliseconds: Int64
    public var maxRetries: Int
    /// Operator prices for this provider's models (USD per million tokens), over the built-in table.
    public var prices: [String: ModelPrice]
    /// Whether bare model names (`gpt-4o-mini`, no `provider/`) go to this provider; at most one of an
    /// organization's providers is.
    public var isDefault = false
    public var createdAt: Int64
    public var updatedAt: Int64

    /// Parses and validates the body of `PUT /v1/providers/{name}`.
    /// - Throws: `validation_failed` with every field at fault.
    public static func parse(_ body: JSONValue, name: String, now: Int64) throws(CaravanError) -> ProviderConfig {
        var errors: [CaravanError.FieldError] = []
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        let allowed: Set<String> = [
            "kind", "base_url", "api_key_secret", "models", "timeout", "max_retries", "prices", "name", "default",
        ]
        for key in object.keys.sorted() where !allowed.contains(key) {
            errors.append(.init(pointer: "/" + key, detail: "is not a field of a provider"))
        }
        if !isValidName(name) { errors.append(.init(pointer: "/name", detail: "must match [a-z0-9-]{1,64}")) }
        if let given = object["name"]?.stringValue, given != name {
            errors.append(.init(pointer: "/name", detail: "is '\(given)' but the URL names '\(name)'"))
        }
        let kind = object["kind"]?.stringValue.flatMap(ProviderKind.init(rawValue:))
        if kind == nil { errors.append(.init(pointer: "/kind", detail: "must be one of openai, anthropic")) }
        let baseURL = object["base_url"]?.stringValue ?? ""
        if let url = URL(string: baseURL), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            url.host != nil,
            baseURL.utf8.count <= 2048
        {
        } else {
            errors.append(.init(pointer: "/base_url", detail: "must be an http:// or https:// URL"))
        }
        var apiKeySecret: String?
        if let value = object["api_key_secret"], !value.isNull {
            if let text = value.stringValue, isValidSecretName(text) {
                apiKeySecret = text
            } else {
                errors.append(
                    .init(pointer: "/api_key_secret", detail: "must name a secret (letters, digits and _, at most 64)")
                )
            }
        }
        var models: [String] = []
        if let list = object["models"]?.arrayValue, !list.isEmpty, list.count <= 1000,
            list.allSatisfy({ ($0.stringValue.map { !$0.isEmpty && $0.utf8.count <= 200 } ?? false) })
        {
            models = list.compactMap(\.stringValue)
        } else {
            errors.append(.init(pointer: "/models", detail: "must be a non-empty array of model names (at most 1000)"))
        }
        var timeout: Int64 = 60_000
        if let value = object["timeout"] {
            if let duration = value.stringValue.flatMap(CaravanDuration.init(parsing:)), duration.milliseconds >= 100,
                duration.milliseconds <= 3_600_000
            {
                timeout = duration.milliseconds
            } else {
                errors.append(.init(pointer: "/timeout", detail: "must be a duration from 100ms to 1h, such as 60s"))
            }
        }
        var maxRetries = 2
        if let value = object["max_retries"] {
            if case .int(let number) = value, (0...10).contains(number) {
                maxRetries = Int(number)
            } else {
                errors.append(.init(pointer: "/max_retries", detail: "must be an integer from 0 to 10"))
            }
        }
        var prices: [String: ModelPrice] = [:]
        if let value = object["prices"] {
            if let table = value.objectValue {
                for (model, price) in table {
                    if let input = price["input_per_million"]?.numberValue,
                        let output = price["output_per_million"]?.numberValue,
                        input >= 0, output >= 0
                    {
                        prices[model] = ModelPrice(inputPerMillion: input, outputPerMillion: output)
                    } else {
                        errors.append(
                            .init(
                                pointer: "/prices/" + model,
                                detail: "must be {input_per_million, output_per_million} (USD, ≥ 0)"
                            )
                        )
                    }
                }
            } else {
                errors.append(.init(pointer: "/prices", detail: "must be an object of model → price"))
            }
        }
        var isDefault = false
        if let value = object["default"], !value.isNull {
            if let flag = value.boolValue {
                isDefault = flag
            } else {
                errors.append(.init(pointer: "/default", detail: "must be a boolean"))
            }
        }
        if !errors.isEmpty { throw CaravanError(.validationFailed, "The provider is not valid.", fieldErrors: errors) }
        var config = ProviderConfig(
            name: name,
            kind: kind ?? .openai,
            baseURL: baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL,
            apiKeySecret: apiKeySecret,
            models: models,
            timeoutMilliseconds: timeout,
            maxRetries: maxRetries,
            prices: prices,
            createdAt: now,
            updatedAt: now
        )
        config.isDefault = isDefault
        return config
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
    }

    /// A secret's name as secrets are named: a letter or `_`, then letters, digits or `_`, at most 64.
    static func isValidSecretName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        return !bytes.isEmpty && bytes.count <= 64
            && bytes.enumerated().allSatisfy { index, byte in
                let letter = (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F
                return letter || (index > 0 && byte >= 0x30 && byte <= 0x39)
            }
    }

    /// The prices as stored and shown: model → `{input_per_million, output_per_million}`.
    var pricesJSON: JSONValue {
        .object(
            prices.mapValues {
                ["input_per_million": .double($0.inputPerMillion), "output_per_million": .double($0.outputPerMillion)]
            }
        )
    }

    /// The public form (never the key).
    public var json: JSONValue {
        [
            "name": .string(name), "kind": .string(kind.rawValue), "base_url": .string(baseURL),
            "api_key_secret": apiKeySecret.map(JSONValue.string) ?? .null,
            "models": .array(models.map(JSONValue.string)),
            "timeout": .string(CaravanDuration(milliseconds: timeoutMilliseconds).description),
            "max_retries": .int(Int64(maxRetries)),
            "prices": pricesJSON, "default": .bool(isDefault),
            "created_at": .string(Clock.rfc3339(createdAt)), "updated_at": .string(Clock.rfc3339(updatedAt)),
        ]
    }
}

/// Reads and writes providers; resolves a provider to an endpoint with its key unsealed.
///
/// Endpoints are kept for a second (a model call on the hot path then reads nothing): a change made on this node
/// applies at once, one made on another node or to the key's secret within a second.
public final class ProviderStore: Sendable {
    private let database: any Database
    private let endpoints = Mutex<[String: (endpoint: ProviderEndpoint, config: ProviderConfig, readAt: Int64)]>([:])
    private let defaults: RecentValues<String>
    static let cacheMilliseconds: Int64 = 1_000
    /// Unseals a secret of an organization (`nil` when it does not exist).
    private let secret: @Sendable (_ orgID: String, _ name: String) async throws -> String?

    private let clock: WallClock

    public init(
        database: any Database,
        clock: WallClock = .system,
        secret: @escaping @Sendable (_ orgID: String, _ name: String) async throws -> String?
    ) {
        self.clock = clock
        self.database = database
        self.secret = secret
        self.defaults = RecentValues(clock: clock)
    }

    /// Creates or replaces a provider. - Returns: whether it is new.
    public func put(orgID: String, _ config: ProviderConfig) async throws -> Bool {
        defer {
            forget(orgID: orgID, name: config.name)
            forgetDefault(orgID: orgID)
        }
        let prices = config.pricesJSON
        return try await database.withTransaction { executor in
            let existed =
                try await executor.queryFirst(
                    "SELECT created_at FROM providers WHERE org_id = $1 AND name = $2",
                    [.text(orgID), .text(config.name)]
                ) != nil
            if config.isDefault {
                try await executor.execute(
                    "UPDATE providers SET is_default = 0 WHERE org_id = $1 AND name <> $2 AND is_default = 1",
                    [.text(orgID), .text(config.name)]
                )
            }
            try await executor.execute(
                """
                INSERT INTO providers (org_id, name, kind, base_url, api_key_secret, models, timeout_ms, max_retries, prices,
                    created_at, updated_at, is_default)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)
                ON CONFLICT (org_id, name) DO UPDATE SET kind = $3, base_url = $4, api_key_secret = $5, models = $6,
                    timeout_ms = $7, max_retries = $8, prices = $9, updated_at = $10, is_default = $11
                """,
                [
                    .text(orgID), .text(config.name), .text(config.kind.rawValue), .text(config.baseURL),
                    .text(config.apiKeySecret),
                    .json(.array(config.models.map(JSONValue.string))), .int(config.timeoutMilliseconds),
                    .int(Int64(config.maxRetries)),
                    .json(prices), .int(config.updatedAt), .int(config.isDefault ? 1 : 0),
                ]
            )
            return !existed
        }
    }

    public func get(orgID: String, name: String) async throws -> ProviderConfig? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM providers WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(name)]
            )
        }.map(Self.config)
    }

    /// Every provider of the organization, by name (an organization has few).
    public func list(orgID: String) async throws -> [ProviderConfig] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM providers WHERE org_id = $1 ORDER BY name LIMIT 1000",
                [.text(orgID)]
            )
        }.map(Self.config)
    }

    public func delete(orgID: String, name: String) async throws -> Bool {
        defer {
            forget(orgID: orgID, name: name)
            forgetDefault(orgID: orgID)
        }
        return try await database.withTransaction { executor in
            !(try await executor.query(
                "DELETE FROM providers WHERE org_id = $1 AND name = $2 RETURNING name",
                [.text(orgID), .text(name)]
            )).isEmpty
        }
    }

    /// The endpoint to call for `ref`, with its key unsealed.
    /// - Throws: `ProviderError(.unknownModel)` when the provider or the model is not configured.
    public func endpoint(
        orgID: String,
        for ref: ModelRef
    ) async throws(ProviderError) -> (ProviderEndpoint, ProviderConfig) {
        let key = orgID + "/" + ref.provider
        let now = clock.nowMilliseconds()
        if let cached = endpoints.withLock({ $0[key] }), now - cached.readAt < Self.cacheMilliseconds {
            guard cached.config.models.contains(ref.model) else {
                throw ProviderError(
                    .unknownModel,
                    "The provider '\(ref.provider)' does not list the model '\(ref.model)'."
                )
            }
            return (cached.endpoint, cached.config)
        }
        let (endpoint, config) = try await readEndpoint(orgID: orgID, for: ref)
        endpoints.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[key] = (endpoint, config, now)
        }
        return (endpoint, config)
    }

    /// The name of the organization's default provider, if it has one (kept for a second, as endpoints are).
    public func defaultProvider(orgID: String) async throws -> String? {
        try await defaults.value(orgID) {
            try await database.read { executor in
                try await executor.queryFirst(
                    "SELECT name FROM providers WHERE org_id = $1 AND is_default = 1 ORDER BY name LIMIT 1",
                    [.text(orgID)]
                )
            }.map { try $0.string("name") }
        }
    }

    private func forgetDefault(orgID: String) {
        defaults.forget(orgID)
    }

    private func forget(orgID: String, name: String) {
        _ = endpoints.withLock { $0.removeValue(forKey: orgID + "/" + name) }
    }

    private func readEndpoint(
        orgID: String,
        for ref: ModelRef
    ) async throws(ProviderError) -> (ProviderEndpoint, ProviderConfig) {
        let found: ProviderConfig?
        do { found = try await get(orgID: orgID, name: ref.provider) } catch {
            throw ProviderError(.unavailable, "The provider configuration could not be read.")
        }
        guard let config = found else {
            throw ProviderError(.unknownModel, "No provider named '\(ref.provider)' is configured.")
        }
        guard config.models.contains(ref.model) else {
            throw ProviderError(.unknownModel, "The provider '\(ref.provider)' does not list the model '\(ref.model)'.")
        }
        var key: String?
        if let name = config.apiKeySecret {
            do { key = try await secret(orgID, name) } catch {
                throw ProviderError(.unavailable, "The provider's key could not be read.")
            }
            guard key != nil else {
                throw ProviderError(
                    .unauthorized,
                    "The secret '\(name)' named by the provider '\(config.name)' does not exist."
                )
            }
        }
        return (
            ProviderEndpoint(
                name: orgID + "/" + config.name,
                kind: config.kind,
                baseURL: config.baseURL,
                apiKey: key,
                timeoutMilliseconds: config.timeoutMilliseconds,
                maxRetries: config.maxRetries
            ),
            config
        )
    }

    private static func config(_ row: SQLRow) throws -> ProviderConfig {
        let models = try row.json("models")?.arrayValue?.compactMap(\.stringValue) ?? []
        var prices: [String: ModelPrice] = [:]
        for (model, price) in try row.json("prices")?.objectValue ?? [:] {
            prices[model] = ModelPrice(
                inputPerMillion: price["input_per_million"]?.numberValue ?? 0,
                outputPerMillion: price["output_per_million"]?.numberValue ?? 0
            )
        }
        var config = ProviderConfig(
            name: try row.string("name"),
            kind: ProviderKind(rawValue: try row.string("kind")) ?? .openai,
            baseURL: try row.string("base_url"),
            apiKeySecret: try row.optionalString("api_key_secret"),
            models: models,
            timeoutMilliseconds: try row.int("timeout_ms"),
            maxRetries: Int(try row.int("max_retries")),
            prices: prices,
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
        config.isDefault = try row.int("is_default") == 1
        return config
    }
}
