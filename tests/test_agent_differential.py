"""Sessions and tasks, the same random operations on an SQLite file and on PostgreSQL: the same
outcome at every step (the same record, or the same error message), and the same sessions,
events, tasks, agents and audit rows at the end. The tests run on both engines one engine at a
time; this one holds them side by side (agent ids, uuid4s, are mapped between the two)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import indexer.agent.sessions as sessions_module
from indexer.agent.sessions import SessionService
from indexer.agent.tasks import TaskService
from indexer.errors import IndexerError
from indexer.storage.engines import open_agent_database
from indexer.timeutil import format_ts


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Side:
    """One engine's services and the agent ids it handed out, by claim number."""

    def __init__(self, db: Any, clock: Clock) -> None:
        self.tasks = TaskService(db, clock=clock)
        self.sessions = SessionService(db)
        self.agents: list[str] = []
        self.claimed: list[str] = []  # the task of each claim

    def canon(self, value: Any) -> Any:
        """A result with this side's agent ids replaced by their claim number."""
        if isinstance(value, str):
            for number, agent in enumerate(self.agents):
                value = value.replace(agent, f"agent#{number}")
            return value
        if isinstance(value, dict):
            return {k: self.canon(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.canon(v) for v in value]
        if hasattr(value, "as_dict"):
            return self.canon(value.as_dict())
        return value


async def step(side: Side, op: str, args: dict[str, Any]) -> Any:
    t, s = side.tasks, side.sessions
    if args.get("task") == "@claimed" and side.claimed:  # a claim's task and agent, counted from the last
        pick = max(-len(side.claimed), -1 - args["back"])
        args = {**args, "task": side.claimed[pick], "agent": len(side.agents) + pick}
    agent = side.agents[args["agent"]] if 0 <= args["agent"] < len(side.agents) else "no-agent"
    if op == "submit":
        return await t.submit(args["prompt"], task_id=args["id"], priority=args["priority"],
                              dependencies=args["deps"], session_id=args["session"], max_retries=args["retries"])
    if op == "claim":
        got = await t.claim("w", lease_seconds=args["lease"])
        if got is not None:
            side.agents.append(got.agent_id)
            side.claimed.append(got.task.id)
        return got
    if op == "complete":
        return await t.complete(args["task"], {"n": args["n"]}, agent)
    if op == "fail":
        return await t.fail(args["task"], "boom", agent, retry=args["retry"])
    if op == "cancel":
        return await t.cancel(args["task"], "stop")
    if op == "heartbeat":
        return await t.heartbeat(args["task"], agent)
    if op == "checkpoint":
        return await t.save_checkpoint(args["task"], {"step": args["n"]}, agent)
    if op == "reclaim":
        return await t.reclaim()
    if op == "session":
        return await s.create_session("app", args["user"], session_id=args["id"])
    if op == "append":
        return (await s.append_event(args["session"], {"type": "msg", "id": f"e{args['n']}", "timestamp": "t"},
                                     {"user:n": args["n"], "gone": None}))
    if op == "status":
        return await s.set_status(args["session"], args["to"])
    raise AssertionError(op)


def ops(rng: random.Random, count: int) -> list[tuple[str, dict[str, Any], float]]:
    out = []
    tasks: list[str] = []
    sessions: list[str] = []
    for i in range(count):
        op = rng.choice(["submit"] * 4 + ["claim"] * 3 + ["complete"] * 2 + ["fail", "cancel", "heartbeat", "checkpoint",
                                                                          "reclaim", "session", "append", "status"])
        args: dict[str, Any] = {"n": i, "agent": rng.randrange(i + 1)}
        if op == "submit":
            tasks.append(f"t{i:03d}")
            args.update(id=tasks[-1], prompt=f"p{i}", priority=rng.randrange(3), retries=rng.randrange(2),
                        deps=sorted(set(rng.sample(tasks[:-1], min(len(tasks) - 1, rng.randrange(3))))),
                        session=rng.choice(sessions + [None] * 3))
        elif op == "session":
            sessions.append(f"s{i:03d}")
            args.update(id=sessions[-1], user=rng.choice(["alice", "bob"]))
        elif op in ("append", "status"):
            args.update(session=rng.choice(sessions or ["nope"]), to=rng.choice(["active", "paused", "terminated"]))
        elif op == "claim":
            args.update(lease=rng.choice([5.0, 30.0]))
        else:
            args.update(task=rng.choice(tasks or ["nope"]) if rng.random() < 0.3 else "@claimed",
                        back=rng.choice([0, 0, 0, 1, 2]), retry=rng.random() < 0.7)
        out.append((op, args, rng.choice([0.001, 0.001, 2.0, 10.0])))  # then the clock moves
    return out


async def outcome(side: Side, op: str, args: dict[str, Any]) -> Any:
    try:
        return side.canon(await step(side, op, args))
    except IndexerError as exc:
        return f"{type(exc).__name__}: {side.canon(str(exc))}"


async def final_state(side: Side) -> dict[str, Any]:
    tasks, _ = await side.tasks.list_tasks(limit=1000)
    sessions = await side.sessions.list_sessions(limit=1000)
    return side.canon({
        "tasks": tasks, "counts": await side.tasks.counts(),
        "agents": (await side.tasks.list_agents(limit=1000))[0],
        "sessions": [await side.sessions.get_session(x.id) for x in sessions],
        "audit": [[{k: v for k, v in r.items() if k != "id"} for r in await side.tasks.audit(t.id, 1000)] for t in tasks],
        "checkpoints": [await side.tasks.load_checkpoint(t.id) for t in tasks],
    })


@pytest.mark.parametrize("seed", range(1, 6))
async def test_the_same_operations_give_the_same_answers_on_both_engines(seed: int, tmp_path: Path, pg_dsn: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(sessions_module, "now_ts", lambda: format_ts(clock()))  # sessions on the test clock too
    async with open_agent_database(tmp_path / "agent.db") as lite, open_agent_database(pg_dsn) as pg:
        a, b = Side(lite, clock), Side(pg, clock)
        for number, (op, args, advance) in enumerate(ops(random.Random(seed), 150)):
            left, right = await outcome(a, op, args), await outcome(b, op, args)
            assert left == right, (number, op, args)
            clock.now += timedelta(seconds=advance)
        assert await final_state(a) == await final_state(b)
        assert len(a.agents) == len(b.agents) > 5  # the sequence did claim work on both
        assert "completed" in (await a.tasks.counts())  # and completed some (dependents unblocked)
