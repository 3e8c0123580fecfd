"""SQL of ``session_events`` (schema/0004_session_events.sql): a session's events as rows.

Each function takes the connection of an operation already inside its transaction
(:meth:`indexer.storage.sqlite.database.Database.run`). An append is one indexed INSERT whatever the
session's length: its ``seq`` is ``max(seq) + 1`` of that session, read in the same statement;
under the write lock (``BEGIN IMMEDIATE``) no other writer comes in between, and the unique
index on (session_id, seq) refuses a duplicate should one ever try. Sequence numbers are
therefore contiguous per session, 1..N, and a session's event count is its last ``seq``.

Readers: every event in order (:func:`all_events`), one page after a ``seq`` (:func:`page`), and
the last N (:func:`tail`); each is one range of ``idx_session_events_seq``.
"""

from __future__ import annotations

from typing import Any

from indexer.storage.sqlite import hot_queries
from indexer.storage.sqlite.driver import Connection

INSERT = (
    "INSERT INTO session_events (session_id, seq, created_at, type, payload) "
    "SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3, ?4 FROM session_events WHERE session_id = ?1 "
    "RETURNING seq"
)
COUNT = "SELECT coalesce(max(seq), 0) FROM session_events WHERE session_id = ?"
# every payload as one JSON array text: one string to decode instead of one per event (half
# the time at 10k events); each payload is valid JSON (CHECK), so the array is too
ALL_EVENTS = (
    "SELECT '[' || coalesce(group_concat(payload, ',' ORDER BY seq), '') || ']' "
    "FROM session_events WHERE session_id = ?"
)
TAIL = (
    "SELECT seq, created_at, type, payload FROM session_events WHERE session_id = ? "
    "ORDER BY seq DESC LIMIT ?"
)


def insert(conn: Connection, session_id: str, created_at: str, event_type: str | None, payload_json: str) -> int:
    """Append one event to the session (which the caller has checked is open, in this same
    transaction); its sequence number."""
    row = conn.execute(INSERT, (session_id, created_at, event_type, payload_json)).fetchone()
    return int(row[0])


def count(conn: Connection, session_id: str) -> int:
    """How many events the session has (its last sequence number; 0 for none)."""
    return int(conn.execute(COUNT, (session_id,)).fetchone()[0])


def all_events(conn: Connection, session_id: str) -> str:
    """Every event of the session in sequence order, as the text of one JSON array."""
    return str(conn.execute(ALL_EVENTS, (session_id,)).fetchone()[0])


def page(conn: Connection, session_id: str, after: int, limit: int) -> list[Any]:
    """Up to ``limit`` events with ``seq > after``, in order: rows of seq, created_at, type, payload."""
    return conn.execute(hot_queries.SESSION_EVENTS_PAGE, (session_id, after, limit)).fetchall()


def tail(conn: Connection, session_id: str, limit: int) -> list[Any]:
    """The last ``limit`` events, oldest first (rows as :func:`page`'s)."""
    return list(reversed(conn.execute(TAIL, (session_id, limit)).fetchall()))
