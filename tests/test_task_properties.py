"""The task state machine against a model (hypothesis): random sequences of submit, claim,
heartbeat, complete, fail, cancel, reclaim and clock steps on a real database file, with a
clock the test moves. After every step the database holds exactly the model's statuses,
retry counts, holders and dependency rules. On both engines (the ``engine`` fixture): an SQLite
file, and a fresh database on the test PostgreSQL server for each example (fewer examples there:
each step is a few round trips to the server)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from conftest import EXAMPLES_SCALE, raw_rows
from indexer.agent.tasks import TaskService
from indexer.errors import ConflictError
from indexer.storage.engines import open_agent_database

BASE = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class ModelTask:
    id: str
    seq: int
    priority: int
    deps: tuple[str, ...]
    max_retries: int
    timeout: int
    status: str
    retry_count: int = 0
    holder: str | None = None
    lease: float = 0.0
    last_beat: float = 0.0
    started: float = 0.0
    history: list[str] = field(default_factory=list)
    submitted: float = 0.0


class TaskMachine(RuleBasedStateMachine):
    # a fresh PostgreSQL database's DSN for each example; None: an SQLite file
    new_postgres: ClassVar[Callable[[], str] | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tasks-sm-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        self.loop = asyncio.new_event_loop()
        self.now = 0.0
        make = type(self).new_postgres
        self.location = make() if make is not None else str(self.dir / "t.db")
        self.pg: Any = None
        if make is not None:  # the invariant reads through one other connection, as another process would
            import psycopg

            self.pg = psycopg.connect(self.location, autocommit=True)
        self.db = open_agent_database(self.location, **({"min_size": 1, "max_size": 1} if make else {}))
        self.run(self.db.initialize())
        self.svc = TaskService(self.db, clock=lambda: BASE + timedelta(seconds=self.now))
        self.tasks: dict[str, ModelTask] = {}
        self.stale_agents: list[str] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        if self.pg is None:
            return raw_rows(Path(self.location), sql)
        cur = self.pg.execute(sql)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def teardown(self) -> None:
        self.run(self.db.close())
        if self.pg is not None:
            self.pg.close()
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the model's rules -------------------------------------------------------------------------

    def _cascade(self, task_id: str) -> None:
        work = [task_id]
        while work:
            up = work.pop()
            for t in self.tasks.values():
                if t.status == "blocked" and up in t.deps:
                    t.status = "cancelled"
                    work.append(t.id)

    def _settle(self, t: ModelTask, new: str) -> None:
        if t.holder is not None:
            self.stale_agents.append(t.holder)
            t.holder = None
        t.status = new
        if new == "completed":
            for other in self.tasks.values():
                if other.status == "blocked" and all(self.tasks[d].status == "completed" for d in other.deps):
                    other.status = "pending"
        elif new in ("failed", "cancelled"):
            self._cascade(t.id)

    def _attempt_failed(self, t: ModelTask, retry: bool = True) -> None:
        if retry and t.retry_count < t.max_retries:
            t.retry_count += 1
            self._settle(t, "pending")
        else:
            self._settle(t, "failed")

    def _model_reclaim(self) -> list[str]:
        expired = [t for t in self.tasks.values() if t.status == "running"
                   and (self.now >= t.started + t.timeout or self.now >= t.last_beat + t.lease)]
        for t in expired:
            self._attempt_failed(t)
        return sorted(t.id for t in expired)

    # --- rules -------------------------------------------------------------------------------------

    @rule(priority=st.integers(0, 10), picks=st.lists(st.integers(0, 10**6), max_size=3),
          max_retries=st.integers(0, 2), timeout=st.sampled_from([20, 100, 3600]))
    def submit(self, priority: int, picks: list[int], max_retries: int, timeout: int) -> None:
        ids = sorted(self.tasks)
        deps = tuple(dict.fromkeys(ids[p % len(ids)] for p in picks)) if ids else ()
        task_id = f"t{len(self.tasks)}"
        statuses = [self.tasks[d].status for d in deps]
        if any(s in ("failed", "cancelled") for s in statuses):
            try:
                self.run(self.svc.submit("p", task_id=task_id, priority=priority, dependencies=list(deps)))
            except ConflictError:
                return
            raise AssertionError("a dependency that can never complete was accepted")
        got = self.run(self.svc.submit("p", task_id=task_id, priority=priority, dependencies=list(deps),
                                       max_retries=max_retries, max_execution_timeout_seconds=timeout))
        status = "pending" if all(s == "completed" for s in statuses) else "blocked"
        assert got.status == status
        self.tasks[task_id] = ModelTask(task_id, len(self.tasks), priority, deps, max_retries, timeout, status,
                                        submitted=self.now)

    def _claim_order(self, t: ModelTask) -> tuple[int, float, int]:
        """Priority, then submission time; a tie within one millisecond goes to the earlier insert,
        on both engines (SQLite's rowid, PostgreSQL's seq)."""
        return -t.priority, t.submitted, t.seq

    @rule(lease=st.sampled_from([5, 30]))
    def claim(self, lease: int) -> None:
        self._model_reclaim()
        runnable = [t for t in self.tasks.values() if t.status == "pending"]
        expected = min(runnable, key=self._claim_order) if runnable else None
        got = self.run(self.svc.claim("w", lease_seconds=lease))
        if expected is None:
            assert got is None
            return
        assert got is not None and got.task.id == expected.id, (got, expected)
        assert all(self.tasks[d].status == "completed" for d in expected.deps)
        expected.status, expected.holder, expected.lease = "running", got.agent_id, float(lease)
        expected.last_beat = expected.started = self.now

    def _target(self, pick: int, stale: bool) -> tuple[ModelTask, str | None]:
        t = self.tasks[sorted(self.tasks)[pick % len(self.tasks)]]
        if stale and self.stale_agents:
            return t, self.stale_agents[pick % len(self.stale_agents)]
        return t, t.holder

    @precondition(lambda self: self.tasks)
    @rule(pick=st.integers(0, 10**6), stale=st.booleans(), lease=st.sampled_from([None, 5, 60]))
    def heartbeat(self, pick: int, stale: bool, lease: int | None) -> None:
        t, agent = self._target(pick, stale)
        if t.status != "running" or agent != t.holder:
            try:
                self.run(self.svc.heartbeat(t.id, agent, lease_seconds=lease))
            except ConflictError:
                return
            raise AssertionError(f"heartbeat of {t.id} ({t.status}) by {agent} accepted")
        self.run(self.svc.heartbeat(t.id, agent, lease_seconds=lease))
        t.last_beat = self.now
        if lease is not None:
            t.lease = float(lease)

    @precondition(lambda self: self.tasks)
    @rule(pick=st.integers(0, 10**6), stale=st.booleans(), outcome=st.sampled_from(["complete", "fail", "fail-final"]))
    def finish(self, pick: int, stale: bool, outcome: str) -> None:
        t, agent = self._target(pick, stale)

        def call() -> Any:
            if outcome == "complete":
                return self.run(self.svc.complete(t.id, {"n": 1}, agent))
            return self.run(self.svc.fail(t.id, "boom", agent, retry=outcome == "fail"))

        if t.status != "running" or agent != t.holder:
            try:
                call()
            except ConflictError:
                return
            raise AssertionError(f"{outcome} of {t.id} ({t.status}) by {agent} accepted")
        call()
        if outcome == "complete":
            self._settle(t, "completed")
        else:
            self._attempt_failed(t, retry=outcome == "fail")

    @precondition(lambda self: self.tasks)
    @rule(pick=st.integers(0, 10**6))
    def cancel(self, pick: int) -> None:
        t = self.tasks[sorted(self.tasks)[pick % len(self.tasks)]]
        if t.status not in ("blocked", "pending", "running"):
            try:
                self.run(self.svc.cancel(t.id))
            except ConflictError:
                return
            raise AssertionError(f"cancel of {t.status} task accepted")
        before = {x.id for x in self.tasks.values() if x.status == "cancelled"}
        _, dependents = self.run(self.svc.cancel(t.id, "test"))
        self._settle(t, "cancelled")
        after = {x.id for x in self.tasks.values() if x.status == "cancelled"}
        assert set(dependents) == after - before - {t.id}

    @rule()
    def reclaim(self) -> None:
        expected = self._model_reclaim()
        got = self.run(self.svc.reclaim())
        assert sorted(task_id for task_id, _ in got) == expected

    @rule(seconds=st.sampled_from([0, 1, 4, 10, 25, 60]))
    def advance(self, seconds: int) -> None:
        self.now += seconds

    # --- the database agrees with the model after every step --------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        rows = self.rows("SELECT id, status, retry_count FROM tasks")
        assert {r["id"]: (r["status"], r["retry_count"]) for r in rows} == \
            {t.id: (t.status, t.retry_count) for t in self.tasks.values()}
        busy = self.rows("SELECT id, task_id FROM agents WHERE state = 'busy'")
        assert {r["task_id"]: r["id"] for r in busy} == \
            {t.id: t.holder for t in self.tasks.values() if t.status == "running"}
        assert len(busy) == len({r["task_id"] for r in busy})
        # every change left its audit row: a task's newest row names its current status
        last = self.rows("SELECT task_id, result FROM audit WHERE id IN "
                                      "(SELECT max(id) FROM audit GROUP BY task_id)")
        assert {r["task_id"]: r["result"] for r in last} == {t.id: t.status for t in self.tasks.values()}
        claims = self.rows("SELECT (SELECT count(*) FROM audit WHERE action_type = 'task_claim') AS c, "
                                        "(SELECT count(*) FROM agents) AS a")[0]
        assert claims["c"] == claims["a"]


# examples per engine: each PostgreSQL step is several round trips (and each example a new database)
EXAMPLES = {"sqlite": 40 * EXAMPLES_SCALE, "postgresql": 15 * EXAMPLES_SCALE}


def test_task_state_machine(engine: str, request: pytest.FixtureRequest) -> None:
    new_postgres = request.getfixturevalue("pg_server").fresh_database if engine == "postgresql" else None
    machine = type(f"TaskMachine_{engine}", (TaskMachine,),
                   {"new_postgres": staticmethod(new_postgres) if new_postgres else None})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES[engine], stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
