public import CaravanStorage

/// Collections, their documents and chunks with their vectors, the ingestion runs' sources, document templates and
/// run artifacts. (Version 16 made full-text indexes, FTS5 and a GIN index; version 18 dropped them for `ChunkIndex`.)
public enum KnowledgeSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 16,
            name: "knowledge collections",
            sqlite: tables(autoincrement: "INTEGER PRIMARY KEY AUTOINCREMENT", blob: "BLOB") + [
                "CREATE VIRTUAL TABLE knowledge_fts USING fts5(text, chunk_id UNINDEXED, tokenize = 'unicode61')"
            ],
            postgres: tables(autoincrement: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", blob: "BYTEA") + [
                "CREATE INDEX knowledge_chunks_fts ON knowledge_chunks USING gin (to_tsvector('simple', text))"
            ]
        ),
        Migration(
            version: 18,
            name: "knowledge ingestion runs",
            // Words are indexed in each node's memory (`ChunkIndex`), not by the database's full-text search.
            sqlite: ingestion + ["DROP TABLE knowledge_fts"],
            postgres: ingestion + [
                "DROP INDEX knowledge_chunks_fts",
                // A document's text is written once and read once: not worth compressing on the way.
                "ALTER TABLE knowledge_sources ALTER COLUMN text SET STORAGE EXTERNAL",
            ]
        ),
        Migration(
            version: 19,
            name: "document templates and artifacts",
            sqlite: documents(blob: "BLOB"),
            postgres: documents(blob: "BYTEA")
        ),
    ]

    /// Templates of `document` steps, and the artifacts runs produce: an artifact goes with its run (retention).
    private static func documents(blob: String) -> [String] {
        [
            """
            CREATE TABLE document_templates (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                format TEXT NOT NULL,
                source TEXT NOT NULL,
                description TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, name)
            )
            """,
            """
            CREATE TABLE artifacts (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL,
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                step TEXT NOT NULL,
                name TEXT NOT NULL,
                content_type TEXT NOT NULL,
                size BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                content \(blob) NOT NULL,
                created_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX artifacts_run ON artifacts (org_id, run_id, created_at)",
        ]
    }

    /// A document is accepted with its extracted text kept in `knowledge_sources` and its status `ingesting`; the run
    /// of `knowledge:ingest` named by `run_id` cuts, embeds and indexes it a batch at a time (a chunk's position is
    /// unique in its document, so a batch stored twice is stored once), then marks it `indexed` and drops its source.
    private static let ingestion = [
        "ALTER TABLE knowledge_documents ADD COLUMN status TEXT NOT NULL DEFAULT 'indexed'",
        "ALTER TABLE knowledge_documents ADD COLUMN run_id TEXT",
        // Changed by every write of chunks: each node's vector index compares it with the generation it holds.
        "ALTER TABLE knowledge_collections ADD COLUMN generation BIGINT NOT NULL DEFAULT 0",
        """
        CREATE TABLE knowledge_sources (
            document_id TEXT PRIMARY KEY REFERENCES knowledge_documents (id) ON DELETE CASCADE,
            text TEXT NOT NULL
        )
        """,
        "DROP INDEX knowledge_chunks_document",
        "CREATE UNIQUE INDEX knowledge_chunks_document ON knowledge_chunks (document_id, position)",
    ]

    private static func tables(autoincrement: String, blob: String) -> [String] {
        [
            """
            CREATE TABLE knowledge_collections (
                org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                embedding_model TEXT NOT NULL,
                chunk_size BIGINT NOT NULL,
                chunk_overlap BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (org_id, name)
            )
            """,
            """
            CREATE TABLE knowledge_documents (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL,
                collection TEXT NOT NULL,
                name TEXT NOT NULL,
                format TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                metadata TEXT NOT NULL,
                characters BIGINT NOT NULL,
                chunks BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                UNIQUE (org_id, collection, name),
                FOREIGN KEY (org_id, collection) REFERENCES knowledge_collections (org_id, name) ON DELETE CASCADE
            )
            """,
            "CREATE INDEX knowledge_documents_sha ON knowledge_documents (org_id, collection, sha256)",
            """
            CREATE TABLE knowledge_chunks (
                id \(autoincrement),
                document_id TEXT NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
                org_id TEXT NOT NULL,
                collection TEXT NOT NULL,
                position BIGINT NOT NULL,
                text TEXT NOT NULL,
                vector \(blob) NOT NULL
            )
            """,
            "CREATE INDEX knowledge_chunks_collection ON knowledge_chunks (org_id, collection, id)",
            "CREATE INDEX knowledge_chunks_document ON knowledge_chunks (document_id, position)",
        ]
    }
}
