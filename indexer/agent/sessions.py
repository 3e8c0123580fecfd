"""SessionService: conversation sessions with an append-only event log and scoped state.

Lifecycle (anything else is a ConflictError naming both states)::

    created ──► active ◄──► paused
       │          │           │
       └──────────┴─────┬─────┘
                        ▼
                   terminated ──► archived

``terminated_at`` and ``archived_at`` are stamped by those transitions. Events may be appended
and state changed only while a session is created, active or paused.

Events are rows (``session_events``, schema/0004): each has a sequence number, contiguous per
session from 1, so an append costs the same at the 10,000th event as at the first, and a
long log is read a page at a time (:meth:`SessionService.list_events`, after a sequence
number) or by its end (:meth:`SessionService.last_events`).

State keys are scoped by prefix: ``app:``, ``user:``, ``session:``, ``temp:``, or no prefix
(session scope). ``temp:`` keys are never persisted: they are dropped before anything is
written. A null value removes the key. State changes are applied while the writer holds the
session (SQLite: ``json_set`` / ``json_remove`` under the write lock; PostgreSQL: under the
session row's lock), so concurrent writers never lose each other's keys; an event is one
INSERT whose sequence number is taken under that same hold.

The rules are written once here; the SQL is the engine's, chosen by
:func:`indexer.storage.engines.session_statements`: :mod:`indexer.storage.sqlite.session_store`
(SQLite) or :mod:`indexer.storage.postgres.session_store`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from indexer.agent.common import DEFAULT_LIMIT, Limits, check_text, keyset_after, keyset_page, to_json, validate_limit
from indexer.errors import ConflictError, NotFoundError, ValidationError
from indexer.storage import engines
from indexer.storage.protocols import AgentDatabase, SessionStatements
from indexer.timeutil import now_ts

STATUSES = ("created", "active", "paused", "terminated", "archived")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "created": ("active", "terminated"),
    "active": ("paused", "terminated"),
    "paused": ("active", "terminated"),
    "terminated": ("archived",),
    "archived": (),
}
STATE_SCOPES = ("app", "user", "session", "temp")


@dataclass(frozen=True)
class Session:
    """A session; ``events`` is None in listings (``event_count`` says how many)."""

    id: str
    app_name: str
    user_id: str
    project_id: str | None
    status: str
    state: dict[str, Any]
    metadata: dict[str, Any]
    created_at: str
    last_update_time: str
    terminated_at: str | None
    archived_at: str | None
    event_count: int
    events: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.events is None:
            del data["events"]
        return data


@dataclass(frozen=True)
class SessionEvent:
    """One event of a session's log: its sequence number (1, 2, … per session), when it was
    appended, its ``type`` member when that is a string, and the event as stored."""

    seq: int
    created_at: str
    type: str | None
    event: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventPage:
    """Events of one session in sequence order; ``next_after`` is the ``after`` of the next
    page (None: the page ends with the session's last event). ``event_count`` is the
    session's number of events when the page was read."""

    session_id: str
    items: tuple[SessionEvent, ...]
    event_count: int
    next_after: int | None

    def __iter__(self) -> Iterator[SessionEvent]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def as_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "items": [item.as_dict() for item in self.items],
                "event_count": self.event_count, "next_after": self.next_after}


@dataclass(frozen=True)
class SessionPage:
    items: tuple[Session, ...]
    next_cursor: str | None

    def __iter__(self) -> Iterator[Session]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def as_dict(self) -> dict[str, Any]:
        return {"items": [item.as_dict() for item in self.items], "next_cursor": self.next_cursor}


# --- the rules, as pure functions ---------------------------------------------------------

def validate_status(status: Any) -> str:
    if status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return str(status)


def check_transition(session_id: str, old: str, new: str) -> None:
    if new not in TRANSITIONS.get(old, ()):
        allowed = ", ".join(TRANSITIONS.get(old, ())) or "nothing (final state)"
        raise ConflictError(f"session {session_id}: cannot change status from {old} to {new} (from {old}: {allowed})")


def state_scope(key: Any) -> str:
    """The scope of a state key: app, user, session or temp; ValidationError otherwise."""
    if not isinstance(key, str) or not key:
        raise ValidationError(f"state keys must be non-empty strings, got {key!r}")
    if ":" not in key:
        return "session"
    scope, name = key.split(":", 1)
    if scope not in STATE_SCOPES:
        raise ValidationError(f"state key {key!r} has an unknown scope {scope + ':'!r} "
                              "(use app:, user:, session:, temp: or no prefix)")
    if not name:
        raise ValidationError(f"state key {key!r} has no name after its scope")
    return scope


def state_ops(delta: Any) -> list[tuple[str, str | None]]:
    """(key, JSON text, or None to remove) for each persisted key of a state delta;
    ``temp:`` keys are dropped (never persisted)."""
    if not isinstance(delta, dict):
        raise ValidationError(f"a state delta must be a JSON object, got {type(delta).__name__}")
    ops: list[tuple[str, str | None]] = []
    for key, value in delta.items():
        if state_scope(key) == "temp":
            continue
        ops.append((key, None if value is None else to_json(value, f"state value of {key!r}")))
    return ops


def initial_state(state: Any) -> str:
    """The JSON text stored for a new session's state (temp: keys and nulls dropped)."""
    if state is None:
        return "{}"
    ops = state_ops(state)
    return "{" + ",".join(f"{json.dumps(key, ensure_ascii=False)}:{value}" for key, value in ops if value is not None) + "}"


def prepare_event(event: Any, now: str) -> dict[str, Any]:
    """The event as stored: a JSON object, given an ``id`` and a ``timestamp`` if it has none."""
    if not isinstance(event, dict):
        raise ValidationError(f"an event must be a JSON object, got {type(event).__name__}")
    if not all(isinstance(k, str) for k in event):
        raise ValidationError("event keys must be strings")
    prepared = dict(event)
    prepared.setdefault("id", str(uuid.uuid4()))
    prepared.setdefault("timestamp", now)
    return prepared


def event_type(event: dict[str, Any]) -> str | None:
    """The ``type`` column of an event: its ``type`` member when that is a string."""
    value = event.get("type")
    return value if isinstance(value, str) else None


def validate_after(after: Any) -> int:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValidationError(f"after must be a sequence number (an integer >= 0), got {after!r}")
    return after


def session_from_row(row: Any, events: list[Any] | None = None, count: int | None = None) -> Session:
    """A Session from a ``sessions`` row, with ``events`` (decoded) if given; its
    ``event_count`` is ``len(events)``, else ``count``, else the row's ``event_count``."""
    if events is not None:
        count = len(events)
    elif count is None:
        count = int(row["event_count"]) if "event_count" in row.keys() else 0
    return Session(
        id=row["id"], app_name=row["app_name"], user_id=row["user_id"], project_id=row["project_id"],
        status=row["status"], state=json.loads(row["state"]),
        metadata=json.loads(row["metadata"]) if row["metadata"] is not None else {},
        created_at=row["created_at"], last_update_time=row["last_update_time"],
        terminated_at=row["terminated_at"], archived_at=row["archived_at"],
        event_count=count, events=events,
    )


# --- operations, run as one transaction on the engine's connection ---------------------------

def _closed_or_missing(conn: Any, store: SessionStatements, session_id: str, action: str) -> ConflictError | NotFoundError:
    current = store.status(conn, session_id)
    if current is None:
        return NotFoundError(f"no session {session_id}")
    return ConflictError(f"session {session_id} is {current}: cannot {action} (only created, active or paused sessions change)")


def _create(conn: Any, store: SessionStatements, session_id: str, app_name: str, user_id: str, project_id: str | None,
            state_json: str, metadata_json: str, now: str) -> Any:
    if store.exists(conn, session_id):
        raise ConflictError(f"session {session_id} already exists")
    row = store.insert(conn, session_id, app_name, user_id, project_id, state_json, metadata_json, now)
    if row is None:  # another writer created it in between (PostgreSQL; SQLite's write lock excludes it)
        raise ConflictError(f"session {session_id} already exists")
    return row


def _get(conn: Any, store: SessionStatements, session_id: str, with_events: bool) -> Session:
    row = store.get(conn, session_id)
    if row is None:
        raise NotFoundError(f"no session {session_id}")
    if with_events:
        return session_from_row(row, events=json.loads(store.all_events(conn, session_id)))
    return session_from_row(row, count=store.event_count(conn, session_id))


def _event(row: Any) -> SessionEvent:
    return SessionEvent(seq=int(row["seq"]), created_at=row["created_at"], type=row["type"],
                        event=json.loads(row["payload"]))


def _events(conn: Any, store: SessionStatements, session_id: str, after: int | None, limit: int) -> EventPage:
    """A page after ``after``, or (``after`` None) the last ``limit`` events; one snapshot."""
    if not store.exists(conn, session_id):
        raise NotFoundError(f"no session {session_id}")
    total = store.event_count(conn, session_id)
    rows = store.events_tail(conn, session_id, limit) if after is None else store.events_page(conn, session_id, after, limit)
    items = tuple(_event(r) for r in rows)
    last = items[-1].seq if items else total if after is None else after
    return EventPage(session_id, items, total, last if last < total else None)


def _append(conn: Any, store: SessionStatements, session_id: str, event_json: str, event_type: str | None,
            ops: list[tuple[str, str | None]], now: str) -> int:
    seq = store.append_event(conn, session_id, event_json, event_type, ops, now)
    if seq is None:
        raise _closed_or_missing(conn, store, session_id, "append events")
    return seq


def _update_state(conn: Any, store: SessionStatements, session_id: str, ops: list[tuple[str, str | None]], now: str) -> str:
    state = store.update_state(conn, session_id, ops, now)
    if state is None:
        raise _closed_or_missing(conn, store, session_id, "change state")
    return state


def _set_status(conn: Any, store: SessionStatements, session_id: str, new: str, now: str) -> Any:
    store.lock(conn, session_id)
    old = store.status(conn, session_id)
    if old is None:
        raise NotFoundError(f"no session {session_id}")
    check_transition(session_id, old, new)
    row = store.set_status(conn, session_id, old, new, now)
    if row is None:  # cannot happen while the session is held; never report success without a row
        raise ConflictError(f"session {session_id} changed status concurrently; try again")
    return row


class SessionService:
    """The report's session API over an agent store of either engine
    (:func:`indexer.storage.engines.open_agent_database`)."""

    def __init__(self, db: AgentDatabase, limits: Limits | None = None) -> None:
        self.db = db
        self.store = engines.session_statements(db)
        self.limits = limits or Limits()  # sizes of events, state writes and metadata

    async def create_session(self, app_name: str, user_id: str, project_id: str | None = None,
                             session_id: str | None = None, state: dict[str, Any] | None = None,
                             *, metadata: dict[str, Any] | None = None) -> Session:
        """A new session in status ``created``; its id is a uuid4 unless given (ConflictError
        if that id exists). ``state`` follows the rules of :meth:`update_state`."""
        check_text(app_name, "app_name")
        check_text(user_id, "user_id")
        if project_id is not None:
            check_text(project_id, "project_id")
        session_id = str(uuid.uuid4()) if session_id is None else check_text(session_id, "session_id")
        state_json = initial_state(state)
        if metadata is not None and not isinstance(metadata, dict):
            raise ValidationError(f"metadata must be a JSON object, got {type(metadata).__name__}")
        metadata_json = self.limits.metadata(to_json(metadata or {}, "metadata"))
        self.limits.state_json(state_json)
        now = now_ts()
        row = await self.db.run(_create, self.store, session_id, app_name, user_id, project_id, state_json, metadata_json, now,
                                inline=True)
        return session_from_row(row, events=[])

    async def get_session(self, session_id: str, *, events: bool = True) -> Session:
        """The session with its state and every event, in order; NotFoundError for an unknown
        id. ``events=False`` leaves the events out (``event_count`` says how many): one point
        read whatever the log's length. A long log is better read with :meth:`list_events`."""
        check_text(session_id, "session_id")
        # the whole log is read (and decoded) on the connection's thread, never on the loop's
        return await self.db.run(_get, self.store, session_id, events, write=False, inline=not events)

    async def list_events(self, session_id: str, after: int = 0, limit: int = DEFAULT_LIMIT) -> EventPage:
        """Up to ``limit`` events whose sequence number is greater than ``after``, in order;
        pass the page's ``next_after`` for the next one. NotFoundError for an unknown id."""
        check_text(session_id, "session_id")
        validate_after(after)
        validate_limit(limit)
        return await self.db.run(_events, self.store, session_id, after, limit, write=False)

    async def last_events(self, session_id: str, limit: int = DEFAULT_LIMIT) -> EventPage:
        """The session's last ``limit`` events, oldest first (``next_after`` is None)."""
        check_text(session_id, "session_id")
        validate_limit(limit)
        return await self.db.run(_events, self.store, session_id, None, limit, write=False)

    async def list_sessions(self, app_name: str | None = None, user_id: str | None = None,
                            project_id: str | None = None, status: str | None = None,
                            limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> SessionPage:
        """Sessions matching every filter given, newest first (created_at, then id), one page
        without events; pass ``next_cursor`` for the next page."""
        filters: dict[str, str] = {}
        for name, value in (("app_name", app_name), ("user_id", user_id), ("project_id", project_id)):
            if value is not None:
                filters[name] = check_text(value, name)
        if status is not None:
            filters["status"] = validate_status(status)
        validate_limit(limit)
        rows = await self.db.run(self.store.page, filters, keyset_after(cursor), limit + 1, write=False)
        items, next_cursor = keyset_page(rows, limit, session_from_row, lambda s: [s.created_at, s.id])
        return SessionPage(tuple(items), next_cursor)

    async def append_event(self, session_id: str, event: dict[str, Any],
                           state_delta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one event (a JSON object; given an ``id`` and a ``timestamp`` when it has
        none) and apply ``state_delta``, atomically; returns the event as stored. Its sequence
        number is the session's last plus one. Runs on the connection's thread, never on the
        event loop's: one INSERT and one UPDATE, each an index lookup, whatever the log's length."""
        check_text(session_id, "session_id")
        now = now_ts()
        prepared = prepare_event(event, now)
        event_json = self.limits.event(to_json(prepared, "event"))
        ops = self.limits.state(state_ops(state_delta) if state_delta is not None else [])
        await self.db.run(_append, self.store, session_id, event_json, event_type(prepared), ops, now)
        return prepared

    async def update_state(self, session_id: str, delta: dict[str, Any]) -> dict[str, Any]:
        """Merge ``delta`` into the session's state (top-level keys; null removes a key;
        ``temp:`` keys are dropped, never persisted); returns the new state."""
        check_text(session_id, "session_id")
        ops = self.limits.state(state_ops(delta))
        state = await self.db.run(_update_state, self.store, session_id, ops, now_ts(), inline=True)
        return dict(json.loads(state))

    async def set_status(self, session_id: str, status: str) -> Session:
        """Move the session along its lifecycle; ConflictError for any other transition.
        Returns the session without its events (``event_count`` says how many)."""
        check_text(session_id, "session_id")
        validate_status(status)
        return session_from_row(await self.db.run(_set_status, self.store, session_id, status, now_ts(), inline=True))

    async def activate_session(self, session_id: str) -> Session:
        return await self.set_status(session_id, "active")

    async def pause_session(self, session_id: str) -> Session:
        return await self.set_status(session_id, "paused")

    async def resume_session(self, session_id: str) -> Session:
        return await self.set_status(session_id, "active")

    async def terminate_session(self, session_id: str) -> Session:
        return await self.set_status(session_id, "terminated")

    async def archive_session(self, session_id: str) -> Session:
        return await self.set_status(session_id, "archived")
