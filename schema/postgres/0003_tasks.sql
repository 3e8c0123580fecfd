-- 0003 (PostgreSQL): the task queue: tasks, the agents that ran them (one row per claim) and
-- their checkpoints, the same columns and rules as schema/0001_initial.sql on SQLite, mapped as
-- 0001_memory.sql maps them (text COLLATE "C", RFC 3339 text timestamps, `json` values).
--
-- A claim takes the next runnable task with SELECT … FOR UPDATE SKIP LOCKED
-- (indexer/storage/postgres/task_store.py): claimers in several processes never take the same
-- task and never wait for each other's candidate rows.

CREATE TABLE IF NOT EXISTS tasks (
    id TEXT COLLATE "C" PRIMARY KEY,
    prompt TEXT NOT NULL,
    agent_type TEXT COLLATE "C" NOT NULL DEFAULT 'general',
    priority INTEGER NOT NULL DEFAULT 5,
    status TEXT COLLATE "C" NOT NULL,
    input_data JSON NOT NULL,
    result_data JSON,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    max_retries INTEGER DEFAULT 3,
    max_execution_timeout_seconds INTEGER DEFAULT 3600,
    submitted_at TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C",
    completed_at TEXT COLLATE "C",
    last_updated_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT,
    parent_task_id TEXT COLLATE "C" REFERENCES tasks(id),
    dependencies JSON,
    session_id TEXT COLLATE "C" REFERENCES sessions(id) ON DELETE SET NULL,
    CHECK (submitted_at ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$'),
    CHECK (last_updated_at ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$')
);

CREATE TABLE IF NOT EXISTS agents (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    specialization TEXT NOT NULL,
    task_id TEXT COLLATE "C" NOT NULL REFERENCES tasks(id),
    state TEXT COLLATE "C" NOT NULL,
    model TEXT NOT NULL,
    spawned_at TEXT COLLATE "C" NOT NULL,
    terminated_at TEXT COLLATE "C",
    resource_usage JSON,
    session_id TEXT COLLATE "C" REFERENCES sessions(id) ON DELETE SET NULL,
    CHECK (spawned_at ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$')
);

CREATE TABLE IF NOT EXISTS checkpoints (
    task_id TEXT COLLATE "C" NOT NULL REFERENCES tasks(id),
    iteration INTEGER NOT NULL,
    state JSON NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" REFERENCES sessions(id) ON DELETE SET NULL,
    PRIMARY KEY (task_id, iteration)
);

CREATE INDEX IF NOT EXISTS idx_tasks_status_priority ON tasks(status, priority DESC, submitted_at ASC, id ASC);
CREATE INDEX IF NOT EXISTS idx_tasks_submitted_at ON tasks(submitted_at);
CREATE INDEX IF NOT EXISTS idx_tasks_parent ON tasks(parent_task_id);
CREATE INDEX IF NOT EXISTS idx_tasks_running_timeout ON tasks(status, last_updated_at) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS idx_tasks_session ON tasks(session_id, submitted_at DESC) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_agents_task ON agents(task_id);
CREATE INDEX IF NOT EXISTS idx_agents_state ON agents(state);
CREATE INDEX IF NOT EXISTS idx_agents_session ON agents(session_id, spawned_at DESC) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_checkpoints_task ON checkpoints(task_id, iteration DESC);
