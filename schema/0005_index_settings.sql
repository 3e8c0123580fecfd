-- 0005: the index's own settings, a key -> JSON value table. First key: "roots", the
-- directories a user indexed (`indexer reindex --root DIR`, the daemon's roots), so a plain
-- `indexer reindex`, the daemon and the MCP server's read_document know them when no roots
-- are configured. (0004 is taken by the events table, a separate change.)

CREATE TABLE index_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
