-- 0002: what document sync needs beyond the report's document_index row:
-- chunks (heading-aware, with line ranges and content hashes), their FTS5 keyword index,
-- and the embedding settings the stored vectors depend on. The sqlite-vec table of chunk
-- vectors (vec0, float[dim]) is created by the code once the model's dimension is known,
-- and rebuilt whenever the embedding fingerprint changes.

CREATE TABLE document_chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL,
    chunk_index INTEGER NOT NULL,
    chunk_hash TEXT NOT NULL,
    heading_path TEXT NOT NULL DEFAULT '[]',
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    text TEXT NOT NULL,
    embed_text TEXT NOT NULL,
    embedded_at TIMESTAMP,
    CHECK(json_valid(heading_path)),
    CHECK(start_line >= 1 AND end_line >= start_line),
    UNIQUE(document_id, chunk_index),
    FOREIGN KEY (document_id) REFERENCES document_index(id) ON DELETE CASCADE
);

-- chunks still waiting for a vector, in document order (the embedding worker's queue)
CREATE INDEX idx_chunks_unembedded ON document_chunks(document_id, chunk_index) WHERE embedded_at IS NULL;
-- vectors are reused by content: a chunk hash already embedded is not embedded again
CREATE INDEX idx_chunks_hash ON document_chunks(chunk_hash);

CREATE VIRTUAL TABLE chunk_fts USING fts5(
    embed_text,
    content='document_chunks',
    content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER chunk_fts_insert AFTER INSERT ON document_chunks BEGIN
    INSERT INTO chunk_fts(rowid, embed_text) VALUES (new.id, new.embed_text);
END;

CREATE TRIGGER chunk_fts_delete AFTER DELETE ON document_chunks BEGIN
    INSERT INTO chunk_fts(chunk_fts, rowid, embed_text) VALUES ('delete', old.id, old.embed_text);
END;

CREATE TRIGGER chunk_fts_update AFTER UPDATE OF embed_text ON document_chunks BEGIN
    INSERT INTO chunk_fts(chunk_fts, rowid, embed_text) VALUES ('delete', old.id, old.embed_text);
    INSERT INTO chunk_fts(rowid, embed_text) VALUES (new.id, new.embed_text);
END;

CREATE TABLE embedding_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
