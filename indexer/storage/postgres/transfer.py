"""Move an SQLite agent store into a PostgreSQL one (``indexer migrate --to``): memories and
their audit rows, sessions and their events, tasks, the agents that ran them, their
checkpoints, and the report's `state` (deprecated, kept) and `metrics` tables.

Every row of those tables is copied as it is, ids included, in one PostgreSQL transaction,
then the identity sequences continue after the highest id. The source is only read (a
read-only connection). The target must be migrated and hold no memories, sessions or tasks
yet: a second run, or a run into a store already in use, is refused before anything is
written. A task's parent is set once every task is in (a child may precede its parent in the
source). A row that does not fit (a dependency list that is not JSON, a foreign key the source
already broke) stops the copy with one sentence, and nothing is copied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from indexer.errors import IndexerError
from indexer.storage.postgres import migrations
from indexer.storage.sqlite import driver

MEMORY_COLUMNS = ("id", "namespace", "key", "value", "memory_type", "version", "is_deleted", "metadata",
                  "created_by", "updated_by", "created_at", "updated_at")
AUDIT_COLUMNS = ("id", "timestamp", "agent_id", "task_id", "action_type", "action_data", "result",
                 "memory_operation_type", "memory_namespace", "memory_entry_id")
SESSION_COLUMNS = ("id", "app_name", "user_id", "project_id", "status", "events", "state", "metadata", "created_at",
                   "last_update_time", "terminated_at", "archived_at")
EVENT_COLUMNS = ("session_id", "seq", "created_at", "type", "payload")
TASK_COLUMNS = ("id", "prompt", "agent_type", "priority", "status", "input_data", "result_data", "error_message",
                "retry_count", "max_retries", "max_execution_timeout_seconds", "submitted_at", "started_at",
                "completed_at", "last_updated_at", "created_by", "parent_task_id", "dependencies", "session_id")
AGENT_COLUMNS = ("id", "name", "specialization", "task_id", "state", "model", "spawned_at", "terminated_at",
                 "resource_usage", "session_id")
CHECKPOINT_COLUMNS = ("task_id", "iteration", "state", "created_at", "session_id")
STATE_COLUMNS = ("id", "task_id", "key", "value", "created_at", "updated_at")
METRIC_COLUMNS = ("id", "timestamp", "metric_name", "metric_value", "labels")
# (table, columns, order) in foreign-key order
TABLES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("memory_entries", MEMORY_COLUMNS, "id"),
    ("audit", AUDIT_COLUMNS, "id"),
    ("sessions", SESSION_COLUMNS, "id"),
    ("session_events", EVENT_COLUMNS, "session_id, seq"),
    ("tasks", TASK_COLUMNS, "rowid"),  # insertion order: the claim order's last key (seq)
    ("agents", AGENT_COLUMNS, "id"),
    ("checkpoints", CHECKPOINT_COLUMNS, "task_id, iteration"),
    ("state", STATE_COLUMNS, "id"),
    ("metrics", METRIC_COLUMNS, "id"),
)
_JSON = {"memory_entries": {"value", "metadata"}, "audit": {"action_data"}, "sessions": {"events", "state", "metadata"},
         "session_events": {"payload"}, "tasks": {"input_data", "result_data", "dependencies"},
         "agents": {"resource_usage"}, "checkpoints": {"state"}, "state": set(), "metrics": set()}
_IDENTITY = ("memory_entries", "audit", "state", "metrics")
_OCCUPIED = (("memory_entries", "memory versions"), ("sessions", "sessions"), ("tasks", "tasks"))


@dataclass(frozen=True)
class TransferReport:
    source: str
    target: str
    memory_entries: int
    audit_rows: int
    sessions: int = 0
    session_events: int = 0
    tasks: int = 0
    agents: int = 0
    checkpoints: int = 0
    state_rows: int = 0
    metrics: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    values = ", ".join("%s::json" if c in _JSON[table] else "%s" for c in columns)
    overriding = " OVERRIDING SYSTEM VALUE" if table in _IDENTITY else ""
    return f"INSERT INTO {table} ({', '.join(columns)}){overriding} VALUES ({values})"


def read_source(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the agent tables of an SQLite store, by table, in a stable order."""
    if not path.exists():
        raise IndexerError(f"no database at {path} to move the agent store from")
    conn = driver.connect(path, readonly=True)
    try:
        rows = {table: [tuple(r) for r in conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")]
                for table, cols, order in TABLES}
    finally:
        conn.close()
    deleted = MEMORY_COLUMNS.index("is_deleted")
    rows["memory_entries"] = [(*r[:deleted], bool(r[deleted]), *r[deleted + 1:]) for r in rows["memory_entries"]]
    return rows


def _write(conn: psycopg.Connection[Any], rows: dict[str, list[tuple[Any, ...]]]) -> None:
    parent = TASK_COLUMNS.index("parent_task_id")
    parents = [(r[parent], r[0]) for r in rows["tasks"] if r[parent] is not None]
    rows = {**rows, "tasks": [(*r[:parent], None, *r[parent + 1:]) for r in rows["tasks"]]}
    with conn.cursor() as cur:
        for table, columns, _ in TABLES:
            cur.executemany(_insert_sql(table, columns), rows[table])
        cur.executemany("UPDATE tasks SET parent_task_id = %s WHERE id = %s", parents)
    for table in _IDENTITY:
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                     f"(SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)")


def copy_agent_store(source: Path, dsn: str) -> TransferReport:
    """Copy every row of the agent tables of ``source`` into the (migrated, empty) store at ``dsn``."""
    rows = read_source(source)
    where = migrations.redact(dsn)
    with migrations.connect(dsn) as conn:
        try:
            with conn.transaction():
                conn.execute(f"LOCK TABLE {', '.join(t for t, _, _ in TABLES)} IN EXCLUSIVE MODE")
                for table, what in _OCCUPIED:
                    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                    if row and row[0]:
                        raise IndexerError(f"{where} already holds {row[0]} {what}; an agent store is moved only "
                                           "into an empty one (nothing was copied)")
                _write(conn, rows)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
            raise IndexerError(f"a row of {source} does not fit {where}: {migrations.one_line(exc)} "
                               "(nothing was copied)") from None
    counts = {table: len(found) for table, found in rows.items()}
    return TransferReport(str(source), where, counts["memory_entries"], counts["audit"], counts["sessions"],
                          counts["session_events"], counts["tasks"], counts["agents"], counts["checkpoints"],
                          counts["state"], counts["metrics"])


copy_memories = copy_agent_store  # the name of the first version (memories only)
