"""SessionService: every rule of the issue and appends from several processes, on both engines
(the ``engine`` fixture: an SQLite file and a database on the suite's PostgreSQL), and the
query plans of every statement the SQLite session store runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import StoreRows, run_processes  # noqa: E402  (shared helpers)
from indexer import Database, SessionService
from indexer.agent.sessions import (
    STATUSES,
    TRANSITIONS,
    Session,
    check_transition,
    initial_state,
    prepare_event,
    state_ops,
    state_scope,
)
from indexer.errors import ConflictError, NotFoundError, ValidationError
from indexer.storage.sqlite import driver, event_store, hot_queries, migrations
from indexer.storage.sqlite import session_store as store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def svc(agent_db: Any) -> SessionService:
    return SessionService(agent_db)


@pytest.fixture
async def sqlite_svc(db: Database) -> SessionService:
    return SessionService(db)


def snapshot(rows: StoreRows) -> list[dict[str, Any]]:
    return rows("SELECT * FROM sessions ORDER BY id")


# --- pure rules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,scope", [("theme", "session"), ("app:x", "app"), ("user:theme", "user"),
                                       ("session:n", "session"), ("temp:scratch", "temp"), ("user:a:b", "user")])
def test_state_scopes(key: str, scope: str) -> None:
    assert state_scope(key) == scope


@pytest.mark.parametrize("key", ["", "bogus:x", "user:", 3, None])
def test_bad_state_keys(key: Any) -> None:
    with pytest.raises(ValidationError):
        state_scope(key)


def test_state_ops_drop_temp_and_encode_json() -> None:
    assert state_ops({"a": 1, "temp:t": 2, "user:u": None, "s": {"x": [1]}}) == [
        ("a", "1"), ("user:u", None), ("s", '{"x":[1]}')
    ]
    with pytest.raises(ValidationError):
        state_ops([1, 2])
    with pytest.raises(ValidationError):
        state_ops({"a": float("nan")})
    assert json.loads(initial_state({"a": 1, "temp:t": 2, "b": None})) == {"a": 1}
    assert initial_state(None) == "{}"


def test_prepare_event() -> None:
    event = prepare_event({"type": "msg"}, "2025-01-01T00:00:00.000Z")
    assert event["type"] == "msg" and event["timestamp"] == "2025-01-01T00:00:00.000Z" and len(event["id"]) == 36
    kept = prepare_event({"id": "e1", "timestamp": "t"}, "now")
    assert kept == {"id": "e1", "timestamp": "t"}
    for bad in ([1], "text", 3, None):
        with pytest.raises(ValidationError):
            prepare_event(bad, "now")


ALLOWED = {("created", "active"), ("created", "terminated"), ("active", "paused"), ("paused", "active"),
           ("active", "terminated"), ("paused", "terminated"), ("terminated", "archived")}


@pytest.mark.parametrize("old,new", list(itertools.product(STATUSES, STATUSES)))
def test_transition_table(old: str, new: str) -> None:
    if (old, new) in ALLOWED:
        check_transition("s", old, new)
    else:
        with pytest.raises(ConflictError, match=f"from {old} to {new}"):
            check_transition("s", old, new)
    assert {(o, n) for o, ns in TRANSITIONS.items() for n in ns} == ALLOWED


# --- create / get ------------------------------------------------------------------------------------

async def test_create_and_get(svc: SessionService) -> None:
    s = await svc.create_session("app", "alice", "p1", state={"a": 1, "temp:t": 2, "user:theme": "dark"})
    assert isinstance(s, Session) and s.status == "created" and len(s.id) == 36
    assert s.state == {"a": 1, "user:theme": "dark"} and s.events == [] and s.event_count == 0
    assert s.created_at.endswith("Z") and s.terminated_at is None and s.archived_at is None
    got = await svc.get_session(s.id)
    assert got == s
    assert got.as_dict()["events"] == []


async def test_create_with_given_id_and_duplicate(svc: SessionService, store_rows: StoreRows) -> None:
    await svc.create_session("app", "alice", session_id="s-1")
    before = snapshot(store_rows)
    with pytest.raises(ConflictError, match="already exists"):
        await svc.create_session("app", "bob", session_id="s-1")
    assert snapshot(store_rows) == before


async def test_create_validates(svc: SessionService, store_rows: StoreRows) -> None:
    for kwargs in ({"app_name": "", "user_id": "u"}, {"app_name": "a", "user_id": None},
                   {"app_name": "a", "user_id": "u", "state": {"bogus:x": 1}},
                   {"app_name": "a", "user_id": "u", "state": [1]}):
        with pytest.raises(ValidationError):
            await svc.create_session(**kwargs)
    assert snapshot(store_rows) == []


async def test_unknown_ids_are_errors(svc: SessionService, store_rows: StoreRows) -> None:
    with pytest.raises(NotFoundError):
        await svc.get_session("nope")
    with pytest.raises(NotFoundError):
        await svc.append_event("nope", {"type": "x"})
    with pytest.raises(NotFoundError):
        await svc.update_state("nope", {"a": 1})
    with pytest.raises(NotFoundError):
        await svc.set_status("nope", "active")
    assert snapshot(store_rows) == []


# --- events and state ---------------------------------------------------------------------------------

async def test_append_event_assigns_id_and_timestamp_and_applies_delta(svc: SessionService) -> None:
    s = await svc.create_session("app", "alice", state={"a": 1, "b": 2})
    e1 = await svc.append_event(s.id, {"type": "msg", "text": "hi"}, {"a": None, "user:n": 5, "temp:x": 1})
    e2 = await svc.append_event(s.id, {"id": "mine", "timestamp": "2025-01-01T00:00:00.000Z", "type": "x"})
    got = await svc.get_session(s.id)
    assert got.events == [e1, e2] and got.event_count == 2
    assert e1["id"] and e1["timestamp"].endswith("Z") and e2["id"] == "mine"
    assert got.state == {"b": 2, "user:n": 5}
    assert got.last_update_time >= s.last_update_time


async def test_append_rejects_non_objects_and_changes_nothing(svc: SessionService, store_rows: StoreRows) -> None:
    s = await svc.create_session("app", "alice")
    before = snapshot(store_rows)
    for bad in ([1, 2], "text", 7, None):
        with pytest.raises(ValidationError):
            await svc.append_event(s.id, bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await svc.append_event(s.id, {"type": "x"}, {"bogus:k": 1})
    assert snapshot(store_rows) == before


async def test_update_state_scopes_null_removes_temp_dropped(svc: SessionService, store_rows: StoreRows) -> None:
    s = await svc.create_session("app", "alice", state={"keep": 1, "drop": 2})
    state = await svc.update_state(s.id, {"drop": None, "app:v": [1, 2], "session:x": {"y": 1},
                                          "temp:scratch": "never", 'odd."key': True})
    assert state == {"keep": 1, "app:v": [1, 2], "session:x": {"y": 1}, 'odd."key': True}
    assert (await svc.get_session(s.id)).state == state
    assert "temp:" not in store_rows("SELECT state FROM sessions")[0]["state"]
    with pytest.raises(ValidationError):
        await svc.update_state(s.id, {"x:y": 1})


async def test_closed_sessions_refuse_events_and_state(svc: SessionService, store_rows: StoreRows) -> None:
    s = await svc.create_session("app", "alice")
    await svc.set_status(s.id, "terminated")
    before = snapshot(store_rows)
    with pytest.raises(ConflictError, match="terminated"):
        await svc.append_event(s.id, {"type": "late"})
    with pytest.raises(ConflictError, match="terminated"):
        await svc.update_state(s.id, {"a": 1})
    await svc.set_status(s.id, "archived")
    with pytest.raises(ConflictError, match="archived"):
        await svc.append_event(s.id, {"type": "late"})
    rows = snapshot(store_rows)
    assert rows[0]["events"] == before[0]["events"] and rows[0]["state"] == before[0]["state"]


# --- lifecycle ----------------------------------------------------------------------------------------

async def test_lifecycle_stamps_times(svc: SessionService) -> None:
    s = await svc.create_session("app", "alice")
    await svc.activate_session(s.id)
    await svc.pause_session(s.id)
    await svc.resume_session(s.id)
    t = await svc.terminate_session(s.id)
    assert t.status == "terminated" and t.terminated_at is not None and t.archived_at is None
    a = await svc.archive_session(s.id)
    assert a.status == "archived" and a.archived_at is not None and a.terminated_at == t.terminated_at
    assert (await svc.get_session(s.id)).status == "archived"


@pytest.mark.parametrize("path,bad", [((), "paused"), ((), "archived"), (("active",), "active"),
                                      (("active", "terminated"), "active"),
                                      (("terminated", "archived"), "active"),
                                      (("terminated", "archived"), "archived")])
async def test_illegal_transitions_are_conflicts_and_change_nothing(svc: SessionService, store_rows: StoreRows,
                                                                    path: tuple[str, ...], bad: str) -> None:
    s = await svc.create_session("app", "alice")
    for status in path:
        await svc.set_status(s.id, status)
    before = snapshot(store_rows)
    current = path[-1] if path else "created"
    with pytest.raises(ConflictError, match=f"from {current} to {bad}"):
        await svc.set_status(s.id, bad)
    assert snapshot(store_rows) == before


async def test_bad_status_value(svc: SessionService) -> None:
    s = await svc.create_session("app", "alice")
    with pytest.raises(ValidationError):
        await svc.set_status(s.id, "running")


# --- listing ----------------------------------------------------------------------------------------------

async def test_list_filters_and_pagination(svc: SessionService) -> None:
    ids = []
    for i in range(25):
        s = await svc.create_session(f"app{i % 2}", f"u{i % 3}", f"p{i % 5}" if i % 4 else None)
        ids.append(s.id)
        if i % 2:
            await svc.set_status(s.id, "active")
    everything = []
    cursor = None
    while True:
        page = await svc.list_sessions(limit=7, cursor=cursor)
        everything.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(everything) == 25 and len({s.id for s in everything}) == 25
    keys = [(s.created_at, s.id) for s in everything]
    assert keys == sorted(keys, reverse=True)
    assert all(s.events is None and "events" not in s.as_dict() for s in everything)
    page = await svc.list_sessions(app_name="app1", user_id="u1", status="active", limit=100)
    expected = [s for s in everything if s.app_name == "app1" and s.user_id == "u1" and s.status == "active"]
    assert [s.id for s in page] == [s.id for s in expected] and page.next_cursor is None
    page = await svc.list_sessions(project_id="p2", limit=100)
    assert {s.id for s in page} == {s.id for s in everything if s.project_id == "p2"}
    with pytest.raises(ValidationError):
        await svc.list_sessions(status="bogus")
    with pytest.raises(ValidationError):
        await svc.list_sessions(cursor="!!not-a-cursor")
    with pytest.raises(ValidationError):
        await svc.list_sessions(limit=0)


async def test_cursor_is_stable_under_inserts(svc: SessionService) -> None:
    for i in range(6):
        await svc.create_session("app", "alice", session_id=f"s{i}")
    first = await svc.list_sessions(user_id="alice", limit=3)
    # newer: never on a later page. Its id sorts after the others, so that it is also newer in
    # (created_at, id) order when it is created in the same millisecond as s5 ("s-new" was
    # not: '-' < '5', and the test failed when the clock did not move between the creates)
    await svc.create_session("app", "alice", session_id="s9-new")
    second = await svc.list_sessions(user_id="alice", limit=3, cursor=first.next_cursor)
    seen = [s.id for s in first] + [s.id for s in second]
    assert len(set(seen)) == 6 and "s9-new" not in seen


# --- several processes ---------------------------------------------------------------------------------------

WORKER = r"""
import asyncio, json, sys
from indexer import SessionService
from indexer.storage.engines import open_agent_database

async def main(path, op, session_id, n, tag):
    async with open_agent_database(path) as db:
        svc = SessionService(db)
        print("ready", flush=True)
        sys.stdin.readline()
        outcomes = []
        for i in range(n):
            try:
                if op == "append":
                    await svc.append_event(session_id, {"by": tag, "i": i}, {f"user:{tag}": i})
                elif op == "state":
                    await svc.update_state(session_id, {f"{tag}-{i}": i})
                elif op == "pause":
                    await svc.set_status(session_id, "paused")
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(type(exc).__name__ + ": " + str(exc))
        print(json.dumps(outcomes), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
"""


@pytest.mark.process
async def test_concurrent_appends_from_processes_lose_nothing(svc: SessionService, store_rows: StoreRows) -> None:
    s = await svc.create_session("app", "alice")
    await svc.set_status(s.id, "active")
    results = run_processes(WORKER, [[store_rows.location, "append", s.id, "50", f"w{i}"] for i in range(4)])
    assert all(o == "ok" for r in results for o in r), results
    got = await svc.get_session(s.id)
    assert got.event_count == 200 and len({e["id"] for e in got.events or []}) == 200
    for i in range(4):
        mine = [e["i"] for e in got.events or [] if e["by"] == f"w{i}"]
        assert mine == list(range(50))  # every append present, each writer's order kept
    assert got.state == {f"user:w{i}": 49 for i in range(4)}  # no state key lost either
    # sequence numbers contiguous 1..200 (no gap, no duplicate), in the order of the log
    rows = store_rows("SELECT seq, payload FROM session_events WHERE session_id = ? ORDER BY seq", (s.id,))
    assert [r["seq"] for r in rows] == list(range(1, 201))
    assert [json.loads(r["payload"]) for r in rows] == got.events
    paged, after = [], 0
    while after is not None:
        page = await svc.list_events(s.id, after=after, limit=30)
        paged.extend(page.items)
        after = page.next_after
    assert [e.seq for e in paged] == list(range(1, 201)) and [e.event for e in paged] == got.events


# --- query plans ----------------------------------------------------------------------------------------------

def _populated(db_path: Path) -> Any:
    migrations.migrate(db_path)
    conn = driver.connect(db_path)
    conn.executemany(
        "INSERT INTO sessions (id, app_name, user_id, project_id, status, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(f"s{i}", f"app{i % 5}", f"u{i % 50}", f"p{i % 20}" if i % 2 else None, STATUSES[i % 5],
          f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000Z") for i in range(2000)])
    conn.execute("ANALYZE")
    return conn


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One populated database for the plan tests (they only EXPLAIN): built once per module."""
    path = tmp_path_factory.mktemp("plans") / "sessions.db"
    _populated(path).close()
    return path


def _statements() -> list[tuple[str, str, tuple[Any, ...]]]:
    sid = "s1"
    expr, params = store.state_expr([("a", "1"), ("b", None)])
    return [
        ("by_id", hot_queries.SESSION_BY_ID, (sid,)),
        ("exists", store.EXISTS, (sid,)),
        ("status", store.STATUS, (sid,)),
        ("append", f"UPDATE sessions SET state = {expr}, "
                   f"last_update_time = ? WHERE id = ? AND status IN ('created', 'active', 'paused')",
         (*params, "t", sid)),
        ("event_insert", event_store.INSERT, (sid, "t", "msg", "{}")),
        ("event_count", event_store.COUNT, (sid,)),
        ("event_all", event_store.ALL_EVENTS, (sid,)),
        ("event_tail", event_store.TAIL, (sid, 20)),
        ("event_page", hot_queries.SESSION_EVENTS_PAGE, (sid, 10, 20)),
        ("set_status", "UPDATE sessions SET status = ?, last_update_time = ? WHERE id = ? AND status = ?",
         ("active", "t", sid, "created")),
    ]


@pytest.mark.parametrize("name", [s[0] for s in _statements()])
def test_every_session_statement_searches_an_index(populated: Path, name: str) -> None:
    _, sql, params = next(s for s in _statements() if s[0] == name)
    conn = driver.connect(populated)
    try:
        plan = hot_queries.explain(conn, sql, params)
    finally:
        conn.close()
    assert hot_queries.plan_verdict(plan)["uses_index"], plan


def _combos() -> list[Any]:
    out = []
    for r in range(len(hot_queries.SESSION_FILTERS) + 1):
        for combo in itertools.combinations(hot_queries.SESSION_FILTERS, r):
            out.append(pytest.param(combo, id="+".join(combo) or "no-filter"))
    return out


@pytest.mark.parametrize("combo", _combos())
def test_session_listing_plans_search_an_index(populated: Path, combo: tuple[str, ...]) -> None:
    values = {"app_name": "app1", "user_id": "u1", "project_id": "p1", "status": "terminated"}
    conn = driver.connect(populated)
    try:
        for with_cursor in (False, True):
            sql = hot_queries.sessions_page_sql(combo, with_cursor)
            params = [values[c] for c in combo] + (["2025-01-01T00:10:00.000Z", "s1"] if with_cursor else []) + [50]
            plan = hot_queries.explain(conn, sql, params)
            # a first page with no filter may walk an index in order (SCAN … USING INDEX, stops at LIMIT)
            ok_scan = not combo and not with_cursor and any("USING INDEX" in line for line in plan) \
                and not any("TEMP B-TREE" in line for line in plan)
            assert ok_scan or hot_queries.plan_verdict(plan)["uses_index"], (with_cursor, plan)
    finally:
        conn.close()


# --- a write while another process holds the write lock ----------------------------------------

async def test_write_waits_for_a_lock_held_elsewhere_then_succeeds(sqlite_svc: SessionService, db_path: Path) -> None:
    import asyncio

    svc = sqlite_svc
    s = await svc.create_session("app", "alice")
    other = driver.connect(db_path)
    other.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    try:
        task = asyncio.create_task(svc.append_event(s.id, {"type": "late"}))
        await asyncio.sleep(0.2)
        assert not task.done()  # waiting on the connection's thread, not failing, loop still free
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(task, 10)
    assert (await svc.get_session(s.id)).event_count == 1
    async with svc.db.read() as conn:
        rows = await conn.execute_fetchall("PRAGMA busy_timeout")
    assert rows[0][0] == driver.EXPECTED_PRAGMAS["busy_timeout"]  # restored after the fast-path attempt


# --- more rules: ties in pagination, awkward state keys, concurrent state and transitions --------
# (added by the other helper on issue 3; see /tmp/COORDINATION_issue3.md)

@pytest.mark.parametrize("filters", [{}, {"user_id": "alice"}, {"app_name": "app"}, {"status": "created"},
                                     {"project_id": "p"}])
async def test_pagination_with_identical_timestamps(svc: SessionService, monkeypatch: pytest.MonkeyPatch,
                                                    filters: dict[str, str]) -> None:
    import indexer.agent.sessions as sessions_module

    monkeypatch.setattr(sessions_module, "now_ts", lambda: "2025-01-01T00:00:00.000Z")  # 11 sessions, one ms
    created = [await svc.create_session("app", "alice", project_id="p", session_id=f"s{i:02d}") for i in range(11)]
    monkeypatch.undo()
    newer = await svc.create_session("app", "alice", project_id="p", session_id="a-newest")
    seen: list[str] = []
    cursor = None
    while True:
        page = await svc.list_sessions(limit=3, cursor=cursor, **filters)
        seen.extend(s.id for s in page)
        if len(seen) == 3:  # newer than every cursor: never on a later page
            await svc.create_session("app", "alice", project_id="p", session_id="z-late")
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [newer.id] + [s.id for s in reversed(created)]  # ties broken by id DESC, none lost


@pytest.mark.parametrize("key", ['q"uote', "back\\slash", "dot.ted", "br[0]acket", "$.root", "é", "new\nline",
                                 "user:a.b", "   ", 'user:"x"'])
async def test_awkward_state_keys_roundtrip(svc: SessionService, key: str) -> None:
    s = await svc.create_session("app", "alice", state={"other": 0})
    assert await svc.update_state(s.id, {key: {"v": 1}}) == {"other": 0, key: {"v": 1}}
    assert await svc.update_state(s.id, {key: None}) == {"other": 0}


async def test_state_values_replace_not_merge(svc: SessionService) -> None:
    s = await svc.create_session("app", "alice", state={"user:prefs": {"a": 1, "b": 2}})
    assert await svc.update_state(s.id, {"user:prefs": {"c": None}}) == {"user:prefs": {"c": None}}


@pytest.mark.parametrize("old,new", [(o, n) for o in STATUSES for n in STATUSES if n not in TRANSITIONS[o]])
async def test_every_illegal_transition_changes_nothing(svc: SessionService, store_rows: StoreRows, old: str, new: str) -> None:
    s = await svc.create_session("app", "alice")
    path = {"created": [], "active": ["active"], "paused": ["active", "paused"], "terminated": ["terminated"],
            "archived": ["terminated", "archived"]}[old]
    for step in path:
        await svc.set_status(s.id, step)
    before = snapshot(store_rows)
    with pytest.raises(ConflictError, match=f"from {old} to {new}"):
        await svc.set_status(s.id, new)
    assert snapshot(store_rows) == before


@pytest.mark.process
async def test_concurrent_state_updates_from_processes_lose_no_key(svc: SessionService, store_rows: StoreRows) -> None:
    s = await svc.create_session("app", "alice")
    results = run_processes(WORKER, [[store_rows.location, "state", s.id, "30", f"w{i}"] for i in range(4)])
    assert all(o == "ok" for r in results for o in r), results
    assert (await svc.get_session(s.id)).state == {f"w{w}-{i}": i for w in range(4) for i in range(30)}


@pytest.mark.process
async def test_concurrent_transitions_exactly_one_wins(svc: SessionService, store_rows: StoreRows) -> None:
    s = await svc.create_session("app", "alice")
    await svc.set_status(s.id, "active")
    results = run_processes(WORKER, [[store_rows.location, "pause", s.id, "1", f"w{i}"] for i in range(4)])
    outcomes = [r[0] for r in results]
    assert outcomes.count("ok") == 1, outcomes
    assert all("from paused to paused" in o for o in outcomes if o != "ok"), outcomes


PROPOSED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_sessions_created ON sessions(created_at DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS idx_sessions_app_created ON sessions(app_name, created_at DESC, id DESC)",
)


@pytest.mark.parametrize("combo", [c for r in range(5) for c in itertools.combinations(hot_queries.SESSION_FILTERS, r)],
                         ids=lambda c: "+".join(c) or "no-filter")
def test_proposed_indexes_make_every_listing_search(db_path: Path, combo: tuple[str, ...]) -> None:
    """With the two indexes proposed to the lead, every filter combination SEARCHes (with a
    cursor), and no plan sorts every row."""
    migrations.migrate(db_path)
    conn = driver.connect(db_path)
    try:
        for ddl in PROPOSED_INDEXES:
            conn.execute(ddl)
        for with_cursor in (False, True):
            params = ["x"] * len(combo) + (["2025-01-01T00:00:00.000Z", "s"] if with_cursor else []) + [50]
            plan = hot_queries.explain(conn, hot_queries.sessions_page_sql(combo, with_cursor), params)
            assert any("USING INDEX" in line for line in plan), plan
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
            if with_cursor:
                assert not any(line.startswith("SCAN") for line in plan), plan
    finally:
        conn.close()
