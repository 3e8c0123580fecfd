"""The task queue's front doors: the MCP tools (the SDK's real client against the server
object) and the ``indexer task`` / ``indexer agent`` commands (click's runner), with the agent
store on both engines (a real file, or the suite's PostgreSQL through INDEXER_AGENT_DB)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mcp import Client

from indexer.agent.tasks import TaskService
from indexer.cli import cli
from indexer.config import load_config
from indexer.mcp.catalog import select_tools
from indexer.mcp.server import build_server
from indexer.storage.engines import open_agent_database
from mcp_calls import call, error

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def agent_store(agent_location: str, engine: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both engines: on PostgreSQL the agent store is named by INDEXER_AGENT_DB."""
    if engine == "postgresql":
        monkeypatch.setenv("INDEXER_AGENT_DB", agent_location)
    return agent_location


async def submit(*specs: dict[str, Any]) -> None:
    async with open_agent_database(load_config().agent_location) as db:
        svc = TaskService(db)
        for spec in specs:
            await svc.submit(**spec)


async def test_an_agent_claims_heartbeats_and_finishes_through_mcp() -> None:
    await submit({"prompt": "first", "task_id": "a", "max_retries": 1, "input_data": {"n": 1}},
                 {"prompt": "second", "task_id": "b", "dependencies": ["a"]})
    async with Client(build_server(load_config())) as client:
        got = await call(client, "task_claim", worker="agent-1", lease_seconds=60)
        assert got["task"]["id"] == "a" and got["task"]["input_data"] == {"n": 1} and got["checkpoint"] is None
        agent = got["agent_id"]
        beat = await call(client, "task_heartbeat", task_id="a", agent_id=agent, checkpoint={"step": 3})
        assert beat["lease_expires_at"] >= got["lease_expires_at"]
        failed = await call(client, "task_fail", task_id="a", agent_id=agent, error="flaky")
        assert (failed["status"], failed["retry_count"]) == ("pending", 1)
        assert "a is pending: cannot complete" in await error(client, "task_complete", task_id="a", agent_id=agent)
        again = await call(client, "task_claim", worker="agent-2")
        assert again["task"]["id"] == "a" and again["checkpoint"] == {"step": 3}  # resumes where it stopped
        stale = await error(client, "task_heartbeat", task_id="a", agent_id=agent)
        assert "no longer held by agent" in stale
        done = await call(client, "task_complete", task_id="a", agent_id=again["agent_id"], result={"ok": True})
        assert done == {"id": "a", "status": "completed", "retry_count": 1}
        nxt = await call(client, "task_claim", worker="agent-2")
        assert nxt["task"]["id"] == "b"
        assert (await call(client, "task_claim", worker="agent-3"))["task"] is None


async def test_the_tasks_group_can_be_left_out() -> None:
    async with Client(build_server(load_config(), groups=["docs", "memory", "sessions"])) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names and not any(n.startswith("task_") for n in names)
    assert {t.name for t in select_tools(["tasks"])} == {"task_claim", "task_heartbeat", "task_complete", "task_fail"}


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_the_task_commands_work_a_queue(engine: str) -> None:
    if engine == "sqlite":
        assert run("task", "claim", "--worker", "w").exit_code == 1  # no database yet: nothing created
        assert not Path(load_config().db).exists()
    out = run("task", "submit", "Summarise", "--id", "t-1", "--input", '{"path": "a.md"}', "--priority", "7")
    assert out.exit_code == 0 and out.output.strip() == "t-1 pending"
    assert run("task", "submit", "Publish", "--id", "t-2", "--after", "t-1").output.strip() == "t-2 blocked"
    bad = run("task", "submit", "x", "--after", "nope")
    assert bad.exit_code == 1 and "no task nope" in bad.output
    claim = json.loads(run("task", "claim", "--worker", "w1", "--lease", "30", "--json").output)
    assert claim["task"]["id"] == "t-1" and claim["lease_seconds"] == 30
    agent = claim["agent_id"]
    assert run("task", "heartbeat", "t-1", "--agent", agent).exit_code == 0
    assert run("task", "complete", "t-1", '{"words": 12}', "--agent", agent).output.strip() == "t-1 completed"
    assert json.loads(run("task", "show", "t-2", "--json").output)["task"]["status"] == "pending"
    claim2 = json.loads(run("task", "claim", "--worker", "w2", "--json").output)
    failed = run("task", "fail", "t-2", "network down", "--agent", claim2["agent_id"], "--no-retry")
    assert failed.output.strip() == "t-2 failed (retry 0 of 3)"
    assert json.loads(run("task", "claim", "--worker", "w2", "--json").output) is None
    again = run("task", "cancel", "t-2")
    assert again.exit_code == 1 and "t-2 is failed: cannot cancel" in again.output
    listed = json.loads(run("task", "list", "--status", "completed", "--json").output)
    assert [t["id"] for t in listed["items"]] == ["t-1"]
    agents = json.loads(run("agent", "list", "--task", "t-1", "--json").output)["items"]
    assert [a["id"] for a in agents] == [agent] and agents[0]["resource_usage"]["outcome"] == "completed"
    shown = json.loads(run("agent", "show", agent, "--json").output)
    assert shown["name"] == "w1" and shown["state"] == "terminated"
    text = run("task", "show", "t-1").output
    assert "task_complete" in text and "result" in text


def test_sessions_see_their_tasks_from_the_command_line() -> None:
    sid = run("session", "create", "app", "alice").output.strip()
    run("task", "submit", "in session", "--id", "s-task", "--session", sid)
    run("task", "submit", "elsewhere", "--id", "other")
    run("task", "claim", "--worker", "w")
    listed = json.loads(run("task", "list", "--session", sid, "--json").output)
    assert [t["id"] for t in listed["items"]] == ["s-task"]
    agents = json.loads(run("agent", "list", "--session", sid, "--json").output)["items"]
    assert len(agents) == 1 and agents[0]["session_id"] == sid and agents[0]["task_id"] == "s-task"
