-- 0005 (PostgreSQL): one claim order on both engines. Tasks of equal priority submitted in the
-- same millisecond are claimed in the order they were inserted, as on SQLite (whose index ends
-- in the rowid); before this, PostgreSQL broke such ties by the task id, a random UUID.
-- Existing rows are numbered in their physical order; `indexer migrate --to` inserts an SQLite
-- store's tasks in rowid order, so a moved queue keeps its order.

ALTER TABLE tasks ADD COLUMN IF NOT EXISTS seq BIGINT GENERATED ALWAYS AS IDENTITY;
DROP INDEX IF EXISTS idx_tasks_status_priority;
CREATE INDEX IF NOT EXISTS idx_tasks_status_priority ON tasks(status, priority DESC, submitted_at ASC, seq ASC);
