public import CaravanCore
public import CaravanModels
public import CaravanStorage

/// A named route of the gateway: several deployments behind one model name, chosen by weight (load balancing, A/B),
/// the others and the fallbacks tried after the one chosen.
public struct ModelRouteDefinition: Sendable, Hashable {
    public struct Deployment: Sendable, Hashable {
        public var model: ModelRef
        public var weight: Int
    }

    public var name: String
    public var deployments: [Deployment]
    public var fallbacks: [ModelRef]

    /// Parses `PUT /v1/model-routes/{name}`: `{deployments: [{model, weight?}], fallbacks?: [model]}`.
    /// - Throws: `validation_failed` naming the field.
    public static func parse(_ body: JSONValue, name: String) throws(CaravanError) -> ModelRouteDefinition {
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        for key in object.keys.sorted() where !["deployments", "fallbacks", "name"].contains(key) {
            throw CaravanError.validation("/" + key, "is not a field of a model route")
        }
        guard !name.isEmpty, name.utf8.count <= 64, !name.contains("/"),
            name.utf8.allSatisfy({ $0 > 32 && $0 < 127 })
        else {
            throw CaravanError.validation("/name", "must be 1 to 64 printable characters without '/'")
        }
        guard let list = object["deployments"]?.arrayValue, (1...16).contains(list.count) else {
            throw CaravanError.validation("/deployments", "must be an array of 1 to 16 deployments")
        }
        var deployments: [Deployment] = []
        for (index, item) in list.enumerated() {
            guard let model = item["model"]?.stringValue.flatMap(ModelRef.init(parsing:)) else {
                throw CaravanError.validation("/deployments/\(index)/model", "must be provider/model")
            }
            var weight = 1
            if let value = item["weight"] {
                guard case .int(let number) = value, (1...1000).contains(number) else {
                    throw CaravanError.validation("/deployments/\(index)/weight", "must be an integer from 1 to 1000")
                }
                weight = Int(number)
            }
            deployments.append(Deployment(model: model, weight: weight))
        }
        var fallbacks: [ModelRef] = []
        if let value = object["fallbacks"], !value.isNull {
            guard let items = value.arrayValue, items.count <= 8 else {
                throw CaravanError.validation("/fallbacks", "must be an array of at most 8 models")
            }
            for (index, item) in items.enumerated() {
                guard let model = item.stringValue.flatMap(ModelRef.init(parsing:)) else {
                    throw CaravanError.validation("/fallbacks/\(index)", "must be provider/model")
                }
                fallbacks.append(model)
            }
        }
        return ModelRouteDefinition(name: name, deployments: deployments, fallbacks: fallbacks)
    }

    public var json: JSONValue {
        [
            "name": .string(name),
            "deployments": .array(
                deployments.map { ["model": .string($0.model.description), "weight": .int(Int64($0.weight))] }
            ),
            "fallbacks": .array(fallbacks.map { .string($0.description) }),
        ]
    }

    /// The models to try for one call: a deployment drawn by weight (`draw` in `0..<total weight`), the other
    /// deployments by weight, then the fallbacks; each once.
    public func route(draw: Int) -> [ModelRef] {
        var remaining = draw
        var chosen = deployments[0]
        for deployment in deployments {
            if remaining < deployment.weight {
                chosen = deployment
                break
            }
            remaining -= deployment.weight
        }
        var refs = [chosen.model]
        for deployment in deployments.sorted(by: { $0.weight > $1.weight }) where !refs.contains(deployment.model) {
            refs.append(deployment.model)
        }
        for fallback in fallbacks where !refs.contains(fallback) { refs.append(fallback) }
        return refs
    }

    public var totalWeight: Int { deployments.reduce(0) { $0 + $1.weight } }
}

/// The organization's model routes, each read at most once a second (`RecentValues`).
public final class ModelRouteStore: Sendable {
    private let database: any Database
    private let clock: WallClock
    private let recent: RecentValues<ModelRouteDefinition>

    public init(database: any Database, clock: WallClock = .system) {
        self.database = database
        self.clock = clock
        self.recent = RecentValues(clock: clock)
    }

    public func get(orgID: String, name: String) async throws -> ModelRouteDefinition? {
        try await recent.value(orgID + "/" + name) {
            try await database.read { executor in
                try await executor.queryFirst(
                    "SELECT definition FROM model_routes WHERE org_id = $1 AND name = $2",
                    [.text(orgID), .text(name)]
                )
            }.flatMap { row in
                try row.json("definition").flatMap { try? ModelRouteDefinition.parse($0, name: name) }
            }
        }
    }

    public func list(orgID: String) async throws -> [ModelRouteDefinition] {
        try await database.read { executor in
            try await executor.query(
                "SELECT name, definition FROM model_routes WHERE org_id = $1 ORDER BY name LIMIT 1000",
                [.text(orgID)]
            )
        }.compactMap { row in
            let name = try row.string("name")
            return try row.json("definition").flatMap { try? ModelRouteDefinition.parse($0, name: name) }
        }
    }

    /// Creates or replaces a route. - Returns: whether it is new.
    public func put(orgID: String, _ route: ModelRouteDefinition) async throws -> Bool {
        let now = clock.nowMilliseconds()
        defer { recent.store(route, for: orgID + "/" + route.name) }
        return try await database.withTransaction { executor in
            let existed =
                try await executor.queryFirst(
                    "SELECT name FROM model_routes WHERE org_id = $1 AND name = $2",
                    [.text(orgID), .text(route.name)]
                ) != nil
            try await executor.execute(
                """
                INSERT INTO model_routes (org_id, name, definition, updated_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (org_id, name) DO UPDATE SET definition = $3, updated_at = $4
                """,
                [.text(orgID), .text(route.name), .json(route.json), .int(now)]
            )
            return !existed
        }
    }

    public func delete(orgID: String, name: String) async throws -> Bool {
        defer { recent.forget(orgID + "/" + name) }
        return try await database.withTransaction { executor in
            !(try await executor.query(
                "DELETE FROM model_routes WHERE org_id = $1 AND name = $2 RETURNING name",
                [.text(orgID), .text(name)]
            )).isEmpty
        }
    }
}
