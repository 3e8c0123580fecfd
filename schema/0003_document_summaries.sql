-- 0003: a second vector per document for search: its summary (title and first prose
-- paragraph, markdown_meta.document_summary). Hybrid search fuses the summary's cosine
-- with the best chunk's, which finds "how do I ..." questions a tool's one-line description
-- answers better than any of its example chunks (README, "Search quality"). The vector is a
-- float32 blob (NULL until the embedding worker reaches it); the row goes with its document.

CREATE TABLE document_summaries (
    document_id INTEGER PRIMARY KEY,
    summary_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB,
    embedded_at TIMESTAMP,
    FOREIGN KEY (document_id) REFERENCES document_index(id) ON DELETE CASCADE
);

-- summaries waiting for a vector (the embedding worker's second queue)
CREATE INDEX idx_summaries_unembedded ON document_summaries(document_id) WHERE embedding IS NULL;

-- Documents this indexer chunked before this migration get their summary on the next sync:
-- an empty content hash and no recorded mtime make the planner re-read each one (as after a
-- chunker upgrade); their chunks keep their vectors (same text, same hash), only summaries
-- are new. Rows without chunks (adopted from a legacy database) are left as they are.
UPDATE document_index SET content_hash = '', metadata = json_remove(coalesce(metadata, '{}'), '$.mtime_ns')
WHERE sync_status != 'failed' AND id IN (SELECT document_id FROM document_chunks);
