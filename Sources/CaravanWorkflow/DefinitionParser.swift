public import CaravanCore
import Foundation

/// The format of a submitted definition.
public enum DefinitionFormat: Sendable {
    case json
    case yaml
}

/// Parses and validates workflow definitions, collecting every problem with a JSON pointer to its field.
public enum DefinitionParser {
    static let topLevelKeys: Set<String> = [
        "name", "description", "input", "defaults", "concurrency", "schedule", "steps", "output",
    ]
    static let stepKeys: Set<String> = ["id", "needs", "when", "for_each", "timeout", "retry"]
    static let maxSteps = 200

    /// Whether `name` is a valid workflow name: `[a-z0-9-]{1,64}`.
    /// The prefixes of reserved workflow names: an agent's (`agent:NAME`, see `AgentStepKind`) and Caravan's own
    /// (`knowledge:ingest`). Workflow names cannot contain `:`, so no organization's workflow can take one.
    public static let reservedPrefixes = [AgentStepKind.workflowPrefix, "knowledge:"]

    public static func isValidWorkflowName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }

    /// Whether `id` is a valid step id: `[a-z0-9_]{1,64}`.
    public static func isValidStepID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }

    /// Parses a definition.
    /// - Parameters:
    ///   - bytes: the request body.
    ///   - format: JSON or YAML.
    ///   - nameFromPath: the name in the URL; it must agree with the body's `name` when both are given.
    ///   - kinds: the step kinds allowed.
    /// - Throws: `invalid_json` when the text does not parse; `validation_failed` with every field at fault.
    public static func parse(
        _ bytes: [UInt8],
        format: DefinitionFormat,
        nameFromPath: String?,
        kinds: StepKindRegistry = .builtIn
    ) throws(CaravanError) -> WorkflowDefinition {
        try validate(try document(bytes, format: format), nameFromPath: nameFromPath, kinds: kinds)
    }

    /// A JSON or YAML body as JSON.
    /// - Throws: `invalid_json` when the text does not parse.
    public static func document(_ bytes: [UInt8], format: DefinitionFormat) throws(CaravanError) -> JSONValue {
        switch format {
        case .json: try JSONValue(parsing: bytes)
        case .yaml: try YAMLConversion.parse(String(decoding: bytes, as: UTF8.self))
        }
    }

    /// Validates a definition already parsed into JSON.
    public static func validate(
        _ document: JSONValue,
        nameFromPath: String?,
        kinds: StepKindRegistry = .builtIn
    ) throws(CaravanError) -> WorkflowDefinition {
        var errors: [CaravanError.FieldError] = []
        func fail(_ pointer: String, _ detail: String) { errors.append(.init(pointer: pointer, detail: detail)) }

        guard var object = document.objectValue else {
            throw CaravanError.validation("", "A workflow definition is an object.")
        }
        for key in object.keys.sorted() where !topLevelKeys.contains(key) {
            fail("/" + key, "is not a field of a workflow definition")
        }

        // Name.
        var name = object["name"]?.stringValue ?? nameFromPath ?? ""
        if let given = object["name"], given.stringValue == nil { fail("/name", "must be a string") }
        if let fromPath = nameFromPath, let given = object["name"]?.stringValue, given != fromPath {
            fail("/name", "is '\(given)' but the URL names '\(fromPath)'")
            name = fromPath
        }
        // An agent's versions, and the runs that ingest documents, are kept under reserved names.
        let isReserved = reservedPrefixes.contains {
            name.hasPrefix($0) && isValidWorkflowName(String(name.dropFirst($0.count)))
        }
        if !isValidWorkflowName(name) && !isReserved { fail("/name", "must match [a-z0-9-]{1,64}") }
        object["name"] = .string(name)

        let description = object["description"]?.stringValue
        if let value = object["description"], description == nil { fail("/description", "must be a string") }
        if let schema = object["input"], schema.objectValue == nil { fail("/input", "must be a JSON Schema object") }

        // Defaults.
        var defaultTimeout: CaravanDuration?
        var defaultRetry: RetryPolicy?
        if let defaults = object["defaults"] {
            if let defaultsObject = defaults.objectValue {
                for key in defaultsObject.keys.sorted() where key != "timeout" && key != "retry" {
                    fail("/defaults/" + key, "is not a field of defaults")
                }
                defaultTimeout = duration(defaultsObject["timeout"], at: "/defaults/timeout", errors: &errors)
                defaultRetry = retry(defaultsObject["retry"], at: "/defaults/retry", errors: &errors)
            } else {
                fail("/defaults", "must be an object")
            }
        }

        var concurrency: Int?
        if let value = object["concurrency"] {
            if case .int(let number) = value, number >= 1, number <= 100_000 {
                concurrency = Int(number)
            } else {
                fail("/concurrency", "must be an integer from 1 to 100000")
            }
        }

        let schedule = parseSchedule(object["schedule"], errors: &errors)

        // Steps.
        var steps: [StepDefinition] = []
        let stepValues = object["steps"]?.arrayValue
        if stepValues == nil { fail("/steps", "is required and must be an array") }
        if let stepValues, stepValues.isEmpty { fail("/steps", "must hold at least one step") }
        if let stepValues, stepValues.count > maxSteps { fail("/steps", "may hold at most \(maxSteps) steps") }
        for (index, value) in (stepValues ?? []).prefix(maxSteps).enumerated() {
            if let step = parseStep(value, at: "/steps/\(index)", kinds: kinds, errors: &errors) {
                steps.append(step)
            }
        }
        checkGraph(steps, errors: &errors)
        checkReferences(steps, output: object["output"], kinds: kinds, errors: &errors)

        guard errors.isEmpty else {
            let summary = errors.count == 1 ? "\(errors[0].pointer): \(errors[0].detail)" : "\(errors.count) problems"
            throw CaravanError(
                .validationFailed,
                "The workflow definition is invalid (\(summary)).",
                fieldErrors: errors
            )
        }
        return WorkflowDefinition(
            name: name,
            description: description,
            inputSchema: object["input"],
            defaultTimeout: defaultTimeout,
            defaultRetry: defaultRetry,
            concurrency: concurrency,
            schedule: schedule,
            steps: steps,
            output: object["output"],
            source: .object(object)
        )
    }

    private static func parseStep(
        _ value: JSONValue,
        at pointer: String,
        kinds: StepKindRegistry,
        errors: inout [CaravanError.FieldError]
    ) -> StepDefinition? {
        guard let object = value.objectValue else {
            errors.append(.init(pointer: pointer, detail: "a step is an object"))
            return nil
        }
        let id = object["id"]?.stringValue ?? ""
        if !isValidStepID(id) { errors.append(.init(pointer: pointer + "/id", detail: "must match [a-z0-9_]{1,64}")) }
        let kindKeys = object.keys.filter { !stepKeys.contains($0) }.sorted()
        var kind = ""
        if kindKeys.isEmpty {
            errors.append(
                .init(
                    pointer: pointer,
                    detail: "names no kind (one of \(kinds.kinds.keys.sorted().joined(separator: ", ")))"
                )
            )
        } else {
            for key in kindKeys where kinds.kinds[key] == nil {
                errors.append(.init(pointer: pointer + "/" + key, detail: "is not a known step kind or field"))
            }
            let known = kindKeys.filter { kinds.kinds[$0] != nil }
            if known.count > 1 {
                errors.append(
                    .init(pointer: pointer, detail: "names more than one kind (\(known.joined(separator: ", ")))")
                )
            }
            if let first = known.first, let type = kinds.kinds[first] {
                kind = first
                errors += type.validate(object[first] ?? .null, at: pointer + "/" + first)
            }
        }
        var needs: [String] = []
        if let value = object["needs"] {
            if let array = value.arrayValue, array.allSatisfy({ $0.stringValue != nil }) {
                needs = array.compactMap(\.stringValue)
            } else {
                errors.append(.init(pointer: pointer + "/needs", detail: "must be an array of step ids"))
            }
        }
        var when: Expression?
        if let value = object["when"] {
            do throws(CaravanError) {
                guard let text = value.stringValue else { throw CaravanError(.validationFailed, "must be a string") }
                when = try Expression(parsing: text)
            } catch {
                errors.append(.init(pointer: pointer + "/when", detail: error.detail))
            }
        }
        var forEach: Expression?
        if let value = object["for_each"] {
            do throws(CaravanError) {
                guard let text = value.stringValue else { throw CaravanError(.validationFailed, "must be a string") }
                forEach = try Expression(parsing: text)
            } catch {
                errors.append(.init(pointer: pointer + "/for_each", detail: error.detail))
            }
        }
        let timeout = duration(object["timeout"], at: pointer + "/timeout", errors: &errors)
        let retry = retry(object["retry"], at: pointer + "/retry", errors: &errors)
        return StepDefinition(
            id: id,
            needs: needs,
            when: when,
            forEach: forEach,
            timeout: timeout,
            retry: retry,
            kind: kind,
            config: object[kind] ?? .null,
            interpolatesConfig: kinds.kinds[kind]?.interpolatesConfig ?? true
        )
    }

    private static func duration(
        _ value: JSONValue?,
        at pointer: String,
        errors: inout [CaravanError.FieldError]
    )
        -> CaravanDuration?
    {
        guard let value else { return nil }
        guard let parsed = value.stringValue.flatMap(CaravanDuration.init(parsing:)) else {
            errors.append(.init(pointer: pointer, detail: "must be a duration such as 500ms, 30s, 5m, 2h or 1d"))
            return nil
        }
        return parsed
    }

    private static func retry(
        _ value: JSONValue?,
        at pointer: String,
        errors: inout [CaravanError.FieldError]
    )
        -> RetryPolicy?
    {
        guard let value else { return nil }
        guard let object = value.objectValue else {
            errors.append(.init(pointer: pointer, detail: "must be an object"))
            return nil
        }
        var policy = RetryPolicy.default
        for key in object.keys.sorted()
        where !["max_attempts", "initial_interval", "backoff", "max_interval"].contains(key) {
            errors.append(.init(pointer: pointer + "/" + key, detail: "is not a field of a retry policy"))
        }
        if let attempts = object["max_attempts"] {
            if case .int(let number) = attempts, (1...100).contains(number) {
                policy.maxAttempts = Int(number)
            } else {
                errors.append(.init(pointer: pointer + "/max_attempts", detail: "must be an integer from 1 to 100"))
            }
        }
        if let interval = duration(object["initial_interval"], at: pointer + "/initial_interval", errors: &errors) {
            policy.initialInterval = interval
        }
        if let interval = duration(object["max_interval"], at: pointer + "/max_interval", errors: &errors) {
            policy.maxInterval = interval
        }
        if let backoff = object["backoff"] {
            if let number = backoff.numberValue, number >= 1, number <= 100 {
                policy.backoff = number
            } else {
                errors.append(.init(pointer: pointer + "/backoff", detail: "must be a number from 1 to 100"))
            }
        }
        return policy
    }

    private static func parseSchedule(
        _ value: JSONValue?,
        errors: inout [CaravanError.FieldError]
    )
        -> WorkflowDefinition.Schedule?
    {
        guard let value else { return nil }
        guard let object = value.objectValue else {
            errors.append(.init(pointer: "/schedule", detail: "must be an object"))
            return nil
        }
        for key in object.keys.sorted() where !["cron", "timezone", "input", "catch_up"].contains(key) {
            errors.append(.init(pointer: "/schedule/" + key, detail: "is not a field of a schedule"))
        }
        var cron: CronExpression?
        do throws(CaravanError) {
            guard let text = object["cron"]?.stringValue else {
                throw CaravanError(.validationFailed, "is required: a cron expression such as */5 * * * *")
            }
            cron = try CronExpression(parsing: text)
        } catch {
            errors.append(.init(pointer: "/schedule/cron", detail: error.detail))
        }
        let zone = object["timezone"]?.stringValue ?? "UTC"
        if TimeZone(identifier: zone) == nil {
            errors.append(.init(pointer: "/schedule/timezone", detail: "'\(zone)' is not a known time zone"))
        }
        var catchUp = true
        if let value = object["catch_up"] {
            if case .bool(let flag) = value {
                catchUp = flag
            } else {
                errors.append(.init(pointer: "/schedule/catch_up", detail: "must be true or false"))
            }
        }
        guard let cron else { return nil }
        return .init(cron: cron, timeZone: zone, input: object["input"] ?? .object([:]), catchUp: catchUp)
    }

    /// Duplicate ids, unknown needs, cycles.
    private static func checkGraph(_ steps: [StepDefinition], errors: inout [CaravanError.FieldError]) {
        var seen: [String: Int] = [:]
        for (index, step) in steps.enumerated() {
            if seen[step.id] != nil {
                errors.append(
                    .init(pointer: "/steps/\(index)/id", detail: "'\(step.id)' is already the id of another step")
                )
            }
            seen[step.id] = index
        }
        for (index, step) in steps.enumerated() {
            for (position, need) in step.needs.enumerated() where seen[need] == nil || need == step.id {
                errors.append(
                    .init(
                        pointer: "/steps/\(index)/needs/\(position)",
                        detail: need == step.id
                            ? "a step cannot need itself" : "'\(need)' is not a step of this workflow"
                    )
                )
            }
        }
        // Depth-first search for a cycle; report one step on it with the cycle spelled out.
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        var path: [String] = []
        let byID = Dictionary(steps.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        func visit(_ id: String) -> [String]? {
            if state[id] == 2 { return nil }
            if state[id] == 1 {
                let start = path.firstIndex(of: id) ?? 0
                return Array(path[start...]) + [id]
            }
            state[id] = 1
            path.append(id)
            for need in byID[id]?.needs ?? [] where need != id && byID[need] != nil {
                if let cycle = visit(need) { return cycle }
            }
            path.removeLast()
            state[id] = 2
            return nil
        }
        for step in steps {
            if let cycle = visit(step.id), let index = seen[cycle[0]] {
                errors.append(
                    .init(pointer: "/steps/\(index)/needs", detail: "forms a cycle: \(cycle.joined(separator: " → "))")
                )
                return
            }
        }
    }

    /// Interpolations and expressions may read `input`, `run`, `secrets`, `item` (in `for_each` steps) and the
    /// outputs of steps the step (transitively) needs; `output` may read any step.
    private static func checkReferences(
        _ steps: [StepDefinition],
        output: JSONValue?,
        kinds: StepKindRegistry,
        errors: inout [CaravanError.FieldError]
    ) {
        let byID = Dictionary(steps.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        func ancestors(of id: String) -> Set<String> {
            var result = Set<String>()
            var stack = byID[id]?.needs ?? []
            while let next = stack.popLast() {
                if result.insert(next).inserted { stack += byID[next]?.needs ?? [] }
            }
            return result
        }
        func check(
            _ paths: [[String]],
            at pointer: String,
            allowed: Set<String>?,
            allowsItem: Bool,
            allowsSecrets: Bool = false
        ) {
            for path in paths {
                guard let root = path.first else { continue }
                switch root {
                case "input", "run": continue
                case "secrets":
                    if !allowsSecrets {
                        errors.append(
                            .init(
                                pointer: pointer,
                                detail:
                                    "secrets may be used only in the fields of steps that send them out (http), never in outputs, conditions or stored values"
                            )
                        )
                    } else if path.count != 2 {
                        errors.append(.init(pointer: pointer, detail: "write a secret as secrets.NAME"))
                    }
                case "item":
                    if !allowsItem {
                        errors.append(.init(pointer: pointer, detail: "'item' exists only in for_each steps"))
                    }
                case "steps":
                    guard path.count >= 2 else {
                        errors.append(.init(pointer: pointer, detail: "'steps' must be followed by a step id"))
                        continue
                    }
                    if byID[path[1]] == nil {
                        errors.append(.init(pointer: pointer, detail: "'\(path[1])' is not a step of this workflow"))
                    } else if let allowed, !allowed.contains(path[1]) {
                        errors.append(
                            .init(
                                pointer: pointer,
                                detail: "reads step '\(path[1])', which is not among this step's needs"
                            )
                        )
                    }
                default:
                    errors.append(
                        .init(pointer: pointer, detail: "'\(root)' is unknown; use input, steps, item, run or secrets")
                    )
                }
            }
        }
        for (index, step) in steps.enumerated() {
            let allowed = ancestors(of: step.id)
            let pointer = "/steps/\(index)"
            if kinds.kinds[step.kind]?.interpolatesConfig ?? true {
                do throws(CaravanError) {
                    check(
                        try Template.referencedPaths(in: step.config),
                        at: pointer + "/" + step.kind,
                        allowed: allowed,
                        allowsItem: step.forEach != nil,
                        allowsSecrets: kinds.kinds[step.kind]?.acceptsSecrets ?? false
                    )
                } catch {
                    errors.append(.init(pointer: pointer + "/" + step.kind, detail: error.detail))
                }
            }
            if let when = step.when {
                check(when.referencedPaths, at: pointer + "/when", allowed: allowed, allowsItem: false)
            }
            if let forEach = step.forEach {
                check(forEach.referencedPaths, at: pointer + "/for_each", allowed: allowed, allowsItem: false)
            }
        }
        if let output {
            do throws(CaravanError) {
                check(try Template.referencedPaths(in: output), at: "/output", allowed: nil, allowsItem: false)
            } catch {
                errors.append(.init(pointer: "/output", detail: error.detail))
            }
        }
    }
}
