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

SessionId = Annotated[str, Field(min_length=1, max_length=200, description="the session's id")]
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
    events: list[dict[str, Any]] = Field(description="the last events asked for, oldest first")
    events_truncated: bool = Field(description="true when older events exist than those returned (ask for more, up to 200)")


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
    state_bytes: int = Field(description="the size of the state as JSON")
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
            session_id: Annotated[str | None, Field(min_length=1, max_length=200,
                                                    description="use this id (default: a new uuid4)")] = None,
            state: Annotated[JsonObject | None,
                             Field(description="initial state, a JSON object (same key rules as state_delta)")] = None,
            metadata: Annotated[JsonObject | None, Field(description="a JSON object")] = None,
        ) -> Annotated[CallToolResult, SessionWritten]:
            """Start a session (status created) for an app and a user; returns its id, status
            and the sizes of its state and metadata. Record what happens with session_append;
            move it on with session_update."""
            with tool_errors():
                created = await (await service(create=True)).create_session(
                    app_name, user_id, project_id, session_id, state, metadata=metadata)
                return respond(_written(created))

    if "session_get" in names:
        @server.tool(annotations=READ)
        async def session_get(
            session_id: SessionId,
            events: Annotated[int, Field(ge=0, le=200, description="how many of the last events to return")] = 20,
        ) -> Annotated[CallToolResult, SessionWithEvents]:
            """A session: status, state, times, how many events it has, and its last events
            (at most `events`, and fewer if they would not fit in 40,000 characters)."""
            with tool_errors():
                s = await (await service()).get_session(session_id)
                base = _session(s)
                last = (s.events or [])[-events:] if events else []
                budget = MAX_OUTPUT_CHARS - size(base.model_dump(mode="json"))
                keep = fit(list(reversed(last)), max(budget, 1)) if last else 0
                shown = last[len(last) - keep:] if keep else []
                result = SessionWithEvents(**base.model_dump(), events=shown,
                                           events_truncated=len(shown) < s.event_count)
                return respond(result)

    if "session_list" in names:
        @server.tool(annotations=READ)
        async def session_list(
            app_name: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
            user_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
            project_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
            status: Literal["created", "active", "paused", "terminated", "archived"] | None = None,
            limit: Annotated[int, Field(ge=1, le=100, description="page size")] = 20,
            cursor: Annotated[str | None, Field(max_length=4096, description="next_cursor of the previous page")] = None,
        ) -> Annotated[CallToolResult, SessionPage]:
            """List sessions matching every filter given, newest first, without their events
            (event_count says how many), one page at a time."""
            with tool_errors():
                page = await (await service()).list_sessions(app_name, user_id, project_id, status, limit, cursor)
                items, next_cursor = fit_page([_session(s) for s in page.items], page.next_cursor,
                                              lambda s: [s.created_at, s.id])
                return respond(SessionPage(items=items, next_cursor=next_cursor))

    if "session_append" in names:
        @server.tool(annotations=WRITE)
        async def session_append(
            session_id: SessionId,
            event: Annotated[JsonObject, Field(description="a JSON object; given an id and a timestamp when it has none")],
            state_delta: Annotated[JsonObject | None,
                                   Field(description="state changes applied with the event; null removes a key")] = None,
        ) -> Annotated[CallToolResult, Appended]:
            """Append an event to a session's log (atomically with an optional state delta).
            Only created, active or paused sessions take events. The reply names the event
            (id, timestamp, size) and counts the log, without echoing the event or the state."""
            with tool_errors():
                svc = await service()
                stored = await svc.append_event(session_id, event, state_delta)
                s = await svc.get_session(session_id)
                return respond(Appended(event_id=stored.get("id"), timestamp=stored.get("timestamp"),
                                        event_bytes=json_size(stored), event_count=s.event_count,
                                        state_bytes=json_size(s.state)))

    if "session_update" in names:
        @server.tool(annotations=WRITE)
        async def session_update(
            session_id: SessionId,
            state_delta: Annotated[JsonObject | None, Field(description="merged into the state; null removes a key")] = None,
            status: Annotated[Literal["active", "paused", "terminated", "archived"] | None,
                              Field(description="move the session on: created→active⇄paused, →terminated→archived")] = None,
        ) -> Annotated[CallToolResult, SessionWritten]:
            """Change a session: merge a state delta and/or move it along its lifecycle
            (the delta is applied first). An illegal transition is an error naming both states.
            The reply gives the status, times and sizes (session_get reads the state)."""
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
