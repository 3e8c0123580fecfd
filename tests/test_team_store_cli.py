"""Location -> engine through the front doors: a path is an SQLite file, postgresql://… the
team's PostgreSQL (agent store only, so far); the agent store's own setting (--agent-db,
INDEXER_AGENT_DB, agent_db in the config file); migrate, doctor and status on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from conftest import StoreRows
from indexer.cli.app import cli
from indexer.config import load_config
from indexer.errors import IndexerError
from indexer.storage.sqlite import driver, migrations
from indexer.storage.sqlite.database import Database

FAKE_DSN = "postgresql://nobody@/nodb?host=/nonexistent"


def invoke(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert (result.exit_code == 0) == ok, (args, result.output, result.exception)
    return result


# --- location -> engine --------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["reindex"], ["search", "x"], ["backup", "b.db"], ["restore", "b.db"],
                                     ["mcp", "--tools", "docs"]])
def test_document_commands_pointed_at_postgres_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       command: list[str]) -> None:
    """Before: a postgresql:// --db was taken for a file path and a directory named
    'postgresql:' appeared. Now: one sentence, a non-zero exit, nothing created."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (cwd / "b.db").write_bytes(b"")
    result = invoke("--db", FAKE_DSN, *command, ok=False)
    assert "cannot live on PostgreSQL yet" in result.output, result.output
    assert sorted(p.name for p in cwd.iterdir()) == ["b.db"]


def test_sqlite_entry_points_refuse_a_postgres_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(IndexerError, match="open_agent_database"):
        Database(FAKE_DSN)
    with pytest.raises(IndexerError, match="PostgreSQL"):
        driver.connect(FAKE_DSN)
    with pytest.raises(IndexerError, match="PostgreSQL"):
        migrations.migrate(Path(FAKE_DSN))  # a URL already mangled into a Path
    assert list(cwd.iterdir()) == []


def test_agent_store_setting_flag_env_file(isolated_home: Path, tmp_path: Path) -> None:
    base = {"INDEXER_HOME": str(isolated_home)}
    assert load_config(env=base).agent_location == str(load_config(env=base).db)  # default: the one database
    assert load_config(env=base).agent_engine == "sqlite"
    (isolated_home / "config.toml").write_text(f'agent_db = "{FAKE_DSN}"\n')
    config = load_config(env=base)
    assert (config.agent_location, config.agent_engine, config.db_url) == (FAKE_DSN, "postgresql", None)
    assert config.require_documents_db() is config  # the notes stay in the local file
    env = {**base, "INDEXER_AGENT_DB": str(tmp_path / "agents.db")}
    assert load_config(env=env).agent_location == str(tmp_path / "agents.db")
    flagged = load_config({"agent_db": "postgresql://x@/team"}, env=env)
    assert flagged.agent_location == "postgresql://x@/team"
    assert flagged.sources["agent_db"] == "option --agent-db"
    one = load_config({"db": FAKE_DSN}, env=base)
    assert (one.db_url, one.agent_location) == (FAKE_DSN, FAKE_DSN)
    with pytest.raises(IndexerError, match="cannot live on PostgreSQL yet"):
        one.require_documents_db()


def test_unreachable_server_is_one_sentence(tmp_path: Path) -> None:
    result = invoke("--agent-db", FAKE_DSN, "--db", str(tmp_path / "notes.db"), "memory", "add", "user:a", "k", "1",
                    ok=False)
    assert result.output.startswith("error: cannot connect to PostgreSQL at postgresql://nobody@/nodb")
    assert len(result.output.strip().splitlines()) == 1


# --- against the suite's server ------------------------------------------------------------------

def test_memory_commands_on_postgres_and_notes_in_sqlite(pg_dsn: str, tmp_path: Path) -> None:
    """--db a local file (documents) and --agent-db the team's PostgreSQL (memories)."""
    notes = tmp_path / "notes.db"
    common = ["--db", str(notes), "--agent-db", pg_dsn]
    invoke(*common, "memory", "add", "project:team", "style", '{"tabs": false}')
    invoke(*common, "memory", "update", "project:team", "style", '{"tabs": true}')
    got = json.loads(invoke(*common, "memory", "get", "project:team", "style", "--json").output)
    assert (got["version"], got["value"]) == (2, {"tabs": True})
    assert not notes.exists()  # the memory commands did not touch the notes database
    # the same memory through the one-database form (--db postgresql://…)
    again = json.loads(invoke("--db", pg_dsn, "memory", "get", "project:team", "style", "--json").output)
    assert again["id"] == got["id"]
    # sessions live there too now: created and listed through the same front door
    created = json.loads(invoke("--db", pg_dsn, "session", "create", "app", "alice", "--json").output)
    listed = invoke("--agent-db", pg_dsn, "--db", str(notes), "session", "list").output
    assert created["id"] in listed and not notes.exists()


def test_migrate_doctor_status_on_postgres(pg_server: Any, tmp_path: Path) -> None:
    dsn = pg_server.fresh_database(migrated=False)
    out = invoke("--db", dsn, "migrate").output
    assert "PostgreSQL 1" in out and "0001_memory" in out and "0002_sessions" in out and "0004_state_metrics" in out
    assert "up to date" in invoke("--db", dsn, "migrate").output
    report = json.loads(invoke("--db", dsn, "migrate", "--json").output)
    assert (report["engine"], report["pending"]) == ("postgresql", [])
    doctor = json.loads(invoke("--db", dsn, "doctor", "--json").output)
    assert doctor["ok"] and {c["name"] for c in doctor["checks"]} >= {
        "postgres.server_version", "postgres.migrations", "postgres.tables", "postgres.indexes",
        "json_check.memory_entries.value", "timestamp_check.memory_entries.created_at",
        "unique_check.session_events.seq", "json_check.session_events.payload", "timestamp_check.tasks.submitted_at",
        "value_check.metrics.metric_value"}
    tables = {c["name"]: c for c in doctor["checks"]}["postgres.tables"]
    assert tables["ok"] and tables["observed"] == "9 present"  # state and metrics (0004) among them
    invoke("--db", dsn, "memory", "add", "user:a", "k", "1")
    status = invoke("--db", dsn, "status").output
    assert status.startswith("agent store: postgresql 18") and "1 memories, 1 versions, 1 audit rows" in status
    assert "0 sessions, 0 events, 0 tasks, 0 agents, 0 checkpoints, 0 state rows, 0 metrics)" in status
    counted = json.loads(invoke("--db", dsn, "status", "--json").output)["agent_store"]
    assert counted["pending_migrations"] == [] and counted["memory_versions"] == 1
    assert {k: counted[k] for k in ("tasks", "agents", "checkpoints", "state", "metrics")} == dict.fromkeys(
        ("tasks", "agents", "checkpoints", "state", "metrics"), 0)
    both = json.loads(invoke("--db", str(tmp_path / "notes.db"), "--agent-db", dsn, "migrate", "--json").output)
    assert both["path"] == str(tmp_path / "notes.db") and both["agent_store"]["engine"] == "postgresql"
    both_doctor = invoke("--db", str(tmp_path / "notes.db"), "--agent-db", dsn, "doctor").output
    assert "postgres.migrations" in both_doctor and "0 failed" in both_doctor


def test_doctor_fails_on_an_unmigrated_store(pg_server: Any) -> None:
    dsn = pg_server.fresh_database(migrated=False)
    result = invoke("--db", dsn, "doctor", ok=False)
    assert "FAIL  postgres.migrations" in result.output


async def test_mcp_memory_tools_use_the_agent_store(pg_dsn: str, tmp_path: Path, isolated_home: Path) -> None:
    """The MCP server's store is the agent store: notes in a file, memories on the server."""
    from indexer import MemoryService
    from indexer.mcp.common import ServerState

    config = load_config({"db": str(tmp_path / "notes.db"), "agent_db": pg_dsn}, env={"INDEXER_HOME": str(isolated_home)})
    state = ServerState(config)
    try:
        db = await state.database(create=True)
        assert getattr(db, "engine", "sqlite") == "postgresql"
        await MemoryService(db).create_memory("project:team", "k", 1, "semantic")
    finally:
        await state.close()
    assert StoreRows(pg_dsn)("SELECT namespace, value FROM memory_entries") == [{"namespace": "project:team", "value": "1"}]
    assert not (tmp_path / "notes.db").exists()


async def test_mcp_session_tools_use_the_agent_store(pg_dsn: str, tmp_path: Path, isolated_home: Path) -> None:
    """The session tools on a PostgreSQL agent store: create, append with a state delta, read
    the log back, change status; the notes database is never created."""
    from mcp import Client

    from indexer.mcp.server import build_server
    from mcp_calls import call

    config = load_config({"db": str(tmp_path / "notes.db"), "agent_db": pg_dsn}, env={"INDEXER_HOME": str(isolated_home)})
    async with Client(build_server(config, groups=["sessions"])) as client:
        created = await call(client, "session_create", app_name="app", user_id="alice")
        for i in range(3):
            await call(client, "session_append", session_id=created["id"], event={"type": "msg", "i": i},
                       state_delta={"n": i})
        got = await call(client, "session_get", session_id=created["id"])
        assert got["event_count"] == 3 and got["state"] == {"n": 2}
        assert (await call(client, "session_update", session_id=created["id"], status="active"))["status"] == "active"
    rows = StoreRows(pg_dsn)("SELECT seq, type FROM session_events ORDER BY seq")
    assert rows == [{"seq": 1, "type": "msg"}, {"seq": 2, "type": "msg"}, {"seq": 3, "type": "msg"}]
    assert not (tmp_path / "notes.db").exists()


# --- moving an SQLite store into PostgreSQL -------------------------------------------------------

AGENT_TABLES = (("memory_entries", "id"), ("audit", "id"), ("sessions", "id"), ("session_events", "session_id, seq"),
                ("tasks", "id"), ("agents", "id"), ("checkpoints", "task_id, iteration"), ("state", "id"),
                ("metrics", "id"))


def test_migrate_to_moves_the_whole_agent_store(pg_server: Any, tmp_path: Path) -> None:
    """`indexer migrate --to postgresql://…`: the moved store equals the source, row for row
    (ids, versions, deleted flags, JSON text, timestamps, audit rows, sessions and their events,
    tasks, agents, checkpoints, the deprecated state table and metrics), and goes on from there."""
    source = tmp_path / "agent.db"
    common = ["--db", str(source)]
    invoke(*common, "memory", "add", "user:a", "k", '{"z": 1, "a": [1.5, "é"]}', "--metadata", '{"m": 1}')
    invoke(*common, "memory", "update", "user:a", "k", "2")
    invoke(*common, "memory", "rollback", "user:a", "k", "1")
    invoke(*common, "memory", "add", "project:p:x", "gone", "null", "--type", "episodic")
    invoke(*common, "memory", "delete", "project:p:x", "gone")
    sid = invoke(*common, "session", "create", "app", "alice").output.strip()
    invoke(*common, "session", "append", sid, '{"type": "msg", "text": "héllo"}')
    invoke(*common, "session", "append", sid, '{"type": "tool", "n": [1, 2.5]}')
    invoke(*common, "task", "submit", "child first", "--id", "t-b", "--session", sid)
    invoke(*common, "task", "submit", "then", "--id", "t-c", "--after", "t-b")
    claim = json.loads(invoke(*common, "task", "claim", "--worker", "w", "--json").output)
    invoke(*common, "task", "heartbeat", "t-b", "--agent", claim["agent_id"])

    async def checkpoint() -> None:
        from indexer.agent.tasks import TaskService

        async with Database(source) as db:
            await TaskService(db).save_checkpoint("t-b", {"step": 1}, claim["agent_id"])
    asyncio.run(checkpoint())
    conn = driver.connect(source)
    try:  # the report's state (deprecated, kept) and metrics tables, written by other code
        ts = "2025-10-09T17:04:11.123456+00:00"  # a legacy isoformat() timestamp moves unchanged
        conn.executemany("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                         [("t-b", "plan", '{"steps": [1, 2]}', ts, ts), ("t-c", "note", "not json", ts, ts)])
        conn.execute("DELETE FROM state WHERE key = 'plan'")  # ids keep their gap
        conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES ('t-b', 'plan', '1', ?, ?)",
                     (ts, ts))
        conn.executemany("INSERT INTO metrics (timestamp, metric_name, metric_value, labels) VALUES (?, ?, ?, ?)",
                         [(ts, "tokens", 0.1, '{"model": "m"}'), (ts, "latency_ms", 1e300, None)])
    finally:
        conn.close()
    dsn = pg_server.fresh_database(migrated=False)
    out = invoke(*common, "migrate", "--to", dsn).output
    assert "moved 4 memory versions" in out and "1 sessions with 2 events, 2 tasks, 1 agents, 1 checkpoints" in out
    assert "2 state rows and 2 metrics" in out
    for table, order in AGENT_TABLES:
        before = StoreRows(str(source))(f"SELECT * FROM {table} ORDER BY {order}")
        after = StoreRows(dsn)(f"SELECT * FROM {table} ORDER BY {order}")
        if table == "tasks":  # PostgreSQL's claim-order column (0005), SQLite's rowid
            seqs = [r.pop("seq") for r in after]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert after == before, table
    before_memories = StoreRows(str(source))("SELECT * FROM memory_entries ORDER BY id")
    # the moved store goes on: next version, next ids, the session's next seq, the queue
    entry = json.loads(invoke("--db", dsn, "memory", "update", "user:a", "k", "4", "--json").output)
    assert entry["version"] == 4 and entry["id"] > max(r["id"] for r in before_memories)
    invoke("--db", dsn, "session", "append", sid, '{"type": "msg"}')
    assert [r["seq"] for r in StoreRows(dsn)("SELECT seq FROM session_events ORDER BY seq")] == [1, 2, 3]
    invoke("--db", dsn, "task", "complete", "t-b", "--agent", claim["agent_id"])
    assert json.loads(invoke("--db", dsn, "task", "claim", "--worker", "w2", "--json").output)["task"]["id"] == "t-c"
    ties = StoreRows(dsn)("SELECT id FROM tasks ORDER BY seq")  # insertion order kept by the move
    assert [r["id"] for r in ties] == [r["id"] for r in StoreRows(str(source))("SELECT id FROM tasks ORDER BY rowid")]
    StoreRows(dsn).execute("INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('t', 'n', 1)")
    assert max(r["id"] for r in StoreRows(dsn)("SELECT id FROM metrics")) == 3  # the identity goes on after the ids moved
    # a second move is refused, and writes nothing
    audit_rows = len(StoreRows(dsn)("SELECT id FROM audit"))
    result = invoke(*common, "migrate", "--to", dsn, ok=False)
    assert "already holds 5 memory versions" in result.output and "nothing was copied" in result.output
    assert len(StoreRows(dsn)("SELECT id FROM audit")) == audit_rows
    assert "postgresql:// URL" in invoke(*common, "migrate", "--to", str(tmp_path / "x.db"), ok=False).output


def test_migrate_to_refuses_a_row_that_does_not_fit_and_copies_nothing(pg_server: Any, tmp_path: Path) -> None:
    source = tmp_path / "agent.db"
    invoke("--db", str(source), "memory", "add", "user:a", "k", "1")
    invoke("--db", str(source), "task", "submit", "p", "--id", "t-1")
    conn = driver.connect(source)
    try:  # written by other code: a dependency list that is not JSON
        conn.execute("UPDATE tasks SET dependencies = 'not json' WHERE id = 't-1'")
    finally:
        conn.close()
    dsn = pg_server.fresh_database(migrated=False)
    result = invoke("--db", str(source), "migrate", "--to", dsn, ok=False)
    assert "does not fit" in result.output and "nothing was copied" in result.output
    assert StoreRows(dsn)("SELECT count(*) AS n FROM memory_entries") == [{"n": 0}]


def test_pool_settings_from_the_config(isolated_home: Path, pg_dsn: str) -> None:
    base = {"INDEXER_HOME": str(isolated_home)}
    assert load_config(env=base).agent_settings == {}  # SQLite: no pool
    env = {**base, "INDEXER_AGENT_DB": pg_dsn, "INDEXER_AGENT_POOL_SIZE": "2", "INDEXER_AGENT_PREPARED_STATEMENTS": "false"}
    assert load_config(env=env).agent_settings == {"max_size": 2, "prepare_threshold": None}
    (isolated_home / "config.toml").write_text("agent_prepared_statements = true\nagent_pool_size = 1\n")
    assert load_config(env={**base, "INDEXER_AGENT_DB": pg_dsn}).agent_settings == {"max_size": 1, "prepare_threshold": 5}
    with pytest.raises(IndexerError, match="agent_prepared_statements"):
        load_config(env={**env, "INDEXER_AGENT_PREPARED_STATEMENTS": "maybe"})
    (isolated_home / "config.toml").unlink()
    invoke("memory", "add", "user:a", "k", "1", env=env)  # PgBouncer mode through the front door
    assert json.loads(invoke("memory", "get", "user:a", "k", "--json", env=env).output)["version"] == 1
