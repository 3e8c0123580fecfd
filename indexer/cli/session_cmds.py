"""``indexer session …``: sessions, their events, state and lifecycle from the command line."""

from __future__ import annotations

import json
from typing import Any

import click

from indexer.cli.app import AppContext, cli
from indexer.cli.common import compact, json_argument, json_object_option, limits, run_with_db
from indexer.cli.output import emit_json
from indexer.errors import ValidationError


def _summary(s: Any) -> str:
    project = s.project_id or "-"
    return f"{s.id}  {s.status:<10} {s.app_name}  {s.user_id}  {project}  {s.created_at}  {s.event_count} events"


@cli.group()
def session() -> None:
    """Sessions: an event log and scoped state, with a lifecycle.

    \b
    Lifecycle: created -> active <-> paused; created/active/paused -> terminated -> archived.
    State keys: app:, user:, session: or no prefix; temp: keys are never stored; null removes.
    JSON arguments may be '-' to read them from stdin.
    """


@session.command("create")
@click.argument("app_name")
@click.argument("user_id")
@click.option("--project", "project_id", help="Project id.")
@click.option("--id", "session_id", help="Use this id (default: a new uuid4).")
@click.option("--state", help="Initial state, a JSON object.")
@click.option("--metadata", help="Metadata, a JSON object.")
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
@click.pass_obj
def session_create(app: AppContext, app_name: str, user_id: str, project_id: str | None, session_id: str | None,
                   state: str | None, metadata: str | None, as_json: bool) -> None:
    """Create a session (status created); prints its id."""
    from indexer.agent.common import check_text
    from indexer.agent.sessions import SessionService, initial_state

    for value, what in ((app_name, "APP_NAME"), (user_id, "USER_ID")):
        check_text(value, what)  # before the database file is opened (or created)
    state_value = json_object_option(state, "--state")
    initial_state(state_value)
    meta = json_object_option(metadata, "--metadata")
    created = run_with_db(app, lambda db: SessionService(db, limits(app)).create_session(
        app_name, user_id, project_id, session_id, state_value, metadata=meta))
    if as_json:
        emit_json(created.as_dict())
    else:
        click.echo(created.id)


@session.command("show")
@click.argument("session_id")
@click.option("--events", "last", type=int, default=20, show_default=True, help="Show the last N events (0: none).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole session (every event) as JSON.")
@click.pass_obj
def session_show(app: AppContext, session_id: str, last: int, as_json: bool) -> None:
    """Show a session: status, times, state and its last events."""
    from indexer.agent.common import MAX_LIMIT
    from indexer.agent.sessions import EventPage, Session, SessionService

    if last < 0:
        raise ValidationError(f"--events must be 0 or more, got {last}")
    if as_json:
        emit_json(run_with_db(app, lambda db: SessionService(db).get_session(session_id), create=False).as_dict())
        return

    async def read(db: Any) -> tuple[Session, EventPage | None]:
        service = SessionService(db)  # the session without its log, then only the events shown
        found = await service.get_session(session_id, events=False)
        return found, await service.last_events(session_id, min(last, MAX_LIMIT)) if last else None

    s, tail = run_with_db(app, read, create=False)
    click.echo(f"session {s.id}")
    click.echo(f"  app {s.app_name}, user {s.user_id}, project {s.project_id or '-'}")
    times = f"created {s.created_at}, updated {s.last_update_time}"
    if s.terminated_at:
        times += f", terminated {s.terminated_at}"
    if s.archived_at:
        times += f", archived {s.archived_at}"
    click.echo(f"  status {s.status} ({times})")
    click.echo(f"  state {compact(s.state)}")
    if s.metadata:
        click.echo(f"  metadata {compact(s.metadata)}")
    shown = tail.items if tail is not None else ()
    click.echo(f"  events {s.event_count}" + (f" (last {len(shown)}):" if shown else ""))
    for item in shown:
        click.echo(_event_line(item))


def _event_line(item: Any) -> str:
    """``seq  time  id  the rest of the event`` (events that are not objects shown whole)."""
    event = item.event
    if not isinstance(event, dict):
        return f"    {item.seq:>6}  {item.created_at}  -  {compact(event, 100)}"
    rest = {k: v for k, v in event.items() if k not in ("id", "timestamp")}
    return f"    {item.seq:>6}  {event.get('timestamp', item.created_at)}  {event.get('id', '-')}  {compact(rest, 100)}"


@session.command("events")
@click.argument("session_id")
@click.option("--after", type=int, default=0, show_default=True, help="Only events after this sequence number.")
@click.option("--limit", type=int, default=100, show_default=True, help="Page size (1-1000).")
@click.option("--all", "all_pages", is_flag=True, help="Every page to the last event.")
@click.option("--json", "as_json", is_flag=True,
              help='{"session_id", "items": [{"seq", "created_at", "type", "event"}], "event_count", "next_after"}.')
@click.pass_obj
def session_events(app: AppContext, session_id: str, after: int, limit: int, all_pages: bool, as_json: bool) -> None:
    """A session's events in order, one page at a time (sequence numbers start at 1)."""
    from indexer.agent.sessions import EventPage, SessionService

    async def pages(db: Any) -> EventPage:
        service = SessionService(db)
        page = await service.list_events(session_id, after, limit)
        items = list(page.items)
        while all_pages and page.next_after is not None:
            page = await service.list_events(session_id, page.next_after, limit)
            items.extend(page.items)
        return EventPage(page.session_id, tuple(items), page.event_count, page.next_after)

    result = run_with_db(app, pages, create=False)
    if as_json:
        emit_json(result.as_dict())
        return
    for item in result.items:
        click.echo(_event_line(item).strip())
    if not result.items:
        click.echo(f"no events after {after} (the session has {result.event_count})")
    if result.next_after is not None:
        click.echo(f"more: --after {result.next_after}")


@session.command("list")
@click.option("--app", "app_name", help="Only this app.")
@click.option("--user", "user_id", help="Only this user.")
@click.option("--project", "project_id", help="Only this project.")
@click.option("--status", help="Only this status.")
@click.option("--limit", type=int, default=50, show_default=True, help="Page size (1-1000).")
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@click.option("--all", "all_pages", is_flag=True, help="Every page.")
@click.option("--json", "as_json", is_flag=True, help='{"items": [...], "next_cursor": ...} (items without events).')
@click.pass_obj
def session_list(app: AppContext, app_name: str | None, user_id: str | None, project_id: str | None,
                 status: str | None, limit: int, cursor: str | None, all_pages: bool, as_json: bool) -> None:
    """Sessions, newest first."""
    from indexer.agent.sessions import SessionPage, SessionService

    async def pages(db: Any) -> SessionPage:
        service = SessionService(db, limits(app))
        page = await service.list_sessions(app_name, user_id, project_id, status, limit, cursor)
        items = list(page.items)
        while all_pages and page.next_cursor:
            page = await service.list_sessions(app_name, user_id, project_id, status, limit, page.next_cursor)
            items.extend(page.items)
        return SessionPage(tuple(items), page.next_cursor)

    result = run_with_db(app, pages, create=False)
    if as_json:
        emit_json(result.as_dict())
        return
    for s in result.items:
        click.echo(_summary(s))
    if not result.items:
        click.echo("no sessions")
    if result.next_cursor:
        click.echo(f"more: --cursor {result.next_cursor}")


@session.command("append")
@click.argument("session_id")
@click.argument("event")
@click.option("--state-delta", "state_delta", help="State changes applied with the event (a JSON object).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored event as JSON.")
@click.pass_obj
def session_append(app: AppContext, session_id: str, event: str, state_delta: str | None, as_json: bool) -> None:
    """Append EVENT (a JSON object; '-' reads it from stdin); prints the event id."""
    from indexer.agent.sessions import SessionService

    data = json_argument(event, "EVENT")
    if not isinstance(data, dict):
        raise ValidationError("EVENT must be a JSON object")
    delta = json_object_option(state_delta, "--state-delta")
    stored = run_with_db(app, lambda db: SessionService(db, limits(app)).append_event(session_id, data, delta), create=False)
    if as_json:
        emit_json(stored)
    else:
        click.echo(stored["id"])


@session.command("state")
@click.argument("session_id")
@click.argument("delta", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_obj
def session_state(app: AppContext, session_id: str, delta: str | None, as_json: bool) -> None:
    """Show the state, or merge DELTA (a JSON object; null removes a key) and show the result."""
    from indexer.agent.sessions import SessionService

    if delta is None:
        current = run_with_db(app, lambda db: SessionService(db).get_session(session_id, events=False), create=False)
        state = current.state
    else:
        changes = json_object_option(delta, "DELTA")
        assert changes is not None
        state = run_with_db(app, lambda db: SessionService(db, limits(app)).update_state(session_id, changes), create=False)
    if as_json:
        emit_json(state)
    else:
        click.echo(json.dumps(state, ensure_ascii=False, indent=2))


@session.command("status")
@click.argument("session_id")
@click.argument("new_status", metavar="STATUS")
@click.option("--json", "as_json", is_flag=True, help="Print the session (without events) as JSON.")
@click.pass_obj
def session_status(app: AppContext, session_id: str, new_status: str, as_json: bool) -> None:
    """Move a session to STATUS: active, paused, terminated or archived."""
    from indexer.agent.sessions import SessionService

    s = run_with_db(app, lambda db: SessionService(db, limits(app)).set_status(session_id, new_status), create=False)
    if as_json:
        emit_json(s.as_dict())
    else:
        click.echo(f"session {s.id} is now {s.status}")
