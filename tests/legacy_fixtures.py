"""Builders of legacy databases as the reference implementation made them (schema.md §1).

Used by the tests and by bench/bench_schema.py. The files are written with the raw binding
in its default rollback-journal mode, with no version table, as found in the wild.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.storage import driver

TASKS_STANDARD = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    agent_type TEXT NOT NULL DEFAULT 'general',
    priority INTEGER NOT NULL DEFAULT 5,
    status TEXT NOT NULL,
    input_data TEXT NOT NULL,
    result_data TEXT,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    max_retries INTEGER DEFAULT 3,
    max_execution_timeout_seconds INTEGER DEFAULT 3600,
    submitted_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    last_updated_at TIMESTAMP NOT NULL,
    created_by TEXT,
    parent_task_id TEXT,
    dependencies TEXT,
    FOREIGN KEY (parent_task_id) REFERENCES tasks(id)
)"""

TASKS_TEMPLATE_NAME = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    template_name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 5,
    status TEXT NOT NULL,
    input_data TEXT NOT NULL,
    result_data TEXT,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    max_retries INTEGER DEFAULT 3,
    submitted_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    created_by TEXT,
    parent_task_id TEXT,
    dependencies TEXT,
    FOREIGN KEY (parent_task_id) REFERENCES tasks(id)
)"""

OTHER_TABLES = """
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    specialization TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    model TEXT NOT NULL,
    spawned_at TIMESTAMP NOT NULL,
    terminated_at TIMESTAMP,
    resource_usage TEXT,
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE TABLE state (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE(task_id, key),
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP NOT NULL,
    agent_id TEXT,
    task_id TEXT NOT NULL,
    action_type TEXT NOT NULL,
    action_data TEXT,
    result TEXT,
    FOREIGN KEY (agent_id) REFERENCES agents(id),
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP NOT NULL,
    metric_name TEXT NOT NULL,
    metric_value REAL NOT NULL,
    labels TEXT,
    CHECK(metric_value >= 0)
);
CREATE TABLE checkpoints (
    task_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (task_id, iteration),
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE INDEX idx_tasks_status_priority ON tasks(status, priority DESC, submitted_at ASC);
CREATE INDEX idx_tasks_submitted_at ON tasks(submitted_at);
CREATE INDEX idx_tasks_parent ON tasks(parent_task_id);
CREATE INDEX idx_agents_task ON agents(task_id);
CREATE INDEX idx_agents_state ON agents(state);
CREATE INDEX idx_state_task_key ON state(task_id, key);
CREATE INDEX idx_audit_task ON audit(task_id, timestamp DESC);
CREATE INDEX idx_audit_agent ON audit(agent_id, timestamp DESC);
CREATE INDEX idx_audit_timestamp ON audit(timestamp DESC);
CREATE INDEX idx_metrics_name_timestamp ON metrics(metric_name, timestamp DESC);
CREATE INDEX idx_checkpoints_task ON checkpoints(task_id, iteration DESC);
"""
RUNNING_INDEX = "CREATE INDEX idx_tasks_running_timeout ON tasks(status, last_updated_at) WHERE status = 'running';"

# Odd timestamp values a legacy file can hold, and what each must become.
ODD_TIMESTAMPS = {
    "2025-10-09T17:04:11.123456+00:00": "2025-10-09T17:04:11.123Z",
    "2025-10-09T17:04:11.999999": "2025-10-09T17:04:11.999Z",       # naive isoformat: UTC
    "2025-10-09 17:04:11": "2025-10-09T17:04:11.000Z",              # CURRENT_TIMESTAMP
    "2025-10-09T19:04:11.5+02:00": "2025-10-09T17:04:11.500Z",      # another offset
    "yesterday": "yesterday",                                      # unparseable: kept verbatim
}


def iso(i: int) -> str:
    return f"2025-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{(i * 1234) % 1000000:06d}+00:00"


def _connect(path: Path) -> Any:
    conn = driver.sqlite.connect(str(path), isolation_level=None)
    return conn


def build_legacy(path: Path, *, variant: str = "standard", tasks: int = 20, orphans: bool = True) -> dict[str, int]:
    """A small legacy database with rows in every table, NULLs, odd timestamps, unicode,
    AUTOINCREMENT gaps and (optionally) orphans. Returns the row count of each table."""
    conn = _connect(path)
    conn.executescript(TASKS_STANDARD if variant == "standard" else TASKS_TEMPLATE_NAME)
    conn.executescript(OTHER_TABLES)
    if variant == "standard":
        conn.executescript(RUNNING_INDEX)
    odd = list(ODD_TIMESTAMPS)
    conn.execute("BEGIN")
    for i in range(tasks):
        submitted = odd[i] if i < len(odd) else iso(i)
        started = None if i % 3 == 0 else iso(i + 1)
        completed = None if i % 2 == 0 else iso(i + 2)
        parent = f"task-{i - 1}" if i % 4 == 1 else None
        prompt = f"prompt {i} — ünïcødé ✓" if i % 5 else f"prompt {i}"
        if variant == "standard":
            conn.execute(
                "INSERT INTO tasks (id, prompt, agent_type, priority, status, input_data, result_data, error_message, "
                "retry_count, max_retries, max_execution_timeout_seconds, submitted_at, started_at, completed_at, "
                "last_updated_at, created_by, parent_task_id, dependencies) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (f"task-{i}", prompt, "coder" if i % 2 else "general", i % 10, ["pending", "running", "completed"][i % 3],
                 '{"n": %d}' % i, None if i % 2 else '{"ok": true}', None, i % 3, 3, 600 + i,
                 submitted, started, completed, iso(i + 3), None if i % 3 else "cli", parent,
                 None if i % 2 else '["task-0"]'))
        else:
            conn.execute(
                "INSERT INTO tasks (id, template_name, priority, status, input_data, result_data, error_message, "
                "retry_count, max_retries, submitted_at, started_at, completed_at, created_by, parent_task_id, "
                "dependencies) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (f"task-{i}", f"template-{i}", i % 10, ["pending", "running", "completed"][i % 3], '{"n": %d}' % i,
                 None, "boom" if i % 7 == 0 else None, 0, 3, submitted, started, completed, None, parent, None))
    for i in range(tasks // 2):
        conn.execute(
            "INSERT INTO agents VALUES (?,?,?,?,?,?,?,?,?)",
            (f"agent-{i}", f"agent {i}", "python", f"task-{i}", "idle", "claude", iso(i),
             None if i % 2 else iso(i + 5), None if i % 3 else '{"cpu": 1.5}'))
    for i in range(tasks):
        conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES (?,?,?,?,?)",
                     (f"task-{i % tasks}", f"k{i}", '{"v": %d}' % i, iso(i), iso(i + 1)))
        conn.execute("INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result) VALUES (?,?,?,?,?,?)",
                     (odd[i % len(odd)] if i < len(odd) else iso(i), f"agent-{i % (tasks // 2)}" if i % 2 else None,
                      f"task-{i}", "run", None if i % 2 else '{"x": 1}', "ok"))
        conn.execute("INSERT INTO metrics (timestamp, metric_name, metric_value, labels) VALUES (?,?,?,?)",
                     (iso(i), "latency", i * 0.5, None if i % 2 else '{"a": "b"}'))
        conn.execute("INSERT INTO checkpoints VALUES (?,?,?,?)", (f"task-{i}", 1, '{"it": 1}', iso(i)))
    if orphans:
        conn.execute("INSERT INTO agents VALUES ('agent-orphan','o','s','no-such-task','idle','m',?,NULL,NULL)", (iso(1),))
        conn.execute("INSERT INTO audit (timestamp, agent_id, task_id, action_type) VALUES (?, NULL, 'ghost-task', 'x')", (iso(2),))
    # AUTOINCREMENT gaps: the high-water mark stays above max(id)
    for table in ("state", "audit", "metrics"):
        conn.execute(f"DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})")
    conn.execute("COMMIT")
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("tasks", "agents", "state", "audit", "metrics", "checkpoints")}
    conn.close()
    return counts


def build_bench_legacy(path: Path, *, tasks: int, audit: int) -> None:
    """A large standard-variant legacy database (executemany, one transaction)."""
    conn = _connect(path)
    conn.executescript(TASKS_STANDARD)
    conn.executescript(OTHER_TABLES)
    conn.executescript(RUNNING_INDEX)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, started_at, completed_at, last_updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ((f"task-{i}", f"prompt {i}", "completed", '{"n": 1}', iso(i), iso(i + 1), iso(i + 2), iso(i + 2))
         for i in range(tasks)))
    conn.executemany(
        "INSERT INTO audit (timestamp, task_id, action_type, action_data) VALUES (?, ?, ?, ?)",
        ((iso(i), f"task-{i % max(tasks, 1)}", "run", '{"x": 1}') for i in range(audit)))
    conn.execute("COMMIT")
    conn.close()


def all_rows(conn: Any, table: str) -> list[tuple[Any, ...]]:
    cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
    order = "rowid" if table != "checkpoints" else "task_id, iteration"
    return [dict(zip(cols, r)) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()]
