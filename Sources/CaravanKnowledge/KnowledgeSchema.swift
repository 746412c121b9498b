public import CaravanStorage

/// Collections, their documents and chunks with their vectors, and the full-text index of the chunks: SQLite's FTS5
/// table, PostgreSQL's GIN index over `to_tsvector('simple', text)`.
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
        )
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
