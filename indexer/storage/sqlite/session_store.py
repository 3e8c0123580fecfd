"""SQL of ``sessions``, for :class:`indexer.agent.sessions.SessionService`.

Synchronous functions on the SQLite connection, run by the service as one operation per hop
(:meth:`indexer.storage.sqlite.database.Database.run`). State is changed inside SQLite by one UPDATE
(``json_set`` / ``json_remove``), never read, modified in Python and written back: writers
from several processes cannot lose each other's keys. Events are rows of ``session_events``
(:mod:`indexer.storage.sqlite.event_store`); the ``events`` column of ``sessions`` stays ``'[]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from indexer.storage.sqlite import event_store, hot_queries
from indexer.storage.sqlite.driver import Connection

OPEN_STATUSES = ("created", "active", "paused")  # events and state may change

INSERT = (
    "INSERT INTO sessions (id, app_name, user_id, project_id, status, events, state, metadata, "
    "created_at, last_update_time) VALUES (?, ?, ?, ?, 'created', '[]', ?, ?, ?, ?)"
)  # no RETURNING: it would make SQLite code the FK child checks, a full SCAN of checkpoints
EXISTS = "SELECT 1 FROM sessions WHERE id = ?"
STATUS = "SELECT status FROM sessions WHERE id = ?"
_OPEN = "status IN ('created', 'active', 'paused')"


def state_path(key: str) -> str:
    """A JSON path naming one top-level key, whatever characters it holds."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def state_expr(ops: Sequence[tuple[str, str | None]], column: str = "state") -> tuple[str, list[Any]]:
    """SQL applying (key, JSON text or None = remove) to a JSON object column, and its params."""
    expr = column
    params: list[Any] = []
    removes = [key for key, value in ops if value is None]
    sets = [(key, value) for key, value in ops if value is not None]
    if removes:
        expr = f"json_remove({expr}, {', '.join('?' for _ in removes)})"
        params.extend(state_path(key) for key in removes)
    if sets:
        expr = f"json_set({expr}, {', '.join('?, json(?)' for _ in sets)})"
        for key, value in sets:
            params.extend((state_path(key), value))
    return expr, params


def lock(conn: Connection, session_id: str) -> None:
    """Hold the session's row until the end of the transaction: a no-op here, ``BEGIN
    IMMEDIATE`` already serialises writers (PostgreSQL: ``SELECT … FOR UPDATE``)."""


def exists(conn: Connection, session_id: str) -> bool:
    return conn.execute(EXISTS, (session_id,)).fetchone() is not None


def status(conn: Connection, session_id: str) -> str | None:
    row = conn.execute(STATUS, (session_id,)).fetchone()
    return None if row is None else str(row[0])


def insert(conn: Connection, session_id: str, app_name: str, user_id: str, project_id: str | None,
           state_json: str, metadata_json: str, now: str) -> Any:
    conn.execute(INSERT, (session_id, app_name, user_id, project_id, state_json, metadata_json, now, now))
    return get(conn, session_id)


def get(conn: Connection, session_id: str) -> Any | None:
    return conn.execute(hot_queries.SESSION_BY_ID, (session_id,)).fetchone()


def append_event(conn: Connection, session_id: str, event_json: str, event_type: str | None,
                 ops: Sequence[tuple[str, str | None]], now: str) -> int | None:
    """Append one event row (and apply the state ops) if the session is open: its sequence
    number, or None for an unknown or closed session (nothing written). Two statements, each
    one index lookup, whatever the session's length; the caller's transaction holds the
    write lock (``BEGIN IMMEDIATE``), so no other append takes the same sequence number."""
    expr, params = state_expr(ops)
    state_set = f"state = {expr}, " if ops else ""
    cursor = conn.execute(
        f"UPDATE sessions SET {state_set}last_update_time = ? WHERE id = ? AND {_OPEN}",
        (*params, now, session_id),
    )
    if cursor.rowcount != 1:
        return None
    return event_store.insert(conn, session_id, now, event_type, event_json)


def update_state(conn: Connection, session_id: str, ops: Sequence[tuple[str, str | None]], now: str) -> str | None:
    """Apply the ops to ``state`` if the session is open; the new state's JSON text, or None."""
    expr, params = state_expr(ops)
    row = conn.execute(
        f"UPDATE sessions SET state = {expr}, last_update_time = ? WHERE id = ? AND {_OPEN} RETURNING state",
        (*params, now, session_id),
    ).fetchone()
    return None if row is None else str(row[0])


def set_status(conn: Connection, session_id: str, old: str, new: str, now: str) -> Any | None:
    """Change the status if it is still ``old``; stamps terminated_at / archived_at. The
    updated row (without events), or None if the session is gone or its status changed."""
    sql, params = hot_queries.session_set_status(session_id, old, new, now)
    return conn.execute(sql, params).fetchone()


def page(conn: Connection, filters: dict[str, str], after: tuple[str, str] | None, limit: int) -> list[Any]:
    """Sessions newest first (created_at DESC, id DESC) matching ``filters`` (columns of
    :data:`hot_queries.SESSION_FILTERS`), after the cursor position, without their events."""
    sql, params = hot_queries.page_query("sessions", filters, after, limit)
    return conn.execute(sql, params).fetchall()


# the events, under the names of SessionStatements (indexer.storage.protocols)

def event_count(conn: Connection, session_id: str) -> int:
    return event_store.count(conn, session_id)


def all_events(conn: Connection, session_id: str) -> str:
    return event_store.all_events(conn, session_id)


def events_page(conn: Connection, session_id: str, after: int, limit: int) -> list[Any]:
    return event_store.page(conn, session_id, after, limit)


def events_tail(conn: Connection, session_id: str, limit: int) -> list[Any]:
    return event_store.tail(conn, session_id, limit)
