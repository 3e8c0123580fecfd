"""SQL of ``sessions`` and ``session_events`` on PostgreSQL: the same functions, with the same
meaning, as :mod:`indexer.storage.sqlite.session_store` (checked against
:class:`indexer.storage.protocols.SessionStatements` by mypy and by the tests, which run on both
engines).

Race-freedom across processes and machines: every write of a session first locks its row
(``SELECT … FOR UPDATE``, :func:`lock`, or the row lock its UPDATE takes), so the writers of one
session run one after the other; under READ COMMITTED each next statement sees what the
previous holder committed. An append reads ``max(seq) + 1`` only after that lock, so sequence
numbers stay contiguous (the primary key (session_id, seq) is the backstop), and a state change
is read, merged and written under the lock, so no writer loses another's keys. A status change
updates only where the expected status still holds (compare-and-set).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from indexer.storage.records import compact_json
from indexer.storage.sqlite import hot_queries

Connection = psycopg.Connection[Any]

_OPEN = "status IN ('created', 'active', 'paused')"
INSERT = (
    "INSERT INTO sessions (id, app_name, user_id, project_id, status, events, state, metadata, "
    "created_at, last_update_time) VALUES (%s, %s, %s, %s, 'created', '[]', %s::json, %s::json, %s, %s) "
    "ON CONFLICT (id) DO NOTHING RETURNING *"
)
LOCK = "SELECT status, state::text AS state FROM sessions WHERE id = %s FOR UPDATE"
EXISTS = "SELECT 1 FROM sessions WHERE id = %s"
STATUS = "SELECT status FROM sessions WHERE id = %s"
BY_ID = "SELECT * FROM sessions WHERE id = %s"
TOUCH = f"UPDATE sessions SET last_update_time = %s WHERE id = %s AND {_OPEN}"
SET_STATE = f"UPDATE sessions SET state = %s::json, last_update_time = %s WHERE id = %s AND {_OPEN}"
INSERT_EVENT = (
    "INSERT INTO session_events (session_id, seq, created_at, type, payload) "
    "SELECT %s, coalesce(max(seq), 0) + 1, %s, %s, %s::json FROM session_events WHERE session_id = %s "
    "RETURNING seq"
)
COUNT = "SELECT coalesce(max(seq), 0) AS n FROM session_events WHERE session_id = %s"
ALL_EVENTS = (
    "SELECT '[' || coalesce(string_agg(payload::text, ',' ORDER BY seq), '') || ']' AS events "
    "FROM session_events WHERE session_id = %s"
)
PAGE = hot_queries.SESSION_EVENTS_PAGE.replace("?", "%s")
TAIL = (
    "SELECT seq, created_at, type, payload FROM session_events WHERE session_id = %s "
    "ORDER BY seq DESC LIMIT %s"
)


def _one(conn: Connection, sql: str, params: tuple[Any, ...]) -> Any:
    """The one row an aggregate or RETURNING statement always gives."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return row


def merged_state(state_json: str, ops: Sequence[tuple[str, str | None]]) -> str:
    """The state with the ops applied as SQLite's ``json_remove`` then ``json_set`` apply them:
    removed keys first, then each set key replaced in place or added at the end."""
    state = json.loads(state_json)
    for key, value in ops:
        if value is None:
            state.pop(key, None)
    for key, value in ops:
        if value is not None:
            state[key] = json.loads(value)
    return compact_json(state)


def lock(conn: Connection, session_id: str) -> None:
    """Wait for, then hold until the end of the transaction, the session's row."""
    conn.execute(LOCK, (session_id,))


def exists(conn: Connection, session_id: str) -> bool:
    return conn.execute(EXISTS, (session_id,)).fetchone() is not None


def status(conn: Connection, session_id: str) -> str | None:
    row = conn.execute(STATUS, (session_id,)).fetchone()
    return None if row is None else str(row["status"])


def insert(conn: Connection, session_id: str, app_name: str, user_id: str, project_id: str | None,
           state_json: str, metadata_json: str, now: str) -> Any:
    """The new row, or None when a session with that id exists already."""
    return conn.execute(INSERT, (session_id, app_name, user_id, project_id, state_json, metadata_json, now, now)).fetchone()


def get(conn: Connection, session_id: str) -> Any | None:
    return conn.execute(BY_ID, (session_id,)).fetchone()


def _open_state(conn: Connection, session_id: str) -> str | None:
    row = conn.execute(LOCK, (session_id,)).fetchone()
    if row is None or row["status"] not in ("created", "active", "paused"):
        return None
    return str(row["state"])


def append_event(conn: Connection, session_id: str, event_json: str, event_type: str | None,
                 ops: Sequence[tuple[str, str | None]], now: str) -> int | None:
    """Append one event row (and apply the state ops) if the session is open: its sequence
    number, or None for an unknown or closed session (nothing written)."""
    if ops:
        if update_state(conn, session_id, ops, now) is None:
            return None
    elif conn.execute(TOUCH, (now, session_id)).rowcount != 1:  # takes the row lock
        return None
    return int(_one(conn, INSERT_EVENT, (session_id, now, event_type, event_json, session_id))["seq"])


def update_state(conn: Connection, session_id: str, ops: Sequence[tuple[str, str | None]], now: str) -> str | None:
    """Apply the ops to ``state`` if the session is open; the new state's JSON text, or None."""
    current = _open_state(conn, session_id)
    if current is None:
        return None
    state = merged_state(current, ops)
    conn.execute(SET_STATE, (state, now, session_id))
    return state


def set_status(conn: Connection, session_id: str, old: str, new: str, now: str) -> Any | None:
    """Change the status if it is still ``old``; stamps terminated_at / archived_at."""
    sql, params = hot_queries.session_set_status(session_id, old, new, now)
    return conn.execute(sql.replace("?", "%s"), params).fetchone()


def page(conn: Connection, filters: dict[str, str], after: tuple[str, str] | None, limit: int) -> list[Any]:
    sql, params = hot_queries.page_query("sessions", filters, after, limit)
    return conn.execute(sql.replace("?", "%s"), params).fetchall()


def event_count(conn: Connection, session_id: str) -> int:
    return int(_one(conn, COUNT, (session_id,))["n"])


def all_events(conn: Connection, session_id: str) -> str:
    return str(_one(conn, ALL_EVENTS, (session_id,))["events"])


def events_page(conn: Connection, session_id: str, after: int, limit: int) -> list[Any]:
    return conn.execute(PAGE, (session_id, after, limit)).fetchall()


def events_tail(conn: Connection, session_id: str, limit: int) -> list[Any]:
    return list(reversed(conn.execute(TAIL, (session_id, limit)).fetchall()))
