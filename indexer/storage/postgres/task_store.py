"""SQL of ``tasks``, ``agents``, ``checkpoints`` and their audit rows on PostgreSQL: the same
functions, with the same meaning, as :mod:`indexer.storage.sqlite.task_store` (checked against
:class:`indexer.storage.protocols.TaskStatements` by mypy and by tests/test_tasks.py, which runs
on both engines).

On SQLite one ``BEGIN IMMEDIATE`` serialises every operation; here writers run side by side
under READ COMMITTED, so each operation takes the row locks its decisions rest on:

* a claim picks its task with ``FOR UPDATE SKIP LOCKED`` (two claimers never take the same
  task, nor wait on each other's candidate), and reclaim walks the running tasks the same way;
* heartbeat, complete, fail, cancel and checkpoints start with :func:`lock_task` (the task's
  row, ``FOR UPDATE``), so what they read is what they change;
* a submit reads its dependencies ``FOR SHARE``: a dependency cannot complete or fail between
  the check and the insert (the new task would stay blocked, or escape the cancel);
* unblocking locks the blocked dependents before it reads the dependencies' statuses in a new
  statement, so two dependencies completing together cannot both miss the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from indexer.storage.records import compact_json
from indexer.storage.sqlite import hot_queries

Connection = psycopg.Connection[Any]

TASK_COLUMNS = hot_queries.TASK_COLUMNS
INSERT_TASK = (
    "INSERT INTO tasks (id, prompt, agent_type, priority, status, input_data, retry_count, max_retries, "
    "max_execution_timeout_seconds, submitted_at, last_updated_at, created_by, parent_task_id, "
    "dependencies, session_id) VALUES (%s, %s, %s, %s, %s, %s::json, 0, %s, %s, %s, %s, %s, %s, %s::json, %s) "
    f"ON CONFLICT (id) DO NOTHING RETURNING {TASK_COLUMNS}"
)
TASK_BY_ID = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = %s"
LOCK_TASK = "SELECT 1 FROM tasks WHERE id = %s FOR UPDATE"
STATUS_SHARED = "SELECT status FROM tasks WHERE id = %s FOR SHARE"
INSERT_AGENT = (
    "INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at, resource_usage, session_id) "
    "VALUES (%s, %s, %s, %s, 'busy', %s, %s, %s::json, %s)"
)
AGENT_BY_ID = "SELECT * FROM agents WHERE id = %s"
INSERT_AUDIT = (
    "INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result) "
    "VALUES (%s, %s, %s, %s, %s::json, %s)"
)
AUDIT_FOR_TASK = hot_queries.AUDIT_BY_TASK.replace("?", "%s")
START = hot_queries.TASK_START.replace("?", "%s")
TOUCH = hot_queries.TASK_TOUCH.replace("?", "%s")
SESSION_STATUS = "SELECT status FROM sessions WHERE id = %s FOR SHARE"
# a task's dependencies as a set of text rows; a value that is not a JSON array counts as none
_DEPS = "json_array_elements_text(CASE WHEN json_typeof({table}.dependencies) = 'array' THEN {table}.dependencies END)"
_DEPS_DONE = (
    f"NOT EXISTS (SELECT 1 FROM {_DEPS.format(table='t')} AS d(value) LEFT JOIN tasks AS p ON p.id = d.value "
    "WHERE p.status IS DISTINCT FROM 'completed')"
)
# Priority, then submission time, then insertion order (seq, schema/postgres/0005): the same rule as
# SQLite's claim (hot_queries.TASK_CLAIM, whose index ends in the rowid).
_CLAIM_ORDER = "ORDER BY t.priority DESC, t.submitted_at ASC, t.seq ASC LIMIT 1 FOR UPDATE OF t SKIP LOCKED"
CLAIM = f"SELECT t.id FROM tasks AS t WHERE t.status = 'pending' AND {_DEPS_DONE} {_CLAIM_ORDER}"
CLAIM_TYPE = f"SELECT t.id FROM tasks AS t WHERE t.status = 'pending' AND t.agent_type = %s AND {_DEPS_DONE} {_CLAIM_ORDER}"
RECLAIM = (
    "SELECT t.id, t.last_updated_at, t.started_at, t.max_execution_timeout_seconds, t.retry_count, "
    "t.max_retries, a.id AS agent_id, (a.resource_usage::jsonb ->> 'lease_seconds')::float8 AS lease_seconds "
    "FROM tasks AS t LEFT JOIN agents AS a ON a.task_id = t.id AND a.state = 'busy' "
    "WHERE t.status = 'running' ORDER BY t.last_updated_at FOR UPDATE OF t SKIP LOCKED"
)
_HAS_DEP = "EXISTS (SELECT 1 FROM " + _DEPS + " AS d(value) WHERE d.value = %s)"
BLOCKED_DEPENDENTS = f"SELECT t.id FROM tasks AS t WHERE t.status = 'blocked' AND {_HAS_DEP.format(table='t')} ORDER BY t.id"
LOCK_BLOCKED_DEPENDENTS = BLOCKED_DEPENDENTS + " FOR UPDATE OF t"
UNBLOCK = (
    "UPDATE tasks AS t SET status = 'pending', last_updated_at = %s WHERE t.status = 'blocked' AND "
    + _HAS_DEP.format(table="t") + " AND " + _DEPS_DONE + " RETURNING t.id"
)
REACHABLE = (
    "WITH RECURSIVE reach(id) AS (SELECT value FROM json_array_elements_text(%s::json) AS s(value) "
    "UNION SELECT d.value FROM reach JOIN tasks AS t ON t.id = reach.id "
    f"CROSS JOIN LATERAL {_DEPS.format(table='t')} AS d(value)) "
    "SELECT 1 FROM reach WHERE id = %s LIMIT 1"
)
STATUS_COUNTS = "SELECT status, count(*) AS n FROM tasks GROUP BY status"
AGENT_HOLDING_TASK = "SELECT * FROM agents WHERE task_id = %s AND state = 'busy' ORDER BY spawned_at DESC LIMIT 1"
CHECKPOINT_LATEST = hot_queries.CHECKPOINT_LATEST.replace("?", "%s")
CHECKPOINT = "SELECT * FROM checkpoints WHERE task_id = %s AND iteration = %s"


# --- tasks ----------------------------------------------------------------------------------------

def lock_task(conn: Connection, task_id: str) -> None:
    """Wait for, then hold until the end of the transaction, the task's row."""
    conn.execute(LOCK_TASK, (task_id,))


def get_task(conn: Connection, task_id: str) -> Any | None:
    return conn.execute(TASK_BY_ID, (task_id,)).fetchone()


def statuses(conn: Connection, task_ids: Sequence[str]) -> dict[str, str]:
    """{id: status} of those of ``task_ids`` that exist, each held (``FOR SHARE``) until the end
    of the transaction, in one order (no deadlock between two submits)."""
    found: dict[str, str] = {}
    for task_id in sorted(set(task_ids)):
        row = conn.execute(STATUS_SHARED, (task_id,)).fetchone()
        if row is not None:
            found[task_id] = str(row["status"])
    return found


def reaches(conn: Connection, dependencies: Sequence[str], task_id: str) -> bool:
    return conn.execute(REACHABLE, (compact_json(list(dependencies)), task_id)).fetchone() is not None


def session_status(conn: Connection, session_id: str) -> str | None:
    row = conn.execute(SESSION_STATUS, (session_id,)).fetchone()
    return None if row is None else str(row["status"])


def insert_task(conn: Connection, *, task_id: str, prompt: str, agent_type: str, priority: int, status: str,
                input_json: str, max_retries: int, timeout_seconds: int, now: str, created_by: str | None,
                parent_task_id: str | None, dependencies_json: str, session_id: str | None) -> Any:
    return conn.execute(INSERT_TASK, (task_id, prompt, agent_type, priority, status, input_json, max_retries,
                                      timeout_seconds, now, now, created_by, parent_task_id, dependencies_json,
                                      session_id)).fetchone()


def next_runnable(conn: Connection, agent_type: str | None) -> Any | None:
    """The next pending task whose dependencies are all completed, locked for this claim; tasks
    another claimer holds are skipped, not waited for."""
    if agent_type is None:
        return conn.execute(CLAIM).fetchone()
    return conn.execute(CLAIM_TYPE, (agent_type,)).fetchone()


def start(conn: Connection, task_id: str, now: str) -> Any:
    return conn.execute(START, (now, now, task_id)).fetchone()


def touch(conn: Connection, task_id: str, now: str) -> int:
    return int(conn.execute(TOUCH, (now, task_id)).rowcount)


def finish(conn: Connection, task_id: str, old: str, new: str, now: str, *, result_json: str | None = None,
           error: str | None = None, retry: bool = False) -> Any | None:
    """Move a task from ``old`` to ``new`` (compare-and-set); None if it was not ``old``."""
    sql, params = hot_queries.task_finish(task_id, old, new, now, result_json=result_json, error=error, retry=retry,
                                          json_value="?::json")
    return conn.execute(sql.replace("?", "%s"), params).fetchone()


def unblock_dependents(conn: Connection, task_id: str, now: str) -> list[str]:
    """blocked → pending for the dependents of ``task_id`` whose dependencies are now all
    completed: locked first, then checked by a new statement (which sees every commit made
    while it waited for them)."""
    if not conn.execute(LOCK_BLOCKED_DEPENDENTS, (task_id,)).fetchall():
        return []
    return sorted(str(r["id"]) for r in conn.execute(UNBLOCK, (now, task_id)).fetchall())


def blocked_dependents(conn: Connection, task_id: str) -> list[str]:
    return [str(r["id"]) for r in conn.execute(BLOCKED_DEPENDENTS, (task_id,)).fetchall()]


def running_with_agents(conn: Connection) -> list[Any]:
    """Every running task no other operation holds, with its busy agent and lease, locked."""
    return conn.execute(RECLAIM).fetchall()


def status_counts(conn: Connection) -> dict[str, int]:
    return {str(r["status"]): int(r["n"]) for r in conn.execute(STATUS_COUNTS).fetchall()}


def page(conn: Connection, filters: dict[str, str], after: tuple[str, str] | None, limit: int) -> list[Any]:
    sql, params = hot_queries.page_query("tasks", filters, after, limit)
    return conn.execute(sql.replace("?", "%s"), params).fetchall()


# --- agents -----------------------------------------------------------------------------------------

def insert_agent(conn: Connection, *, agent_id: str, name: str, specialization: str, task_id: str, model: str,
                 now: str, lease_seconds: float, session_id: str | None) -> None:
    conn.execute(INSERT_AGENT, (agent_id, name, specialization, task_id, model, now,
                                compact_json({"lease_seconds": lease_seconds}), session_id))


def get_agent(conn: Connection, agent_id: str) -> Any | None:
    return conn.execute(AGENT_BY_ID, (agent_id,)).fetchone()


def current_agent(conn: Connection, task_id: str) -> Any | None:
    return conn.execute(AGENT_HOLDING_TASK, (task_id,)).fetchone()


def _set_usage(key: str) -> str:
    return (f"resource_usage = (COALESCE(resource_usage::jsonb, '{{}}'::jsonb) "
            f"|| jsonb_build_object('{key}', %s::jsonb))::json")


def set_lease(conn: Connection, agent_id: str, lease_seconds: float) -> None:
    conn.execute(f"UPDATE agents SET {_set_usage('lease_seconds')} WHERE id = %s", (compact_json(lease_seconds), agent_id))


def terminate_agent(conn: Connection, agent_id: str, outcome: str, now: str) -> None:
    conn.execute(f"UPDATE agents SET state = 'terminated', terminated_at = %s, {_set_usage('outcome')} "
                 "WHERE id = %s AND state = 'busy'", (now, compact_json(outcome), agent_id))


def agents_page(conn: Connection, filters: dict[str, str], after: tuple[str, str] | None, limit: int) -> list[Any]:
    sql, params = hot_queries.page_query("agents", filters, after, limit)
    return conn.execute(sql.replace("?", "%s"), params).fetchall()


# --- checkpoints and audit -------------------------------------------------------------------------

def latest_checkpoint(conn: Connection, task_id: str) -> Any | None:
    return conn.execute(CHECKPOINT_LATEST, (task_id,)).fetchone()


def checkpoint(conn: Connection, task_id: str, iteration: int) -> Any | None:
    return conn.execute(CHECKPOINT, (task_id, iteration)).fetchone()


def insert_checkpoint(conn: Connection, task_id: str, iteration: int, state_json: str, now: str,
                      session_id: str | None) -> Any:
    return conn.execute("INSERT INTO checkpoints (task_id, iteration, state, created_at, session_id) "
                        "VALUES (%s, %s, %s::json, %s, %s) RETURNING *",
                        (task_id, iteration, state_json, now, session_id)).fetchone()


def insert_audit(conn: Connection, *, timestamp: str, task_id: str, action: str, data: dict[str, Any],
                 result: str | None, agent_id: str | None = None) -> None:
    conn.execute(INSERT_AUDIT, (timestamp, agent_id, task_id, action, compact_json(data), result))


def audit_rows(conn: Connection, task_id: str, limit: int) -> list[Any]:
    return conn.execute(AUDIT_FOR_TASK, (task_id, limit)).fetchall()
