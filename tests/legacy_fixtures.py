"""Builders of legacy databases as the reference implementation made them (schema.md §1),
and small helpers the migration tests share.

Used by the tests and by bench/bench_schema.py. The files are written with the raw binding
(``driver.sqlite``, so no PRAGMAs, no foreign-key enforcement, no version table,
``user_version`` 0), in the default rollback-journal mode unless ``journal_mode="wal"``.
Every row is generated and inserted with ``executemany`` in one transaction, so the same
builder makes a 100k-row file for the benchmark in a few seconds.
"""

from __future__ import annotations

import difflib
import pprint
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from indexer.storage.sqlite import driver

LEGACY_TABLES = ("tasks", "agents", "state", "audit", "metrics", "checkpoints")
AUTOINCREMENT_TABLES = ("state", "audit", "metrics")
MEMORY_TABLES = ("sessions", "memory_entries", "document_index")  # a reference file after the milestone
PRIMARY_KEYS = {
    "tasks": ("id",), "agents": ("id",), "state": ("id",), "audit": ("id",), "metrics": ("id",),
    "checkpoints": ("task_id", "iteration"), "sessions": ("id",), "memory_entries": ("id",), "document_index": ("id",),
    "session_events": ("session_id", "seq"),  # not legacy: filled from sessions.events by 0004
}

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

# The older variant: template_name instead of prompt/agent_type; no last_updated_at and no
# max_execution_timeout_seconds (so it cannot have idx_tasks_running_timeout either).
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
"""

# The 12 legacy indexes of schema.md §1 (the older variant lacks the last one: no last_updated_at).
LEGACY_INDEXES = {
    "idx_tasks_status_priority": "CREATE INDEX idx_tasks_status_priority ON tasks(status, priority DESC, submitted_at ASC)",
    "idx_tasks_submitted_at": "CREATE INDEX idx_tasks_submitted_at ON tasks(submitted_at)",
    "idx_tasks_parent": "CREATE INDEX idx_tasks_parent ON tasks(parent_task_id)",
    "idx_agents_task": "CREATE INDEX idx_agents_task ON agents(task_id)",
    "idx_agents_state": "CREATE INDEX idx_agents_state ON agents(state)",
    "idx_state_task_key": "CREATE INDEX idx_state_task_key ON state(task_id, key)",
    "idx_audit_task": "CREATE INDEX idx_audit_task ON audit(task_id, timestamp DESC)",
    "idx_audit_agent": "CREATE INDEX idx_audit_agent ON audit(agent_id, timestamp DESC)",
    "idx_audit_timestamp": "CREATE INDEX idx_audit_timestamp ON audit(timestamp DESC)",
    "idx_metrics_name_timestamp": "CREATE INDEX idx_metrics_name_timestamp ON metrics(metric_name, timestamp DESC)",
    "idx_checkpoints_task": "CREATE INDEX idx_checkpoints_task ON checkpoints(task_id, iteration DESC)",
    "idx_tasks_running_timeout": ("CREATE INDEX idx_tasks_running_timeout ON tasks(status, last_updated_at) "
                                  "WHERE status = 'running'"),
}
NEEDS_LAST_UPDATED_AT = {"idx_tasks_running_timeout"}

# Timestamp texts a legacy file can hold, and what each must become (the test oracle; values
# from iso() below are the usual case and are checked by slicing, see canonical_of_iso()).
ODD_TIMESTAMPS = {
    "2025-10-09T17:04:11.123456+00:00": "2025-10-09T17:04:11.123Z",   # isoformat(), UTC
    "2025-10-09T17:04:11.999999": "2025-10-09T17:04:11.999Z",         # naive isoformat: UTC, truncated
    "2025-10-09 17:04:11": "2025-10-09T17:04:11.000Z",                # CURRENT_TIMESTAMP
    "2025-10-09 17:04:11.250000+00:00": "2025-10-09T17:04:11.250Z",   # sqlite3's default adapter
    "2025-10-09T19:04:11.5+02:00": "2025-10-09T17:04:11.500Z",        # another offset
    "2025-10-09T23:30:00-05:00": "2025-10-10T04:30:00.000Z",          # negative offset, next day in UTC
    "2025-10-09T17:04:11.123456Z": "2025-10-09T17:04:11.123Z",        # Z suffix
    "2025-10-09T17:04:11.456Z": "2025-10-09T17:04:11.456Z",           # already canonical
    "yesterday": "yesterday",                                         # unparseable: kept verbatim
    "": "",                                                           # empty: kept verbatim
    "9999-12-31T23:59:59-01:00": "9999-12-31T23:59:59-01:00",         # past year 9999 in UTC: kept
}
_ODD = list(ODD_TIMESTAMPS)

# Rows that break a foreign key *of the target schema* when orphans=True (table -> count).
# The audit row whose task does not exist is not among them: audit.task_id has no foreign
# key any more (schema.md §3.4), so only its audit row with an unknown agent counts.
FK_ORPHANS = {"tasks": 1, "agents": 1, "state": 1, "audit": 1, "checkpoints": 1}
ORPHAN_ROWS = {"tasks": 1, "agents": 1, "state": 1, "audit": 2, "checkpoints": 1}


def iso(i: int) -> str:
    """The reference's usual timestamp: ``datetime.now(timezone.utc).isoformat()``."""
    return (f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}"
            f".{(i * 1234) % 1000000:06d}+00:00")


def _stamp(i: int, salt: int) -> str:
    """Mostly iso(); one value in 25 of an odd form, so they occur in every column."""
    j = i + salt
    return _ODD[(j // 25 + salt) % len(_ODD)] if j % 25 == 2 else iso(j)


def _maybe(i: int, every: int, value: Any) -> Any:
    return None if i % every == every // 2 else value


def _tasks(n: int, variant: str, orphans: bool) -> Iterator[tuple[Any, ...]]:
    standard = variant == "standard"
    for i in range(n):
        head = ((f"task-{i}", f"prompt {i} — ünïcødé ✓ 中文 🙂", "coder" if i % 2 else "general") if standard
                else (f"task-{i}", f"template-{i} ✓ ñ"))
        middle = (i % 10, ("pending", "running", "completed", "failed")[i % 4], f'{{"n": {i}, "text": "çava 日本 🚀"}}',
                  None if i % 2 else '{"ok": true}', "boom ✗ — \"quoted\"" if i % 7 == 0 else None,
                  _maybe(i, 11, i % 3), _maybe(i, 13, 3))
        timeout = (_maybe(i, 9, 600 + i),) if standard else ()
        stamps = (_ODD[i] if i < len(_ODD) else _stamp(i, 0),        # submitted_at
                  None if i % 3 == 0 else _stamp(i, 1),              # started_at
                  None if i % 2 == 0 else _stamp(i, 2))              # completed_at
        last_updated = (_stamp(i, 3),) if standard else ()
        tail = (None if i % 3 else "cli", f"task-{i - 1}" if i % 4 == 1 else None, None if i % 2 else '["task-0"]')
        yield head + middle + timeout + stamps + last_updated + tail
    if orphans:  # a child whose parent task does not exist
        yield ((("task-orphan", "orphan", "general") if standard else ("task-orphan", "orphan"))
               + (5, "pending", "{}", None, None, 0, 3) + ((3600,) if standard else ())
               + (iso(1), None, None) + ((iso(1),) if standard else ()) + (None, "ghost-parent", None))


TASK_INSERT = {
    "standard": "INSERT INTO tasks (id, prompt, agent_type, priority, status, input_data, result_data, error_message, "
                "retry_count, max_retries, max_execution_timeout_seconds, submitted_at, started_at, completed_at, "
                "last_updated_at, created_by, parent_task_id, dependencies) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "template_name": "INSERT INTO tasks (id, template_name, priority, status, input_data, result_data, error_message, "
                     "retry_count, max_retries, submitted_at, started_at, completed_at, created_by, parent_task_id, "
                     "dependencies) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
}


def build_legacy(
    path: Path, *, variant: str = "standard", tasks: int = 40, audit: int | None = None,
    agents: int | None = None, state: int | None = None, metrics: int | None = None,
    checkpoints: int | None = None, orphans: bool = True, journal_mode: str = "delete",
) -> dict[str, int]:
    """A legacy database with rows in every table: NULLs in every nullable column, odd and
    unparseable timestamps in every timestamp column, unicode, AUTOINCREMENT gaps (rows deleted
    in the middle and at the end, so sqlite_sequence > max(id)) and, unless ``orphans=False``,
    rows that break foreign keys (see FK_ORPHANS). Counts default to ``tasks`` (agents: half).
    Returns the row count of each table."""
    assert variant in TASK_INSERT, variant
    agents = tasks // 2 if agents is None else agents
    counts = {name: tasks if n is None else n for name, n in
              (("state", state), ("audit", audit), ("metrics", metrics), ("checkpoints", checkpoints))}
    assert tasks > 0 or not (agents or counts["state"] or counts["audit"] or counts["checkpoints"])
    conn = driver.sqlite.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a fixture: no need to survive a power cut
        conn.execute("PRAGMA cache_size=-65536")
        conn.executescript(TASKS_STANDARD if variant == "standard" else TASKS_TEMPLATE_NAME)
        conn.executescript(OTHER_TABLES)
        conn.execute("BEGIN")
        conn.executemany(TASK_INSERT[variant], _tasks(tasks, variant, orphans))
        if orphans:  # first, so that the ids deleted below are not theirs
            conn.execute("INSERT INTO agents VALUES ('agent-orphan', 'o', 's', 'ghost-task', 'idle', 'm', ?, NULL, NULL)",
                         (iso(1),))
            conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) "
                         "VALUES ('ghost-task', 'orphan', '1', ?, ?)", (iso(2), iso(2)))
            conn.execute("INSERT INTO audit (timestamp, agent_id, task_id, action_type) VALUES (?, NULL, 'ghost-task', 'x')",
                         (iso(3),))
            conn.execute("INSERT INTO audit (timestamp, agent_id, task_id, action_type) "
                         "VALUES (?, 'ghost-agent', 'task-0', 'x')", (iso(4),))
            conn.execute("INSERT INTO checkpoints VALUES ('ghost-task', 1, '{}', ?)", (iso(5),))
        conn.executemany("INSERT INTO agents VALUES (?,?,?,?,?,?,?,?,?)", (
            (f"agent-{i}", f"agent {i} — エージェント", "python", f"task-{i % tasks}", ("idle", "busy", "done")[i % 3],
             "claude", _stamp(i, 4), None if i % 2 else _stamp(i, 5), None if i % 3 else '{"cpu": 1.5}')
            for i in range(agents)))
        conn.executemany("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES (?,?,?,?,?)", (
            (f"task-{i % tasks}", f"k{i}:ключ", f'{{"v": {i}}}', _stamp(i, 6), _stamp(i, 7))
            for i in range(counts["state"])))
        conn.executemany(
            "INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result) VALUES (?,?,?,?,?,?)", (
                (_ODD[i] if i < len(_ODD) else _stamp(i, 8), f"agent-{i % agents}" if i % 2 and agents else None,
                 f"task-{i % tasks}", ("run", "spawn", "fail")[i % 3],
                 None if i % 2 else '{"x": 1, "note": "naïve 🚀"}', None if i % 4 == 3 else "ok")
                for i in range(counts["audit"])))
        conn.executemany("INSERT INTO metrics (timestamp, metric_name, metric_value, labels) VALUES (?,?,?,?)", (
            (_stamp(i, 9), ("latency", "tokens")[i % 2], i * 0.5, None if i % 2 else '{"a": "b"}')
            for i in range(counts["metrics"])))
        conn.executemany("INSERT INTO checkpoints VALUES (?,?,?,?)", (
            (f"task-{i % tasks}", i // tasks + 1, f'{{"it": {i}}}', _stamp(i, 10))
            for i in range(counts["checkpoints"])))
        # AUTOINCREMENT gaps: some ids missing in the middle, and the high-water mark above max(id)
        for table in AUTOINCREMENT_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE id IN (8, 9) OR id % 1000 = 500")
            conn.execute(f"DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})")
        for name, sql in LEGACY_INDEXES.items():  # after the rows: much faster for large files
            if variant == "standard" or name not in NEEDS_LAST_UPDATED_AT:
                conn.execute(sql)
        conn.execute("COMMIT")
        if journal_mode != "delete":
            assert conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0] == journal_mode
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in LEGACY_TABLES}
    finally:
        conn.close()


def build_bench_legacy(path: Path, *, tasks: int, audit: int) -> None:
    """The benchmark's large standard-variant legacy database: ``tasks`` tasks and ``audit``
    audit rows (plus a tenth as many rows in each other table), same content rules as above."""
    small = max(tasks // 10, 1)
    build_legacy(path, tasks=tasks, audit=audit, agents=small, state=small, metrics=small,
                 checkpoints=small, orphans=False)


# The reference implementation *after* the memory milestone (milestone-1-report.md): the three
# new tables with CURRENT_TIMESTAMP defaults, session_id and the audit columns added by
# ALTER TABLE without REFERENCES (schema.md §3.2), and no version table. An interrupted run
# (schema.md §3.1) stopped after its first ALTER.
REFERENCE_MEMORY_TABLES = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    app_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    project_id TEXT,
    status TEXT NOT NULL DEFAULT 'created',
    events TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL DEFAULT '{}',
    metadata TEXT DEFAULT '{}',
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    terminated_at TIMESTAMP,
    archived_at TIMESTAMP,
    CHECK(status IN ('created', 'active', 'paused', 'terminated', 'archived')),
    CHECK(json_valid(events)),
    CHECK(json_valid(state)),
    CHECK(json_valid(metadata))
);
CREATE TABLE memory_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    memory_type TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    is_deleted BOOLEAN NOT NULL DEFAULT 0,
    metadata TEXT DEFAULT '{}',
    created_by TEXT,
    updated_by TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK(memory_type IN ('semantic', 'episodic', 'procedural')),
    CHECK(json_valid(value)),
    CHECK(json_valid(metadata)),
    CHECK(version > 0),
    UNIQUE(namespace, key, version)
);
CREATE TABLE document_index (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_path TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    document_type TEXT,
    content_hash TEXT NOT NULL,
    chunk_count INTEGER DEFAULT 1,
    embedding_model TEXT,
    embedding_blob BLOB,
    metadata TEXT DEFAULT '{}',
    last_synced_at TIMESTAMP,
    sync_status TEXT DEFAULT 'pending',
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK(sync_status IN ('pending', 'synced', 'failed', 'stale')),
    CHECK(json_valid(metadata))
);
CREATE UNIQUE INDEX idx_sessions_pk ON sessions(id);
CREATE INDEX idx_sessions_status_updated ON sessions(status, last_update_time DESC) WHERE status IN ('active', 'paused');
CREATE INDEX idx_sessions_user_created ON sessions(user_id, created_at DESC);
CREATE UNIQUE INDEX idx_memory_entries_pk ON memory_entries(id);
CREATE INDEX idx_memory_namespace_key_version ON memory_entries(namespace, key, is_deleted, version DESC);
CREATE UNIQUE INDEX idx_document_file_path ON document_index(file_path);
"""
REFERENCE_ALTERS = (  # in the reference's order
    "ALTER TABLE tasks ADD COLUMN session_id TEXT",
    "ALTER TABLE agents ADD COLUMN session_id TEXT",
    "ALTER TABLE audit ADD COLUMN memory_operation_type TEXT",
    "ALTER TABLE audit ADD COLUMN memory_namespace TEXT",
    "ALTER TABLE audit ADD COLUMN memory_entry_id INTEGER",
    "ALTER TABLE checkpoints ADD COLUMN session_id TEXT",
)


# The reference's events array: objects with and without a type or a readable timestamp (the
# reference's isoformat(), an offset, text SQLite cannot read, a number), and scalars.
SESSION_1_EVENTS = (
    f'[{{"t": "ünï"}}, {{"type": "message", "timestamp": "{iso(10)}", "text": "hi"}}, '
    '{"type": "tool", "timestamp": "2025-10-09T19:04:11.5+02:00"}, {"type": 7, "timestamp": "yesterday"}, '
    '{"timestamp": 1700000000}, "plain \\"q\\" \\u00e9", 42, 12345678901234567890, 1.5, true, false, null, '
    '[1, {"a": 2}]]'
)


def build_reference_milestone(path: Path, *, interrupted: bool = False, **options: Any) -> dict[str, int]:
    """A standard legacy file (``build_legacy(**options)``) taken through the reference's own
    memory-milestone migration, with rows in the new tables and session links set."""
    build_legacy(path, **options)
    conn = driver.sqlite.connect(str(path), isolation_level=None)
    try:
        conn.executescript(REFERENCE_MEMORY_TABLES)
        for alter in REFERENCE_ALTERS[:1] if interrupted else REFERENCE_ALTERS:
            conn.execute(alter)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO sessions (id, app_name, user_id, project_id, status, events, state, created_at, "
                         "last_update_time, terminated_at) VALUES (?,?,?,?,?,?,?,?,?,?)", [
                             ("session-1", "abathur", "alice", None, "active", SESSION_1_EVENTS, '{"k": 1}',
                              iso(1), iso(2), None),
                             ("session-2", "abathur", "bob", "proj-1", "terminated", "[]", "{}",
                              "2025-10-09 17:04:11", "2025-10-09T19:04:11.5+02:00", "yesterday")])
        conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('session-3', 'a', 'u')")  # defaults
        conn.executemany("INSERT INTO memory_entries (namespace, key, value, memory_type, version, is_deleted, "
                         "created_by, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)", [
                             ("user:alice:preferences", "theme", '"dark"', "semantic", 1, 0, "session-1", iso(3), iso(3)),
                             ("user:alice:preferences", "theme", '"light"', "semantic", 2, 1, None, iso(4), iso(5)),
                             ("temp:x", "ü", '{"a": [1, 2]}', "episodic", 1, 0, None, "2025-10-09 17:04:11", iso(6))])
        conn.execute("INSERT INTO memory_entries (namespace, key, value, memory_type) VALUES ('app:x', 'k', '1', 'procedural')")
        conn.executemany("INSERT INTO document_index (file_path, title, document_type, content_hash, embedding_blob, "
                         "last_synced_at, sync_status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)", [
                             ("/docs/a.md", "A — ü", "design", "h1", bytes(range(256)), iso(7), "synced", iso(7), iso(8)),
                             ("/docs/b.md", "B", None, "h2", None, None, "pending", iso(9), iso(9))])
        conn.execute("UPDATE tasks SET session_id = 'session-1' WHERE rowid % 3 = 0")
        if not interrupted:
            conn.execute("UPDATE agents SET session_id = 'session-2' WHERE rowid % 2 = 0")
            conn.execute("UPDATE checkpoints SET session_id = 'session-1' WHERE rowid % 4 = 0")
            conn.execute("UPDATE audit SET memory_operation_type = 'create', memory_namespace = 'user:alice:preferences', "
                         "memory_entry_id = 1 WHERE rowid % 5 = 0")
        conn.execute("COMMIT")
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in LEGACY_TABLES + MEMORY_TABLES}
    finally:
        conn.close()


# --- helpers shared by test_legacy.py and test_migrations.py ---------------------------------

@contextmanager
def opened(path: Path | str, **options: Any) -> Iterator[Any]:
    """``driver.connect`` as a context manager that closes the connection."""
    conn = driver.connect(path, **options)
    try:
        yield conn
    finally:
        conn.close()


def table_rows(conn: Any, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every row of ``table`` as a dict, keyed by its primary key."""
    cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
    rows = [dict(zip(cols, r)) for r in conn.execute(f"SELECT * FROM {table}").fetchall()]
    return {tuple(row[k] for k in PRIMARY_KEYS[table]): row for row in rows}


def read_database(path: Path) -> dict[str, Any]:
    """The logical content of a file, read with the raw binding (no PRAGMA that could write):
    the schema text, every row of the legacy tables, sqlite_sequence and a few header values."""
    conn = driver.sqlite.connect(str(path))
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
        return {
            "master": conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall(),
            "rows": {t: table_rows(conn, t) for t in LEGACY_TABLES + MEMORY_TABLES + ("session_events",) if t in names},
            "sqlite_sequence": sorted(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
            if "sqlite_sequence" in names else [],
            "pragmas": {p: conn.execute(f"PRAGMA {p}").fetchone()[0]
                        for p in ("journal_mode", "user_version", "application_id", "integrity_check")},
        }
    finally:
        conn.close()


def disk_state(path: Path) -> dict[str, Any]:
    """What is on disk: the main file's bytes and mtime, and every non-empty sidecar (-wal,
    -journal) next to it (-shm is a shared-memory index, not content, and left out)."""
    sidecars = {p.name: p.stat().st_size for p in path.parent.glob(path.name + "-*")
                if not p.name.endswith("-shm") and p.stat().st_size > 0}
    stat = path.stat()
    return {"bytes": path.read_bytes(), "mtime_ns": stat.st_mtime_ns, "sidecars": sidecars}


def assert_no_pending_content(path: Path) -> None:
    """No sidecar file holds anything: no -wal frames, no hot -journal."""
    for sidecar in ("-wal", "-journal"):
        extra = Path(f"{path}{sidecar}")
        assert not extra.exists() or extra.stat().st_size == 0, f"{extra.name} has {extra.stat().st_size} bytes"


def assert_equal(actual: Any, expected: Any, what: str) -> None:
    """Equality, failing with a readable unified diff of the two pretty-printed values."""
    if actual != expected:
        diff = difflib.unified_diff(pprint.pformat(expected, width=120).splitlines(),
                                    pprint.pformat(actual, width=120).splitlines(),
                                    f"expected {what}", f"actual {what}", lineterm="")
        raise AssertionError(f"{what} differ:\n" + "\n".join(list(diff)[:200]))
