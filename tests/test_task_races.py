"""Tasks under real processes, on both engines (the ``engine`` fixture: an SQLite file, and a
database on the suite's PostgreSQL, where claims take rows FOR UPDATE SKIP LOCKED): four
workers claiming 1,000 tasks with dependencies (each task completed exactly once, none lost,
none run before its dependencies), and a worker killed with SIGKILL mid-task (its task
reclaimed after the lease and completed by another worker)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from conftest import REPO_ROOT, StoreRows, run_processes
from indexer.agent.tasks import TaskService
from indexer.storage.engines import open_agent_database
from indexer.timeutil import parse_ts

pytestmark = pytest.mark.process

WORKER = r"""
import asyncio, json, sys
from indexer.agent.tasks import TaskService
from indexer.storage.engines import open_agent_database

async def main(path, tag):
    async with open_agent_database(path) as db:
        svc = TaskService(db)
        print("ready", flush=True)
        sys.stdin.readline()
        done, idle = [], 0
        while True:
            got = await svc.claim(tag, lease_seconds=120)
            if got is None:
                counts = await svc.counts()
                if not any(counts.get(s) for s in ("blocked", "pending", "running")):
                    break
                idle += 1
                await asyncio.sleep(0.002)
                continue
            await svc.complete(got.task.id, {"worker": tag}, got.agent_id)
            done.append(got.task.id)
        print(json.dumps({"done": done, "idle": idle}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _submit_graph(path: str, count: int) -> dict[str, list[str]]:
    rng = random.Random(20)
    graph: dict[str, list[str]] = {}
    async with open_agent_database(path) as db:
        svc = TaskService(db)
        for i in range(count):
            task_id = f"t{i:04d}"
            deps = sorted({f"t{rng.randrange(i):04d}" for _ in range(rng.choice((0, 0, 1, 2)))}) if i else []
            await svc.submit(f"task {i}", task_id=task_id, priority=rng.randrange(11), dependencies=deps)
            graph[task_id] = deps
    return graph


def test_four_processes_claim_1000_tasks_each_exactly_once_in_dependency_order(store_rows: StoreRows) -> None:
    location = store_rows.location
    graph = asyncio.run(_submit_graph(location, 1000))
    assert sum(1 for deps in graph.values() if deps) > 400
    results = run_processes(WORKER, [[location, f"w{i}"] for i in range(4)])
    done = [task for r in results for task in r["done"]]
    assert len(done) == 1000 and set(done) == set(graph)  # none lost, none twice
    assert all(r["done"] for r in results), "every worker got work"
    rows = {r["id"]: r for r in store_rows("SELECT id, status, result_data, retry_count FROM tasks")}
    for result in results:
        worker = {json.loads(rows[t]["result_data"])["worker"] for t in result["done"]}
        assert len(worker) == 1  # the worker that reported a task is the one whose result is stored
    assert {r["status"] for r in rows.values()} == {"completed"}
    audit = store_rows("SELECT id, task_id, action_type FROM audit WHERE action_type IN "
                           "('task_claim', 'task_complete') ORDER BY id")
    claimed: dict[str, int] = {}
    completed: dict[str, int] = {}
    for row in audit:
        into = claimed if row["action_type"] == "task_claim" else completed
        assert row["task_id"] not in into, f"{row['task_id']}: {row['action_type']} twice"
        into[row["task_id"]] = row["id"]
    assert set(claimed) == set(completed) == set(graph)
    for task_id, deps in graph.items():
        # audit ids follow commit order: on SQLite the writes are serialised; on PostgreSQL a
        # claim sees a completion only once committed, and the completion's id was drawn before
        for dep in deps:
            assert completed[dep] < claimed[task_id], f"{task_id} claimed before its dependency {dep} completed"
    busy = store_rows("SELECT count(*) AS n FROM agents WHERE state = 'busy'")
    assert busy == [{"n": 0}]


VICTIM = r"""
import asyncio, json, sys
from indexer.agent.tasks import TaskService
from indexer.storage.engines import open_agent_database

async def main(path):
    async with open_agent_database(path) as db:
        svc = TaskService(db)
        got = await svc.claim("doomed", lease_seconds=1.5)
        print(json.dumps({"task": got.task.id, "agent": got.agent_id}), flush=True)
        while True:  # working, heartbeating, until killed
            await asyncio.sleep(0.2)
            await svc.heartbeat(got.task.id, got.agent_id)

asyncio.run(main(sys.argv[1]))
"""

RESCUER = r"""
import asyncio, json, sys, time
from indexer.agent.tasks import TaskService
from indexer.storage.engines import open_agent_database

async def main(path):
    async with open_agent_database(path) as db:
        svc = TaskService(db)
        start = time.monotonic()
        while time.monotonic() - start < 30:
            got = await svc.claim("rescuer", lease_seconds=30)
            if got is not None:
                await svc.complete(got.task.id, {"worker": "rescuer"}, got.agent_id)
                print(json.dumps({"task": got.task.id, "agent": got.agent_id, "waited": time.monotonic() - start}))
                return
            await asyncio.sleep(0.05)
        print(json.dumps({"task": None}))

asyncio.run(main(sys.argv[1]))
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_a_worker_killed_mid_task_loses_it_after_its_lease_to_another(store_rows: StoreRows) -> None:
    location = store_rows.location

    async def submit() -> None:
        async with open_agent_database(location) as db:
            await TaskService(db).submit("long job", task_id="job", max_retries=2)
    asyncio.run(submit())
    victim = _python(VICTIM, location)
    try:
        assert victim.stdout is not None
        line = victim.stdout.readline()
        assert line, victim.stderr.read() if victim.stderr else ""
        claimed = json.loads(line)
        time.sleep(0.7)  # a few heartbeats
        assert victim.poll() is None
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    rescuer = _python(RESCUER, location)
    out, err = rescuer.communicate(timeout=60)
    assert rescuer.returncode == 0, err
    rescued = json.loads(out.strip().splitlines()[-1])
    assert rescued["task"] == "job" and rescued["agent"] != claimed["agent"]
    task = store_rows("SELECT status, retry_count, result_data FROM tasks WHERE id = 'job'")[0]
    assert (task["status"], task["retry_count"], json.loads(task["result_data"])) == \
        ("completed", 1, {"worker": "rescuer"})
    actions = store_rows("SELECT action_type, agent_id, timestamp, action_data FROM audit "
                         "WHERE task_id = 'job' ORDER BY id")
    assert [a["action_type"] for a in actions] == ["task_submit", "task_claim", "task_reclaim", "task_claim",
                                                   "task_complete"]
    assert actions[1]["agent_id"] == actions[2]["agent_id"] == claimed["agent"]
    reason = json.loads(actions[2]["action_data"])["reason"]  # "lease of 1.5 s expired (last heartbeat T)"
    last_beat = parse_ts(reason.rsplit("last heartbeat ", 1)[1].rstrip(")"))
    assert parse_ts(actions[2]["timestamp"]) - last_beat >= timedelta(seconds=1.5)  # not before the lease ran out
    assert parse_ts(actions[1]["timestamp"]) < last_beat  # the victim heartbeat after its claim
    outcome = ("json_extract(resource_usage, '$.outcome')" if store_rows.engine == "sqlite"
               else "resource_usage::jsonb ->> 'outcome'")
    dead = store_rows(f"SELECT state, {outcome} AS outcome FROM agents WHERE id = ?", (claimed["agent"],))
    assert dead == [{"state": "terminated", "outcome": "lease_expired"}]
