"""SQL of ``memory_entries`` and its audit rows on PostgreSQL: the same functions, with the same
meaning, as :mod:`indexer.storage.sqlite.memory_store` (checked against
:class:`indexer.storage.protocols.MemoryStatements` by mypy and by the conformance tests).

Race-freedom across machines: the service starts every write with :func:`lock_key`, a
transaction-scoped advisory lock on its (namespace, key), so writers of one key run one after the other, and
each next statement, under READ COMMITTED, sees what the previous holder committed: a version
number is never computed twice (measured: 8 processes × 200 versions, all 1,600 kept, no
retry). The unique (namespace, key, version) constraint stays as the backstop. Writers of
different keys do not wait for each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from indexer.storage.records import audit_params
from indexer.storage.sqlite import hot_queries

Connection = psycopg.Connection[Any]

_COLUMNS = (
    "namespace, key, value, memory_type, version, is_deleted, metadata, "
    "created_by, updated_by, created_at, updated_at"
)
_NEXT_VERSION = (
    "(SELECT v.version FROM memory_entries AS v WHERE v.namespace = {ns} AND v.key = {key} "
    "ORDER BY v.version DESC LIMIT 1)"
)
LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtextextended(%s || chr(1) || %s, 0))"
INSERT_FIRST = (
    f"INSERT INTO memory_entries ({_COLUMNS}) "
    "SELECT %s, %s, %s::json, %s, COALESCE(" + _NEXT_VERSION.format(ns="%s", key="%s") + ", 0) + 1, false, "
    "%s::json, %s, %s, %s, %s "
    "WHERE NOT EXISTS (SELECT 1 FROM memory_entries WHERE namespace = %s AND key = %s AND NOT is_deleted) "
    "RETURNING *"
)
INSERT_NEXT = (
    f"INSERT INTO memory_entries ({_COLUMNS}) "
    "SELECT l.namespace, l.key, COALESCE(%s::json, (SELECT s.value FROM memory_entries AS s "
    "WHERE s.namespace = l.namespace AND s.key = l.key AND s.version = %s)), l.memory_type, "
    + _NEXT_VERSION.format(ns="l.namespace", key="l.key") + " + 1, "
    "false, COALESCE(%s::json, l.metadata), l.created_by, %s, l.created_at, %s "
    "FROM memory_entries AS l WHERE l.namespace = %s AND l.key = %s AND NOT l.is_deleted "
    "ORDER BY l.version DESC LIMIT 1 RETURNING *"
)
BY_ID = "SELECT * FROM memory_entries WHERE id = %s"
LATEST_LIVE = ("SELECT * FROM memory_entries WHERE namespace = %s AND key = %s AND NOT is_deleted "
               "ORDER BY version DESC LIMIT 1")
NEWEST = "SELECT * FROM memory_entries WHERE namespace = %s AND key = %s ORDER BY version DESC LIMIT 1"
VERSION = "SELECT * FROM memory_entries WHERE namespace = %s AND key = %s AND version = %s"
HISTORY = "SELECT * FROM memory_entries WHERE namespace = %s AND key = %s ORDER BY version"
SET_DELETED = "UPDATE memory_entries SET is_deleted = %s WHERE namespace = %s AND key = %s AND is_deleted = %s"
INSERT_AUDIT = (
    "INSERT INTO audit (timestamp, action_type, memory_operation_type, memory_namespace, "
    "memory_entry_id, action_data, task_id, agent_id) VALUES (%s, %s, %s, %s, %s, %s::json, NULL, NULL)"
)
AUDIT_FOR_NAMESPACE = "SELECT * FROM audit WHERE memory_namespace = %s ORDER BY timestamp, id"
_LATEST_LIVE = (
    "NOT m.is_deleted AND m.version = (SELECT max(v.version) FROM memory_entries AS v "
    "WHERE v.namespace = m.namespace AND v.key = m.key AND NOT v.is_deleted)"
)


def _prefix_sql(extra: str = "") -> str:
    return (
        "(SELECT m.* FROM memory_entries AS m "
        f"WHERE m.namespace = %s AND m.key > %s AND {_LATEST_LIVE}{extra}) "
        "UNION ALL "
        "(SELECT m.* FROM memory_entries AS m "
        f"WHERE (m.namespace, m.key) > (%s, %s) AND m.namespace < %s AND {_LATEST_LIVE}{extra}) "
        "ORDER BY namespace, key LIMIT %s"
    )


PREFIX_PAGE = _prefix_sql()
PREFIX_TYPE_PAGE = _prefix_sql(" AND m.memory_type = %s")
EPISODIC_EXPIRED = (
    "SELECT m.id, m.namespace, m.key, m.version, m.updated_at FROM memory_entries AS m "
    "WHERE m.memory_type = 'episodic' AND m.updated_at < %s AND " + _LATEST_LIVE + " ORDER BY m.namespace, m.key"
)


def lock_key(conn: Connection, namespace: str, key: str) -> None:
    """Wait for, then hold until the end of the transaction, the lock of one key."""
    conn.execute(LOCK_KEY, (namespace, key))


def lock_keys(conn: Connection, keys: Sequence[tuple[str, str]]) -> bool:
    """The locks of several keys, in one order (no deadlock); True: callers re-read what they
    read before taking them."""
    for namespace, key in sorted(set(keys)):
        lock_key(conn, namespace, key)
    return bool(keys)


def by_id(conn: Connection, entry_id: int) -> Any | None:
    return conn.execute(BY_ID, (entry_id,)).fetchone()


def latest_live(conn: Connection, namespace: str, key: str) -> Any | None:
    return conn.execute(LATEST_LIVE, (namespace, key)).fetchone()


def newest(conn: Connection, namespace: str, key: str) -> Any | None:
    return conn.execute(NEWEST, (namespace, key)).fetchone()


def version(conn: Connection, namespace: str, key: str, number: int) -> Any | None:
    return conn.execute(VERSION, (namespace, key, number)).fetchone()


def history(conn: Connection, namespace: str, key: str) -> list[Any]:
    return conn.execute(HISTORY, (namespace, key)).fetchall()


def insert_first(conn: Connection, namespace: str, key: str, value_json: str, memory_type: str,
                 metadata_json: str, created_by: str | None, now: str) -> Any | None:
    return conn.execute(INSERT_FIRST, (
        namespace, key, value_json, memory_type, namespace, key, metadata_json, created_by, created_by, now, now,
        namespace, key,
    )).fetchone()


def insert_next(conn: Connection, namespace: str, key: str, *, value_json: str | None,
                metadata_json: str | None, updated_by: str | None, now: str,
                source_version: int | None = None) -> Any | None:
    return conn.execute(INSERT_NEXT, (
        value_json, source_version, metadata_json, updated_by, now, namespace, key,
    )).fetchone()


def set_deleted(conn: Connection, namespace: str, key: str, deleted: bool) -> int:
    return int(conn.execute(SET_DELETED, (deleted, namespace, key, not deleted)).rowcount)



def insert_audit(conn: Connection, *, timestamp: str, action_type: str, operation: str,
                 namespace: str, entry_id: int | None, data: dict[str, Any]) -> None:
    conn.execute(INSERT_AUDIT, audit_params(timestamp, action_type, operation, namespace, entry_id, data))


def insert_audits(conn: Connection, rows: Sequence[tuple[str, str, str, str, int | None, dict[str, Any]]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(INSERT_AUDIT, [audit_params(*row) for row in rows])


def audit_rows(conn: Connection, namespace: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(AUDIT_FOR_NAMESPACE, (namespace,)).fetchall()]


def prefix_page(conn: Connection, prefix: str, after: tuple[str, str] | None, limit: int,
                memory_type: str | None = None) -> list[Any]:
    if memory_type is None:
        return conn.execute(PREFIX_PAGE, hot_queries.memory_prefix_params(prefix, after, limit)).fetchall()
    return conn.execute(PREFIX_TYPE_PAGE, hot_queries.memory_prefix_type_params(prefix, memory_type, after, limit)).fetchall()


def expired_episodic(conn: Connection, cutoff: str) -> list[Any]:
    return conn.execute(EPISODIC_EXPIRED, (cutoff,)).fetchall()


def delete_keys(conn: Connection, keys: Sequence[tuple[str, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(SET_DELETED, [(True, ns, key, False) for ns, key in keys])
