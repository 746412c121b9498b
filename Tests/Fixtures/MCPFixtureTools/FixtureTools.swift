public import MCP

/// The tools every fake MCP server of the tests serves: `add {a, b}` → the sum as text; `echo {text}` → the text;
/// `fail {}` → a tool error; `slow {ms}` → "slept" after `ms` milliseconds.
public enum FixtureTools {
    public static let tools: [Tool] = [
        Tool(
            name: "add",
            description: "Adds two numbers.",
            inputSchema: [
                "type": "object", "properties": ["a": ["type": "number"], "b": ["type": "number"]],
                "required": ["a", "b"],
            ]
        ),
        Tool(
            name: "echo",
            description: "Answers its text.",
            inputSchema: ["type": "object", "properties": ["text": ["type": "string"]], "required": ["text"]]
        ),
        Tool(name: "fail", description: "Always fails.", inputSchema: ["type": "object", "properties": [:]]),
        Tool(
            name: "slow",
            description: "Answers after a delay.",
            inputSchema: ["type": "object", "properties": ["ms": ["type": "integer"]], "required": ["ms"]]
        ),
    ]

    /// Answers a call of one of `tools`, or `nil` for another name.
    public static func call(_ parameters: CallTool.Parameters) async throws -> CallTool.Result? {
        let arguments = parameters.arguments ?? [:]
        switch parameters.name {
        case "add":
            guard let a = number(arguments["a"]), let b = number(arguments["b"]) else {
                return text("add needs two numbers a and b", isError: true)
            }
            let sum = a + b
            return text(sum == sum.rounded() && abs(sum) < 1e15 ? String(Int64(sum)) : String(sum))
        case "echo":
            return text(arguments["text"]?.stringValue ?? "")
        case "fail":
            return text("this tool always fails", isError: true)
        case "slow":
            let milliseconds = Int(number(arguments["ms"]) ?? 0)
            try await Task.sleep(for: .milliseconds(milliseconds))
            return text("slept \(milliseconds) ms")
        default:
            return nil
        }
    }

    public static func number(_ value: Value?) -> Double? {
        switch value {
        case .int(let value): Double(value)
        case .double(let value): value
        case .string(let text): Double(text)
        default: nil
        }
    }

    public static func text(_ text: String, isError: Bool = false) -> CallTool.Result {
        CallTool.Result(content: [.text(text: text, annotations: nil, _meta: nil)], isError: isError)
    }
}
