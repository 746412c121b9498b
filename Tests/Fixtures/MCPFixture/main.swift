import CaravanMCPFixtureTools
// An MCP server over stdio for the tests of MCP tools.
//
// Tools: `add {a, b}` → the sum as text; `echo {text}` → the text; `fail {}` → a tool error; `slow {ms}` → "slept"
// after `ms` milliseconds; `env {name}` → the value of an environment variable ("" when unset); `crash {}` → the
// process exits with status 3 without answering.
//
// With `CARAVAN_MCP_FIXTURE_LOG` set, every call is appended to that file as one JSON line
// `{"tool": …, "arguments": …, "pid": …}`.
import Foundation
import MCP

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum Fixture {
    /// The shared tools, and `env {name}` → the value of an environment variable; `crash {}` → exit 3.
    static let tools: [Tool] =
        FixtureTools.tools + [
            Tool(
                name: "env",
                description: "Answers an environment variable.",
                inputSchema: ["type": "object", "properties": ["name": ["type": "string"]], "required": ["name"]]
            ),
            Tool(
                name: "crash",
                description: "Exits without answering.",
                inputSchema: ["type": "object", "properties": [:]]
            ),
        ]

    static func record(_ parameters: CallTool.Parameters) {
        guard let path = ProcessInfo.processInfo.environment["CARAVAN_MCP_FIXTURE_LOG"] else { return }
        let entry: [String: Value] = [
            "tool": .string(parameters.name), "arguments": .object(parameters.arguments ?? [:]),
            "pid": .int(Int(getpid())),
        ]
        guard var line = try? JSONEncoder().encode(entry) else { return }
        line.append(UInt8(ascii: "\n"))
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard descriptor >= 0 else { return }
        _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
    }

    static func call(_ parameters: CallTool.Parameters) async throws -> CallTool.Result {
        record(parameters)
        if let result = try await FixtureTools.call(parameters) { return result }
        switch parameters.name {
        case "env":
            let name = parameters.arguments?["name"]?.stringValue ?? ""
            return FixtureTools.text(ProcessInfo.processInfo.environment[name] ?? "")
        case "crash":
            exit(3)
        default:
            throw MCPError.invalidParams("Unknown tool: \(parameters.name)")
        }
    }
}

FileHandle.standardError.write(Data("caravan-mcp-fixture: started\n".utf8))
let server = Server(
    name: "caravan-mcp-fixture",
    version: "1.0.0",
    capabilities: .init(tools: .init(listChanged: false))
)
await server.withMethodHandler(ListTools.self) { _ in ListTools.Result(tools: Fixture.tools) }
await server.withMethodHandler(CallTool.self) { parameters in try await Fixture.call(parameters) }
try await server.start(transport: StdioTransport())
// Ends when stdin does (the client closed it, or went away).
await server.waitUntilCompleted()
