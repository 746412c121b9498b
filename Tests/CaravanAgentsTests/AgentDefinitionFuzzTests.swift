import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

@testable import CaravanAgents

/// Fuzzing of agent definitions (`AgentDefinition.validate`) and of their Mustache instructions
/// (`renderInstructions`): mutated definitions and instructions built from Mustache tokens must end quickly, without
/// a crash, validated or refused with `validation_failed`; valid instructions render within their limit or fail
/// with `output_too_large`.
///
/// `CARAVAN_FUZZ_SECONDS` (default 1 s, at most 20,000 inputs), `CARAVAN_FUZZ_SEED`, `CARAVAN_FUZZ_TRACE`: as in
/// `ParserFuzzTests`.
@Suite("Agent definition fuzzing")
struct AgentDefinitionFuzzTests {
    static let seeds: [String] = [
        #"{"name":"helper","model":"local/m1","instructions":"You help with {{ input.topic }}. <Be brief>."}"#,
        #"{"name":"a","description":"d","model":["openai/gpt-4o","claude/haiku"],"instructions":"{{#input.items}}- {{.}}\n{{/input.items}}{{^input.items}}none{{/input.items}}","tools":[{"http":{"name":"lookup","description":"Look up","method":"POST","url":"https://example.com/x?c={{ args.city }}","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}}},{"mcp":{"name":"calc","url":"https://mcp.example.com/mcp"}},{"agent":{"name":"other"}},{"workflow":{"name":"wf"}}],"max_turns":5,"max_tokens":100,"temperature":0.5,"budget":{"tokens":1000,"cost_usd":0.5},"output_schema":{"type":"object"},"input":{"type":"object"},"timeout":"10m"}"#,
        #"{"model":"x/y","instructions":"{{{input.raw}}} {{&input.raw}} {{! comment }} {{=<% %>=}} <% input.a %>"}"#,
    ]
    static let tokens: [String] = [
        "{{", "}}", "{{{", "}}}", "{{#", "{{/", "{{^", "{{>", "{{!", "{{&", "{{=", "=}}", "<%", "%>", "input", ".",
        "items",
        "topic", "raw", " ", "\n", "x", "{", "}", "\"", ",", ":", "[", "]", "\"tools\":", "\"http\":", "\"model\":",
        "null",
        "{{% CONTENT_TYPE: TEXT}}", "{{%", "é", "\u{0}",
    ]
    static let inputs: [JSONValue] = [
        ["topic": "cities", "items": [1, 2, 3], "raw": "<b>"],
        [
            "items": .array(Array(repeating: .string(String(repeating: "x", count: 50)), count: 200)),
            "raw": ["a": ["b": "c"]],
        ],
        .null, "just text", ["items": true, "topic": ["nested": [[]]]],
    ]

    @Test("Agent definitions: validated or refused; valid instructions render within their limit")
    func definitions() async {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["CARAVAN_FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        let configured = environment["CARAVAN_FUZZ_SECONDS"].flatMap(Double.init)
        let maxCases = configured == nil ? 20_000 : Int.max
        let tracePath = environment["CARAVAN_FUZZ_TRACE"]
        var rng = SplitMix64(seed: seed)
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(Int((configured ?? 1) * 1_000))
        let seedBytes = Self.seeds.map { Array($0.utf8) }
        let tokenBytes = Self.tokens.map { Array($0.utf8) }
        var cases = 0
        var failures = 0
        func fail(_ message: String, _ input: [UInt8]) {
            failures += 1
            Issue.record(
                "agents: \(message)\ninput: \(String(decoding: input, as: UTF8.self).debugDescription)\nCARAVAN_FUZZ_SEED=\(seed)"
            )
        }
        while cases < maxCases && clock.now < deadline && failures < 5 {
            var bytes = seedBytes[cases % seedBytes.count]
            if cases >= seedBytes.count {
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let position = Int.random(in: 0...bytes.count, using: &rng)
                    switch Int.random(in: 0..<5, using: &rng) {
                    case 0 where !bytes.isEmpty:
                        bytes[min(position, bytes.count - 1)] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                    // tokens is not empty
                    case 1, 2: bytes.insert(contentsOf: tokenBytes.randomElement(using: &rng)!, at: position)
                    case 3 where !bytes.isEmpty:
                        bytes.removeSubrange(
                            min(
                                position,
                                bytes.count - 1
                            )..<min(bytes.count, position + Int.random(in: 1...8, using: &rng))
                        )
                    default:
                        let token = tokenBytes.randomElement(using: &rng)!  // tokens is not empty
                        let times =
                            Bool.random(using: &rng)
                            ? Int.random(in: 5...100, using: &rng) : Int.random(in: 100...3_000, using: &rng)
                        bytes.insert(contentsOf: Array(repeating: token, count: times).joined(), at: position)
                    }
                }
            }
            // Every other case puts the mutation into the instructions alone, where Mustache parses it.
            let input: [UInt8]
            if cases >= seedBytes.count, cases % 2 == 1 {
                let instructions = (0..<Int.random(in: 1...30, using: &rng)).flatMap { _ in
                    tokenBytes.randomElement(using: &rng)!
                }
                let document: JSONValue = [
                    "model": "local/m1", "instructions": .string(String(decoding: instructions, as: UTF8.self)),
                ]
                input = document.canonicalBytes
            } else {
                input = bytes
            }
            if let tracePath { FileManager.default.createFile(atPath: tracePath, contents: Data(input)) }
            let started = clock.now
            do throws(CaravanError) {
                let document = try JSONValue(parsing: input)
                let definition = try AgentDefinition.validate(document, nameFromPath: "helper")
                let limit = [0, 64, 1_000, 100_000][cases % 4]
                do throws(Failure) {
                    let text = try definition.renderInstructions(
                        input: Self.inputs[cases % Self.inputs.count],
                        limit: limit
                    )
                    if text.utf8.count > max(limit, definition.instructions.utf8.count) {
                        fail("instructions rendered to \(text.utf8.count) bytes over a limit of \(limit)", input)
                    }
                } catch {
                    if error.code.rawValue != CaravanError.Code.outputTooLarge.rawValue {
                        fail("rendering failed with \(error.code)", input)
                    }
                }
                // The stored source validates again to the same source.
                let again = try AgentDefinition.validate(definition.source, nameFromPath: "helper")
                if again.source != definition.source { fail("the stored source validates to another source", input) }
            } catch {
                if error.code != .invalidJSON && error.code != .validationFailed {
                    fail("refused with \(error.code)", input)
                }
                for field in error.fieldErrors where !(field.pointer.isEmpty || field.pointer.hasPrefix("/")) {
                    fail("a field error's pointer '\(field.pointer)' is not a JSON pointer", input)
                }
            }
            if clock.now - started > .seconds(1) { fail("one input took \(clock.now - started)", input) }
            cases += 1
            if cases % 16 == 0 { await Task.yield() }  // the tests beside it share the cooperative threads
        }
        print("fuzz agent definitions: \(cases) inputs, seed \(seed)")
    }

    /// Found by fuzzing: 1,000 nested sections (6 KB of instructions, far below the 100,000-byte limit) overflowed
    /// the stack in swift-mustache's recursive parser and crashed the process from `PUT /v1/agents/{name}`.
    @Test(
        "Deeply nested Mustache sections within the instructions' limit are refused or rendered, not a crash",
        arguments: [
            ("{{#a}}", "{{/a}}", 64), ("{{#a}}", "{{/a}}", 1_000), ("{{#a}}", "{{/a}}", 8_000), ("{{#a}}", "", 16_000),
            ("{{^a}}", "{{/a}}", 8_000), ("{{$a}}", "{{/a}}", 8_000), ("{{#input}}", "{{/input}}", 5_000),
            ("{{=<% %>=}}<%#a%>", "<%/a%>", 1), ("<%#a%>", "<%/a%>", 5_000), ("{{ #a }}", "{{ /a }}", 5_000),
        ]
    )
    func deepSections(open: String, close: String, depth: Int) {
        let prefix = open.hasPrefix("<%") ? "{{=<% %>=}}" : ""
        let instructions = prefix + String(repeating: open, count: depth) + "x" + String(repeating: close, count: depth)
        let document: JSONValue = ["model": "local/m1", "instructions": .string(instructions)]
        #expect(
            (AgentDefinition.MustacheShape.of(instructions).depth > AgentDefinition.maxSectionDepth) == (depth > 64)
        )
        do throws(CaravanError) {
            let definition = try AgentDefinition.validate(document, nameFromPath: "helper")
            #expect(depth <= AgentDefinition.maxSectionDepth)
            do throws(Failure) {
                _ = try definition.renderInstructions(input: ["a": true], limit: 100_000)
            } catch {
                #expect(error.code.rawValue == CaravanError.Code.outputTooLarge.rawValue)
            }
        } catch {
            #expect(error.code == .validationFailed, "\(error)")
            #expect(error.fieldErrors.contains { $0.pointer == "/instructions" })
        }
    }

    @Test("A change of delimiters that the depth count cannot follow is refused")
    func unfollowedDelimiters() {
        typealias Shape = AgentDefinition.MustacheShape
        #expect(Shape.of("{{=<% }}=}}<%#a%>x<%/a%>") == .unfollowed)
        #expect(Shape.of("{{=<= =>=}}<=#a=><=#b=>x<=/b=><=/a=>") == Shape(depth: 2, tags: 5))
        #expect(Shape.of("{{#a}}{{/a}}{{#b}}{{#c}}{{/c}}{{/b}}{{{ raw }}}{{! #x }}") == Shape(depth: 2, tags: 8))
    }

    /// Found by fuzzing: swift-mustache measures the rest of the template at every tag, so 3,000 pragmas in 72 KB
    /// of instructions took over a second to parse, on every `PUT` and again on every run. The count of tags is
    /// bounded before the parser sees them, and a valid template is parsed once, when it is validated.
    @Test(
        "Instructions with more tags than the parser handles cheaply are refused by count",
        arguments: [1, 256, 257, 3_000]
    )
    func manyTags(count: Int) {
        let instructions =
            "You help with" + String(repeating: " {{% CONTENT_TYPE: TEXT}}{{ input.topic }}", count: count / 2)
            + String(repeating: " {{ input.topic }}", count: count % 2)
        let document: JSONValue = ["model": "local/m1", "instructions": .string(instructions)]
        do throws(CaravanError) {
            let definition = try AgentDefinition.validate(document, nameFromPath: "helper")
            #expect(count <= AgentDefinition.maxTags)
            let text = try? definition.renderInstructions(input: ["topic": "maps"], limit: 100_000)
            #expect(text == "You help with" + String(repeating: " maps", count: count / 2 + count % 2))
        } catch {
            #expect(count > AgentDefinition.maxTags)
            #expect(error.fieldErrors.map(\.pointer) == ["/instructions"])
            #expect(error.fieldErrors.first?.detail.contains("\(count) Mustache tags") == true)
        }
    }
}
