"""The hot queries, by name: their SQL is what the services run, and ``doctor`` and
``Database.get_index_usage()`` check that each plan SEARCHes an index instead of SCANning."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SESSION_BY_ID = "SELECT * FROM sessions WHERE id = ?"
SESSIONS_BY_STATUS = (
    "SELECT * FROM sessions WHERE status = ? ORDER BY created_at DESC, id DESC LIMIT ?"
)
MEMORY_LATEST = (
    "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
    "ORDER BY version DESC LIMIT 1"
)
# Latest live version of each key under a namespace prefix, whole ':' segments only, in
# (namespace, key) order from a cursor. Parameters: prefix, prefix, len(prefix)+1,
# lower bound (namespace, key), upper bound prefix || ';', limit.
MEMORY_PREFIX_PAGE = (
    "SELECT m.* FROM memory_entries AS m "
    "WHERE m.is_deleted = 0 "
    "AND (m.namespace = ? OR substr(m.namespace, 1, ?) = ? || ':') "
    "AND (m.namespace, m.key) > (?, ?) AND m.namespace < ? "
    "AND m.version = (SELECT max(v.version) FROM memory_entries AS v "
    "WHERE v.namespace = m.namespace AND v.key = m.key AND v.is_deleted = 0) "
    "ORDER BY m.namespace, m.key LIMIT ?"
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


def memory_prefix_params(prefix: str, after: tuple[str, str] | None, limit: int) -> tuple[Any, ...]:
    # without a cursor, start just below (prefix, ''): keys are never empty
    low = after if after is not None else (prefix, "")
    return (prefix, len(prefix) + 1, prefix, low[0], low[1], prefix + ";", limit)


@dataclass(frozen=True)
class HotQuery:
    name: str
    sql: str
    params: tuple[Any, ...]


HOT_QUERIES: tuple[HotQuery, ...] = (
    HotQuery("session_by_id", SESSION_BY_ID, ("s-1",)),
    HotQuery("sessions_by_status", SESSIONS_BY_STATUS, ("active", 50)),
    HotQuery("memory_by_namespace_key", MEMORY_LATEST, ("user:alice", "theme")),
    HotQuery("memory_prefix_listing", MEMORY_PREFIX_PAGE, memory_prefix_params("user:alice", None, 50)),
    HotQuery("documents_pending_stale", DOCUMENTS_TO_SYNC, (100,)),
    HotQuery("document_by_path", DOCUMENT_BY_PATH, ("/notes/a.md",)),
    HotQuery("task_dequeue", TASK_DEQUEUE, ()),
    HotQuery("audit_by_memory_entry", AUDIT_BY_MEMORY_ENTRY, (1, 50)),
)

_USING = re.compile(r"USING (?:COVERING )?INDEX (\w+)|USING (INTEGER PRIMARY KEY)")


def explain(conn: Any, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[str]:
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
