"""TaskService on both engines (the ``engine`` fixture: an SQLite file and a database on the
suite's PostgreSQL): validation that writes nothing, claim order, dependencies, leases and
reclaim on a test clock, retries, cancel and its dependents, checkpoints, session links, audit
rows; and the query plans of the SQLite task statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import StoreRows
from indexer.agent.sessions import SessionService
from indexer.agent.tasks import TaskService
from indexer.errors import ConflictError, NotFoundError, ValidationError
from indexer.storage.sqlite import doctor, driver, hot_queries
from indexer.storage.sqlite.database import Database


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(agent_db: Any, clock: Clock) -> TaskService:
    return TaskService(agent_db, clock=clock)


@pytest.fixture
def sqlite_svc(db: Database, clock: Clock) -> TaskService:
    return TaskService(db, clock=clock)


def counts(rows: StoreRows) -> tuple[int, int, int]:
    row = rows("SELECT (SELECT count(*) FROM tasks) AS t, (SELECT count(*) FROM audit) AS a, "
                         "(SELECT count(*) FROM agents) AS g")[0]
    return row["t"], row["a"], row["g"]


async def test_bad_submissions_are_clear_errors_and_write_nothing(svc: TaskService, store_rows: StoreRows) -> None:
    sessions = SessionService(svc.db)
    closed = await sessions.create_session("app", "u")
    await sessions.terminate_session(closed.id)
    await svc.submit("base", task_id="base")
    before = counts(store_rows)
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"parent_task_id": "nope"}, NotFoundError, "no parent task nope"),
        ({"dependencies": ["base", "nope"]}, NotFoundError, "no task nope"),
        ({"session_id": "nope"}, NotFoundError, "no session nope"),
        ({"session_id": closed.id}, ConflictError, "takes no new tasks"),
        ({"task_id": "x", "dependencies": ["x"]}, ValidationError, "cycle"),
        ({"task_id": "x", "parent_task_id": "x"}, ValidationError, "own parent"),
        ({"task_id": "base"}, ConflictError, "already exists"),
        ({"priority": 11}, ValidationError, "priority"),
        ({"priority": True}, ValidationError, "priority"),
        ({"max_retries": -1}, ValidationError, "max_retries"),
        ({"max_execution_timeout_seconds": 0}, ValidationError, "max_execution_timeout_seconds"),
        ({"input_data": [1, 2]}, ValidationError, "JSON object"),
        ({"input_data": {"x": float("nan")}}, ValidationError, "JSON"),
        ({"dependencies": "base"}, ValidationError, "list of task ids"),
        ({"agent_type": ""}, ValidationError, "agent type"),
    ]
    for kwargs, error, words in bad:
        with pytest.raises(error, match=words):
            await svc.submit("p", **kwargs)
    with pytest.raises(ValidationError, match="prompt"):
        await svc.submit("   ")
    assert counts(store_rows) == before


async def test_a_cycle_through_existing_rows_is_refused(svc: TaskService, store_rows: StoreRows) -> None:
    # a row written by other code, naming a task that does not exist yet
    store_rows.execute("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at, dependencies) "
                       "VALUES ('old', 'p', 'blocked', '{}', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', "
                       "'[\"new\"]')")
    with pytest.raises(ValidationError, match="cycle"):
        await svc.submit("p", task_id="new", dependencies=["old"])
    assert store_rows("SELECT id FROM tasks") == [{"id": "old"}]


async def test_dependency_that_can_never_complete_is_refused(svc: TaskService) -> None:
    await svc.submit("a", task_id="a")
    await svc.cancel("a")
    with pytest.raises(ConflictError, match="cannot depend on a: it is cancelled"):
        await svc.submit("b", dependencies=["a"])


async def test_claim_order_priority_then_oldest_and_dependencies(svc: TaskService, clock: Clock) -> None:
    await svc.submit("low", task_id="low", priority=1)
    clock.advance(1)
    await svc.submit("high-old", task_id="high-old", priority=9)
    clock.advance(1)
    await svc.submit("high-new", task_id="high-new", priority=9)
    await svc.submit("after", task_id="after", priority=10, dependencies=["low", "high-old"])
    assert (await svc.get_task("after")).status == "blocked"
    order = []
    while (c := await svc.claim("w")) is not None:
        order.append(c.task.id)
        await svc.complete(c.task.id, {"by": "w"}, c.agent_id)
    assert order == ["high-old", "high-new", "low", "after"]


async def test_same_millisecond_ties_go_to_the_first_submitted_on_both_engines(svc: TaskService) -> None:
    """One rule on both engines: equal priority and the same millisecond -> insertion order
    (SQLite's rowid, PostgreSQL's seq), whatever the ids (random UUIDs sort at random)."""
    ids = ["t-9", "t-1", "t-5", "t-0", "t-7", "t-3"]  # neither sorted nor reverse-sorted
    for task_id in ids:
        await svc.submit("p", task_id=task_id, priority=2)
    order = []
    while (c := await svc.claim("w")) is not None:
        order.append(c.task.id)
    assert order == ids


async def test_claim_by_agent_type(svc: TaskService) -> None:
    await svc.submit("a", task_id="a", agent_type="coder", priority=1)
    await svc.submit("b", task_id="b", agent_type="writer", priority=9)
    got = await svc.claim("w", agent_type="coder")
    assert got is not None and got.task.id == "a" and got.task.agent_type == "coder"
    assert await svc.claim("w", agent_type="coder") is None


async def test_claim_records_the_agent_linked_to_task_and_session(svc: TaskService, store_rows: StoreRows,
                                                                   clock: Clock) -> None:
    s = await SessionService(svc.db).create_session("app", "alice")
    task = await svc.submit("summarise", session_id=s.id, input_data={"path": "a.md"}, created_by="lead")
    got = await svc.claim("worker-1", lease_seconds=30, model="m-1")
    assert got is not None and got.task.status == "running" and got.task.started_at == got.task.last_updated_at
    assert got.lease_expires_at == "2026-01-01T00:00:30.000Z"
    agent = await svc.get_agent(got.agent_id)
    assert (agent.name, agent.task_id, agent.session_id, agent.state, agent.model) == \
        ("worker-1", task.id, s.id, "busy", "m-1")
    assert [t.id for t in await svc.session_tasks(s.id)] == [task.id]
    assert [a.id for a in await svc.session_agents(s.id)] == [got.agent_id]
    await svc.save_checkpoint(task.id, {"step": 1}, got.agent_id)
    assert store_rows("SELECT session_id FROM checkpoints") == [{"session_id": s.id}]


async def test_lease_expiry_reclaims_and_fences_the_old_worker(svc: TaskService, clock: Clock) -> None:
    await svc.submit("t", task_id="t", max_retries=1)
    first = await svc.claim("w1", lease_seconds=10)
    assert first is not None
    clock.advance(9)
    beat = await svc.heartbeat("t", first.agent_id)  # extends to now + 10
    assert beat.lease_expires_at == "2026-01-01T00:00:19.000Z"
    clock.advance(9.999)
    assert await svc.reclaim() == []
    clock.advance(0.001)
    assert await svc.reclaim() == [("t", "pending")]
    task = await svc.get_task("t")
    assert (task.status, task.retry_count, task.started_at) == ("pending", 1, None)
    assert "lease of 10 s expired" in (task.error_message or "")
    with pytest.raises(ConflictError, match="t is pending: cannot heartbeat"):
        await svc.heartbeat("t", first.agent_id)
    second = await svc.claim("w2", lease_seconds=10)
    assert second is not None and second.task.id == "t"
    with pytest.raises(ConflictError, match="no longer held"):
        await svc.complete("t", "late", first.agent_id)
    clock.advance(10)  # the second lease runs out too: retries spent -> failed
    assert await svc.claim("w3") is None
    task = await svc.get_task("t")
    assert (task.status, task.retry_count) == ("failed", 1)
    old = await svc.get_agent(first.agent_id)
    assert (old.state, old.resource_usage["outcome"]) == ("terminated", "lease_expired")


async def test_max_execution_timeout_reclaims_despite_heartbeats(svc: TaskService, clock: Clock) -> None:
    await svc.submit("t", task_id="t", max_execution_timeout_seconds=25, max_retries=0)
    got = await svc.claim("w", lease_seconds=10)
    assert got is not None and got.lease_expires_at == "2026-01-01T00:00:10.000Z"
    for _ in range(2):
        clock.advance(8)
        await svc.heartbeat("t", got.agent_id)
    beat = await svc.heartbeat("t", got.agent_id)
    assert beat.lease_expires_at == "2026-01-01T00:00:25.000Z"  # never past the execution timeout
    clock.advance(9)
    assert await svc.reclaim() == [("t", "failed")]
    assert "max_execution_timeout_seconds (25 s)" in ((await svc.get_task("t")).error_message or "")
    assert (await svc.get_agent(got.agent_id)).resource_usage["outcome"] == "timed_out"


async def test_fail_retries_then_fails_for_good_and_cancels_dependents(svc: TaskService) -> None:
    await svc.submit("a", task_id="a", max_retries=2)
    await svc.submit("b", task_id="b", dependencies=["a"])
    await svc.submit("c", task_id="c", dependencies=["b"])
    await svc.submit("d", task_id="d")
    seen = []
    for _ in range(3):
        got = await svc.claim("w")
        assert got is not None and got.task.id == "a"
        t = await svc.fail("a", "boom", got.agent_id)
        seen.append((t.status, t.retry_count))
    assert seen == [("pending", 1), ("pending", 2), ("failed", 2)]
    for dependent in ("b", "c"):
        t = await svc.get_task(dependent)
        assert t.status == "cancelled" and "dependency" in (t.error_message or "")
    assert (await svc.get_task("d")).status == "pending"


async def test_fail_without_retry_is_final(svc: TaskService) -> None:
    await svc.submit("a", task_id="a", max_retries=3)
    got = await svc.claim("w")
    assert got is not None
    t = await svc.fail("a", "bad input", got.agent_id, retry=False)
    assert (t.status, t.retry_count, t.error_message) == ("failed", 0, "bad input")


async def test_cancel_running_pending_and_final(svc: TaskService) -> None:
    await svc.submit("a", task_id="a")
    await svc.submit("b", task_id="b", dependencies=["a"])
    await svc.submit("c", task_id="c", dependencies=["b"])
    got = await svc.claim("w")
    assert got is not None
    task, dependents = await svc.cancel("a", "not needed", by="lead")
    assert task.status == "cancelled" and sorted(dependents) == ["b", "c"]
    with pytest.raises(ConflictError, match="a is cancelled"):
        await svc.heartbeat("a", got.agent_id)
    with pytest.raises(ConflictError, match="cannot cancel"):
        await svc.cancel("a")
    with pytest.raises(NotFoundError):
        await svc.cancel("nope")
    assert (await svc.get_agent(got.agent_id)).resource_usage["outcome"] == "cancelled"


async def test_checkpoints_save_and_load_latest(svc: TaskService) -> None:
    await svc.submit("a", task_id="a")
    with pytest.raises(ConflictError, match="pending"):
        await svc.save_checkpoint("a", {"step": 0})
    got = await svc.claim("w")
    assert got is not None
    assert await svc.load_checkpoint("a") is None
    assert (await svc.save_checkpoint("a", {"step": 1}, got.agent_id)).iteration == 1
    assert (await svc.save_checkpoint("a", {"step": 2}, got.agent_id)).iteration == 2
    assert (await svc.save_checkpoint("a", {"step": 9}, got.agent_id, iteration=9)).iteration == 9
    with pytest.raises(ConflictError, match="already has checkpoint iteration 2"):
        await svc.save_checkpoint("a", {"x": 1}, got.agent_id, iteration=2)
    latest = await svc.load_checkpoint("a")
    assert latest is not None and (latest.iteration, latest.state) == (9, {"step": 9})
    older = await svc.load_checkpoint("a", 1)
    assert older is not None and older.state == {"step": 1}
    with pytest.raises(NotFoundError):
        await svc.load_checkpoint("a", 5)
    with pytest.raises(NotFoundError):
        await svc.load_checkpoint("nope")


async def test_every_state_change_writes_its_audit_row(svc: TaskService, clock: Clock) -> None:
    await svc.submit("a", task_id="a", max_retries=1)
    await svc.submit("b", task_id="b", dependencies=["a"])
    got = await svc.claim("w", lease_seconds=5)
    assert got is not None
    clock.advance(5)
    again = await svc.claim("w2")  # reclaims a, then claims it again
    assert again is not None and again.task.id == "a"
    await svc.complete("a", 42, again.agent_id)
    assert [r["action_type"] for r in reversed(await svc.audit("a"))] == \
        ["task_submit", "task_claim", "task_reclaim", "task_claim", "task_complete"]
    assert [r["action_type"] for r in reversed(await svc.audit("b"))] == ["task_submit", "task_unblock"]
    claims = [r for r in await svc.audit("a") if r["action_type"] == "task_claim"]
    assert {r["agent_id"] for r in claims} == {got.agent_id, again.agent_id}


async def test_listing_filters_and_pages(svc: TaskService, clock: Clock) -> None:
    for i in range(5):
        clock.advance(1)
        await svc.submit(f"p{i}", task_id=f"t{i}", agent_type="even" if i % 2 == 0 else "odd")
    page, cursor = await svc.list_tasks(limit=2)
    assert [t.id for t in page] == ["t4", "t3"] and cursor
    page2, _ = await svc.list_tasks(limit=2, cursor=cursor)
    assert [t.id for t in page2] == ["t2", "t1"]
    evens, _ = await svc.list_tasks(agent_type="even")
    assert [t.id for t in evens] == ["t4", "t2", "t0"]
    assert await svc.counts() == {"pending": 5}
    with pytest.raises(ValidationError):
        await svc.list_tasks(status="done")


# --- query plans -----------------------------------------------------------------------------------

TASK_QUERIES = [q for q in hot_queries.HOT_QUERIES if q.name.startswith(("task_", "tasks_", "agent", "checkpoint",
                                                                        "audit_by_task"))]


@pytest.mark.parametrize("query", TASK_QUERIES, ids=lambda q: q.name)
async def test_task_statements_search_an_index(sqlite_svc: TaskService, db_path: Path, query: Any) -> None:
    """On a queue's usual mix (mostly finished tasks, some waiting), with statistics."""
    svc = sqlite_svc
    for i in range(40):
        await svc.submit("p", task_id=f"t{i}", dependencies=[f"t{i - 1}"] if i % 4 else None)
        if i % 4 == 0:
            got = await svc.claim("w")
            assert got is not None
            if i % 8 == 0:
                await svc.complete(got.task.id, None, got.agent_id)
    conn = driver.connect(db_path)
    try:
        conn.executemany("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at) "
                         "VALUES (?, 'p', 'completed', '{}', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z')",
                         [(f"done{i}",) for i in range(400)])
        conn.execute("ANALYZE")
        verdict = hot_queries.plan_verdict(hot_queries.explain(conn, query.sql, query.params), query.json_each)
    finally:
        conn.close()
    assert verdict["uses_index"], verdict["plan"]
    if query.name == "task_reclaim":
        assert verdict["index"] == "idx_tasks_running_timeout"
    if query.name.startswith("task_claim"):
        assert verdict["index"] == "idx_tasks_status_priority"


async def test_doctor_shows_claim_and_reclaim_plans(sqlite_svc: TaskService, db_path: Path) -> None:
    checks = {c.name: c for c in doctor.run_doctor(db_path)}
    assert checks["plan.task_reclaim"].ok and "idx_tasks_running_timeout" in checks["plan.task_reclaim"].observed
    assert checks["plan.task_claim"].ok and "idx_tasks_status_priority" in checks["plan.task_claim"].observed


async def test_a_row_with_dependencies_that_are_not_json_does_not_stop_the_queue(svc: TaskService,
                                                                                store_rows: StoreRows) -> None:
    # written by other code: '' is not JSON on SQLite (json_each would fail every claim); a
    # PostgreSQL json column holds only JSON, so there the oddity is a value that is no array
    odd = "" if store_rows.engine == "sqlite" else '{"not": "a list"}'
    store_rows.execute("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at, dependencies) "
                       "VALUES ('odd', 'p', 'pending', '{}', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', ?)",
                       (odd,))
    await svc.submit("later", task_id="later", dependencies=["odd"])
    got = await svc.claim("w")
    assert got is not None and got.task.id == "odd" and got.task.dependencies == ()
    await svc.complete("odd", None, got.agent_id)
    assert (await svc.get_task("later")).status == "pending"


@pytest.mark.parametrize("name", ["CLAIM", "CLAIM_TYPE", "RECLAIM", "BLOCKED_DEPENDENTS"])
def test_postgres_queue_statements_search_an_index(pg_dsn: str, name: str) -> None:
    """The claim reads pending tasks in claim order from idx_tasks_status_priority (no sort of
    every pending task per claim) at 20,000 tasks, 2,000 of them pending."""
    import psycopg

    from indexer.storage.postgres import task_store as pg_store

    params = {"CLAIM_TYPE": ("general",), "BLOCKED_DEPENDENTS": ("t1",)}.get(name, ())
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at, priority, "
                     "dependencies) SELECT 't' || g, 'p', CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'completed' END, "
                     "'{}', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', g % 10, '[]' "
                     "FROM generate_series(1, 20000) AS g")
        conn.execute("ANALYZE tasks")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + getattr(pg_store, name), params).fetchall())
        conn.rollback()
    index = "idx_tasks_running_timeout" if name == "RECLAIM" else "idx_tasks_status_priority"
    assert f"Index Scan using {index}" in plan, plan
    if name.startswith("CLAIM"):
        assert "Sort" not in plan and "LockRows" in plan, plan
