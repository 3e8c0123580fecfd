"""The hot queries, by name: their SQL is what the services run, and ``doctor`` and
``Database.get_index_usage()`` check that each plan SEARCHes an index instead of SCANning."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from indexer.storage.driver import Connection

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


def sessions_page_sql(filters: tuple[str, ...] | list[str], with_cursor: bool) -> str:
    """SQL for :data:`SESSION_FILTERS` columns ``filters`` (params in that order), then the
    cursor (created_at, id) if ``with_cursor``, then the limit."""
    clauses = [f"{name} = ?" for name in SESSION_FILTERS if name in filters]
    if with_cursor:
        clauses.append("(created_at, id) < (?, ?)")
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    return f"SELECT {SESSION_LIST_COLUMNS} FROM sessions {where}ORDER BY created_at DESC, id DESC LIMIT ?"


SESSIONS_BY_USER = sessions_page_sql(("user_id",), True)
SESSIONS_BY_PROJECT = sessions_page_sql(("project_id",), True)
SESSIONS_BY_STATUS_PAGE = sessions_page_sql(("status",), True)
SESSIONS_RECENT = sessions_page_sql((), True)
SESSIONS_BY_APP = sessions_page_sql(("app_name",), True)


@dataclass(frozen=True)
class HotQuery:
    name: str
    sql: str
    params: tuple[Any, ...]


HOT_QUERIES: tuple[HotQuery, ...] = (
    HotQuery("session_by_id", SESSION_BY_ID, ("s-1",)),
    HotQuery("session_events_page", SESSION_EVENTS_PAGE, ("s-1", 100, 50)),
    HotQuery("sessions_by_status", SESSIONS_BY_STATUS, ("active", 50)),
    HotQuery("memory_by_namespace_key", MEMORY_LATEST, ("user:alice", "theme")),
    HotQuery("memory_prefix_listing", MEMORY_PREFIX_PAGE, memory_prefix_params("user:alice", None, 50)),
    HotQuery("documents_pending_stale", DOCUMENTS_TO_SYNC, (100,)),
    HotQuery("document_by_path", DOCUMENT_BY_PATH, ("/notes/a.md",)),
    HotQuery("task_dequeue", TASK_DEQUEUE, ()),
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


def plan_verdict(plan: list[str]) -> dict[str, Any]:
    """Which index the plan's first table access uses, and whether any step is a SCAN."""
    scans = [line for line in plan if line.startswith("SCAN") and "CONSTANT ROW" not in line]
    index = None
    for line in plan:
        match = _USING.search(line)
        if match:
            index = match.group(1) or match.group(2)
            break
    return {"plan": plan, "index": index, "uses_index": index is not None and not scans}
