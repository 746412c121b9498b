public import CaravanCore
import CaravanModels
public import CaravanStorage

/// A conversation that agent runs append to.
public struct ConversationThread: Sendable {
    public var id: String
    public var metadata: JSONValue
    public var activeRunID: String?
    public var messageCount: Int64
    public var createdAt: Int64
    public var updatedAt: Int64

    public var json: JSONValue {
        [
            "id": .string(id), "metadata": metadata, "active_run_id": activeRunID.map(JSONValue.string) ?? .null,
            "message_count": .int(messageCount), "created_at": .string(Clock.rfc3339(createdAt)),
            "updated_at": .string(Clock.rfc3339(updatedAt)),
        ]
    }
}

/// Threads and their messages. One run at a time holds a thread: `claim` marks it, the run's end releases it.
public final class ThreadStore: Sendable {
    private let database: any Database

    private let clock: WallClock

    public init(database: any Database, clock: WallClock = .system) {
        self.clock = clock
        self.database = database
    }

    public func create(orgID: String, metadata: JSONValue) async throws -> ConversationThread {
        let now = clock.nowMilliseconds()
        let thread = ConversationThread(
            id: Identifier.make("thr", milliseconds: now),
            metadata: metadata,
            activeRunID: nil,
            messageCount: 0,
            createdAt: now,
            updatedAt: now
        )
        try await database.withTransaction { executor in
            try await executor.execute(
                "INSERT INTO threads (id, org_id, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
                [.text(thread.id), .text(orgID), .json(metadata), .int(now)]
            )
        }
        return thread
    }

    public func get(orgID: String, id: String) async throws -> ConversationThread? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM threads WHERE org_id = $1 AND id = $2",
                [.text(orgID), .text(id)]
            )
        }.map(Self.thread)
    }

    public func delete(orgID: String, id: String) async throws -> Bool {
        try await database.withTransaction { executor in
            !(try await executor.query(
                "DELETE FROM threads WHERE org_id = $1 AND id = $2 RETURNING id",
                [.text(orgID), .text(id)]
            )).isEmpty
        }
    }

    /// A page of messages, oldest first, after position `after`.
    public func messages(
        threadID: String,
        after: Int64,
        limit: Int
    ) async throws -> [(seq: Int64, runID: String?, message: JSONValue, at: Int64)] {
        try await database.read { executor in
            try await executor.query(
                "SELECT seq, run_id, message, created_at FROM thread_messages WHERE thread_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                [.text(threadID), .int(after), .int(Int64(limit))]
            )
        }.map { row in
            (
                try row.int("seq"), try row.optionalString("run_id"), try row.json("message") ?? .null,
                try row.int("created_at")
            )
        }
    }

    /// The conversation as model messages (the newest `limit`), without what `run` itself added (a run that
    /// resumes after a crash sees the thread as it was when it started).
    func history(threadID: String, excludingRun run: String, limit: Int = 200) async throws -> [ChatMessage] {
        let rows = try await database.read { executor in
            try await executor.query(
                """
                SELECT message FROM thread_messages WHERE thread_id = $1 AND (run_id IS NULL OR run_id <> $2)
                ORDER BY seq DESC LIMIT $3
                """,
                [.text(threadID), .text(run), .int(Int64(limit))]
            )
        }
        return try rows.reversed().compactMap { row in try row.json("message").flatMap(MessageCoding.decode) }
    }

    /// Marks the thread as held by `runID`.
    /// - Throws: `conflict` when another run that has not finished holds it; `not_found`.
    public func claim(
        orgID: String,
        id: String,
        runID: String,
        isFinished: @Sendable (String) async throws -> Bool
    ) async throws {
        let now = clock.nowMilliseconds()
        try await database.withTransaction { executor in
            guard
                let row = try await executor.queryFirst(
                    "SELECT active_run_id FROM threads WHERE org_id = $1 AND id = $2"
                        + (executor.dialect == .postgres ? " FOR UPDATE" : ""),
                    [.text(orgID), .text(id)]
                )
            else { throw CaravanError.notFound("The thread") }
            if let holder = try row.optionalString("active_run_id"), holder != runID, try await !isFinished(holder) {
                throw CaravanError(
                    .conflict,
                    "The run \(holder) is still running on this thread; wait for it to finish."
                )
            }
            try await executor.execute(
                "UPDATE threads SET active_run_id = $3, updated_at = $4 WHERE org_id = $1 AND id = $2",
                [.text(orgID), .text(id), .text(runID), .int(now)]
            )
        }
    }

    /// Appends a run's messages to the thread once (a repeated call for the same run adds nothing) and releases
    /// the thread.
    func append(threadID: String, runID: String, messages: [ChatMessage]) async throws {
        let now = clock.nowMilliseconds()
        try await database.withTransaction { executor in
            let already = try await executor.queryFirst(
                "SELECT seq FROM thread_messages WHERE thread_id = $1 AND run_id = $2 LIMIT 1",
                [.text(threadID), .text(runID)]
            )
            if already == nil {
                let last =
                    try await executor.queryFirst(
                        "SELECT COALESCE(MAX(seq), 0) AS last FROM thread_messages WHERE thread_id = $1",
                        [.text(threadID)]
                    )?.int("last") ?? 0
                for (offset, message) in messages.enumerated() {
                    try await executor.execute(
                        "INSERT INTO thread_messages (thread_id, seq, run_id, message, created_at) VALUES ($1, $2, $3, $4, $5)",
                        [
                            .text(threadID), .int(last + 1 + Int64(offset)), .text(runID),
                            .json(MessageCoding.encode(message)), .int(now),
                        ]
                    )
                }
                try await executor.execute(
                    "UPDATE threads SET message_count = message_count + $2, updated_at = $3 WHERE id = $1",
                    [.text(threadID), .int(Int64(messages.count)), .int(now)]
                )
            }
            try await executor.execute(
                "UPDATE threads SET active_run_id = NULL WHERE id = $1 AND active_run_id = $2",
                [.text(threadID), .text(runID)]
            )
        }
    }

    private static func thread(_ row: SQLRow) throws -> ConversationThread {
        ConversationThread(
            id: try row.string("id"),
            metadata: try row.json("metadata") ?? .object([:]),
            activeRunID: try row.optionalString("active_run_id"),
            messageCount: try row.int("message_count"),
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
    }
}

/// Messages as stored JSON: the OpenAI shape (role, content, tool_calls, tool_call_id, name), with `parts` (text and
/// images, in order) and `developer` when a message has them.
enum MessageCoding {
    static func encode(_ message: ChatMessage) -> JSONValue {
        var object: [String: JSONValue] = [
            "role": .string(message.role.rawValue), "content": message.content.map(JSONValue.string) ?? .null,
        ]
        if !message.toolCalls.isEmpty {
            object["tool_calls"] = .array(
                message.toolCalls.map { call in
                    [
                        "id": .string(call.id), "type": "function",
                        "function": ["name": .string(call.name), "arguments": .string(call.arguments)],
                    ]
                }
            )
        }
        if let id = message.toolCallID { object["tool_call_id"] = .string(id) }
        if let name = message.name { object["name"] = .string(name) }
        if message.isDeveloper { object["developer"] = true }
        if let parts = message.parts {
            object["parts"] = .array(
                parts.map { part in
                    switch part {
                    case .text(let text): ["type": "text", "text": .string(text)]
                    case .image(let image):
                        [
                            "type": "image", "url": .string(image.url),
                            "detail": image.detail.map(JSONValue.string) ?? .null,
                        ]
                    }
                }
            )
        }
        return .object(object)
    }

    static func decode(_ json: JSONValue) -> ChatMessage? {
        guard let role = json["role"]?.stringValue.flatMap(ChatRole.init(rawValue:)) else { return nil }
        let calls = (json["tool_calls"]?.arrayValue ?? []).compactMap { call -> ToolCall? in
            guard let id = call["id"]?.stringValue, let name = call["function"]?["name"]?.stringValue else {
                return nil
            }
            return ToolCall(id: id, name: name, arguments: call["function"]?["arguments"]?.stringValue ?? "{}")
        }
        var message = ChatMessage(
            role: role,
            content: json["content"]?.stringValue,
            toolCalls: calls,
            toolCallID: json["tool_call_id"]?.stringValue,
            name: json["name"]?.stringValue
        )
        message.isDeveloper = json["developer"] == true
        message.parts = json["parts"]?.arrayValue.map { parts in
            parts.compactMap { part -> ContentPart? in
                if let text = part["text"]?.stringValue { return .text(text) }
                guard let url = part["url"]?.stringValue else { return nil }
                return .image(ImagePart(url: url, detail: part["detail"]?.stringValue))
            }
        }
        return message
    }
}
