import CaravanCore
import CaravanModels
import Foundation
import MCP

extension JSONValue {
    /// The MCP SDK's value as Caravan's JSON (binary data becomes its `data:` URL, as on the wire).
    init(mcp value: MCP.Value) {
        switch value {
        case .null: self = .null
        case .bool(let value): self = .bool(value)
        case .int(let value): self = .int(Int64(value))
        case .double(let value): self = .double(value)
        case .string(let value): self = .string(value)
        case .data(let mimeType, let data): self = .string(data.dataURLEncoded(mimeType: mimeType))
        case .array(let values): self = .array(values.map(JSONValue.init(mcp:)))
        case .object(let object): self = .object(object.mapValues(JSONValue.init(mcp:)))
        }
    }

    /// Caravan's JSON as the MCP SDK's value.
    var mcpValue: MCP.Value {
        switch self {
        case .null: .null
        case .bool(let value): .bool(value)
        case .int(let value): .int(Int(value))
        case .double(let value): .double(value)
        case .string(let value): .string(value)
        case .array(let values): .array(values.map(\.mcpValue))
        case .object(let object): .object(object.mapValues(\.mcpValue))
        }
    }
}

extension ToolSpec {
    /// An MCP tool as a tool offered to models. A schema that is not an object becomes `{"type": "object"}`.
    init(mcp tool: Tool) {
        var schema = JSONValue(mcp: tool.inputSchema)
        if schema.objectValue == nil { schema = ["type": "object"] }
        self.init(name: tool.name, description: tool.description ?? tool.title ?? "", parameters: schema)
    }
}

extension ToolOutput {
    /// A `tools/call` result: text blocks joined by newlines, other blocks described in brackets.
    init(mcp result: CallTool.Result) {
        let parts = result.content.map(Self.describe)
        self.init(
            text: parts.joined(separator: "\n"),
            isError: result.isError ?? false,
            structured: result.structuredContent.map(JSONValue.init(mcp:))
        )
    }

    static func describe(_ content: Tool.Content) -> String {
        switch content {
        case .text(let text, _, _):
            return text
        case .image(let data, let mimeType, _, _):
            return "[image: \(mimeType), \(data.count / 4 * 3) bytes]"
        case .audio(let data, let mimeType, _, _):
            return "[audio: \(mimeType), \(data.count / 4 * 3) bytes]"
        case .resource(let resource, _, _):
            if let text = resource.text { return "[resource: \(resource.uri)]\n\(text)" }
            return "[resource: \(resource.uri)\(resource.mimeType.map { ", \($0)" } ?? "")]"
        case .resourceLink(let uri, let name, _, _, let mimeType, _):
            return "[resource link: \(name) <\(uri)>\(mimeType.map { ", \($0)" } ?? "")]"
        }
    }
}
