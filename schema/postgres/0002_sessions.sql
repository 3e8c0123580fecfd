-- 0002 (PostgreSQL): sessions and their events as rows, the same columns and rules as
-- schema/0001_initial.sql + schema/0004_session_events.sql on SQLite, mapped as 0001_memory.sql
-- maps them (text COLLATE "C", RFC 3339 text timestamps checked by a pattern, `json` values
-- stored verbatim).
--
-- seq is contiguous per session, 1..N: an append locks its session's row (the UPDATE of
-- last_update_time) before it reads max(seq), so appenders of one session run one after the
-- other; the primary key (session_id, seq) refuses a duplicate should one ever try.
-- sessions.events stays '[]' (kept so a store moves between engines column for column).

CREATE TABLE IF NOT EXISTS sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    app_name TEXT COLLATE "C" NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    project_id TEXT COLLATE "C",
    status TEXT NOT NULL DEFAULT 'created',
    events JSON NOT NULL DEFAULT '[]',
    state JSON NOT NULL DEFAULT '{}',
    metadata JSON DEFAULT '{}',
    created_at TEXT COLLATE "C" NOT NULL,
    last_update_time TEXT COLLATE "C" NOT NULL,
    terminated_at TEXT COLLATE "C",
    archived_at TEXT COLLATE "C",
    CHECK (status IN ('created', 'active', 'paused', 'terminated', 'archived')),
    CHECK (created_at ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$'),
    CHECK (last_update_time ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$')
);

CREATE TABLE IF NOT EXISTS session_events (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    type TEXT,
    payload JSON NOT NULL,
    CHECK (seq >= 1),
    CHECK (created_at ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$'),
    CONSTRAINT session_events_seq_unique PRIMARY KEY (session_id, seq)
);

CREATE INDEX IF NOT EXISTS idx_sessions_status_updated ON sessions(status, last_update_time DESC) WHERE status IN ('active', 'paused');
CREATE INDEX IF NOT EXISTS idx_sessions_user_created ON sessions(user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_sessions_project ON sessions(project_id, created_at DESC) WHERE project_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_sessions_created ON sessions(created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_sessions_app_created ON sessions(app_name, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_sessions_status_created ON sessions(status, created_at DESC);
