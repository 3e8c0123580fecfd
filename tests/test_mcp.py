"""``indexer mcp`` in process: the SDK's real client against the server object (``Client(server)``),
a real SQLite file under tmp_path, real markdown files, the hash model instead of the real one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mcp import Client

from indexer.cli import cli
from indexer.config import load_config
from indexer.documents.sync import DocumentSync
from indexer.errors import ConfigError
from indexer.mcp.catalog import TOOLS, parse_groups, select_tools
from indexer.mcp.server import build_server
from mcp_calls import call, error

pytestmark = pytest.mark.timeout(120)

NOTES = {
    "tar.md": "# tar\n\n> Archiving utility.\n\n## Create\n\nCreate an archive from files: `tar cf target.tar a b`\n",
    "ssh.md": "# ssh\n\n> Secure shell client for remote login.\n\nConnect to a remote server: `ssh user@host`\n",
    "deep/glaciers.md": "---\ntype: geography\n---\n# Glaciers\n\nGlaciers carve valleys and feed rivers.\n",
}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INDEXER_MODEL", "hash:64")
    r = tmp_path / "notes"
    for name, text in NOTES.items():
        (r / name).parent.mkdir(parents=True, exist_ok=True)
        (r / name).write_text(text)
    return r.resolve()


def indexed(root: Path) -> Any:
    config = load_config({"roots": [str(root)]})
    with DocumentSync(config) as sync:
        sync.run()
    return config


# --- the tool set -------------------------------------------------------------------------

async def test_tools_listed_with_schemas_and_hints(root: Path) -> None:
    async with Client(build_server(load_config())) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert list(tools) == [t.name for t in TOOLS]
    for info in TOOLS:
        tool = tools[info.name]
        assert tool.description and len(tool.description) > 60, info.name
        assert tool.output_schema and tool.output_schema["type"] == "object", info.name
        assert bool(tool.annotations.read_only_hint) is (not info.writes), info.name  # absent: false
        assert tool.annotations.open_world_hint is False
    assert [n for n, t in tools.items() if t.annotations.destructive_hint] == ["memory_delete"]
    assert tools["search"].input_schema["properties"]["k"]["maximum"] == 25
    assert tools["read_document"].input_schema["properties"]["max_lines"]["maximum"] == 2000


async def test_read_only_and_groups_trim_the_tools() -> None:
    async with Client(build_server(load_config(), read_only=True)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"search", "read_document", "index_status", "memory_get", "memory_list", "session_get", "session_list"}
    async with Client(build_server(load_config(), groups=parse_groups("memory"))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {t.name for t in select_tools(["memory"])} and all(n.startswith("memory_") for n in names)
    with pytest.raises(ConfigError, match="unknown group files"):
        parse_groups("docs,files")


def test_help_lists_every_tool_without_importing_the_sdk() -> None:
    result = CliRunner().invoke(cli, ["mcp", "--help"])
    assert result.exit_code == 0
    for info in TOOLS:
        assert info.name in result.output
    assert '"args": ["mcp"]' in result.output and "indexer mcp --print-config" in result.output
    bad = CliRunner().invoke(cli, ["mcp", "--tools", "nope"])
    assert bad.exit_code == 2 and "unknown group nope" in bad.output


def test_print_config_carries_the_agent_store(tmp_path: Path, isolated_home: Path) -> None:
    """Before: the printed configuration dropped INDEXER_AGENT_DB and --agent-db (the agent
    host's server wrote memories, sessions and tasks to the local file, not the team's server),
    and turned a postgresql:// --db into a path (cwd/postgresql:/…, the old bug's directory)."""
    team = "postgresql://alice@db.team.example/agents"
    env = {"INDEXER_HOME": str(isolated_home), "INDEXER_AGENT_DB": team}

    def printed(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(cli, [*args, "--print-config"], env=env)
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output)["mcpServers"]["indexer"])

    assert {key: printed("mcp")["env"].get(key) for key in env} == env
    flagged = printed("--db", str(tmp_path / "notes.db"), "--agent-db", team, "mcp", "--tools", "memory")
    assert flagged["args"] == ["--db", str(tmp_path / "notes.db"), "--agent-db", team, "mcp", "--tools", "memory"]
    assert printed("--db", team, "mcp", "--tools", "tasks")["args"] == ["--db", team, "mcp", "--tools", "tasks"]


# --- documents ------------------------------------------------------------------------------

async def test_search_direct_without_daemon(root: Path) -> None:
    config = indexed(root)
    async with Client(build_server(config)) as client:
        found = await call(client, "search", query="archive files tar", mode="keyword", k=2)
        assert found["served_by"] == "direct" and "no daemon runs" in found["notice"]
        assert found["results"][0]["path"] == str(root / "tar.md")
        assert len(found["results"]) <= 2
        hybrid = await call(client, "search", query="remote login shell")
        assert str(root / "ssh.md") in [h["path"] for h in hybrid["results"]]
        typed = await call(client, "search", query="valleys", document_type="geography")
        assert [h["path"] for h in typed["results"]] == [str(root / "deep" / "glaciers.md")]
        under = await call(client, "search", query="archive", mode="keyword", path=str(root / "deep"))
        assert under["results"] == []
        text = (await client.call_tool("search", {"query": "tar archive", "mode": "keyword"})).content[0].text
        assert f"{root / 'tar.md'}:" in text and "served by direct" in text
        assert "less than or equal to 25" in await error(client, "search", query="x", k=500)
        assert "--since" in await error(client, "search", query="x", since="yesterday-ish")


async def test_read_document_pages_and_refuses_outside_paths(root: Path, tmp_path: Path) -> None:
    (root / "long.md").write_text("# Long\n\n" + "".join(f"line {i} " + "x" * 60 + "\n" for i in range(3, 5001)))
    outside = tmp_path / "secret.md"
    outside.write_text("# Secret\n\nnot for agents\n")
    (root / "link.md").symlink_to(outside)
    (root / "notes.txt").write_text("not markdown, not indexed\n")
    config = indexed(root)
    async with Client(build_server(config)) as client:
        doc = await call(client, "read_document", path=str(root / "tar.md"))
        assert doc["text"] == NOTES["tar.md"].rstrip("\n") and doc["truncated"] is False
        assert doc["title"] == "tar" and doc["total_lines"] == NOTES["tar.md"].count("\n")
        relative = await call(client, "read_document", path="deep/glaciers.md", start_line=4, max_lines=1)
        assert relative["text"] == "# Glaciers" and relative["next_start_line"] == 5
        big = await call(client, "read_document", path=str(root / "long.md"), max_lines=2000)
        assert big["truncated"] and len(big["text"]) <= 40_000 and big["total_lines"] == 5000
        assert big["end_line"] - big["start_line"] + 1 == len(big["text"].splitlines()) < 2000
        more = await call(client, "read_document", path=str(root / "long.md"), start_line=big["next_start_line"], max_lines=3)
        assert more["text"].splitlines()[0].startswith(f"line {big['next_start_line']} ")
        assert "outside the indexed roots" in await error(client, "read_document", path="/etc/passwd")
        assert "outside the indexed roots" in await error(client, "read_document", path=str(root / "link.md"))
        assert "outside the indexed roots" in await error(client, "read_document", path=str(root / ".." / "secret.md"))
        assert "not in the index" in await error(client, "read_document", path=str(root / "notes.txt"))
        assert "past the end" in await error(client, "read_document", path=str(root / "tar.md"), start_line=99)
    # no roots configured (the README's `reindex --root` and no config file): the database
    # remembers the root it indexed, so its files are readable, and still only those
    async with Client(build_server(load_config())) as client:
        assert (await call(client, "read_document", path=str(root / "tar.md")))["title"] == "tar"
        assert (await call(client, "read_document", path="deep/glaciers.md"))["title"] == "Glaciers"
        assert "outside the indexed roots" in await error(client, "read_document", path=str(root / "link.md"))
        assert "not in the index" in await error(client, "read_document", path=str(root / "notes.txt"))
    nothing = load_config({"db": str(tmp_path / "never-indexed.db")})
    async with Client(build_server(nothing)) as client:  # no roots anywhere: nothing is readable
        assert "no roots are configured" in await error(client, "read_document", path=str(root / "tar.md"))


async def test_index_status_and_direct_reindex(root: Path, tmp_path: Path) -> None:
    config = indexed(root)
    (root / "new.md").write_text("# New\n\nfresh words about zeppelins\n")
    async with Client(build_server(config)) as client:
        status = await call(client, "index_status")
        assert status["served_by"] == "direct" and status["daemon"] is None
        assert status["documents"]["synced"] == 3 and status["model"] == "hash:64"
        report = await call(client, "reindex")
        assert report["served_by"] == "direct" and report["done"] and report["report"]["added"] == 1
        found = await call(client, "search", query="zeppelins", mode="keyword")
        assert found["results"][0]["path"] == str(root / "new.md")
        assert "outside the configured roots" in await error(client, "reindex", paths=["/etc"])
    (root / "later.md").write_text("# Later\n\nwords about airships\n")
    async with Client(build_server(load_config())) as client:  # no roots configured: the remembered root
        report = await call(client, "reindex")
        assert report["report"]["added"] == 1 and (await call(client, "index_status"))["roots"] == [str(root)]
    async with Client(build_server(load_config({"db": str(tmp_path / "never-indexed.db")}))) as client:
        assert "no roots are configured" in await error(client, "reindex")


# --- memory -----------------------------------------------------------------------------

async def test_memory_lifecycle() -> None:
    async with Client(build_server(load_config(), by="agent-1")) as client:
        assert "no database at" in await error(client, "memory_get", namespace="user:alice", key="theme")
        first = await call(client, "memory_write", namespace="user:alice", key="theme", value={"mode": "dark"},
                           metadata={"source": "chat"})
        assert first["created"] and first["entry"]["version"] == 1 and first["entry"]["created_by"] == "agent-1"
        second = await call(client, "memory_write", namespace="user:alice", key="theme", value="light", by="agent-2")
        assert not second["created"] and second["entry"]["version"] == 2 and second["entry"]["updated_by"] == "agent-2"
        got = await call(client, "memory_get", namespace="user:alice", key="theme", history=True)
        assert got["value"] == "light" and [v["value"] for v in got["versions"]] == [{"mode": "dark"}, "light"]
        assert got["versions_total"] == 2 and got["metadata"] == {"source": "chat"}
        old = await call(client, "memory_get", namespace="user:alice", key="theme", version=1)
        assert old["value"] == {"mode": "dark"} and old["versions"] is None
        await call(client, "memory_write", namespace="user:alice:work", key="editor", value="vim", memory_type="procedural")
        listed = await call(client, "memory_list", prefix="user:alice")
        assert [(i["namespace"], i["key"]) for i in listed["items"]] == [("user:alice", "theme"), ("user:alice:work", "editor")]
        assert (await call(client, "memory_list", prefix="user:alice", memory_type="procedural"))["items"][0]["key"] == "editor"
        deleted = await call(client, "memory_delete", namespace="user:alice", key="theme")
        assert deleted == {"namespace": "user:alice", "key": "theme", "deleted": True, "versions": 2}
        assert "is deleted (restore it first)" in await error(client, "memory_get", namespace="user:alice", key="theme")
        shown = await call(client, "memory_get", namespace="user:alice", key="theme", history=True)
        assert shown["is_deleted"] and shown["versions_total"] == 2
        restored = await call(client, "memory_restore", namespace="user:alice", key="theme")
        assert restored["version"] == 2 and restored["value_bytes"] == len('"light"') and not restored["is_deleted"]
        assert (await call(client, "memory_get", namespace="user:alice", key="theme"))["value"] == "light"
        assert "is not deleted" in await error(client, "memory_restore", namespace="user:alice", key="theme")
        rolled = await call(client, "memory_restore", namespace="user:alice", key="theme", version=1)
        assert rolled["version"] == 3 and "value" not in rolled  # a write answers sizes, not the value
        assert (await call(client, "memory_get", namespace="user:alice", key="theme"))["value"] == {"mode": "dark"}
        assert "has no version 9" in await error(client, "memory_restore", namespace="user:alice", key="theme", version=9)
        assert "must start with one of" in await error(client, "memory_write", namespace="people:bob", key="k", value=1)
        # a deleted key written again continues its versions
        await call(client, "memory_delete", namespace="user:alice:work", key="editor")
        again = await call(client, "memory_write", namespace="user:alice:work", key="editor", value="emacs")
        assert again["created"] and again["entry"]["version"] == 2


async def test_memory_list_pages_by_cursor_and_stays_under_the_budget() -> None:
    async with Client(build_server(load_config())) as client:
        for i in range(7):
            await call(client, "memory_write", namespace="project:p", key=f"k{i}", value=i)
        keys, cursor, pages = [], None, 0
        while True:
            page = await call(client, "memory_list", prefix="project:p", limit=3, **({"cursor": cursor} if cursor else {}))
            keys += [i["key"] for i in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert keys == [f"k{i}" for i in range(7)] and pages == 3
        for i in range(12):
            await call(client, "memory_write", namespace="project:big", key=f"b{i:02}", value="y" * 9000)
        page = await call(client, "memory_list", prefix="project:big", limit=200)
        assert 1 <= len(page["items"]) < 12 and page["next_cursor"]  # cut by size, not by limit
        assert len(json.dumps(page)) < 45_000
        keys = [i["key"] for i in page["items"]]
        while page["next_cursor"]:
            page = await call(client, "memory_list", prefix="project:big", limit=200, cursor=page["next_cursor"])
            keys += [i["key"] for i in page["items"]]
        assert keys == [f"b{i:02}" for i in range(12)]  # every key once, in order
        assert "invalid cursor" in await error(client, "memory_list", prefix="project:p", cursor="garbage!")


# --- sessions -------------------------------------------------------------------------------

async def test_session_lifecycle_with_events_and_an_illegal_transition() -> None:
    async with Client(build_server(load_config())) as client:
        # an object sent as a JSON string (some clients do) is accepted
        s = await call(client, "session_create", app_name="coder", user_id="alice", project_id="p1",
                       state='{"user:lang": "en", "temp:scratch": 1}')
        sid = s["id"]
        assert s["status"] == "created" and s["state_bytes"] == len('{"user:lang":"en"}') and s["event_count"] == 0
        assert (await call(client, "session_get", session_id=sid))["state"] == {"user:lang": "en"}
        for i in range(5):
            appended = await call(client, "session_append", session_id=sid, event={"type": "msg", "n": i},
                                  state_delta={"turn": i})
        assert appended["event_count"] == 5 and appended["event_id"] and "event" not in appended
        got = await call(client, "session_get", session_id=sid, events=2)
        assert [e["n"] for e in got["events"]] == [3, 4] and got["events_truncated"] and got["event_count"] == 5
        assert got["state"]["turn"] == 4 and got["events"][-1]["id"] == appended["event_id"]
        active = await call(client, "session_update", session_id=sid, status="active", state_delta={"turn": None})
        assert active["status"] == "active" and "state" not in active
        assert "turn" not in (await call(client, "session_get", session_id=sid))["state"]
        assert (await call(client, "session_update", session_id=sid, status="paused"))["status"] == "paused"
        assert (await call(client, "session_update", session_id=sid, status="terminated"))["terminated_at"]
        message = await error(client, "session_update", session_id=sid, status="active")
        assert "cannot change status from terminated to active" in message
        assert "is terminated: cannot append events" in await error(client, "session_append", session_id=sid, event={"x": 1})
        assert "give state_delta, status, or both" in await error(client, "session_update", session_id=sid)
        other = await call(client, "session_create", app_name="coder", user_id="bob")
        listed = await call(client, "session_list", app_name="coder")
        assert [i["id"] for i in listed["items"]] == [other["id"], sid] and listed["next_cursor"] is None
        assert [i["id"] for i in (await call(client, "session_list", status="terminated"))["items"]] == [sid]
        assert "no session nope" in await error(client, "session_get", session_id="nope")


async def test_session_get_stays_under_the_output_budget() -> None:
    async with Client(build_server(load_config())) as client:
        sid = (await call(client, "session_create", app_name="a", user_id="u"))["id"]
        for i in range(60):
            await call(client, "session_append", session_id=sid, event={"n": i, "text": "z" * 2000})
        got = await call(client, "session_get", session_id=sid, events=200)
        assert got["event_count"] == 60 and got["events_truncated"]
        assert 0 < len(got["events"]) < 60 and got["events"][-1]["n"] == 59  # the newest ones, cut by size
        assert len(json.dumps(got)) <= 41_000
        first = await call(client, "session_get", session_id=sid, events=200, after=0)
        assert first["events"][0]["n"] == 0 and first["next_after"] == len(first["events"]) < 60  # the oldest ones
        assert len(json.dumps(first)) <= 41_000


async def test_session_get_pages_the_log_after_a_sequence_number() -> None:
    async with Client(build_server(load_config())) as client:
        sid = (await call(client, "session_create", app_name="a", user_id="u"))["id"]
        for i in range(7):
            await call(client, "session_append", session_id=sid, event={"n": i})
        last = await call(client, "session_get", session_id=sid, events=2)
        assert [e["n"] for e in last["events"]] == [5, 6] and last["first_seq"] == 6 and last["next_after"] is None
        seen, after = [], 0
        while after is not None:
            got = await call(client, "session_get", session_id=sid, events=3, after=after)
            assert got["first_seq"] == after + 1 and got["event_count"] == 7
            seen += [e["n"] for e in got["events"]]
            after = got["next_after"]
        assert seen == list(range(7))
        beyond = await call(client, "session_get", session_id=sid, after=7)
        assert beyond["events"] == [] and beyond["first_seq"] is None and beyond["next_after"] is None
        assert "greater than or equal to 0" in await error(client, "session_get", session_id=sid, after=-1)


async def test_legacy_handshake_client() -> None:
    """Hosts that still use the initialize handshake (protocol 2025-11-25) get the same tools."""
    async with Client(build_server(load_config()), mode="legacy") as client:
        assert len((await client.list_tools()).tools) == len(TOOLS)
        entry = await call(client, "memory_write", namespace="app:x", key="k", value=[1, 2])
        assert entry["entry"]["version"] == 1 and entry["entry"]["value_bytes"] == len("[1,2]")


def test_server_start_imports_no_model(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from indexer.config import load_config; from indexer.mcp.server import build_server; "
            "build_server(load_config()); print(sorted(m for m in ('torch', 'sentence_transformers', 'onnxruntime', "
            "'indexer.documents.embedding') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    assert out.stdout.strip() == "[]"
