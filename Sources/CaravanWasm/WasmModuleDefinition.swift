public import CaravanCore
import Foundation

/// What a module may reach beyond its own memory: each host function of the `caravan` import module is granted by
/// one permission, and a module importing a function it was not granted is refused at upload.
public struct WasmPermissions: Sendable, Hashable {
    /// `http_fetch`, through the organization's egress policy.
    public var http = false
    /// `kv_get` and `kv_put`, on a store of the run's own.
    public var kv = false
    /// `secret`: only these secrets of the organization.
    public var secrets: [String] = []

    public init(http: Bool = false, kv: Bool = false, secrets: [String] = []) {
        self.http = http
        self.kv = kv
        self.secrets = secrets
    }

    public var json: JSONValue {
        ["http": .bool(http), "kv": .bool(kv), "secrets": .array(secrets.map(JSONValue.string))]
    }

    /// The permission an import needs, or `nil` when it needs none (`caravan.log`, WASI's).
    public static func permission(for importName: String) -> String? {
        switch importName {
        case "caravan.http_fetch": "http"
        case "caravan.kv_get", "caravan.kv_put": "kv"
        case "caravan.secret": "secrets"
        default: nil
        }
    }

    public func grants(_ permission: String) -> Bool {
        switch permission {
        case "http": http
        case "kv": kv
        case "secrets": !secrets.isEmpty
        default: false
        }
    }
}

/// A call's budgets, within the operator's maxima (`WasmLimits.operatorMaximum`).
extension WasmLimits {
    public var json: JSONValue {
        [
            "fuel": .int(Int64(clamping: fuel)), "memory_bytes": .int(Int64(memoryBytes)),
            "stack_bytes": .int(Int64(stackBytes)), "timeout_ms": .int(timeoutMilliseconds),
        ]
    }
}

/// One version of a module: its binary's digest and ABI, and what its uploader declared (schemas, permissions,
/// limits).
public struct WasmModuleDefinition: Sendable, Hashable {
    public var name: String
    public var version: Int
    /// Lowercase hex SHA-256 of the binary (a WAT upload is stored as the binary it assembles to).
    public var sha256: String
    public var abi: WasmABI
    public var imports: [String]
    public var description: String
    public var inputSchema: JSONValue?
    public var outputSchema: JSONValue?
    public var permissions: WasmPermissions
    public var limits: WasmLimits
    public var size: Int
    public var createdAt: Int64

    /// The stored form of what the uploader declared (the digest, version and time are columns of their own).
    public var declared: JSONValue {
        [
            "abi": .string(abi.rawValue), "imports": .array(imports.map(JSONValue.string)),
            "description": .string(description), "input_schema": inputSchema ?? .null,
            "output_schema": outputSchema ?? .null, "permissions": permissions.json, "limits": limits.json,
            "size": .int(Int64(size)),
        ]
    }

    public var json: JSONValue {
        guard case .object(var fields) = declared else { return declared }
        fields["name"] = .string(name)
        fields["version"] = .int(Int64(version))
        fields["sha256"] = .string(sha256)
        fields["created_at"] = .string(Clock.rfc3339(createdAt))
        return .object(fields)
    }
}

extension WasmModuleDefinition {
    /// A version from its stored declarations.
    public init(declared: JSONValue, name: String, version: Int, sha256: String, createdAt: Int64) {
        func int(_ value: JSONValue?) -> Int64 {
            if case .int(let number)? = value { return number }
            return 0
        }
        let limits = declared["limits"] ?? [:]
        let permissions = declared["permissions"] ?? [:]
        self.init(
            name: name,
            version: version,
            sha256: sha256,
            abi: declared["abi"]?.stringValue.flatMap(WasmABI.init(rawValue:)) ?? .caravan,
            imports: declared["imports"]?.arrayValue?.compactMap(\.stringValue) ?? [],
            description: declared["description"]?.stringValue ?? "",
            inputSchema: declared["input_schema"].flatMap { $0.isNull ? nil : $0 },
            outputSchema: declared["output_schema"].flatMap { $0.isNull ? nil : $0 },
            permissions: WasmPermissions(
                http: permissions["http"] == true,
                kv: permissions["kv"] == true,
                secrets: permissions["secrets"]?.arrayValue?.compactMap(\.stringValue) ?? []
            ),
            limits: WasmLimits(
                fuel: UInt64(clamping: int(limits["fuel"])),
                memoryBytes: Int(int(limits["memory_bytes"])),
                stackBytes: Int(int(limits["stack_bytes"])),
                timeoutMilliseconds: int(limits["timeout_ms"])
            ),
            size: Int(int(declared["size"])),
            createdAt: createdAt
        )
    }
}

/// A `PUT /v1/modules/{name}` body, checked: the module's bytes (binary or WAT) and its declarations.
public struct WasmModuleUpload: Sendable {
    public var bytes: [UInt8]
    /// Where the module was given: `/wasm` or `/wat`.
    public var pointer: String
    public var description: String
    public var inputSchema: JSONValue?
    public var outputSchema: JSONValue?
    public var permissions: WasmPermissions
    public var limits: WasmLimits

    /// The most a module's binary may weigh.
    public static let maxBytes = 8 << 20

    /// Parses `{wasm (base64) | wat, description?, input_schema?, output_schema?, permissions?, limits?}`; limits
    /// not given are the operator's defaults, and none may pass the operator's maxima.
    /// - Throws: `validation_failed` naming the field.
    public static func parse(
        _ body: JSONValue,
        defaults: WasmLimits,
        maxima: WasmLimits
    ) throws(CaravanError)
        -> WasmModuleUpload
    {
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        let fields: Set<String> = [
            "wasm", "wat", "description", "input_schema", "output_schema", "permissions", "limits", "name",
        ]
        for key in object.keys.sorted() where !fields.contains(key) {
            throw CaravanError.validation("/" + key, "is not a field of a module")
        }
        let bytes: [UInt8]
        switch (object["wasm"]?.stringValue, object["wat"]?.stringValue) {
        case (let encoded?, nil):
            guard let data = Data(base64Encoded: encoded) else {
                throw CaravanError.validation("/wasm", "must be the module's binary in base64")
            }
            bytes = Array(data)
        case (nil, let text?): bytes = Array(text.utf8)
        default:
            throw CaravanError.validation(
                "/wasm",
                "give the module as wasm (base64 of the binary) or wat (text), one of them"
            )
        }
        guard !bytes.isEmpty, bytes.count <= maxBytes else {
            throw CaravanError.validation(object["wasm"] != nil ? "/wasm" : "/wat", "must be 1 byte to 8 MiB")
        }
        let description = object["description"]?.stringValue ?? ""
        guard description.count <= 1_000 else {
            throw CaravanError.validation("/description", "must be at most 1,000 characters")
        }
        for key in ["input_schema", "output_schema"] {
            if let schema = object[key], !schema.isNull, schema.objectValue == nil {
                throw CaravanError.validation("/" + key, "must be a JSON Schema object")
            }
        }
        return WasmModuleUpload(
            bytes: bytes,
            pointer: object["wasm"] != nil ? "/wasm" : "/wat",
            description: description,
            inputSchema: object["input_schema"].flatMap { $0.isNull ? nil : $0 },
            outputSchema: object["output_schema"].flatMap { $0.isNull ? nil : $0 },
            permissions: try permissions(object["permissions"]),
            limits: try limits(object["limits"], defaults: defaults, maxima: maxima)
        )
    }

    private static func permissions(_ value: JSONValue?) throws(CaravanError) -> WasmPermissions {
        guard let value, !value.isNull else { return WasmPermissions() }
        guard let object = value.objectValue else {
            throw CaravanError.validation("/permissions", "must be an object: {http?, kv?, secrets?}")
        }
        for key in object.keys.sorted() where !["http", "kv", "secrets"].contains(key) {
            throw CaravanError.validation("/permissions/" + key, "is not a permission (http, kv, secrets)")
        }
        var permissions = WasmPermissions()
        for (key, path) in [("http", \WasmPermissions.http), ("kv", \WasmPermissions.kv)] {
            guard let flag = object[key] else { continue }
            guard let bool = flag.boolValue else {
                throw CaravanError.validation("/permissions/" + key, "must be true or false")
            }
            permissions[keyPath: path] = bool
        }
        if let names = object["secrets"] {
            guard let list = names.arrayValue, list.count <= 32,
                list.allSatisfy({ ($0.stringValue?.isEmpty == false) && ($0.stringValue?.count ?? 0) <= 128 })
            else {
                throw CaravanError.validation("/permissions/secrets", "must be a list of up to 32 secret names")
            }
            permissions.secrets = list.compactMap(\.stringValue)
        }
        return permissions
    }

    private static func limits(
        _ value: JSONValue?,
        defaults: WasmLimits,
        maxima: WasmLimits
    ) throws(CaravanError)
        -> WasmLimits
    {
        var limits = defaults
        guard let value, !value.isNull else { return limits }
        guard let object = value.objectValue else {
            throw CaravanError.validation(
                "/limits",
                "must be an object: {fuel?, memory_bytes?, stack_bytes?, timeout_ms?}"
            )
        }
        for key in object.keys.sorted() where !["fuel", "memory_bytes", "stack_bytes", "timeout_ms"].contains(key) {
            throw CaravanError.validation(
                "/limits/" + key,
                "is not a limit (fuel, memory_bytes, stack_bytes, timeout_ms)"
            )
        }
        func number(_ key: String, max: Int64, min: Int64 = 1) throws(CaravanError) -> Int64? {
            guard let field = object[key] else { return nil }
            guard case .int(let number) = field, number >= min, number <= max else {
                throw CaravanError.validation(
                    "/limits/" + key,
                    "must be an integer from \(min) to \(max) (the operator's maximum)"
                )
            }
            return number
        }
        if let fuel = try number("fuel", max: Int64(clamping: maxima.fuel)) { limits.fuel = UInt64(fuel) }
        if let memory = try number("memory_bytes", max: Int64(maxima.memoryBytes), min: 65_536) {
            limits.memoryBytes = Int(memory)
        }
        if let stack = try number("stack_bytes", max: Int64(maxima.stackBytes), min: 16_384) {
            limits.stackBytes = Int(stack)
        }
        if let timeout = try number("timeout_ms", max: maxima.timeoutMilliseconds) {
            limits.timeoutMilliseconds = timeout
        }
        return limits
    }
}
