public import CaravanCore
public import CaravanModels
public import CaravanStorage

/// The responses of `POST /v1/responses` kept for `previous_response_id`: each with the messages of its turn (its
/// input and its answer), so that a conversation is the chain of turns back from a response.
public final class ResponseStore: Sendable {
    private let database: any Database
    /// The most turns a conversation is rebuilt from.
    static let maxTurns = 200

    public init(database: any Database) {
        self.database = database
    }

    /// Keeps a response: its id, the one it continues, its turn's messages and the answer as sent.
    public func save(
        orgID: String,
        id: String,
        previousID: String?,
        messages: [ChatMessage],
        response: JSONValue,
        at now: Int64
    ) async throws {
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO model_responses (org_id, id, previous_id, messages, response, created_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                [
                    .text(orgID), .text(id), .text(previousID), .json(.array(messages.map(MessageCoding.encode))),
                    .json(response), .int(now),
                ]
            )
        }
    }

    /// A stored response, as it was answered.
    public func get(orgID: String, id: String) async throws -> JSONValue? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT response FROM model_responses WHERE org_id = $1 AND id = $2",
                [.text(orgID), .text(id)]
            )
        }.flatMap { try $0.json("response") }
    }

    /// The conversation up to and including response `id`: every turn's messages, oldest first; `nil` when the
    /// organization has no such response.
    public func conversation(orgID: String, through id: String) async throws -> [ChatMessage]? {
        try await database.read { executor in
            var turns: [[ChatMessage]] = []
            var next: String? = id
            while let current = next, turns.count < Self.maxTurns {
                guard
                    let row = try await executor.queryFirst(
                        "SELECT previous_id, messages FROM model_responses WHERE org_id = $1 AND id = $2",
                        [.text(orgID), .text(current)]
                    )
                else {
                    if current == id { return nil }
                    break
                }
                turns.append((try row.json("messages")?.arrayValue ?? []).compactMap(MessageCoding.decode))
                next = try row.optionalString("previous_id")
            }
            return turns.reversed().flatMap { $0 }
        }
    }
}
