"""Session events as rows (schema/0004_session_events.sql): sequence numbers, paged reads, the
back-fill of an existing database, the '[]' left in sessions.events, and appends kept off the
event loop's thread; the service's tests on both engines (the ``engine`` fixture), the migration's
on SQLite. (The 4-process races are in test_sessions.py.)"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import StoreRows, raw_rows
from indexer import Database, SessionService
from indexer.errors import ConflictError, NotFoundError, ValidationError
from indexer.storage.sqlite import driver, migrations


@pytest.fixture
async def svc(agent_db: Any) -> SessionService:
    return SessionService(agent_db)


async def _session_with(svc: SessionService, n: int) -> str:
    s = await svc.create_session("app", "alice")
    for i in range(n):
        await svc.append_event(s.id, {"type": "msg" if i % 2 else "tool", "i": i})
    return s.id


async def test_events_are_rows_numbered_from_one_and_the_column_stays_empty(svc: SessionService, store_rows: StoreRows) -> None:
    sid = await _session_with(svc, 5)
    stored = await svc.append_event(sid, {"type": 3, "id": "mine", "timestamp": 1.5}, {"user:k": 1})
    rows = store_rows("SELECT * FROM session_events WHERE session_id = ? ORDER BY seq", (sid,))
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["type"] for r in rows] == ["tool", "msg", "tool", "msg", "tool", None]  # only a string type
    assert json.loads(rows[-1]["payload"]) == stored == {"type": 3, "id": "mine", "timestamp": 1.5}
    session = store_rows("SELECT events, state, last_update_time FROM sessions WHERE id = ?", (sid,))[0]
    assert session["events"] == "[]" and json.loads(session["state"]) == {"user:k": 1}
    assert rows[-1]["created_at"] == session["last_update_time"]  # one time for the row and the session
    got = await svc.get_session(sid)
    assert got.event_count == 6 and got.events == [json.loads(r["payload"]) for r in rows]
    bare = await svc.get_session(sid, events=False)
    assert bare.events is None and bare.event_count == 6 and bare.state == got.state
    listed = await svc.list_sessions(user_id="alice")
    assert [s.event_count for s in listed] == [6]


async def test_pages_after_a_sequence_number(svc: SessionService) -> None:
    sid = await _session_with(svc, 25)
    page = await svc.list_events(sid, limit=10)
    assert [e.seq for e in page] == list(range(1, 11)) and page.next_after == 10 and page.event_count == 25
    assert [e.event["i"] for e in page] == list(range(10)) and page.items[0].type == "tool"
    page = await svc.list_events(sid, after=page.next_after, limit=10)
    assert [e.seq for e in page] == list(range(11, 21)) and page.next_after == 20
    page = await svc.list_events(sid, after=20, limit=10)
    assert [e.seq for e in page] == list(range(21, 26)) and page.next_after is None
    exact = await svc.list_events(sid, after=15, limit=10)
    assert [e.seq for e in exact] == list(range(16, 26)) and exact.next_after is None  # ends on the last
    beyond = await svc.list_events(sid, after=99)
    assert len(beyond) == 0 and beyond.next_after is None and beyond.event_count == 25
    last = await svc.last_events(sid, 3)
    assert [e.seq for e in last] == [23, 24, 25] and last.next_after is None
    assert [e.seq for e in await svc.last_events(sid, 100)] == list(range(1, 26))
    assert page.as_dict()["items"][0] == {"seq": 21, "created_at": page.items[0].created_at, "type": "tool",
                                          "event": page.items[0].event}
    empty = await svc.list_events((await svc.create_session("app", "bob")).id)
    assert len(empty) == 0 and empty.event_count == 0 and empty.next_after is None


@pytest.mark.parametrize("after,limit", [(-1, 10), (True, 10), ("3", 10), (0, 0), (0, 1001), (0, 2.5)])
async def test_bad_page_arguments(svc: SessionService, after: Any, limit: Any) -> None:
    sid = await _session_with(svc, 1)
    with pytest.raises(ValidationError):
        await svc.list_events(sid, after=after, limit=limit)


async def test_unknown_session_pages_are_not_found(svc: SessionService) -> None:
    with pytest.raises(NotFoundError, match="no session nope"):
        await svc.list_events("nope")
    with pytest.raises(NotFoundError):
        await svc.last_events("nope", 5)


async def test_a_refused_append_writes_no_row(svc: SessionService, store_rows: StoreRows) -> None:
    sid = await _session_with(svc, 2)
    await svc.set_status(sid, "terminated")
    with pytest.raises(ConflictError):
        await svc.append_event(sid, {"type": "late"})
    with pytest.raises(NotFoundError):
        await svc.append_event("nope", {"type": "late"})
    assert store_rows("SELECT count(*) AS n FROM session_events")[0]["n"] == 2


async def test_deleting_a_session_deletes_its_events(svc: SessionService, store_rows: StoreRows) -> None:
    keep, gone = await _session_with(svc, 2), await _session_with(svc, 3)
    store_rows.execute("DELETE FROM sessions WHERE id = ?", (gone,))
    assert [r["session_id"] for r in store_rows("SELECT session_id FROM session_events")] == [keep, keep]


async def test_appends_run_on_the_connection_thread_not_the_loop(svc: SessionService,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sid = await _session_with(svc, 0)
    threads: list[int] = []
    real = svc.store.append_event

    def spy(*args: Any) -> int | None:
        threads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(svc.store, "append_event", spy)
    for i in range(5):
        await svc.append_event(sid, {"i": i})
    loop_thread = threading.get_ident()  # the test body runs on the loop's thread
    assert len(threads) == 5 and loop_thread not in threads
    # and the loop stays free meanwhile: a ticker keeps running while appends are in flight
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(svc.append_event(sid, {"j": j}) for j in range(20)))
    task.cancel()
    assert ticks >= 20 and (await svc.get_session(sid, events=False)).event_count == 25


# --- the migration on a database that already holds sessions ------------------------------------

OWN_EVENTS = [{"type": "msg", "id": "e1", "timestamp": "2025-03-01T10:00:00.250Z", "text": "héllo"},
              {"type": "tool", "id": "e2", "timestamp": "2025-03-01T10:00:01.000Z", "args": {"n": [1, 2.5, None]}},
              {"id": "e3", "timestamp": "not a time"}]


def test_migration_0004_moves_existing_events_to_rows(db_path: Path) -> None:
    shipped = migrations.load_migrations()
    before = [m for m in shipped if m.name < "0004"]
    migrations.migrate(db_path, migrations=before)
    conn = driver.connect(db_path)
    try:
        conn.executemany(
            "INSERT INTO sessions (id, app_name, user_id, status, events, created_at) VALUES (?, 'a', 'u', ?, ?, ?)",
            [("s-own", "active", json.dumps(OWN_EVENTS), "2025-03-01T09:00:00.000Z"),
             ("s-empty", "created", "[]", "2025-03-01T09:00:00.000Z"),
             ("s-odd", "terminated", '{"not": "an array"}', "2025-03-01T09:00:00.000Z")])
    finally:
        conn.close()
    report = migrations.migrate(db_path)
    assert "0004_session_events" in report.applied
    rows = raw_rows(db_path, "SELECT * FROM session_events ORDER BY session_id, seq")
    assert [(r["session_id"], r["seq"], r["type"], r["created_at"]) for r in rows] == [
        ("s-own", 1, "msg", "2025-03-01T10:00:00.250Z"), ("s-own", 2, "tool", "2025-03-01T10:00:01.000Z"),
        ("s-own", 3, None, "2025-03-01T09:00:00.000Z")]  # an unreadable timestamp: the session's creation
    assert [json.loads(r["payload"]) for r in rows] == OWN_EVENTS
    columns = {r["id"]: r["events"] for r in raw_rows(db_path, "SELECT id, events FROM sessions")}
    assert columns == {"s-own": "[]", "s-empty": "[]", "s-odd": '{"not": "an array"}'}  # not an array: left as is


async def test_after_the_migration_the_service_reads_and_continues_the_log(db_path: Path) -> None:
    migrations.migrate(db_path, migrations=[m for m in migrations.load_migrations() if m.name < "0004"])
    conn = driver.connect(db_path)
    try:
        conn.execute("INSERT INTO sessions (id, app_name, user_id, status, events) VALUES ('s', 'a', 'u', 'active', ?)",
                     (json.dumps(OWN_EVENTS),))
    finally:
        conn.close()
    async with Database(db_path) as db:  # initialize() applies 0004
        svc = SessionService(db)
        assert (await svc.get_session("s")).events == OWN_EVENTS
        await svc.append_event("s", {"type": "after"})
        page = await svc.list_events("s", after=2)
        assert [(e.seq, e.type) for e in page] == [(3, None), (4, "after")]
