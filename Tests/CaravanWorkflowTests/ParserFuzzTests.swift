import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

@testable import CaravanWorkflow

/// Fuzzing of the parsers that take user input: workflow definitions (JSON and YAML), expressions, templates
/// (`render`, `renderURL`) and cron expressions. Inputs are valid seeds mutated (bytes flipped, inserted, deleted,
/// duplicated, spliced) and strings built from each grammar's tokens. Each input must end quickly, without a
/// crash, either parsed (and then behaving: round trips, evaluation, rendering) or refused with a `CaravanError`
/// of an expected code.
///
/// - `CARAVAN_FUZZ_SECONDS`: how long each fuzz test runs (default: 1 s, and at most 20,000 inputs).
/// - `CARAVAN_FUZZ_SEED`: the seed, to replay a run (printed in every failure).
/// - `CARAVAN_FUZZ_TRACE`: a file path; each input is written there before it runs, so that after a crash the file
///   holds the input that crashed.
@Suite("Parser fuzzing")
struct ParserFuzzTests {
    static let definitionSeeds: [String] = [
        #"{"name":"w","steps":[{"id":"a","template":"x"}]}"#,
        #"{"name":"w","description":"d","concurrency":3,"defaults":{"timeout":"5s","retry":{"max_attempts":3,"initial_interval":"1s","backoff":2,"max_interval":"1m"}},"steps":[{"id":"a","http":{"method":"GET","url":"https://example.com/{{ input.id }}?q={{ input.q }}"}},{"id":"b","needs":["a"],"when":"steps.a.output.status == 200 && len(input.tags) > 0","template":{"x":"{{ steps.a.output.body }}"}},{"id":"c","needs":["b"],"approval":{"message":"ok?","timeout":"1h"}},{"id":"d","needs":["c"],"sleep":"2s"},{"id":"e","needs":["d"],"for_each":"input.items","template":"{{ item }}"},{"id":"f","needs":["e"],"workflow":{"name":"child","input":{"a":"{{ steps.e.output }}"}}}],"output":{"r":"{{ steps.f.output }}"}}"#,
        #"{"name":"sched","schedule":{"cron":"*/5 * * * mon-fri","timezone":"Europe/Paris","catch_up":false,"input":{"k":1}},"steps":[{"id":"only","agent":{"name":"helper","input":"hi"},"timeout":"30s","retry":{"max_attempts":2}}]}"#,
        #"{"steps":[{"id":"a","template":[1,2.5,true,null,{"k":"v"}]},{"id":"b","needs":["a","a"],"template":"{{{ steps.a.output }}}"}],"input":{"type":"object"}}"#,
    ]

    static let yamlSeeds: [String] = [
        "name: w\nsteps:\n  - {id: a, template: x}\n",
        """
        name: w
        description: a workflow
        defaults:
          retry: {max_attempts: 3, initial_interval: 1s}
        steps:
          - id: fetch
            http:
              method: POST
              url: "https://api.example.com/items/{{ input.id }}"
              headers: {Authorization: "Bearer {{ secrets.token }}"}
              body: {name: "{{ input.name }}", n: 3, f: 1.5, ok: true, none: ~}
          - id: check
            needs: [fetch]
            when: "steps.fetch.output.status == 200"
            template: >
              folded {{ steps.fetch.output.body }}
          - id: wait
            needs: [check]
            sleep: 10s
        output: "{{ steps.check.output }}"
        schedule:
          cron: "@daily"
        """,
        "steps:\n- id: x\n  approval:\n    message: |\n      line one\n      line two\n",
        "anchors:\n  base: &b {id: a, template: x}\nsteps: [*b]\n",
        "%YAML 1.2\n---\nsteps: [{id: a, template: !!str 5}]\n...\n",
    ]

    static let expressionSeeds: [String] = [
        "steps.lookup.output.status == 200", "input.n > 2 && input.n <= 3", "input.n < 2 || input.name == 'ada'",
        "!(input.n == 3)", "!input.empty", "len(input.tags) == 2", "contains(input.tags, \"y\")", "input.tags[-1]",
        "input[\"name\"]", "input.nested.k.deep", "'b' > 'a'", "1.5 < 2", "[1, [2, 'x'], null, true]",
        "input.n == 3.0", "len(contains(input, input.tags[0]))", "-12e3 >= -1", "'\\'' != \"\\\"\"",
    ]

    static let expressionTokens: [String] = [
        "input", "steps", "item", "run", ".", "[", "]", "(", ")", "0", "-1", "1e400", "2.5", "'s'", "\"q\"", "'", "\"",
        "\\", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "!", ",", "len", "contains", "true", "false", "null", " ",
        "n", "tags", "_x", "é", "💥", "\u{0}", "9999999999999999999999", ".5", "e", "-",
    ]

    static let templateTokens: [String] = [
        "{{", "}}", "{{{", "}}}", "{", "}", " ", "input.x", "input.n", "input.obj", "input.list[0]", "steps.a.output",
        "item", "secrets.k", "https://", "http://h", "example.com", "/", "?", "#", "&", "=", "%", "..", ".", "@", ":",
        "text", "é", "\u{7F}", "\n", "len(input.x)", "!", "'",
    ]

    static let cronTokens: [String] = [
        "*", "/", ",", "-", " ", "0", "1", "5", "7", "12", "23", "31", "59", "60", "99", "-1", "jan", "DEC", "mon",
        "sun",
        "sat", "foo", "@daily", "@hourly", "@yearly", "@weekly", "@reboot", "\t", "9223372036854775807", "+3", "?", "L",
    ]

    static let scope: JSONValue = [
        "input": [
            "x": "va lue/../?&=#%", "n": 3, "obj": ["k": [1, 2]], "list": ["a", "b"], "empty": "", "tags": ["x", "y"],
            "nested": ["k": ["deep": true]], "name": "ada", "dot": ".", "dots": "..", "host": "evil.com/x?",
        ],
        "steps": ["a": ["output": ["big": .string(String(repeating: "z", count: 300))], "status": "succeeded"]],
        "item": 7,
        "run": ["id": "run_1"],
    ]

    @Test("Workflow definitions in JSON: parsed or refused, and a parsed one re-parses from its stored source")
    func definitionsJSON() async {
        var fuzzer = Fuzzer(
            name: "definitions-json",
            seeds: Self.definitionSeeds,
            tokens: [
                "{", "}", "[", "]", ",", ":", "\"", "\"id\"", "\"needs\"", "\"steps\"", "\"when\"", "\"template\"",
                "\"sleep\"",
                "\"approval\"", "\"workflow\"", "\"http\"", "\"retry\"", "\"max_attempts\"", "{{", "}}", "null",
                "1e999", "-0",
                "\"\\ud800\"", "\"\\u0000\"", "true",
            ]
        )
        await fuzzer.run { fuzzer, bytes in
            do throws(CaravanError) {
                let definition = try DefinitionParser.parse(bytes, format: .json, nameFromPath: "w")
                fuzzer.checkDefinitionRoundTrip(definition, input: bytes)
            } catch {
                fuzzer.expectCode(error, in: [.invalidJSON, .validationFailed], input: bytes)
            }
        }
    }

    @Test("Workflow definitions in YAML: parsed or refused, and a parsed one re-parses from its stored source")
    func definitionsYAML() async {
        var fuzzer = Fuzzer(
            name: "definitions-yaml",
            seeds: Self.yamlSeeds + Self.definitionSeeds,
            tokens: [
                "\n", "  ", "- ", ": ", "{", "}", "[", "]", ",", "&a ", "*a", "!!binary ", "!!int ", "!!float ", "? ",
                "|", ">",
                "---\n", "...\n", "%TAG ! tag:x:\n", "#", "'", "\"", "~", ".inf", "-.nan", "0x1F", "0o17", "1_000",
                "<<: ",
                "id: a", "steps:", "needs: [", "template: ", "\t", "\u{FEFF}", "\\x00",
            ]
        )
        await fuzzer.run { fuzzer, bytes in
            do throws(CaravanError) {
                let definition = try DefinitionParser.parse(bytes, format: .yaml, nameFromPath: "w")
                fuzzer.checkDefinitionRoundTrip(definition, input: bytes)
            } catch {
                fuzzer.expectCode(error, in: [.invalidJSON, .validationFailed, .payloadTooLarge], input: bytes)
            }
        }
    }

    @Test("Expressions: parsed or refused; a parsed one evaluates, within the length and depth limits")
    func expressions() async {
        var fuzzer = Fuzzer(name: "expressions", seeds: Self.expressionSeeds, tokens: Self.expressionTokens)
        await fuzzer.run { fuzzer, bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            do throws(CaravanError) {
                let expression = try Expression(parsing: text)
                if text.count > Expression.maxLength {
                    fuzzer.fail("an expression over the length limit parsed", input: bytes)
                }
                _ = expression.evaluate(in: Self.scope)
                _ = expression.evaluate(in: .null)
                _ = expression.referencedPaths
            } catch {
                fuzzer.expectCode(error, in: [.validationFailed], input: bytes)
            }
        }
    }

    @Test("Templates: parsed or refused; a parsed one renders within its limit, and URLs keep their structure")
    func templates() async {
        var fuzzer = Fuzzer(
            name: "templates",
            seeds: [
                "https://example.com/a/{{ input.x }}?q={{ input.x }}#{{ input.n }}", "{{ input.obj }}",
                "x{{{ input.x }}}y",
                "{{ input.list[1] }} and {{ steps.a.output.big }}", "{{ item }}", "{{ input.host }}",
                "{{input.x}}{{input.x}}",
            ],
            tokens: Self.templateTokens
        )
        await fuzzer.run { fuzzer, bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            do throws(CaravanError) {
                _ = try Template.parse(text)
            } catch {
                fuzzer.expectCode(error, in: [.validationFailed], input: bytes)
                return
            }
            let limit = Int(bytes.count % 7) * 100
            do throws(CaravanError) {
                let rendered = try Template.render(
                    .object(["t": .string(text), "u": .string(text)]),
                    scope: Self.scope,
                    limit: limit,
                    urlFields: ["u"]
                )
                if rendered.canonicalText.utf8.count > 2 * limit + 64 {
                    fuzzer.fail(
                        "a render passed its limit of \(limit): \(rendered.canonicalText.utf8.count) bytes",
                        input: bytes
                    )
                }
            } catch {
                fuzzer.expectCode(error, in: [.validationFailed, .outputTooLarge], input: bytes)
            }
            do throws(CaravanError) {
                _ = try Template.renderURL(text, scope: Self.scope)
                _ = try Template.referencedPaths(in: .string(text))
            } catch {
                fuzzer.expectCode(error, in: [.validationFailed], input: bytes)
            }
        }
    }

    @Test("URL templates: no interpolated value changes the URL's structure")
    func urlStructure() async {
        var fuzzer = Fuzzer(
            name: "url-values",
            seeds: ["a", "../", "x?y=1&z#f", "%2F", "é /", ".", ".."],
            tokens: Self.templateTokens
        )
        await fuzzer.run { fuzzer, bytes in
            let value = String(decoding: bytes, as: UTF8.self)
            let scope: JSONValue = ["input": ["v": .string(value)]]
            let template = "https://example.com/a/{{ input.v }}/b?q={{ input.v }}&r=1#{{ input.v }}"
            guard let url = try? Template.renderURL(template, scope: scope) else {
                return fuzzer.fail("a URL template with a path, query and fragment value was refused", input: bytes)
            }
            let prefix = "https://example.com/a/"
            guard url.hasPrefix(prefix) else {
                return fuzzer.fail("the value changed the URL's base: \(url)", input: bytes)
            }
            let rest = url.dropFirst(prefix.count)
            let beforeQuery = rest.prefix { $0 != "?" }
            let segments = beforeQuery.split(separator: "/", omittingEmptySubsequences: false)
            if segments.count != 2 || segments[1] != "b" || segments[0] == "." || segments[0] == ".." {
                fuzzer.fail("the value changed the URL's path: \(url)", input: bytes)
            }
            if url.filter({ $0 == "#" }).count != 1 {
                fuzzer.fail("the value changed the URL's fragment: \(url)", input: bytes)
            }
            let query = url.split(separator: "?", maxSplits: 1).last?.prefix { $0 != "#" } ?? ""
            if query.split(separator: "&").count != 2 || !query.hasSuffix("&r=1") {
                fuzzer.fail("the value changed the URL's query: \(url)", input: bytes)
            }
            // A value in the host is refused unless it is a plain host.
            if let host = try? Template.renderURL("https://{{ input.v }}/p", scope: scope),
                host.dropFirst("https://".count).prefix(while: { $0 != "/" }).contains(where: { "?#@\\".contains($0) })
            {
                fuzzer.fail("a value changed the URL's host: \(host)", input: bytes)
            }
        }
    }

    @Test("Cron expressions: parsed or refused; a parsed one gives a later time, or none")
    func cron() async {
        var fuzzer = Fuzzer(
            name: "cron",
            seeds: [
                "*/5 * * * *", "0 0 31 2 *", "0 9-17 * * mon-fri", "@daily", "15,45 */2 1-15/3 jan-jun 0,7",
                "59 23 29 2 *",
                "0 0 * * 7/2",
            ],
            tokens: Self.cronTokens,
            maxCases: 3_000
        )
        let zones = [
            TimeZone(identifier: "UTC"), TimeZone(identifier: "Europe/Paris"),
            TimeZone(identifier: "Australia/Lord_Howe"),
        ]
        .compactMap { $0 }
        await fuzzer.run { fuzzer, bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            do throws(CaravanError) {
                let cron = try CronExpression(parsing: text)
                let after = Date(timeIntervalSince1970: TimeInterval(1_700_000_000 + Int(bytes.count) * 86_311))
                if let next = cron.next(after: after, in: zones[bytes.count % zones.count]) {
                    if next <= after { fuzzer.fail("next(after:) went back: \(next) after \(after)", input: bytes) }
                    if Int(next.timeIntervalSince1970) % 60 != 0 {
                        fuzzer.fail("next(after:) is not on a minute: \(next)", input: bytes)
                    }
                }
            } catch {
                fuzzer.expectCode(error, in: [.validationFailed], input: bytes)
            }
        }
    }

    // MARK: Regressions found by fuzzing

    @Test(
        "Expressions nested up to the length limit are refused or parsed, not a crash",
        arguments: [
            ("[", "]"), ("(", ")"), ("!", ""), ("len(", ")"), ("[[1,", "]]"), ("!(", ")"), ("contains(1,", ")"),
        ]
    )
    func deepExpressions(open: String, close: String) {
        for count in [10, 100, (Expression.maxLength - 1) / (open.count + close.count)] {
            let text = String(repeating: open, count: count) + "1" + String(repeating: close, count: count)
            do throws(CaravanError) {
                _ = try Expression(parsing: text).evaluate(in: Self.scope)
            } catch {
                #expect(error.code == .validationFailed)
            }
        }
    }

    @Test(
        "Deeply nested YAML within the body limit is refused, not a crash",
        arguments: [
            ("[", "]", 200), ("[", "", 20_000), ("[", "]", 20_000), ("[", "]", 400_000), ("{a: ", "}", 20_000),
            ("{a: ", "}", 150_000), ("- ", "", 20_000), ("- ", "", 300_000), ("? ", "", 20_000), ("&a [", "]", 20_000),
        ]
    )
    func deepYAML(open: String, close: String, depth: Int) {
        let text = "steps: " + String(repeating: open, count: depth) + String(repeating: close, count: depth)
        do throws(CaravanError) {
            _ = try DefinitionParser.parse(Array(text.utf8), format: .yaml, nameFromPath: "w")
            Issue.record("a YAML document nested \(depth) deep was accepted")
        } catch {
            #expect([.invalidJSON, .validationFailed, .payloadTooLarge].contains(error.code), "\(error)")
        }
    }
}

extension Fuzzer {
    /// A definition that parsed is stored as its `source` and parsed again when loaded: it must give the same.
    mutating func checkDefinitionRoundTrip(_ definition: WorkflowDefinition, input: [UInt8]) {
        do throws(CaravanError) {
            // A whole-number double (YAML `2.0`) is written `2` and comes back an integer: compare from the first trip on.
            let again = try DefinitionParser.parse(
                definition.source.canonicalBytes,
                format: .json,
                nameFromPath: definition.name
            )
            let third = try DefinitionParser.parse(
                again.source.canonicalBytes,
                format: .json,
                nameFromPath: definition.name
            )
            if again.source.canonicalText != definition.source.canonicalText {
                fail(
                    "the stored source re-parses to another source: \(definition.source.canonicalText) → \(again.source.canonicalText)",
                    input: input
                )
            } else if third != again {
                fail(
                    "the stored source re-parses to another definition: \(definition.source.canonicalText)",
                    input: input
                )
            }
        } catch {
            fail(
                "the stored source of a valid definition is refused: \(error)\n\(definition.source.canonicalText)",
                input: input
            )
        }
    }
}

/// A small mutation fuzzer: time- and count-bounded, seeded, reporting the input of each failure.
struct Fuzzer {
    let name: String
    let seeds: [[UInt8]]
    let tokens: [[UInt8]]
    let seed: UInt64
    let seconds: Double
    let maxCases: Int
    let tracePath: String?
    var rng: SplitMix64
    var failures = 0
    var cases = 0

    static func environment(_ name: String) -> String? { ProcessInfo.processInfo.environment[name] }

    init(name: String, seeds: [String], tokens: [String], maxCases: Int = 20_000) {
        self.name = name
        self.seeds = seeds.map { Array($0.utf8) }
        self.tokens = tokens.map { Array($0.utf8) }
        seed = Self.environment("CARAVAN_FUZZ_SEED").flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        let configured = Self.environment("CARAVAN_FUZZ_SECONDS").flatMap(Double.init)
        seconds = configured ?? 1
        self.maxCases = configured == nil ? maxCases : .max
        tracePath = Self.environment("CARAVAN_FUZZ_TRACE")
        rng = SplitMix64(seed: seed)
    }

    /// Runs `body` on seeds, mutated seeds and token strings until the time or the count is spent; fails any
    /// input that takes longer than a second. It yields its thread every few inputs: the tests beside it share the
    /// cooperative threads (two on two cores), and a loop that never yields would starve their servers.
    mutating func run(_ body: (inout Fuzzer, [UInt8]) -> Void) async {
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(Int(seconds * 1_000))
        var inputs = seeds
        while cases < maxCases && clock.now < deadline && failures < 5 {
            let input = cases < inputs.count ? inputs[cases] : next()
            if let tracePath { FileManager.default.createFile(atPath: tracePath, contents: Data(input)) }
            let started = clock.now
            body(&self, input)
            let took = clock.now - started
            if took > .seconds(1) { fail("one input took \(took)", input: input) }
            cases += 1
            if cases % 16 == 0 { await Task.yield() }
            if cases == inputs.count { inputs = [] }
        }
        print("fuzz \(name): \(cases) inputs, seed \(seed)")
    }

    /// A new input: a mutated seed (one to four mutations), a splice, or a string of tokens.
    mutating func next() -> [UInt8] {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0, 1:
            // tokens is not empty
            return (0..<Int.random(in: 1...40, using: &rng)).flatMap { _ in tokens.randomElement(using: &rng)! }
        default:
            var bytes = seeds.randomElement(using: &rng)!  // seeds is not empty
            for _ in 0..<Int.random(in: 1...4, using: &rng) { bytes = mutate(bytes) }
            return bytes
        }
    }

    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        let position = Int.random(in: 0...bytes.count, using: &rng)
        switch Int.random(in: 0..<9, using: &rng) {
        case 0 where !bytes.isEmpty:  // flip a bit
            let index = min(position, bytes.count - 1)
            bytes[index] ^= 1 << UInt8.random(in: 0...7, using: &rng)
        case 1 where !bytes.isEmpty:  // an interesting byte
            let index = min(position, bytes.count - 1)
            bytes[index] =
                Array("{}[]\"\\:,0-e.\n #&*|>'!%?/\u{7F}".utf8).randomElement(using: &rng)!
                ^ (Bool.random(using: &rng) ? 0 : 0x80)
        case 2:  // insert a token
            bytes.insert(contentsOf: tokens.randomElement(using: &rng)!, at: position)
        case 3 where !bytes.isEmpty:  // delete a range
            let end = min(bytes.count, position + Int.random(in: 1...8, using: &rng))
            bytes.removeSubrange(min(position, bytes.count - 1)..<end)
        case 4 where !bytes.isEmpty:  // duplicate a range
            let start = min(position, bytes.count - 1)
            let end = min(bytes.count, start + Int.random(in: 1...32, using: &rng))
            let chunk = Array(bytes[start..<end])
            bytes.insert(contentsOf: chunk, at: Int.random(in: 0...bytes.count, using: &rng))
        case 5:  // splice with another seed
            let other = seeds.randomElement(using: &rng)!
            bytes = Array(bytes[..<position]) + other[Int.random(in: 0...other.count, using: &rng)...]
        case 6:  // a token repeated: deep nesting, long runs
            let token = tokens.randomElement(using: &rng)!
            let times =
                Bool.random(using: &rng)
                ? Int.random(in: 10...300, using: &rng) : Int.random(in: 300...3_000, using: &rng)
            bytes.insert(contentsOf: Array(repeating: token, count: times).joined(), at: position)
        case 7:  // truncate
            bytes = Array(bytes[..<position])
        default:  // a random byte
            bytes.insert(UInt8.random(in: 0...255, using: &rng), at: position)
        }
        return bytes
    }

    mutating func fail(_ message: String, input: [UInt8]) {
        failures += 1
        let text = String(decoding: input, as: UTF8.self)
        Issue.record(
            "\(name): \(message)\ninput (\(input.count) bytes): \(text.debugDescription)\nbytes: \(input)\nCARAVAN_FUZZ_SEED=\(seed)"
        )
    }

    mutating func expectCode(_ error: CaravanError, in codes: Set<CaravanError.Code>, input: [UInt8]) {
        if !codes.contains(error.code) {
            fail("refused with code \(error.code), expected one of \(codes.map(\.rawValue).sorted())", input: input)
        }
        if error.detail.isEmpty { fail("refused with no detail", input: input) }
        for field in error.fieldErrors where !(field.pointer.isEmpty || field.pointer.hasPrefix("/")) {
            fail("a field error's pointer '\(field.pointer)' is not a JSON pointer", input: input)
        }
    }
}
