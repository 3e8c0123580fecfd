"""The session tools: session_create, session_get, session_list, session_append, session_update.

They use :class:`~indexer.agent.sessions.SessionService` on the database directly. Lifecycle:
created → active ⇄ paused; created/active/paused → terminated → archived; any other change is
a tool error naming both states. State keys: ``app:``, ``user:``, ``session:`` or no prefix;
``temp:`` keys are never stored; a null value removes a key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from indexer.mcp.common import MAX_OUTPUT_CHARS, READ, WRITE, ServerState, fit, fit_page, json_size, respond, size, tool_errors

SessionId = Annotated[str, Field(min_length=1, max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
JsonObject = dict[str, Any]


class Session(BaseModel):
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


class SessionWithEvents(Session):
    events: list[Any] = Field(description="the events asked for, oldest first (the last ones, or those after `after`)")
    events_truncated: bool = Field(description="true when the session has events not returned here")
    first_seq: int | None = Field(description="the sequence number of events[0] (events are numbered 1, 2, …); "
                                              "null when no event is returned")
    next_after: int | None = Field(description="pass as `after` to read the events that follow these; "
                                               "null when the session's last event was returned")


class SessionPage(BaseModel):
    items: list[Session]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: this was the last")


class SessionWritten(BaseModel):
    """What a write answers: the session's status and times, and the sizes of its state and
    metadata, never their values (session_get reads them)."""

    id: str
    app_name: str
    user_id: str
    project_id: str | None
    status: str
    state_bytes: int
    metadata_bytes: int
    created_at: str
    last_update_time: str
    terminated_at: str | None
    archived_at: str | None
    event_count: int


class Appended(BaseModel):
    event_id: Any = Field(description="the event's id (given, or a new uuid4)")
    timestamp: Any
    event_bytes: int = Field(description="the size of the stored event as JSON")
    event_count: int
    state_bytes: int


def _session(s: Any) -> Session:
    data = s.as_dict()
    data.pop("events", None)
    return Session(**data)


def _written(s: Any) -> SessionWritten:
    data = s.as_dict()
    for name in ("events", "state", "metadata"):
        data.pop(name, None)
    return SessionWritten(**data, state_bytes=json_size(s.state), metadata_bytes=json_size(s.metadata))


def register(server: MCPServer, app: ServerState, names: set[str]) -> None:
    from indexer.agent.sessions import SessionService

    async def service(create: bool = False) -> SessionService:
        return SessionService(await app.database(create=create), app.limits)

    if "session_create" in names:
        @server.tool(annotations=WRITE)
        async def session_create(
            app_name: Name, user_id: Name,
            project_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
            session_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
            state: JsonObject | None = None,
            metadata: JsonObject | None = None,
        ) -> Annotated[CallToolResult, SessionWritten]:
            """Start a session for an app and a user; returns its id for the other tools."""
            with tool_errors():
                created = await (await service(create=True)).create_session(
                    app_name, user_id, project_id, session_id, state, metadata=metadata)
                return respond(_written(created))

    if "session_get" in names:
        @server.tool(annotations=READ)
        async def session_get(
            session_id: SessionId,
            events: Annotated[int, Field(ge=0, le=200, description="the last N events")] = 20,
            after: Annotated[int | None, Field(ge=0, description="events after this seq (0: from the first)")] = None,
        ) -> Annotated[CallToolResult, SessionWithEvents]:
            """A session with its last events (as many as fit in 40,000 characters); after=N
            pages on from N (then next_after)."""
            with tool_errors():
                svc = await service()
                s = await svc.get_session(session_id, events=False)
                items: list[Any] = []
                count = s.event_count
                if events:
                    page = await (svc.last_events(session_id, events) if after is None
                                  else svc.list_events(session_id, after, events))
                    items, count = list(page.items), page.event_count
                base = _session(s).model_copy(update={"event_count": count})
                budget = max(MAX_OUTPUT_CHARS - size(base.model_dump(mode="json")) - 100, 1)
                if after is None:  # the newest ones that fit
                    keep = fit([i.event for i in reversed(items)], budget) if items else 0
                    items = items[len(items) - keep:]
                else:  # the oldest ones after `after` that fit
                    items = items[:fit([i.event for i in items], budget)] if items else []
                last = items[-1].seq if items else None
                result = SessionWithEvents(**base.model_dump(), events=[i.event for i in items],
                                           events_truncated=len(items) < count,
                                           first_seq=items[0].seq if items else None,
                                           next_after=last if last is not None and last < count else None)
                return respond(result)

    if "session_list" in names:
        @server.tool(annotations=READ)
        async def session_list(
            app_name: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
            user_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
            project_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
            status: Literal["created", "active", "paused", "terminated", "archived"] | None = None,
            limit: Annotated[int, Field(ge=1, le=100)] = 20,
            cursor: Annotated[str | None, Field(max_length=4096)] = None,
        ) -> Annotated[CallToolResult, SessionPage]:
            """Sessions matching every filter, newest first, without events, a page at a
            time."""
            with tool_errors():
                page = await (await service()).list_sessions(app_name, user_id, project_id, status, limit, cursor)
                items, next_cursor = fit_page([_session(s) for s in page.items], page.next_cursor,
                                              lambda s: [s.created_at, s.id])
                return respond(SessionPage(items=items, next_cursor=next_cursor))

    if "session_append" in names:
        @server.tool(annotations=WRITE)
        async def session_append(
            session_id: SessionId,
            event: JsonObject,
            state_delta: Annotated[JsonObject | None, Field(description="null removes a key")] = None,
        ) -> Annotated[CallToolResult, Appended]:
            """Append an event (and optionally a state delta, atomically) to a created, active
            or paused session."""
            with tool_errors():
                svc = await service()
                stored = await svc.append_event(session_id, event, state_delta)
                s = await svc.get_session(session_id, events=False)
                return respond(Appended(event_id=stored.get("id"), timestamp=stored.get("timestamp"),
                                        event_bytes=json_size(stored), event_count=s.event_count,
                                        state_bytes=json_size(s.state)))

    if "session_update" in names:
        @server.tool(annotations=WRITE)
        async def session_update(
            session_id: SessionId,
            state_delta: Annotated[JsonObject | None, Field(description="merged; null removes a key")] = None,
            status: Annotated[Literal["active", "paused", "terminated", "archived"] | None,
                              Field(description="created→active⇄paused→terminated→archived")] = None,
        ) -> Annotated[CallToolResult, SessionWritten]:
            """Change a session: merge a state delta and/or move it along its lifecycle (the
            delta first)."""
            from indexer.errors import ValidationError

            with tool_errors():
                if state_delta is None and status is None:
                    raise ValidationError("give state_delta, status, or both")
                svc = await service()
                if state_delta is not None:
                    await svc.update_state(session_id, state_delta)
                if status is not None:
                    s = await svc.set_status(session_id, status)
                else:
                    s = await svc.get_session(session_id)
                return respond(_written(s))
