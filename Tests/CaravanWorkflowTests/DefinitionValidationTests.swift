import CaravanCore
import CaravanWorkflow
import Testing

private func parse(_ yaml: String, name: String? = nil) throws(CaravanError) -> WorkflowDefinition {
    try DefinitionParser.parse(Array(yaml.utf8), format: .yaml, nameFromPath: name)
}

/// The pointers of the field errors a definition is refused with.
private func pointers(_ yaml: String) -> [String] {
    do {
        _ = try parse(yaml, name: "w")
        return []
    } catch {
        #expect(error.code == .validationFailed || error.code == .invalidJSON)
        return error.fieldErrors.map(\.pointer)
    }
}

@Suite("Workflow definitions")
struct DefinitionValidationTests {
    @Test("The contract's example validates")
    func contractExample() throws {
        let definition = try parse(
            """
            name: welcome
            description: Greets a new customer
            input: {type: object, required: [email], properties: {email: {type: string}}}
            defaults:
              timeout: 30s
              retry: {max_attempts: 3, initial_interval: 1s, backoff: 2.0, max_interval: 1m}
            concurrency: 10
            schedule: {cron: "*/5 * * * *", timezone: UTC, input: {}}
            steps:
              - id: lookup
                http: {method: GET, url: "https://crm.example.com/users/{{ input.email }}", headers: {Authorization: "Bearer {{ secrets.crm }}"}}
              - id: greet
                needs: [lookup]
                when: steps.lookup.output.status == 200
                template: "Hello {{ steps.lookup.output.body.name }}"
              - id: approve
                needs: [greet]
                approval: {message: "Send the greeting?"}
              - id: pause
                needs: [approve]
                sleep: 1h
              - id: each
                needs: [lookup]
                for_each: steps.lookup.output.body.tags
                template: "tag {{ item }}"
              - id: child
                needs: [pause]
                workflow: {name: notify, input: {text: "{{ steps.greet.output }}"}}
            output: "{{ steps.greet.output }}"
            """
        )
        #expect(definition.name == "welcome")
        #expect(definition.steps.map(\.kind) == ["http", "template", "approval", "sleep", "template", "workflow"])
        #expect(definition.concurrency == 10)
        #expect(definition.defaultRetry?.maxAttempts == 3)
        #expect(definition.schedule?.timeZone == "UTC")
        #expect(definition.timeout(for: definition.steps[0]).milliseconds == 30_000)
    }

    @Test("YAML and JSON give the same normalised source, whatever the key order")
    func canonicalSource() throws {
        let yaml = try parse("name: w\nsteps:\n  - {id: a, template: x}\n")
        let json = try DefinitionParser.parse(
            Array(#"{"steps":[{"template":"x","id":"a"}],"name":"w"}"#.utf8),
            format: .json,
            nameFromPath: "w"
        )
        #expect(yaml.source.canonicalText == json.source.canonicalText)
    }

    @Test(
        "Bad definitions are refused with a pointer to the field",
        arguments: [
            ("steps: []", "/steps"),
            ("steps:\n  - {id: a, teleport: {}}", "/steps/0/teleport"),
            ("steps:\n  - {id: a}", "/steps/0"),
            ("steps:\n  - {id: a, template: x, sleep: 1s}", "/steps/0"),
            ("steps:\n  - {id: A!, template: x}", "/steps/0/id"),
            ("steps:\n  - {id: a, template: x}\n  - {id: a, template: y}", "/steps/1/id"),
            ("steps:\n  - {id: a, needs: [ghost], template: x}", "/steps/0/needs/0"),
            ("steps:\n  - {id: a, needs: [b], template: x}\n  - {id: b, needs: [a], template: y}", "/steps/0/needs"),
            ("steps:\n  - {id: a, sleep: soon}", "/steps/0/sleep"),
            ("steps:\n  - {id: a, template: x, timeout: 5 minutes}", "/steps/0/timeout"),
            ("steps:\n  - {id: a, template: x, retry: {max_attempts: 0}}", "/steps/0/retry/max_attempts"),
            ("schedule: {cron: \"61 * * * *\"}\nsteps:\n  - {id: a, template: x}", "/schedule/cron"),
            (
                "schedule: {cron: \"* * * * *\", timezone: Mars/Olympus}\nsteps:\n  - {id: a, template: x}",
                "/schedule/timezone"
            ),
            ("steps:\n  - {id: a, template: x, when: \"steps.a.output ==\"}", "/steps/0/when"),
            ("steps:\n  - {id: a, template: \"{{ steps.b.output }}\"}\n  - {id: b, template: y}", "/steps/0/template"),
            ("steps:\n  - {id: a, template: \"{{ item }}\"}", "/steps/0/template"),
            ("steps:\n  - {id: a, template: \"{{ env.HOME }}\"}", "/steps/0/template"),
            ("steps:\n  - {id: a, template: \"{{ input.x \"}", "/steps/0/template"),
            ("steps:\n  - {id: a, http: {url: \"ftp://x\"}}", "/steps/0/http/url"),
            ("steps:\n  - {id: a, http: {method: FETCH, url: \"https://x\"}}", "/steps/0/http/method"),
            ("steps:\n  - {id: a, workflow: {}}", "/steps/0/workflow/name"),
            ("colour: blue\nsteps:\n  - {id: a, template: x}", "/colour"),
            ("name: other\nsteps:\n  - {id: a, template: x}", "/name"),
            ("concurrency: 0\nsteps:\n  - {id: a, template: x}", "/concurrency"),
        ]
    )
    func refusals(yaml: String, pointer: String) {
        #expect(pointers(yaml).contains(pointer), "expected \(pointer), got \(pointers(yaml))")
    }

    @Test("Every problem is reported at once")
    func allProblems() {
        let found = pointers("steps:\n  - {id: a, sleep: soon}\n  - {id: a, needs: [zz], template: x}")
        #expect(found.contains("/steps/0/sleep"))
        #expect(found.contains("/steps/1/id"))
        #expect(found.contains("/steps/1/needs/0"))
    }

    @Test("YAML that does not parse, or expands without bound, is refused cleanly")
    func hostileYAML() {
        #expect(throws: CaravanError.self) { try parse("steps: [unclosed", name: "w") }
        var bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...8 {
            bomb +=
                "\(Character(UnicodeScalar(97 + level)!)): &\(Character(UnicodeScalar(97 + level)!)) [*\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!)), *\(Character(UnicodeScalar(96 + level)!))]\n"
        }
        #expect(throws: CaravanError.self) { try parse(bomb + "steps: [{id: a, template: x}]", name: "w") }
    }
}
