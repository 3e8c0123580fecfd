"""SQL of ``memory_entries`` (and its audit rows), for :class:`indexer.agent.memory.MemoryService`.

The functions are synchronous and take the SQLite connection itself; the service runs a whole
operation (its statements, its audit row, the commit) as one call through
:meth:`indexer.storage.sqlite.database.Database.run`, on the connection's thread: one thread hop per
operation (~0.1-0.3 ms on a 2-core VM, as much as the SQL of a write) instead of one per
statement.

Writes run inside ``BEGIN IMMEDIATE``, so a version number computed by a statement here is
never computed twice by two processes. Values and metadata arrive as JSON text: validation is
the service's job.

Invariant kept by these statements: a key's versions are either all deleted, or the highest
version is live (delete marks every version, restore unmarks every version, and every new
version is ``max(version) + 1``). The latest live version is therefore also the newest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from indexer.storage.records import audit_params
from indexer.storage.sqlite import driver, hot_queries
from indexer.storage.sqlite.driver import Connection

T = TypeVar("T")

# --- SQL ------------------------------------------------------------------------------------------

_INSERT_COLUMNS = (
    "namespace, key, value, memory_type, version, is_deleted, metadata, "
    "created_by, updated_by, created_at, updated_at"
)
_NEXT_VERSION = (  # the unique (namespace, key, version) index, read from its end
    "(SELECT v.version FROM memory_entries AS v WHERE v.namespace = {ns} AND v.key = {key} "
    "ORDER BY v.version DESC LIMIT 1)"
)

# No RETURNING on these INSERTs: with RETURNING, SQLite codes the foreign-key checks of the
# child tables (for sessions: a full SCAN of checkpoints), so the row is read back by rowid.

# A new key (or a key whose versions are all deleted): version max+1; nothing if a version is live.
INSERT_FIRST = (
    f"INSERT INTO memory_entries ({_INSERT_COLUMNS}) "
    "SELECT ?, ?, ?, ?, COALESCE(" + _NEXT_VERSION.format(ns="?", key="?") + ", 0) + 1, 0, ?, ?, ?, ?, ? "
    "WHERE NOT EXISTS (SELECT 1 FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0)"
)

# The next version of a live key: memory_type, created_by and created_at carried from the
# latest live version; metadata carried unless given; the value given, or copied from a
# source version (rollback). Nothing if the key has no live version.
INSERT_NEXT = (
    f"INSERT INTO memory_entries ({_INSERT_COLUMNS}) "
    "SELECT l.namespace, l.key, COALESCE(?, (SELECT s.value FROM memory_entries AS s "
    "WHERE s.namespace = l.namespace AND s.key = l.key AND s.version = ?)), l.memory_type, "
    + _NEXT_VERSION.format(ns="l.namespace", key="l.key") + " + 1, "
    "0, COALESCE(?, l.metadata), l.created_by, ?, l.created_at, ? "
    "FROM memory_entries AS l WHERE l.namespace = ? AND l.key = ? AND l.is_deleted = 0 "
    "ORDER BY l.version DESC LIMIT 1"
)
BY_ID = "SELECT * FROM memory_entries WHERE id = ?"
MEMORY_NEWEST = "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? ORDER BY version DESC LIMIT 1"
SET_DELETED = "UPDATE memory_entries SET is_deleted = ? WHERE namespace = ? AND key = ? AND is_deleted = ?"
INSERT_AUDIT = (
    "INSERT INTO audit (timestamp, action_type, memory_operation_type, memory_namespace, "
    "memory_entry_id, action_data, task_id, agent_id) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)"
)
AUDIT_FOR_NAMESPACE = "SELECT * FROM audit WHERE memory_namespace = ? ORDER BY timestamp, id"


def by_id(conn: Connection, entry_id: int) -> Any | None:
    return conn.execute(BY_ID, (entry_id,)).fetchone()


def latest_live(conn: Connection, namespace: str, key: str) -> Any | None:
    return conn.execute(hot_queries.MEMORY_LATEST, (namespace, key)).fetchone()


def newest(conn: Connection, namespace: str, key: str) -> Any | None:
    """The highest version, live or deleted (None: the key never existed)."""
    return conn.execute(MEMORY_NEWEST, (namespace, key)).fetchone()


def version(conn: Connection, namespace: str, key: str, number: int) -> Any | None:
    return conn.execute(hot_queries.MEMORY_VERSION, (namespace, key, number)).fetchone()


def history(conn: Connection, namespace: str, key: str) -> list[Any]:
    return conn.execute(hot_queries.MEMORY_HISTORY, (namespace, key)).fetchall()


def insert_first(conn: Connection, namespace: str, key: str, value_json: str, memory_type: str,
                 metadata_json: str, created_by: str | None, now: str) -> Any | None:
    """Insert version max+1 of a key that has no live version; None if one is live."""
    cursor = conn.execute(INSERT_FIRST, (
        namespace, key, value_json, memory_type, namespace, key, metadata_json, created_by, created_by, now, now,
        namespace, key,
    ))
    return by_id(conn, driver.inserted_rowid(cursor)) if cursor.rowcount == 1 else None


def insert_next(conn: Connection, namespace: str, key: str, *, value_json: str | None,
                metadata_json: str | None, updated_by: str | None, now: str,
                source_version: int | None = None) -> Any | None:
    """Insert version max+1 of a live key; None if the key has no live version.

    ``value_json`` None means: copy the value of ``source_version`` (a rollback); the caller
    checks first that it exists (the value column is NOT NULL).
    """
    cursor = conn.execute(INSERT_NEXT, (
        value_json, source_version, metadata_json, updated_by, now, namespace, key,
    ))
    return by_id(conn, driver.inserted_rowid(cursor)) if cursor.rowcount == 1 else None


def set_deleted(conn: Connection, namespace: str, key: str, deleted: bool) -> int:
    """Mark every version of a key deleted (or live); the number of rows changed."""
    cursor = conn.execute(SET_DELETED, (1 if deleted else 0, namespace, key, 0 if deleted else 1))
    return int(cursor.rowcount)



def insert_audit(conn: Connection, *, timestamp: str, action_type: str, operation: str,
                 namespace: str, entry_id: int | None, data: dict[str, Any]) -> None:
    conn.execute(INSERT_AUDIT, audit_params(timestamp, action_type, operation, namespace, entry_id, data))


def insert_audits(conn: Connection, rows: Sequence[tuple[str, str, str, str, int | None, dict[str, Any]]]) -> None:
    """Several audit rows: (timestamp, action_type, operation, namespace, entry_id, data)."""
    conn.executemany(INSERT_AUDIT, [audit_params(*row) for row in rows])


def audit_rows(conn: Connection, namespace: str) -> list[dict[str, Any]]:
    """The audit rows of a namespace, oldest first (for tests and diagnostics)."""
    rows = conn.execute(AUDIT_FOR_NAMESPACE, (namespace,)).fetchall()
    return [dict(zip(r.keys(), tuple(r))) for r in rows]


def prefix_page(conn: Connection, prefix: str, after: tuple[str, str] | None, limit: int,
                memory_type: str | None = None) -> list[Any]:
    """The latest live version of each key in ``prefix`` or below it (whole segments), in
    (namespace, key) order after ``after``."""
    if memory_type is None:
        return conn.execute(hot_queries.MEMORY_PREFIX_PAGE,
                            hot_queries.memory_prefix_params(prefix, after, limit)).fetchall()
    return conn.execute(hot_queries.MEMORY_PREFIX_TYPE_PAGE,
                        hot_queries.memory_prefix_type_params(prefix, memory_type, after, limit)).fetchall()


def expired_episodic(conn: Connection, cutoff: str) -> list[Any]:
    """(id, namespace, key, version, updated_at) of the latest live version of each episodic
    key last updated before ``cutoff``."""
    return conn.execute(hot_queries.MEMORY_EPISODIC_EXPIRED, (cutoff,)).fetchall()


def delete_keys(conn: Connection, keys: Sequence[tuple[str, str]]) -> None:
    conn.executemany(SET_DELETED, [(1, ns, key, 0) for ns, key in keys])


def lock_key(conn: Connection, namespace: str, key: str) -> None:
    """Nothing to do: writes run under ``BEGIN IMMEDIATE``, one writer at a time
    (:class:`indexer.storage.protocols.MemoryStatements`; PostgreSQL takes a key lock here)."""


def lock_keys(conn: Connection, keys: Sequence[tuple[str, str]]) -> bool:
    """Nothing to do (see :func:`lock_key`); False: what the caller read still holds."""
    return False
