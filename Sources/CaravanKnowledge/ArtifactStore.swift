public import CaravanAgents
public import CaravanCore
public import CaravanStorage
import Crypto
import Foundation

/// A file a run produced (a `document` step's report, proposal or invoice): kept with its run, deleted with it when
/// the run passes the retention period, downloadable with its content type.
public struct Artifact: Sendable {
    public var id: String
    public var runID: String
    public var step: String
    public var name: String
    public var contentType: String
    public var size: Int
    public var sha256: String
    public var createdAt: Int64

    public var json: JSONValue {
        [
            "id": .string(id), "run_id": .string(runID), "step": .string(step), "name": .string(name),
            "content_type": .string(contentType), "size": .int(Int64(size)), "sha256": .string(sha256),
            "url": .string("/v1/artifacts/\(id)"), "created_at": .string(Clock.rfc3339(createdAt)),
        ]
    }
}

/// A stored Mustache template for `document` steps: Markdown or HTML.
public struct DocumentTemplate: Sendable {
    public enum Format: String, Sendable, CaseIterable {
        case markdown, html
    }

    public var name: String
    public var format: Format
    public var source: String
    public var description: String?
    public var createdAt: Int64
    public var updatedAt: Int64

    public var json: JSONValue {
        [
            "name": .string(name), "format": .string(format.rawValue), "source": .string(source),
            "description": description.map(JSONValue.string) ?? .null,
            "created_at": .string(Clock.rfc3339(createdAt)), "updated_at": .string(Clock.rfc3339(updatedAt)),
        ]
    }
}

/// The organizations' document templates and the artifacts their runs produced.
public final class ArtifactStore: Sendable {
    let database: any Database
    let clock: WallClock

    /// The most one artifact may hold.
    public static let maxArtifactBytes = 16 << 20
    /// The most a template's source may hold, and the most tags it may have (parsing costs tags × length).
    public static let maxTemplateBytes = 100_000
    public static let maxTemplateTags = 1_000
    /// The deepest nesting of sections a template may have.
    public static let maxTemplateDepth = 64

    public init(database: any Database, clock: WallClock = .system) {
        self.database = database
        self.clock = clock
    }

    // MARK: Templates

    /// Parses a template's source as its format renders it.
    /// - Throws: `validation_failed` at `pointer`.
    public static func parse(
        _ source: String,
        format: DocumentTemplate.Format,
        at pointer: String
    )
        throws(CaravanError) -> BoundedMustache
    {
        guard source.utf8.count <= maxTemplateBytes else {
            throw CaravanError.validation(pointer, "must be at most \(maxTemplateBytes) bytes")
        }
        return try BoundedMustache(
            source,
            escapesHTML: format == .html,
            maxDepth: maxTemplateDepth,
            maxTags: maxTemplateTags,
            at: pointer
        )
    }

    /// Creates or replaces a template. - Returns: it, and whether it is new.
    public func putTemplate(
        orgID: String,
        name: String,
        format: DocumentTemplate.Format,
        source: String,
        description: String?
    ) async throws -> (DocumentTemplate, Bool) {
        _ = try Self.parse(source, format: format, at: "/source")
        let now = clock.nowMilliseconds()
        let created = try await database.withTransaction { executor in
            try await executor.query(
                """
                INSERT INTO document_templates (org_id, name, format, source, description, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $6)
                ON CONFLICT (org_id, name) DO UPDATE SET format = $3, source = $4, description = $5, updated_at = $6
                RETURNING created_at
                """,
                [
                    .text(orgID), .text(name), .text(format.rawValue), .text(source),
                    description.map(SQLValue.text) ?? .null, .int(now),
                ]
            ).first?.int("created_at") == now
        }
        guard let template = try await template(orgID: orgID, name: name) else {
            throw CaravanError(.internal, "The template was not stored.")
        }
        return (template, created)
    }

    public func template(orgID: String, name: String) async throws -> DocumentTemplate? {
        try await database.read { executor in
            try await executor.queryFirst(
                "SELECT * FROM document_templates WHERE org_id = $1 AND name = $2",
                [.text(orgID), .text(name)]
            ).map(Self.template)
        }
    }

    public func templates(orgID: String, after cursor: String?, limit: Int) async throws -> [DocumentTemplate] {
        try await database.read { executor in
            try await executor.query(
                "SELECT * FROM document_templates WHERE org_id = $1 AND name > $2 ORDER BY name LIMIT $3",
                [.text(orgID), .text(cursor ?? ""), .int(Int64(limit))]
            ).map(Self.template)
        }
    }

    public func deleteTemplate(orgID: String, name: String) async throws -> Bool {
        try await database.withTransaction { executor in
            !(try await executor.query(
                "DELETE FROM document_templates WHERE org_id = $1 AND name = $2 RETURNING name",
                [.text(orgID), .text(name)]
            )).isEmpty
        }
    }

    // MARK: Artifacts

    /// Stores what step `step` of run `runID` produced. Its id follows from the run, the step and the name, so an
    /// attempt run again after a crash replaces what the first stored rather than adding another.
    public func put(
        orgID: String,
        runID: String,
        step: String,
        name: String,
        contentType: String,
        content: [UInt8]
    ) async throws -> Artifact {
        let key = SHA256.hash(data: Data("\(runID)\n\(step)\n\(name)".utf8)).prefix(16)
        let artifact = Artifact(
            id: "art_" + key.map { String(format: "%02x", $0) }.joined(),
            runID: runID,
            step: step,
            name: name,
            contentType: contentType,
            size: content.count,
            sha256: SHA256.hash(data: Data(content)).map { String(format: "%02x", $0) }.joined(),
            createdAt: clock.nowMilliseconds()
        )
        try await database.withTransaction { executor in
            try await executor.execute(
                """
                INSERT INTO artifacts (id, org_id, run_id, step, name, content_type, size, sha256, content, created_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT (id) DO UPDATE SET content_type = $6, size = $7, sha256 = $8, content = $9,
                    created_at = $10
                """,
                [
                    .text(artifact.id), .text(orgID), .text(runID), .text(step), .text(name), .text(contentType),
                    .int(Int64(content.count)), .text(artifact.sha256), .blob(content), .int(artifact.createdAt),
                ]
            )
        }
        return artifact
    }

    /// The artifacts of run `runID` of `orgID`, oldest first.
    public func artifacts(orgID: String, runID: String) async throws -> [Artifact] {
        try await database.read { executor in
            try await executor.query(
                """
                SELECT id, run_id, step, name, content_type, size, sha256, created_at FROM artifacts
                WHERE org_id = $1 AND run_id = $2 ORDER BY created_at, id
                """,
                [.text(orgID), .text(runID)]
            ).map(Self.artifact)
        }
    }

    /// An artifact of `orgID` with its content.
    public func artifact(orgID: String, id: String) async throws -> (Artifact, [UInt8])? {
        try await database.read { executor in
            guard
                let row = try await executor.queryFirst(
                    "SELECT * FROM artifacts WHERE org_id = $1 AND id = $2",
                    [.text(orgID), .text(id)]
                )
            else { return nil }
            return (try Self.artifact(row), try row.blob("content"))
        }
    }

    // MARK: Rows

    static func template(_ row: SQLRow) throws -> DocumentTemplate {
        DocumentTemplate(
            name: try row.string("name"),
            format: DocumentTemplate.Format(rawValue: try row.string("format")) ?? .markdown,
            source: try row.string("source"),
            description: try row.optionalString("description"),
            createdAt: try row.int("created_at"),
            updatedAt: try row.int("updated_at")
        )
    }

    static func artifact(_ row: SQLRow) throws -> Artifact {
        Artifact(
            id: try row.string("id"),
            runID: try row.string("run_id"),
            step: try row.string("step"),
            name: try row.string("name"),
            contentType: try row.string("content_type"),
            size: Int(try row.int("size")),
            sha256: try row.string("sha256"),
            createdAt: try row.int("created_at")
        )
    }
}
