"""The hot queries, by name: their SQL is what the services run, and ``doctor`` and
``Database.get_index_usage()`` check that each plan SEARCHes an index instead of SCANning."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from indexer.storage.sqlite.driver import Connection

SESSION_BY_ID = "SELECT * FROM sessions WHERE id = ?"
# A page of a session's events after a sequence number (schema/0004_session_events.sql).
SESSION_EVENTS_PAGE = (
    "SELECT seq, created_at, type, payload FROM session_events WHERE session_id = ? AND seq > ? "
    "ORDER BY seq LIMIT ?"
)
SESSIONS_BY_STATUS = (
    "SELECT * FROM sessions WHERE status = ? ORDER BY created_at DESC, id DESC LIMIT ?"
)
MEMORY_LATEST = (
    "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
    "ORDER BY version DESC LIMIT 1"
)
# Latest live version of each key under a namespace prefix, whole ':' segments only, in
# (namespace, key) order after a cursor. Two index ranges merged in order: the prefix
# namespace itself, then its children [prefix || ':', prefix || ';') (';' follows ':').
# A single range [prefix, prefix || ';') would also walk namespaces such as 'user:10' ..
# 'user:19…' for the prefix 'user:1' ('0'-'9' sort before ':') and filter them out.
_LATEST_LIVE = (
    "m.is_deleted = 0 AND m.version = (SELECT max(v.version) FROM memory_entries AS v "
    "WHERE v.namespace = m.namespace AND v.key = m.key AND v.is_deleted = 0)"
)


def _memory_prefix_sql(extra: str = "") -> str:
    return (
        "SELECT m.* FROM memory_entries AS m "
        f"WHERE m.namespace = ? AND m.key > ? AND {_LATEST_LIVE}{extra} "
        "UNION ALL "
        "SELECT m.* FROM memory_entries AS m "
        f"WHERE (m.namespace, m.key) > (?, ?) AND m.namespace < ? AND {_LATEST_LIVE}{extra} "
        "ORDER BY namespace, key LIMIT ?"
    )


MEMORY_PREFIX_PAGE = _memory_prefix_sql()
# The same with a memory_type filter; the unary + keeps the planner on the namespace index
# (idx_memory_type_updated would need a temp B-tree sort of every row of that type).
MEMORY_PREFIX_TYPE_PAGE = _memory_prefix_sql(" AND +m.memory_type = ?")
MEMORY_VERSION = "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND version = ?"
MEMORY_HISTORY = "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? ORDER BY version"
# Episodic keys whose latest live version was last updated before a cutoff (TTL cleanup).
MEMORY_EPISODIC_EXPIRED = (
    "SELECT m.id, m.namespace, m.key, m.version, m.updated_at FROM memory_entries AS m "
    "WHERE m.memory_type = 'episodic' AND m.updated_at < ? AND " + _LATEST_LIVE
)
DOCUMENTS_TO_SYNC = (
    "SELECT id, file_path, sync_status FROM document_index "
    "WHERE sync_status IN ('pending', 'stale') ORDER BY last_synced_at LIMIT ?"
)
DOCUMENT_BY_PATH = "SELECT * FROM document_index WHERE file_path = ?"
TASK_DEQUEUE = (
    "SELECT id FROM tasks WHERE status = 'pending' "
    "ORDER BY priority DESC, submitted_at ASC LIMIT 1"
)
# Tasks (indexer/storage/sqlite/task_store.py). A pending task is runnable when none of its
# dependencies is anything but completed (blocked tasks wait in status 'blocked'; the check
# here also holds for rows written by other code). json_each walks one row's JSON array; a
# value that is not JSON (a row written by other code) counts as no dependencies instead of
# failing every claim with "malformed JSON".
_DEPS = "json_each(CASE WHEN json_valid({table}.dependencies) THEN {table}.dependencies END)"
_DEPS_DONE = (
    f"NOT EXISTS (SELECT 1 FROM {_DEPS.format(table='t')} AS d LEFT JOIN tasks AS p ON p.id = d.value "
    "WHERE p.status IS NOT 'completed')"
)
# Priority, then submission time, then insertion order (the rowid, which ends every index
# entry, so idx_tasks_status_priority still gives the order): PostgreSQL's claim has the same rule
# (its seq column, schema/postgres/0005).
TASK_CLAIM = (
    f"SELECT t.id FROM tasks AS t WHERE t.status = 'pending' AND {_DEPS_DONE} "
    "ORDER BY t.priority DESC, t.submitted_at ASC, t.rowid ASC LIMIT 1"
)
TASK_CLAIM_TYPE = (
    f"SELECT t.id FROM tasks AS t WHERE t.status = 'pending' AND t.agent_type = ? AND {_DEPS_DONE} "
    "ORDER BY t.priority DESC, t.submitted_at ASC, t.rowid ASC LIMIT 1"
)
# Every running task, oldest heartbeat (last_updated_at) first, with the busy agent holding
# it and that claim's lease: the partial index idx_tasks_running_timeout holds only these.
TASK_RECLAIM = (
    "SELECT t.id, t.last_updated_at, t.started_at, t.max_execution_timeout_seconds, t.retry_count, "
    "t.max_retries, a.id AS agent_id, json_extract(a.resource_usage, '$.lease_seconds') AS lease_seconds "
    "FROM tasks AS t LEFT JOIN agents AS a ON a.task_id = t.id AND +a.state = 'busy' "
    "WHERE t.status = 'running' ORDER BY t.last_updated_at"
)
_HAS_DEP = "EXISTS (SELECT 1 FROM " + _DEPS + " AS d WHERE d.value = ?)"
TASK_BLOCKED_DEPENDENTS = f"SELECT t.id FROM tasks AS t WHERE t.status = 'blocked' AND {_HAS_DEP.format(table='t')}"
TASK_UNBLOCK = (
    "UPDATE tasks SET status = 'pending', last_updated_at = ? WHERE status = 'blocked' AND "
    + _HAS_DEP.format(table="tasks") + " AND " + _DEPS_DONE.replace("t.dependencies", "tasks.dependencies")
    + " RETURNING id"
)
# (the unary + keeps the planner on idx_agents_task: every claim adds a 'terminated' row
# per task at the end, so idx_agents_state would walk all busy agents of every task)
AGENT_HOLDING_TASK = "SELECT * FROM agents WHERE task_id = ? AND +state = 'busy' ORDER BY spawned_at DESC LIMIT 1"
CHECKPOINT_LATEST = "SELECT * FROM checkpoints WHERE task_id = ? ORDER BY iteration DESC LIMIT 1"
AUDIT_BY_TASK = "SELECT * FROM audit WHERE task_id = ? ORDER BY timestamp DESC, id DESC LIMIT ?"
AUDIT_BY_MEMORY_ENTRY = (
    "SELECT * FROM audit WHERE memory_entry_id = ? ORDER BY timestamp DESC LIMIT ?"
)


def _prefix_bounds(prefix: str, after: tuple[str, str] | None) -> tuple[Any, ...]:
    """(namespace, key lower bound) of each range; the first range is empty (namespace =
    NULL matches nothing) once the cursor is past the prefix namespace itself."""
    low = after if after is not None else (prefix, "")  # keys are never empty
    if low[0] == prefix:
        first: tuple[Any, Any] = (prefix, low[1])
    elif low[0] < prefix:
        first = (prefix, "")
    else:
        first = (None, "")
    second = max(tuple(low), (prefix + ":", ""))
    return first, second


def memory_prefix_params(prefix: str, after: tuple[str, str] | None, limit: int) -> tuple[Any, ...]:
    first, second = _prefix_bounds(prefix, after)
    return (*first, *second, prefix + ";", limit)


def memory_prefix_type_params(prefix: str, memory_type: str, after: tuple[str, str] | None,
                              limit: int) -> tuple[Any, ...]:
    first, second = _prefix_bounds(prefix, after)
    return (*first, memory_type, *second, prefix + ";", memory_type, limit)


# Listing sessions, newest first, with any combination of filters and an optional cursor
# (created_at, id) of the last row seen. The plan SEARCHes idx_sessions_user_created,
# idx_sessions_project or idx_sessions_status_created whenever one of those columns is
# filtered on; app_name alone and no filter at all SCAN until the schema has an index on
# (created_at) and on (app_name, created_at): SESSIONS_RECENT and SESSIONS_BY_APP join
# HOT_QUERIES with those indexes.
SESSION_FILTERS = ("app_name", "user_id", "project_id", "status")
SESSION_LIST_COLUMNS = (
    "id, app_name, user_id, project_id, status, state, metadata, created_at, last_update_time, "
    "terminated_at, archived_at, "
    "(SELECT coalesce(max(seq), 0) FROM session_events WHERE session_id = sessions.id) AS event_count"
)


def _page_sql(table: str, columns: str, order: str, allowed: tuple[str, ...],
              filters: tuple[str, ...] | list[str], with_cursor: bool) -> str:
    clauses = [f"{name} = ?" for name in allowed if name in filters]
    if with_cursor:
        clauses.append(f"({order}, id) < (?, ?)")
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    return f"SELECT {columns} FROM {table} {where}ORDER BY {order} DESC, id DESC LIMIT ?"


def sessions_page_sql(filters: tuple[str, ...] | list[str], with_cursor: bool) -> str:
    """SQL for :data:`SESSION_FILTERS` columns ``filters`` (params in that order), then the
    cursor (created_at, id) if ``with_cursor``, then the limit."""
    return _page_sql("sessions", SESSION_LIST_COLUMNS, "created_at", SESSION_FILTERS, filters, with_cursor)


SESSIONS_BY_USER = sessions_page_sql(("user_id",), True)
SESSIONS_BY_PROJECT = sessions_page_sql(("project_id",), True)
SESSIONS_BY_STATUS_PAGE = sessions_page_sql(("status",), True)
SESSIONS_RECENT = sessions_page_sql((), True)
SESSIONS_BY_APP = sessions_page_sql(("app_name",), True)



def session_set_status(session_id: str, old: str, new: str, now: str) -> tuple[str, list[Any]]:
    """The compare-and-set of a session's status from ``old`` to ``new`` (``?`` placeholders)
    and its params; "terminated" and "archived" stamp terminated_at / archived_at. Returns the
    row as listed (:data:`SESSION_LIST_COLUMNS`)."""
    stamp = {"terminated": ", terminated_at = ?", "archived": ", archived_at = ?"}.get(new, "")
    params: list[Any] = [new, now] + ([now] if stamp else []) + [session_id, old]
    sql = (f"UPDATE sessions SET status = ?, last_update_time = ?{stamp} WHERE id = ? AND status = ? "
           f"RETURNING {SESSION_LIST_COLUMNS}")
    return sql, params

# Listing tasks and agents, newest first, with a cursor; the session filters SEARCH
# idx_tasks_session / idx_agents_session ("sessions see their tasks and agents").
TASK_FILTERS = ("session_id", "status", "agent_type", "parent_task_id")
AGENT_FILTERS = ("session_id", "task_id", "state")


def tasks_page_sql(filters: tuple[str, ...] | list[str], with_cursor: bool) -> str:
    """:data:`TASK_FILTERS` columns ``filters`` (params in that order), then the cursor
    (submitted_at, id) if ``with_cursor``, then the limit."""
    return _page_sql("tasks", "*", "submitted_at", TASK_FILTERS, filters, with_cursor)


def agents_page_sql(filters: tuple[str, ...] | list[str], with_cursor: bool) -> str:
    return _page_sql("agents", "*", "spawned_at", AGENT_FILTERS, filters, with_cursor)


TASKS_BY_SESSION = tasks_page_sql(("session_id",), True)
AGENTS_BY_SESSION = agents_page_sql(("session_id",), True)


def page_query(kind: str, filters: dict[str, str], after: tuple[str, str] | None,
               limit: int) -> tuple[str, list[Any]]:
    """One page of a keyset listing of ``kind`` ('tasks', 'agents' or 'sessions'), newest
    first: its SQL (``?`` placeholders) and params, the filters given among the listing's
    filter columns, then the cursor position, then the limit."""
    build, allowed = {"tasks": (tasks_page_sql, TASK_FILTERS), "agents": (agents_page_sql, AGENT_FILTERS),
                      "sessions": (sessions_page_sql, SESSION_FILTERS)}[kind]
    names = [name for name in allowed if name in filters]
    params: list[Any] = [filters[name] for name in names]
    if after is not None:
        params.extend(after)
    params.append(limit)
    return build(names, after is not None), params

# A task row as the services read it (both engines; PostgreSQL's seq is not part of it).
TASK_COLUMNS = (
    "id, prompt, agent_type, priority, status, input_data, result_data, error_message, retry_count, "
    "max_retries, max_execution_timeout_seconds, submitted_at, started_at, completed_at, "
    "last_updated_at, created_by, parent_task_id, dependencies, session_id"
)
FINAL_TASK_STATES = ("completed", "failed", "cancelled")


def task_finish(task_id: str, old: str, new: str, now: str, *, result_json: str | None, error: str | None,
                retry: bool, json_value: str = "?") -> tuple[str, tuple[Any, ...]]:
    """The compare-and-set of a task from ``old`` to ``new`` (``?`` placeholders) and its
    params: ``retry`` adds one to retry_count and clears started_at (back to pending); a final
    state stamps completed_at. ``json_value``: the placeholder of result_data (PostgreSQL casts)."""
    sets = ["status = ?", "last_updated_at = ?"]
    params: list[Any] = [new, now]
    if new in FINAL_TASK_STATES:
        sets.append("completed_at = ?")
        params.append(now)
    if result_json is not None:
        sets.append(f"result_data = {json_value}")
        params.append(result_json)
    if error is not None:
        sets.append("error_message = ?")
        params.append(error)
    if retry:
        sets.extend(["retry_count = COALESCE(retry_count, 0) + 1", "started_at = NULL"])
    sql = f"UPDATE tasks SET {', '.join(sets)} WHERE id = ? AND status = ? RETURNING {TASK_COLUMNS}"
    return sql, (*params, task_id, old)



# pending -> running (params: now, now, id), and a running task's heartbeat (params: now, id);
# ``?`` placeholders, both engines.
TASK_START = (
    "UPDATE tasks SET status = 'running', started_at = ?, last_updated_at = ?, completed_at = NULL "
    f"WHERE id = ? AND status = 'pending' RETURNING {TASK_COLUMNS}"
)
TASK_TOUCH = "UPDATE tasks SET last_updated_at = ? WHERE id = ? AND status = 'running'"

@dataclass(frozen=True)
class HotQuery:
    name: str
    sql: str
    params: tuple[Any, ...]
    # aliases of json_each() over one row's JSON value: their "SCAN d VIRTUAL TABLE" walks
    # that value's elements, not a table
    json_each: tuple[str, ...] = ()


HOT_QUERIES: tuple[HotQuery, ...] = (
    HotQuery("session_by_id", SESSION_BY_ID, ("s-1",)),
    HotQuery("session_events_page", SESSION_EVENTS_PAGE, ("s-1", 100, 50)),
    HotQuery("sessions_by_status", SESSIONS_BY_STATUS, ("active", 50)),
    HotQuery("memory_by_namespace_key", MEMORY_LATEST, ("user:alice", "theme")),
    HotQuery("memory_prefix_listing", MEMORY_PREFIX_PAGE, memory_prefix_params("user:alice", None, 50)),
    HotQuery("documents_pending_stale", DOCUMENTS_TO_SYNC, (100,)),
    HotQuery("document_by_path", DOCUMENT_BY_PATH, ("/notes/a.md",)),
    HotQuery("task_dequeue", TASK_DEQUEUE, ()),
    HotQuery("task_claim", TASK_CLAIM, (), json_each=("d",)),
    HotQuery("task_claim_by_type", TASK_CLAIM_TYPE, ("general",), json_each=("d",)),
    HotQuery("task_reclaim", TASK_RECLAIM, ()),
    HotQuery("task_blocked_dependents", TASK_BLOCKED_DEPENDENTS, ("t-1",), json_each=("d",)),
    HotQuery("task_unblock", TASK_UNBLOCK, ("2025-01-01T00:00:00.000Z", "t-1"), json_each=("d",)),
    HotQuery("agent_holding_task", AGENT_HOLDING_TASK, ("t-1",)),
    HotQuery("checkpoint_latest", CHECKPOINT_LATEST, ("t-1",)),
    HotQuery("audit_by_task", AUDIT_BY_TASK, ("t-1", 50)),
    HotQuery("tasks_by_session", TASKS_BY_SESSION, ("s-1", "2025-01-01T00:00:00.000Z", "t-1", 50)),
    HotQuery("agents_by_session", AGENTS_BY_SESSION, ("s-1", "2025-01-01T00:00:00.000Z", "a-1", 50)),
    HotQuery("audit_by_memory_entry", AUDIT_BY_MEMORY_ENTRY, (1, 50)),
    HotQuery("memory_version", MEMORY_VERSION, ("user:alice", "theme", 1)),
    HotQuery("memory_history", MEMORY_HISTORY, ("user:alice", "theme")),
    HotQuery("memory_prefix_listing_by_type", MEMORY_PREFIX_TYPE_PAGE,
             memory_prefix_type_params("user:alice", "semantic", None, 50)),
    HotQuery("memory_episodic_expired", MEMORY_EPISODIC_EXPIRED, ("2025-01-01T00:00:00.000Z",)),
    HotQuery("sessions_by_user", SESSIONS_BY_USER, ("alice", "2025-01-01T00:00:00.000Z", "s-1", 50)),
    HotQuery("sessions_by_project", SESSIONS_BY_PROJECT, ("p-1", "2025-01-01T00:00:00.000Z", "s-1", 50)),
    HotQuery("sessions_by_status_page", SESSIONS_BY_STATUS_PAGE, ("terminated", "2025-01-01T00:00:00.000Z", "s-1", 50)),
    HotQuery("sessions_recent", SESSIONS_RECENT, ("2025-01-01T00:00:00.000Z", "s-1", 50)),
    HotQuery("sessions_by_app", SESSIONS_BY_APP, ("app", "2025-01-01T00:00:00.000Z", "s-1", 50)),
)

_USING = re.compile(r"USING (?:COVERING )?INDEX (\w+)|USING (INTEGER PRIMARY KEY)")


def explain(conn: Connection, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[str]:
    """EXPLAIN QUERY PLAN as its detail lines."""
    return [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, tuple(params)).fetchall()]


def plan_verdict(plan: list[str], json_each: tuple[str, ...] = ()) -> dict[str, Any]:
    """Which index the plan's first table access uses, and whether any step is a SCAN (but
    those of the ``json_each`` aliases: one row's JSON array, see :class:`HotQuery`)."""
    per_row = tuple(f"SCAN {alias} VIRTUAL TABLE" for alias in json_each)
    scans = [line for line in plan
             if line.startswith("SCAN") and "CONSTANT ROW" not in line and not line.startswith(per_row)]
    index = None
    for line in plan:
        match = _USING.search(line)
        if match:
            index = match.group(1) or match.group(2)
            break
    return {"plan": plan, "index": index, "uses_index": index is not None and not scans}
