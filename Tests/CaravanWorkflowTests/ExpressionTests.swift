import CaravanCore
import CaravanWorkflow
import Testing

private let scope: JSONValue = [
    "input": ["n": 3, "name": "ada", "tags": ["x", "y"], "empty": "", "nested": ["k": ["deep": true]]],
    "steps": ["lookup": ["output": ["status": 200, "body": ["ok": true]]]],
]

@Suite("The expression language")
struct ExpressionTests {
    static let cases: [(String, JSONValue)] = [
        ("steps.lookup.output.status == 200", JSONValue.bool(true)),
        ("steps.lookup.output.status != 200", false),
        ("input.n > 2 && input.n <= 3", true),
        ("input.n < 2 || input.name == 'ada'", true),
        ("!(input.n == 3)", false),
        ("!input.empty", true),
        ("len(input.tags) == 2", true),
        ("len(input.name)", 3),
        ("contains(input.tags, \"y\")", true),
        ("contains(input.name, 'd')", true),
        ("contains(input.nested, 'k')", true),
        ("input.tags[1]", "y"),
        ("input.tags[-1]", "y"),
        ("input[\"name\"]", "ada"),
        ("input.nested.k.deep", true),
        ("input.missing.deeper", JSONValue.null),
        ("input.missing == null", true),
        ("'b' > 'a'", true),
        ("input.n > 'a'", false),
        ("1.5 < 2", true),
        ("[1, 2]", [1, 2]),
        ("input.n == 3.0", true),
    ]

    @Test("Evaluates", arguments: cases)
    func evaluates(text: String, expected: JSONValue) throws {
        #expect(try Expression(parsing: text).evaluate(in: scope) == expected)
    }

    @Test(
        "Truthiness",
        arguments: [
            (JSONValue.null, false), (JSONValue.int(0), false), (JSONValue.string(""), false),
            (JSONValue.array([]), false),
            (JSONValue.object([:]), false), (JSONValue.bool(false), false), (JSONValue.int(1), true),
            (JSONValue.string("x"), true),
            (JSONValue.array([0]), true),
        ]
    )
    func truthiness(value: JSONValue, truthy: Bool) {
        #expect(value.isTruthy == truthy)
    }

    @Test(
        "Malformed and hostile expressions are refused",
        arguments: [
            "input.n ==", "(input.n", "len()", "exec('rm -rf /')", "input.n === 3", "'unterminated",
            String(repeating: "(", count: 200) + "1" + String(repeating: ")", count: 200),
            String(repeating: "!", count: 500) + "true",
            String(repeating: "a", count: 2_000),
        ]
    )
    func refused(text: String) {
        #expect(throws: CaravanError.self) { try Expression(parsing: text) }
    }

    @Test("Paths read are reported for validation")
    func referencedPaths() throws {
        let expression = try Expression(parsing: "steps.a.output.x > 1 && contains(input.tags, item)")
        #expect(expression.referencedPaths == [["steps", "a", "output", "x"], ["input", "tags"], ["item"]])
    }
}

@Suite("Interpolation")
struct TemplateTests {
    @Test("A lone placeholder keeps the value's type; mixed text stringifies")
    func rendering() throws {
        #expect(try Template.render("{{ input.n }}", scope: scope) == 3)
        #expect(try Template.render("{{input.tags}}", scope: scope) == ["x", "y"])
        #expect(
            try Template.render("n={{ input.n }} tags={{ input.tags }} none={{ input.missing }}", scope: scope)
                == #"n=3 tags=["x","y"] none="#
        )
        #expect(
            try Template.render(["a": ["{{ input.name }}", 1], "b": "plain"], scope: scope) == [
                "a": ["ada", 1], "b": "plain",
            ]
        )
    }

    @Test("Secrets referenced are listed")
    func secrets() throws {
        #expect(
            try Template.referencedSecrets(in: ["h": "Bearer {{ secrets.crm }}", "x": "{{ secrets.other }}"]) == [
                "crm", "other",
            ]
        )
    }
}

@Suite("Retry policy")
struct RetryPolicyTests {
    @Test("Backoff grows, is capped, and jitters within half the interval")
    func backoff() {
        let policy = RetryPolicy(maxAttempts: 10, initialInterval: .seconds(1), backoff: 2, maxInterval: .seconds(10))
        var random = SystemRandomNumberGenerator()
        for (attempt, full) in [(1, 1_000), (2, 2_000), (3, 4_000), (5, 10_000), (9, 10_000)] {
            for _ in 0..<50 {
                let delay = policy.delay(afterAttempt: attempt, random: &random).milliseconds
                #expect(delay >= Int64(full / 2) && delay <= Int64(full))
            }
        }
    }
}
