import CaravanCore

/// JSON Schemas of the API's resources, for the OpenAPI document.
enum APISchemas {
    static let error: JSONValue = ["type": ["object", "null"], "properties": [
        "code": ["type": "string"], "message": ["type": "string"], "step": ["type": ["string", "null"]],
    ]]
    static let time: JSONValue = ["type": ["string", "null"], "format": "date-time"]

    static let step: JSONValue = [
        "type": "object",
        "required": ["id", "status", "attempts"],
        "properties": [
            "id": ["type": "string"],
            "status": ["type": "string", "enum": ["pending", "running", "waiting", "succeeded", "failed", "skipped", "cancelled"]],
            "attempts": ["type": "integer"], "output": [:], "error": error, "child_run_id": ["type": ["string", "null"]],
            "started_at": time, "finished_at": time,
        ],
    ]

    static let run: JSONValue = [
        "type": "object",
        "required": ["id", "workflow", "workflow_version", "status", "input", "created_at", "steps"],
        "properties": [
            "id": ["type": "string"], "workflow": ["type": "string"], "workflow_version": ["type": "integer"],
            "status": ["type": "string", "enum": ["queued", "running", "waiting", "succeeded", "failed", "cancelled"]],
            "input": [:], "output": [:], "error": error, "parent_run_id": ["type": ["string", "null"]],
            "created_at": time, "started_at": time, "finished_at": time,
            "steps": ["type": "array", "items": step],
        ],
    ]

    static let event: JSONValue = [
        "type": "object",
        "required": ["seq", "run_id", "type", "at"],
        "properties": [
            "seq": ["type": "integer"], "run_id": ["type": "string"], "type": ["type": "string"],
            "step": ["type": ["string", "null"]], "at": time, "data": [:],
        ],
    ]

    static let workflow: JSONValue = [
        "type": "object",
        "required": ["name", "version", "latest_version", "definition"],
        "properties": [
            "name": ["type": "string"], "version": ["type": "integer"], "latest_version": ["type": "integer"],
            "description": ["type": ["string", "null"]], "definition": ["type": "object"], "archived": ["type": "boolean"],
            "created_at": time, "updated_at": time,
        ],
    ]

    static let definition: JSONValue = [
        "type": "object",
        "required": ["steps"],
        "properties": [
            "name": ["type": "string"], "description": ["type": "string"], "input": ["type": "object"],
            "defaults": ["type": "object"], "concurrency": ["type": "integer"], "schedule": ["type": "object"],
            "steps": ["type": "array", "items": ["type": "object"]], "output": [:],
        ],
    ]

    static let startRun: JSONValue = ["type": "object", "properties": ["input": [:]]]
    static let signal: JSONValue = ["type": "object", "properties": ["approved": ["type": "boolean"], "data": [:]]]

    static func list(of item: JSONValue) -> JSONValue {
        [
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": ["items": ["type": "array", "items": item], "next_cursor": ["type": ["string", "null"]]],
        ]
    }
}
