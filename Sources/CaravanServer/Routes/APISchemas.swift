import CaravanAgents
import CaravanCore
import CaravanEngine
import CaravanIdentity

/// JSON Schemas of the API's resources, for the OpenAPI document.
enum APISchemas {
    static let error: JSONValue = [
        "type": ["object", "null"],
        "properties": [
            "code": ["type": "string"], "message": ["type": "string"], "step": ["type": ["string", "null"]],
        ],
    ]
    static let time: JSONValue = ["type": ["string", "null"], "format": "date-time"]

    static let step: JSONValue = [
        "type": "object",
        "required": ["id", "status", "attempts"],
        "properties": [
            "id": ["type": "string"],
            "status": [
                "type": "string",
                "enum": ["pending", "running", "waiting", "succeeded", "failed", "skipped", "cancelled"],
            ],
            "attempts": ["type": "integer"], "output": [:], "error": error,
            "child_run_id": ["type": ["string", "null"]],
            "started_at": time, "finished_at": time,
        ],
    ]

    static let run: JSONValue = [
        "type": "object",
        "required": ["id", "workflow", "workflow_version", "status", "input", "created_at", "steps"],
        "properties": [
            "id": ["type": "string"], "workflow": ["type": "string"], "workflow_version": ["type": "integer"],
            "status": [
                "type": "string", "enum": ["queued", "running", "waiting", "succeeded", "failed", "cancelled"],
            ],
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
            "description": ["type": ["string", "null"]], "definition": ["type": "object"],
            "archived": ["type": "boolean"],
            "created_at": time, "updated_at": time,
        ],
    ]

    static let definition: JSONValue = [
        "type": "object",
        "required": ["steps"],
        "additionalProperties": false,
        "properties": [
            "name": ["type": "string"], "description": ["type": "string"], "input": ["type": "object"],
            "defaults": ["type": "object"], "concurrency": ["type": "integer"], "schedule": ["type": "object"],
            "steps": ["type": "array", "items": ["type": "object"]], "output": [:],
        ],
    ]

    static let startRun: JSONValue = ["type": "object", "additionalProperties": false, "properties": ["input": [:]]]
    static let signal: JSONValue = ["type": "object", "properties": ["approved": ["type": "boolean"], "data": [:]]]
    static let startAgentRun: JSONValue = [
        "type": "object", "additionalProperties": false,
        "properties": ["input": [:], "thread": ["type": ["string", "null"], "maxLength": 100]],
    ]
    static let createThread: JSONValue = [
        "type": "object", "additionalProperties": false,
        "properties": ["metadata": ["type": "object", "description": "At most 16 KiB as JSON."]],
    ]
    static let budget: JSONValue = [
        "type": "object", "additionalProperties": false,
        "properties": [
            "cost_usd": ["type": ["number", "null"], "minimum": 0],
            "tokens": ["type": ["integer", "null"], "minimum": 0, "maximum": 999_999_999_999_999],
        ],
    ]
    static let provider: JSONValue = [
        "type": "object", "additionalProperties": false, "required": ["kind", "base_url", "models"],
        "properties": [
            "name": ["type": "string", "description": "The name in the URL, if given."],
            "kind": ["type": "string", "enum": ["openai", "anthropic"]],
            "base_url": ["type": "string", "format": "uri", "maxLength": 512, "pattern": "^[hH][tT][tT][pP][sS]?://"],
            "api_key_secret": ["type": ["string", "null"], "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"],
            "models": [
                "type": "array", "minItems": 1, "maxItems": 1000,
                "items": ["type": "string", "minLength": 1, "maxLength": 50],
            ],
            "timeout": ["type": "string", "description": "A duration from 100ms to 1h, such as 60s."],
            "max_retries": ["type": "integer", "minimum": 0, "maximum": 10],
            "prices": [
                "type": "object",
                "additionalProperties": [
                    "type": "object", "required": ["input_per_million", "output_per_million"],
                    "properties": [
                        "input_per_million": ["type": "number", "minimum": 0],
                        "output_per_million": ["type": "number", "minimum": 0],
                    ],
                ],
            ],
        ],
    ]
    static let chatCompletion: JSONValue = [
        "type": "object", "required": ["model", "messages"],
        "properties": [
            "model": [
                "type": "string", "minLength": 1, "description": "provider/model, or a model of the default provider",
            ],
            "messages": ["type": "array", "items": ["type": "object"]],
            "stream": ["type": "boolean"],
        ],
    ]
    static let modelRoute: JSONValue = [
        "type": "object", "required": ["deployments"], "additionalProperties": false,
        "properties": [
            "name": ["type": "string"],
            "deployments": [
                "type": "array", "minItems": 1, "maxItems": 16,
                "items": [
                    "type": "object", "required": ["model"],
                    "properties": [
                        "model": ["type": "string"], "weight": ["type": "integer", "minimum": 1, "maximum": 1000],
                    ],
                ],
            ],
            "fallbacks": ["type": "array", "items": ["type": "string"], "maxItems": 8],
        ],
    ]
    static let keyLimits: JSONValue = [
        "type": "object", "additionalProperties": false,
        "properties": [
            "models": ["type": ["array", "null"], "items": ["type": "string"], "maxItems": 1000],
            "monthly_cost_usd": ["type": ["number", "null"], "minimum": 0],
        ],
    ]
    static let embeddings: JSONValue = [
        "type": "object", "required": ["model", "input"], "additionalProperties": false,
        "properties": [
            "model": [
                "type": "string", "minLength": 1, "description": "provider/model, or a model of the default provider",
            ],
            "input": [
                "description": "A string, an array of strings, or token arrays",
                "oneOf": [
                    ["type": "string"],
                    ["type": "array", "items": ["type": "string"], "minItems": 1, "maxItems": 2048],
                    ["type": "array", "items": ["type": "integer"], "minItems": 1],
                    [
                        "type": "array", "items": ["type": "array", "items": ["type": "integer"]], "minItems": 1,
                        "maxItems": 2048,
                    ],
                ],
            ],
            "encoding_format": ["type": "string", "enum": ["float", "base64"]],
            "dimensions": ["type": "integer", "minimum": 1],
            "user": ["type": "string"],
        ],
    ]

    // The bodies of the identity and organization endpoints: the fields `BodyFields` allows, with its limits.
    static let roles: JSONValue = .array(Role.allCases.map { .string($0.rawValue) })
    static let email: JSONValue = ["type": "string", "maxLength": 320]
    static let password: JSONValue = ["type": "string", "maxLength": 8192]
    /// 1 to 100 characters on one line, not all blank (`IdentityService`).
    static let organizationName: JSONValue = [
        "type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^\\r\\n]*\\S[^\\r\\n]*$",
    ]
    static let signup: JSONValue = [
        "type": "object", "required": ["email", "password"], "additionalProperties": false,
        "properties": [
            "email": email, "password": password, "organization": organizationName,
            "invitation": ["type": "string", "maxLength": 256],
        ],
    ]
    static let login: JSONValue = [
        "type": "object", "required": ["email", "password"], "additionalProperties": false,
        "properties": ["email": email, "password": password, "totp": ["type": "string", "maxLength": 64]],
    ]
    static let refresh: JSONValue = [
        "type": "object", "required": ["refresh_token"], "additionalProperties": false,
        "properties": ["refresh_token": ["type": "string", "maxLength": 512]],
    ]
    static let changePassword: JSONValue = [
        "type": "object", "required": ["current_password", "new_password"], "additionalProperties": false,
        "properties": ["current_password": password, "new_password": password],
    ]
    static let verifyTOTP: JSONValue = [
        "type": "object", "required": ["code"], "additionalProperties": false,
        "properties": ["code": ["type": "string", "maxLength": 16]],
    ]
    static let acceptInvitation: JSONValue = [
        "type": "object", "required": ["token"], "additionalProperties": false,
        "properties": ["token": ["type": "string", "maxLength": 256]],
    ]
    static let createOrganization: JSONValue = [
        "type": "object", "required": ["name"], "additionalProperties": false,
        "properties": ["name": organizationName],
    ]
    static let updateOrganization: JSONValue = [
        "type": "object", "additionalProperties": false,
        "properties": [
            "name": organizationName,
            "rate_limit_per_minute": ["type": ["integer", "null"], "minimum": 0, "maximum": 999_999_999_999_999],
        ],
    ]
    static let invitation: JSONValue = [
        "type": "object", "required": ["email", "role"], "additionalProperties": false,
        "properties": ["email": email, "role": ["type": "string", "enum": roles]],
    ]
    static let memberRole: JSONValue = [
        "type": "object", "required": ["role"], "additionalProperties": false,
        "properties": ["role": ["type": "string", "enum": roles]],
    ]
    static let createAPIKey: JSONValue = [
        "type": "object", "required": ["name", "role"], "additionalProperties": false,
        "properties": [
            "name": ["type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"],
            "role": ["type": "string", "enum": roles],
            "expires_at": ["type": ["string", "null"], "format": "date-time", "maxLength": 64],
        ],
    ]

    /// The names the server accepts in a path: workflow, agent and provider names are `[a-z0-9-]{1,64}`, secret
    /// names letters, digits and `_` not starting with a digit; other segments are ids.
    static func pathParameter(_ name: String, in path: String) -> JSONValue {
        guard name == "name" else { return ["type": "string", "minLength": 1] }
        if path.hasPrefix("/v1/workflows/") || path.hasPrefix("/v1/agents/") || path.hasPrefix("/v1/providers/") {
            return ["type": "string", "pattern": "^[a-z0-9-]{1,64}$"]
        }
        if path.hasPrefix("/v1/secrets/") { return ["type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"] }
        // a signal's name
        if path.hasPrefix("/v1/runs/") { return ["type": "string", "minLength": 1, "maxLength": 64] }
        return ["type": "string", "minLength": 1]
    }

    // Query parameters.
    static let limit = QueryParameter(
        "limit",
        "Items per page, 1 to 500 (default 50).",
        schema: ["type": "integer", "minimum": 1, "maximum": 500]
    )
    static let cursor = QueryParameter(
        "cursor",
        "The `next_cursor` of the previous page.",
        schema: ["type": "string", "maxLength": 300, "pattern": "^[A-Za-z0-9+/]*={0,2}$"]
    )
    /// `limit` and `cursor`, for the lists that page with `next_cursor`.
    static let page = [limit, cursor]
    static let after = QueryParameter(
        "after",
        "Events after this position (a previous `next_cursor`, or `Last-Event-ID`).",
        schema: ["type": "integer", "minimum": 0, "maximum": .int(Int64.max)]
    )
    static let version = QueryParameter(
        "version",
        "A version number; default the latest.",
        schema: ["type": "integer", "minimum": 1]
    )
    static let wait = QueryParameter(
        "wait",
        "Answer when the run has finished, or after this long (at most 60s), e.g. 500ms or 30s.",
        schema: ["type": "string", "pattern": "^[0-9]{1,5}(ms|s)$"]
    )
    static let runFilters = [
        QueryParameter("workflow", "Only runs of this workflow.", schema: ["type": "string", "maxLength": 200]),
        QueryParameter("agent", "Only runs of this agent.", schema: ["type": "string", "maxLength": 200]),
        QueryParameter(
            "status",
            "Only runs in this state.",
            schema: ["type": "string", "enum": .array(RunStatus.allCases.map { .string($0.rawValue) })]
        ),
        QueryParameter(
            "from",
            "Only runs created at or after this time (RFC 3339).",
            schema: ["type": "string", "format": "date-time"]
        ),
        QueryParameter(
            "to",
            "Only runs created before this time (RFC 3339).",
            schema: ["type": "string", "format": "date-time"]
        ),
    ]
    static let usageQuery = [
        QueryParameter(
            "from",
            "Start (RFC 3339, inclusive); default the start of this month.",
            schema: ["type": "string", "format": "date-time"]
        ),
        QueryParameter(
            "to",
            "End (RFC 3339, exclusive); default now.",
            schema: ["type": "string", "format": "date-time"]
        ),
        QueryParameter(
            "group_by",
            "What each total is of; default model.",
            schema: ["type": "string", "enum": .array(UsageGrouping.allCases.map { .string($0.rawValue) })]
        ),
    ]
    static let modelRequestQuery =
        page + [
            QueryParameter("key_id", "Only calls made with this API key.", schema: ["type": "string"]),
            QueryParameter("model", "Only calls of this provider/model.", schema: ["type": "string"]),
            QueryParameter("run_id", "Only the calls of this run.", schema: ["type": "string"]),
            QueryParameter(
                "outcome",
                "`success`, `cached`, `failed` (every failure), or one error code such as `budget_exceeded`.",
                schema: ["type": "string"]
            ),
            QueryParameter("from", "Start (RFC 3339, inclusive).", schema: ["type": "string", "format": "date-time"]),
            QueryParameter("to", "End (RFC 3339, exclusive).", schema: ["type": "string", "format": "date-time"]),
        ]
    static let requestLogSettings: JSONValue = [
        "type": "object", "additionalProperties": false, "required": ["log_bodies"],
        "properties": [
            "log_bodies": ["type": "boolean"],
            "body_retention_days": ["type": "integer", "minimum": 1, "maximum": 365],
        ],
    ]
    static let auditQuery =
        page + [
            QueryParameter(
                "action",
                "Only entries of this action, e.g. createAPIKey.",
                schema: ["type": "string", "maxLength": 200]
            )
        ]

    static let usage: JSONValue = [
        "type": "object",
        "required": ["from", "to", "group_by", "items", "next_cursor"],
        "properties": [
            "from": ["type": "string", "format": "date-time"], "to": ["type": "string", "format": "date-time"],
            "group_by": ["type": "string"], "next_cursor": ["type": "null"],
            "items": [
                "type": "array",
                "items": [
                    "type": "object", "required": ["key", "requests", "input_tokens", "output_tokens", "cost_usd"],
                    "properties": [
                        "key": ["type": "string"], "requests": ["type": "integer"], "input_tokens": ["type": "integer"],
                        "output_tokens": ["type": "integer"], "cost_usd": ["type": "number"],
                    ],
                ],
            ],
        ],
    ]

    static func list(of item: JSONValue) -> JSONValue {
        [
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": ["items": ["type": "array", "items": item], "next_cursor": ["type": ["string", "null"]]],
        ]
    }
}
