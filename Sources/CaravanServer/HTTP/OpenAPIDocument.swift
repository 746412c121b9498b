import CaravanCore
import HTTPTypes

/// Builds the OpenAPI 3.1 document from the registered endpoints.
struct OpenAPIDocument {
    let endpoints: [EndpointDescription]
    let version: String

    var json: JSONValue {
        var paths: [String: JSONValue] = [:]
        for endpoint in endpoints {
            var operation: [String: JSONValue] = [
                "operationId": .string(endpoint.operationID),
                "summary": .string(endpoint.summary),
                "tags": [.string(endpoint.tag)],
            ]
            var parameters = endpoint.path.split(separator: "/")
                .filter { $0.hasPrefix("{") && $0.hasSuffix("}") }
                .map { part -> JSONValue in
                    [
                        "name": .string(String(part.dropFirst().dropLast())), "in": "path", "required": true,
                        "schema": APISchemas.pathParameter(String(part.dropFirst().dropLast()), in: endpoint.path),
                    ]
                }
            parameters += endpoint.query.map { parameter in
                [
                    "name": .string(parameter.name), "in": "query", "required": false,
                    "description": .string(parameter.description), "schema": parameter.schema,
                ]
            }
            if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
            if let schema = endpoint.requestSchema {
                operation["requestBody"] = [
                    "required": .bool(endpoint.requestBodyRequired),
                    "content": ["application/json": ["schema": schema]],
                ]
            }
            var responses: [String: JSONValue] = [:]
            for (status, response) in endpoint.responses {
                var entry: [String: JSONValue] = ["description": .string(response.description)]
                if let schema = response.schema {
                    entry["content"] = .object([response.mediaType: ["schema": schema]])
                } else if response.mediaType != "application/json" {
                    entry["content"] = .object([response.mediaType: ["schema": ["type": "string"]]])
                }
                responses[String(status)] = .object(entry)
            }
            responses["default"] = [
                "description": "An error, as RFC 9457 problem details.",
                "content": ["application/problem+json": ["schema": ["$ref": "#/components/schemas/Problem"]]],
            ]
            operation["responses"] = .object(responses)
            if !endpoint.authenticated { operation["security"] = [] }
            var item = paths[endpoint.path]?.objectValue ?? [:]
            item[endpoint.method.rawValue.lowercased()] = .object(operation)
            paths[endpoint.path] = .object(item)
        }
        return [
            "openapi": "3.1.0",
            "info": [
                "title": "Caravan API",
                "version": .string(version),
                "description": "Durable workflows and AI agents, self-hosted.",
            ],
            "servers": [["url": "/"]],
            "paths": .object(paths),
            "components": [
                "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer"]],
                "schemas": ["Problem": Self.problemSchema],
            ],
            "security": [["bearer": []]],
        ]
    }

    static let problemSchema: JSONValue = [
        "type": "object",
        "required": ["type", "title", "status", "code", "detail"],
        "properties": [
            "type": ["type": "string"],
            "title": ["type": "string"],
            "status": ["type": "integer"],
            "code": ["type": "string"],
            "detail": ["type": "string"],
            "request_id": ["type": "string"],
            "errors": [
                "type": "array",
                "items": [
                    "type": "object",
                    "required": ["pointer", "detail"],
                    "properties": ["pointer": ["type": "string"], "detail": ["type": "string"]],
                ],
            ],
        ],
    ]
}
