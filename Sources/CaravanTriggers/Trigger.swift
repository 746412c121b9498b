public import CaravanCore
public import CaravanWorkflow

/// What a trigger starts: the latest version of a workflow, or an agent.
public enum TriggerTarget: Sendable, Hashable {
    case workflow(String)
    case agent(String)

    /// The name of the workflow or agent.
    public var name: String {
        switch self {
        case .workflow(let name), .agent(let name): name
        }
    }
}

/// How a trigger checks that a request comes from whom it says.
public enum VerificationScheme: String, Sendable, CaseIterable {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`.
    case standardWebhooks = "standard_webhooks"
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    case github
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
    case stripe
    /// `Authorization: Bearer <secret>`.
    case bearer
    /// No check at all: anyone who knows the hook's URL can start runs. Must be chosen explicitly.
    case none

    /// Whether the scheme signs the body with the secret (and so a delivery id can be derived from the signature).
    public var signs: Bool { self == .standardWebhooks || self == .github || self == .stripe }
}

/// The verification of a trigger: its scheme, the vault secret it uses and how old a signed timestamp may be.
public struct TriggerVerification: Sendable, Hashable {
    public var scheme: VerificationScheme
    /// The name of the organization's secret in the vault; `nil` only for `none`.
    public var secret: String?
    /// For timestamped schemes (`standard_webhooks`, `stripe`): the largest difference between the signed time and
    /// the server's clock, either way.
    public var tolerance: CaravanDuration

    public init(scheme: VerificationScheme, secret: String?, tolerance: CaravanDuration = .seconds(300)) {
        self.scheme = scheme
        self.secret = secret
        self.tolerance = tolerance
    }
}

/// How deliveries become runs.
public enum TriggerMode: Sendable, Hashable {
    /// One run per delivery.
    case direct
    /// Deliveries are buffered; one run per window (and per `maxEvents` within it) with all of them. With `split`
    /// (a path to an array in the delivery's scope), each item of a delivery's array is an event of its own, its
    /// input rendered with `item` in the scope.
    case batch(maxEvents: Int, window: CaravanDuration, split: Expression?)
    /// One run per key at a time; later deliveries for a key whose run is still going are sent to it as signals.
    case route(key: JSONValue, signal: String)
}

/// A trigger's definition as `PUT /v1/triggers/{name}` takes it, validated.
public struct TriggerDefinition: Sendable {
    public var target: TriggerTarget
    /// The run's input, a template over the delivery's scope; `{{ body }}` by default.
    public var input: JSONValue
    public var verification: TriggerVerification
    /// When present and false over the delivery's scope, the delivery starts nothing.
    public var filter: Expression?
    public var filterSource: String?
    public var mode: TriggerMode
    /// Deliveries accepted per minute (a token bucket per trigger and node); `nil` for no limit.
    public var ratePerMinute: Int?
    /// The largest body accepted; `nil` for the default (256 KiB), never more than the server's limit.
    public var maxBodyBytes: Int?
    public var enabled: Bool
    /// The definition as it was given (normalized), for reading back.
    public var source: JSONValue

    /// The default largest body of a delivery.
    public static let defaultMaxBodyBytes = 256 * 1024
    /// The largest `max_events` of a batch.
    public static let maxBatchEvents = 10_000
    /// The longest route key, in bytes.
    public static let maxRouteKeyBytes = 256

    /// Validates a definition; every field at fault is reported with its JSON pointer.
    /// - Parameter maxBodyBytes: the server's own body limit, which `max_body_bytes` may not pass.
    /// - Throws: `validation_failed` with the fields at fault.
    public static func parse(_ body: JSONValue, maxBodyBytes serverLimit: Int) throws(CaravanError) -> TriggerDefinition
    {
        guard let object = body.objectValue else {
            throw CaravanError.validation("", "The body must be a JSON object.")
        }
        var errors: [CaravanError.FieldError] = []
        func fail(_ pointer: String, _ detail: String) { errors.append(.init(pointer: pointer, detail: detail)) }
        let known: Set<String> = [
            "workflow", "agent", "input", "verify", "filter", "mode", "rate_limit", "max_body_bytes", "enabled",
        ]
        for key in object.keys.sorted() where !known.contains(key) { fail("/" + key, "is not a field of a trigger") }

        var target: TriggerTarget?
        switch (object["workflow"], object["agent"]) {
        case (let workflow?, nil):
            if let name = workflow.stringValue, DefinitionParser.isValidWorkflowName(name) {
                target = .workflow(name)
            } else {
                fail("/workflow", "must name a workflow ([a-z0-9-]{1,64})")
            }
        case (nil, let agent?):
            if let name = agent.stringValue, DefinitionParser.isValidWorkflowName(name) {
                target = .agent(name)
            } else {
                fail("/agent", "must name an agent ([a-z0-9-]{1,64})")
            }
        case (nil, nil): fail("/workflow", "a trigger starts a workflow or an agent: give one of workflow or agent")
        default: fail("/agent", "give workflow or agent, not both")
        }

        // With a batch's split, each item is an event, and `{{ item }}` is the default input.
        let splits = object["mode"]?["batch"]?["split"] != nil
        let input = object["input"] ?? .string(splits ? "{{ item }}" : "{{ body }}")
        checkTemplate(input, at: "/input", item: splits, errors: &errors)

        var verification: TriggerVerification?
        if let verify = object["verify"]?.objectValue {
            for key in verify.keys.sorted() where !["scheme", "secret", "tolerance"].contains(key) {
                fail("/verify/" + key, "is not a field of verify")
            }
            let scheme = verify["scheme"]?.stringValue.flatMap(VerificationScheme.init(rawValue:))
            if scheme == nil {
                fail(
                    "/verify/scheme",
                    "must be one of \(VerificationScheme.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            let secret = verify["secret"]?.stringValue
            if scheme != nil && scheme != VerificationScheme.none {
                if secret == nil || secret?.isEmpty == true {
                    fail("/verify/secret", "names the vault secret the scheme checks with")
                }
            } else if verify["secret"] != nil && scheme == VerificationScheme.none {
                fail("/verify/secret", "scheme none uses no secret")
            }
            var tolerance = CaravanDuration.seconds(300)
            if let value = verify["tolerance"] {
                if let parsed = value.stringValue.flatMap(CaravanDuration.init(parsing:)),
                    parsed.milliseconds >= 1_000, parsed.milliseconds <= 86_400_000
                {
                    tolerance = parsed
                } else {
                    fail("/verify/tolerance", "must be a duration from 1s to 24h, such as 5m")
                }
                if let scheme, scheme != .standardWebhooks && scheme != .stripe {
                    fail("/verify/tolerance", "only timestamped schemes (standard_webhooks, stripe) take a tolerance")
                }
            }
            if let scheme { verification = TriggerVerification(scheme: scheme, secret: secret, tolerance: tolerance) }
        } else {
            fail("/verify", "is required: {scheme, secret} (scheme none, with no secret, must be said explicitly)")
        }

        var filter: Expression?
        var filterSource: String?
        if let value = object["filter"] {
            do throws(CaravanError) {
                guard let text = value.stringValue else { throw CaravanError(.validationFailed, "must be a string") }
                filter = try Expression(parsing: text)
                filterSource = text
                checkScopePaths((filter?.referencedPaths ?? []), at: "/filter", errors: &errors)
            } catch {
                fail("/filter", error.detail)
            }
        }

        var mode = TriggerMode.direct
        if let value = object["mode"], !value.isNull {
            if let batch = value["batch"], value.objectValue?.count == 1 {
                let maxEvents = batch["max_events"]?.numberValue
                let window = batch["window"]?.stringValue.flatMap(CaravanDuration.init(parsing:))
                for key in (batch.objectValue ?? [:]).keys.sorted()
                where !["max_events", "window", "split"].contains(key) {
                    fail("/mode/batch/" + key, "is not a field of batch")
                }
                var split: Expression?
                if let value = batch["split"] {
                    if let text = value.stringValue, let path = try? Expression(parsing: text),
                        case .path = path
                    {
                        split = path
                        checkScopePaths(path.referencedPaths, at: "/mode/batch/split", errors: &errors)
                    } else {
                        fail("/mode/batch/split", "must be a path to an array in the delivery, such as body.readings")
                    }
                }
                if !(maxEvents.map { $0 == $0.rounded() && $0 >= 1 && $0 <= Double(maxBatchEvents) } ?? false) {
                    fail("/mode/batch/max_events", "must be an integer from 1 to \(maxBatchEvents)")
                }
                if !(window.map { $0.milliseconds >= 100 && $0.milliseconds <= 86_400_000 } ?? false) {
                    fail("/mode/batch/window", "must be a duration from 100ms to 24h, such as 10s")
                }
                if let maxEvents, let window { mode = .batch(maxEvents: Int(maxEvents), window: window, split: split) }
            } else if let route = value["route"], value.objectValue?.count == 1 {
                for key in (route.objectValue ?? [:]).keys.sorted() where !["key", "signal"].contains(key) {
                    fail("/mode/route/" + key, "is not a field of route")
                }
                let key = route["key"]
                if let key, key.stringValue?.isEmpty == false {
                    checkTemplate(key, at: "/mode/route/key", errors: &errors)
                } else {
                    fail("/mode/route/key", "must be a template such as {{ body.customer }}")
                }
                let signal = route["signal"]?.stringValue ?? "event"
                if signal.isEmpty || signal.utf8.count > 64 {
                    fail("/mode/route/signal", "must be a signal name of 1 to 64 characters")
                }
                if let key { mode = .route(key: key, signal: signal) }
            } else {
                fail("/mode", "must be {batch: {max_events, window}} or {route: {key, signal}}")
            }
        }

        var rate: Int?
        if let value = object["rate_limit"], !value.isNull {
            if let perMinute = value["per_minute"]?.numberValue, perMinute == perMinute.rounded(), perMinute >= 1,
                perMinute <= 1_000_000, value.objectValue?.count == 1
            {
                rate = Int(perMinute)
            } else {
                fail("/rate_limit/per_minute", "must be an integer from 1 to 1000000 ({per_minute: N})")
            }
        }
        var maxBody: Int?
        if let value = object["max_body_bytes"], !value.isNull {
            if let bytes = value.numberValue, bytes == bytes.rounded(), bytes >= 1, bytes <= Double(serverLimit) {
                maxBody = Int(bytes)
            } else {
                fail("/max_body_bytes", "must be an integer from 1 to the server's --max-body-bytes (\(serverLimit))")
            }
        }
        var enabled = true
        if let value = object["enabled"] {
            if case .bool(let flag) = value { enabled = flag } else { fail("/enabled", "must be true or false") }
        }
        guard errors.isEmpty, let target, let verification else {
            throw CaravanError(.validationFailed, "The trigger is not valid.", fieldErrors: errors)
        }
        var source = object
        source["input"] = input
        source["enabled"] = .bool(enabled)
        return TriggerDefinition(
            target: target,
            input: input,
            verification: verification,
            filter: filter,
            filterSource: filterSource,
            mode: mode,
            ratePerMinute: rate,
            maxBodyBytes: maxBody,
            enabled: enabled,
            source: .object(source)
        )
    }

    /// The largest body this trigger accepts under the server's limit.
    public func bodyLimit(server: Int) -> Int { min(maxBodyBytes ?? Self.defaultMaxBodyBytes, server) }

    /// The roots a delivery's scope offers to templates and filters.
    public static let scopeRoots: Set<String> = ["body", "headers", "query", "trigger", "delivery"]

    private static func checkTemplate(
        _ value: JSONValue,
        at pointer: String,
        item: Bool = false,
        errors: inout [CaravanError.FieldError]
    ) {
        do throws(CaravanError) {
            checkScopePaths(try Template.referencedPaths(in: value), at: pointer, item: item, errors: &errors)
        } catch {
            errors.append(.init(pointer: pointer, detail: error.detail))
        }
    }

    private static func checkScopePaths(
        _ paths: [[String]],
        at pointer: String,
        item: Bool = false,
        errors: inout [CaravanError.FieldError]
    ) {
        for path in paths {
            guard let root = path.first else { continue }
            if !scopeRoots.contains(root) && !(item && root == "item") {
                errors.append(
                    .init(
                        pointer: pointer,
                        detail: "'\(root)' is not in a delivery's scope (body, headers, query, trigger, delivery"
                            + (item ? ", item)" : "; item only with a batch's split)")
                    )
                )
                return
            }
        }
    }
}

/// A stored trigger.
public struct Trigger: Sendable {
    /// The unguessable id in the hook URL (`trg_` and 26 base32 characters of randomness: 130 bits).
    public var id: String
    public var orgID: String
    public var name: String
    public var definition: TriggerDefinition
    public var createdAt: Int64
    public var updatedAt: Int64

    /// The path of the trigger's public hook.
    public var hookPath: String { "/v1/hooks/" + id }
}
