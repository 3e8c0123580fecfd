"""SQL of ``tasks``, ``agents``, ``checkpoints`` and their audit rows, for
:class:`indexer.agent.tasks.TaskService`.

Plain synchronous functions on the SQLite connection: the service runs a whole operation
(its statements, its audit rows, the commit) as one call of
:meth:`indexer.storage.sqlite.database.Database.run`, inside ``BEGIN IMMEDIATE``, so a task read
here and then changed cannot be changed by another process in between. The rules (which
transition is legal, when a lease has expired) are the service's; these functions only read
and write rows. :mod:`indexer.storage.postgres.task_store` offers the same functions on
PostgreSQL (``FOR UPDATE SKIP LOCKED`` in :func:`next_runnable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from indexer.storage.records import compact_json
from indexer.storage.sqlite import hot_queries
from indexer.storage.sqlite.driver import Connection

TASK_COLUMNS = hot_queries.TASK_COLUMNS
# No RETURNING on INSERTs (SQLite would code the FK checks of child tables, full scans).
INSERT_TASK = (
    "INSERT INTO tasks (id, prompt, agent_type, priority, status, input_data, retry_count, max_retries, "
    "max_execution_timeout_seconds, submitted_at, last_updated_at, created_by, parent_task_id, "
    "dependencies, session_id) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)"
)
TASK_BY_ID = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"
INSERT_AGENT = (
    "INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at, resource_usage, session_id) "
    "VALUES (?, ?, ?, ?, 'busy', ?, ?, ?, ?)"
)
AGENT_BY_ID = "SELECT * FROM agents WHERE id = ?"
INSERT_AUDIT = (
    "INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result) VALUES (?, ?, ?, ?, ?, ?)"
)
AUDIT_FOR_TASK = hot_queries.AUDIT_BY_TASK
SESSION_STATUS = "SELECT status FROM sessions WHERE id = ?"
# Every task reachable from the ids of a JSON array by following dependencies (cycle check).
REACHABLE = (
    "WITH RECURSIVE reach(id) AS (SELECT value FROM json_each(?) "
    "UNION SELECT d.value FROM reach JOIN tasks AS t ON t.id = reach.id, "
    "json_each(CASE WHEN json_valid(t.dependencies) THEN t.dependencies END) AS d) "
    "SELECT 1 FROM reach WHERE id = ? LIMIT 1"
)
STATUS_COUNTS = "SELECT status, count(*) FROM tasks GROUP BY status"


# --- tasks ----------------------------------------------------------------------------------------

def lock_task(conn: Connection, task_id: str) -> None:
    """Hold the task's row until the end of the transaction: a no-op here, ``BEGIN IMMEDIATE``
    already serialises writers (PostgreSQL: ``SELECT … FOR UPDATE``)."""


def get_task(conn: Connection, task_id: str) -> Any | None:
    return conn.execute(TASK_BY_ID, (task_id,)).fetchone()


def statuses(conn: Connection, task_ids: Sequence[str]) -> dict[str, str]:
    """{id: status} of those of ``task_ids`` that exist."""
    found: dict[str, str] = {}
    for task_id in task_ids:
        row = conn.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is not None:
            found[task_id] = str(row[0])
    return found


def reaches(conn: Connection, dependencies: Sequence[str], task_id: str) -> bool:
    """True when ``task_id`` is among ``dependencies`` or what they depend on, transitively."""
    return conn.execute(REACHABLE, (compact_json(list(dependencies)), task_id)).fetchone() is not None


def session_status(conn: Connection, session_id: str) -> str | None:
    row = conn.execute(SESSION_STATUS, (session_id,)).fetchone()
    return None if row is None else str(row[0])


def insert_task(conn: Connection, *, task_id: str, prompt: str, agent_type: str, priority: int, status: str,
                input_json: str, max_retries: int, timeout_seconds: int, now: str, created_by: str | None,
                parent_task_id: str | None, dependencies_json: str, session_id: str | None) -> Any:
    conn.execute(INSERT_TASK, (task_id, prompt, agent_type, priority, status, input_json, max_retries,
                               timeout_seconds, now, now, created_by, parent_task_id, dependencies_json, session_id))
    return get_task(conn, task_id)


def next_runnable(conn: Connection, agent_type: str | None) -> Any | None:
    """The next pending task whose dependencies are all completed: highest priority, then
    oldest (idx_tasks_status_priority, read in order)."""
    if agent_type is None:
        return conn.execute(hot_queries.TASK_CLAIM, ()).fetchone()
    return conn.execute(hot_queries.TASK_CLAIM_TYPE, (agent_type,)).fetchone()


def start(conn: Connection, task_id: str, now: str) -> Any:
    """pending → running: started_at and last_updated_at (the heartbeat time) set to ``now``."""
    return conn.execute(hot_queries.TASK_START, (now, now, task_id)).fetchone()


def touch(conn: Connection, task_id: str, now: str) -> int:
    """A heartbeat: last_updated_at of a running task set to ``now``."""
    return int(conn.execute(hot_queries.TASK_TOUCH, (now, task_id)).rowcount)


def finish(conn: Connection, task_id: str, old: str, new: str, now: str, *, result_json: str | None = None,
           error: str | None = None, retry: bool = False) -> Any | None:
    """Move a task from ``old`` to ``new``. ``retry`` adds one to retry_count and clears
    started_at (back to pending); a final state stamps completed_at. None if it was not ``old``."""
    sql, params = hot_queries.task_finish(task_id, old, new, now, result_json=result_json, error=error, retry=retry)
    return conn.execute(sql, params).fetchone()


def unblock_dependents(conn: Connection, task_id: str, now: str) -> list[str]:
    """blocked → pending for the dependents of ``task_id`` whose dependencies are now all
    completed; their ids."""
    rows = conn.execute(hot_queries.TASK_UNBLOCK, (now, task_id)).fetchall()
    return [str(r[0]) for r in rows]


def blocked_dependents(conn: Connection, task_id: str) -> list[str]:
    """The blocked tasks that list ``task_id`` among their dependencies."""
    return [str(r[0]) for r in conn.execute(hot_queries.TASK_BLOCKED_DEPENDENTS, (task_id,)).fetchall()]


def running_with_agents(conn: Connection) -> list[Any]:
    """Every running task (idx_tasks_running_timeout, oldest heartbeat first) with the agent
    holding it (agent_id NULL for a task claimed outside this service) and its lease."""
    return conn.execute(hot_queries.TASK_RECLAIM, ()).fetchall()


def status_counts(conn: Connection) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in conn.execute(STATUS_COUNTS).fetchall()}


def page(conn: Connection, filters: dict[str, str], after: tuple[str, str] | None, limit: int) -> list[Any]:
    """Tasks newest first (submitted_at DESC, id DESC), filtered by columns of
    :data:`hot_queries.TASK_FILTERS`, after the cursor position."""
    sql, params = hot_queries.page_query("tasks", filters, after, limit)
    return conn.execute(sql, params).fetchall()


# --- agents -----------------------------------------------------------------------------------------

def insert_agent(conn: Connection, *, agent_id: str, name: str, specialization: str, task_id: str, model: str,
                 now: str, lease_seconds: float, session_id: str | None) -> None:
    conn.execute(INSERT_AGENT, (agent_id, name, specialization, task_id, model, now,
                                compact_json({"lease_seconds": lease_seconds}), session_id))


def get_agent(conn: Connection, agent_id: str) -> Any | None:
    return conn.execute(AGENT_BY_ID, (agent_id,)).fetchone()


def current_agent(conn: Connection, task_id: str) -> Any | None:
    """The busy agent holding a task (the newest, should there be several)."""
    return conn.execute(hot_queries.AGENT_HOLDING_TASK, (task_id,)).fetchone()


def set_lease(conn: Connection, agent_id: str, lease_seconds: float) -> None:
    conn.execute("UPDATE agents SET resource_usage = json_set(COALESCE(resource_usage, '{}'), '$.lease_seconds', ?) "
                 "WHERE id = ?", (lease_seconds, agent_id))


def terminate_agent(conn: Connection, agent_id: str, outcome: str, now: str) -> None:
    """busy → terminated, the outcome (completed, failed, cancelled, lease_expired…) kept in
    resource_usage."""
    conn.execute("UPDATE agents SET state = 'terminated', terminated_at = ?, "
                 "resource_usage = json_set(COALESCE(resource_usage, '{}'), '$.outcome', ?) "
                 "WHERE id = ? AND state = 'busy'", (now, outcome, agent_id))


def agents_page(conn: Connection, filters: dict[str, str], after: tuple[str, str] | None, limit: int) -> list[Any]:
    sql, params = hot_queries.page_query("agents", filters, after, limit)
    return conn.execute(sql, params).fetchall()


# --- checkpoints and audit -------------------------------------------------------------------------

def latest_checkpoint(conn: Connection, task_id: str) -> Any | None:
    return conn.execute(hot_queries.CHECKPOINT_LATEST, (task_id,)).fetchone()


def checkpoint(conn: Connection, task_id: str, iteration: int) -> Any | None:
    return conn.execute("SELECT * FROM checkpoints WHERE task_id = ? AND iteration = ?",
                        (task_id, iteration)).fetchone()


def insert_checkpoint(conn: Connection, task_id: str, iteration: int, state_json: str, now: str,
                      session_id: str | None) -> Any:
    conn.execute("INSERT INTO checkpoints (task_id, iteration, state, created_at, session_id) VALUES (?, ?, ?, ?, ?)",
                 (task_id, iteration, state_json, now, session_id))
    return checkpoint(conn, task_id, iteration)


def insert_audit(conn: Connection, *, timestamp: str, task_id: str, action: str, data: dict[str, Any],
                 result: str | None, agent_id: str | None = None) -> None:
    conn.execute(INSERT_AUDIT, (timestamp, agent_id, task_id, action, compact_json(data), result))


def audit_rows(conn: Connection, task_id: str, limit: int) -> list[Any]:
    """A task's audit rows, newest first (idx_audit_task)."""
    return conn.execute(AUDIT_FOR_TASK, (task_id, limit)).fetchall()
