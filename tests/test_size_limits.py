"""Issue 19: what agents send is capped. A memory value, metadata, a session event and a state
write larger than the configured limits are refused with one sentence at every front door
(the Python services, the CLI, MCP), nothing is stored, and MCP writes never echo a value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mcp import Client

from indexer.agent.common import Limits
from indexer.agent.memory import MemoryService
from indexer.agent.sessions import SessionService
from indexer.cli.app import cli
from indexer.config import DEFAULT_SIZE_LIMITS, load_config
from indexer.errors import ConfigError, ValidationError
from indexer.mcp.server import build_server
from indexer.storage.sqlite import driver
from indexer.storage.sqlite.database import Database
from mcp_calls import call, error

SMALL = Limits(value_bytes=100, metadata_bytes=50, event_bytes=120, state_bytes=80)


def stored(path: Path) -> tuple[Any, ...]:
    conn = driver.connect(path)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("memory_entries", "audit"))
    finally:
        conn.close()


def session_row(path: Path, sid: str) -> tuple[Any, ...]:
    conn = driver.connect(path)
    try:
        return tuple(conn.execute("SELECT state, metadata, events FROM sessions WHERE id = ?", (sid,)).fetchone())
    finally:
        conn.close()


# -- the configuration ----------------------------------------------------------------------

def test_limits_come_from_the_config_file_and_the_environment(tmp_path: Path) -> None:
    assert Limits() == Limits.from_config(load_config(env={"INDEXER_HOME": str(tmp_path)}))
    assert Limits().value_bytes == DEFAULT_SIZE_LIMITS["max_value_bytes"] == 1024 * 1024
    file = tmp_path / "config.toml"
    file.write_text("max_value_bytes = 2000\nmax_event_bytes = 3000\n")
    config = load_config(env={"INDEXER_HOME": str(tmp_path), "INDEXER_MAX_EVENT_BYTES": "4000",
                              "INDEXER_MAX_STATE_BYTES": "5000"}, config_file=file)
    assert Limits.from_config(config) == Limits(2000, 64 * 1024, 4000, 5000)
    with pytest.raises(ConfigError, match="bad value for 'max_metadata_bytes' in environment variable "
                                          "INDEXER_MAX_METADATA_BYTES: must be between 1 and"):
        load_config(env={"INDEXER_HOME": str(tmp_path), "INDEXER_MAX_METADATA_BYTES": "0"})


# -- the Python services --------------------------------------------------------------------

async def test_memory_values_and_metadata_over_the_limit_are_refused(db: Database, db_path: Path) -> None:
    memories = MemoryService(db, SMALL)
    with pytest.raises(ValidationError) as refused:
        await memories.create_memory("user:a", "k", "x" * 200, "semantic")
    assert str(refused.value) == "the value is 202 bytes as JSON, over the limit of 100 bytes (setting max_value_bytes)"
    with pytest.raises(ValidationError, match="the metadata is 58 bytes as JSON, over the limit of 50 bytes"):
        await memories.create_memory("user:a", "k", 1, "semantic", metadata={"m": "é" * 25})  # bytes, not characters
    assert stored(db_path) == (0, 0)
    await memories.create_memory("user:a", "k", "x" * 98, "semantic")  # exactly the limit
    with pytest.raises(ValidationError, match="the value is 101 bytes"):
        await memories.update_memory("user:a", "k", "x" * 99)
    with pytest.raises(ValidationError, match="the metadata is"):
        await memories.update_memory("user:a", "k", 1, metadata={"m": "y" * 60})
    assert stored(db_path) == (1, 1)  # the first create only
    assert (await memories.get_memory("user:a", "k")).version == 1


async def test_the_default_limit_refuses_a_20_mb_value(db: Database, db_path: Path) -> None:
    """The report: a 20 MB value was accepted over MCP after 25 s."""
    with pytest.raises(ValidationError, match=r"the value is 20,971,522 bytes as JSON, over the limit of 1,048,576"):
        await MemoryService(db).create_memory("user:a", "big", "v" * (20 * 1024 * 1024), "semantic")
    assert stored(db_path) == (0, 0)


async def test_session_events_state_and_metadata_over_the_limit_are_refused(db: Database, db_path: Path) -> None:
    sessions = SessionService(db, SMALL)
    with pytest.raises(ValidationError, match="the state is 88 bytes as JSON, over the limit of 80 bytes "
                                              r"\(setting max_state_bytes\)"):
        await sessions.create_session("app", "u", state={"k": "s" * 80})
    with pytest.raises(ValidationError, match="the metadata is .* over the limit of 50 bytes"):
        await sessions.create_session("app", "u", metadata={"k": "m" * 60})
    s = await sessions.create_session("app", "u", session_id="s1", state={"k": 1})
    before = session_row(db_path, s.id)
    with pytest.raises(ValidationError, match=r"the event is \d+ bytes as JSON, over the limit of 120 bytes "
                                              r"\(setting max_event_bytes\)"):
        await sessions.append_event(s.id, {"text": "e" * 100})
    with pytest.raises(ValidationError, match="the state is .* over the limit of 80 bytes"):
        await sessions.append_event(s.id, {"n": 1}, {"k": "d" * 100})
    with pytest.raises(ValidationError, match="the state is .* over the limit of 80 bytes"):
        await sessions.update_state(s.id, {"a": "d" * 40, "b": "d" * 40})
    assert session_row(db_path, s.id) == before  # nothing written
    await sessions.append_event(s.id, {"n": 1}, {"k": 2})
    assert (await sessions.get_session(s.id)).state == {"k": 2}


# -- the CLI --------------------------------------------------------------------------------

def test_the_cli_refuses_with_one_line_and_a_non_zero_exit(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INDEXER_MAX_VALUE_BYTES", "1000")
    monkeypatch.setenv("INDEXER_MAX_EVENT_BYTES", "1000")
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Any:
        return runner.invoke(cli, ["--db", str(db_path), *args], input=input)

    result = run("memory", "add", "user:a", "k", "-", input=json.dumps("z" * 5000))
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: the value is 5,002 bytes as JSON, over the limit of 1,000 bytes (setting max_value_bytes)"]
    assert run("memory", "add", "user:a", "k", '"small"').exit_code == 0
    result = run("memory", "update", "user:a", "k", "-", input=json.dumps(["z"] * 400))
    assert result.exit_code != 0 and "over the limit of 1,000 bytes (setting max_value_bytes)" in result.output
    created = run("session", "create", "app", "u", "--json")
    sid = json.loads(created.output)["id"]
    result = run("session", "append", sid, "-", input=json.dumps({"t": "e" * 2000}))
    assert result.exit_code != 0 and "the event is" in result.output and "(setting max_event_bytes)" in result.output
    assert stored(db_path) == (1, 1)


# -- MCP ------------------------------------------------------------------------------------

async def test_mcp_refuses_large_values_and_never_echoes_what_it_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INDEXER_MAX_VALUE_BYTES", "30000")
    monkeypatch.setenv("INDEXER_MAX_STATE_BYTES", "30000")
    async with Client(build_server(load_config())) as client:
        message = await error(client, "memory_write", namespace="user:a", key="k", value="v" * 40000)
        assert message.endswith(": the value is 40,002 bytes as JSON, over the limit of 30,000 bytes "
                                "(setting max_value_bytes)")
        big = "w" * 25000
        written = await call(client, "memory_write", namespace="user:a", key="k", value=big, metadata={"m": 1})
        assert written["entry"]["value_bytes"] == 25002 and written["entry"]["metadata_bytes"] == 7
        assert written["entry"]["version"] == 1 and big not in json.dumps(written)
        assert (await call(client, "memory_get", namespace="user:a", key="k"))["value"] == big  # a read reads it
        await call(client, "memory_write", namespace="user:a", key="k", value=1)
        rolled = await call(client, "memory_restore", namespace="user:a", key="k", version=1)
        assert rolled["version"] == 3 and rolled["value_bytes"] == 25002 and big not in json.dumps(rolled)

        s = await call(client, "session_create", app_name="a", user_id="u", state={"big": big})
        assert s["state_bytes"] == 25010 and big not in json.dumps(s)
        appended = await call(client, "session_append", session_id=s["id"], event={"id": "e1", "text": big})
        assert appended["event_id"] == "e1" and appended["event_count"] == 1 and big not in json.dumps(appended)
        assert appended["event_bytes"] > 25000 and appended["timestamp"]
        message = await error(client, "session_update", session_id=s["id"], state_delta={"more": big + big})
        assert "the state is 50,0" in message and message.endswith("over the limit of 30,000 bytes "
                                                                           "(setting max_state_bytes)")
        updated = await call(client, "session_update", session_id=s["id"], status="active")
        assert updated["status"] == "active" and big not in json.dumps(updated)
        got = await call(client, "session_get", session_id=s["id"])
        assert got["state"] == {"big": big} and got["events"][0]["text"] == big
