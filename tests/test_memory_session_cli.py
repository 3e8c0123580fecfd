"""``indexer memory …`` and ``indexer session …`` through click's CliRunner: output, --json,
stdin values, exit codes, one-line errors, and failed commands changing nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from indexer.cli.app import cli
from indexer.storage.sqlite import driver


@pytest.fixture
def run(db_path: Path) -> Any:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, ok: bool = True) -> Result:
        result = runner.invoke(cli, ["--db", str(db_path), *args], input=input)
        if ok:
            assert result.exit_code == 0, (args, result.output, result.stderr if hasattr(result, "stderr") else "")
        return result

    return invoke


def table(path: Path, name: str) -> list[tuple[Any, ...]]:
    conn = driver.connect(path)
    try:
        return [tuple(r) for r in conn.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()]
    finally:
        conn.close()


def actions(path: Path) -> list[str]:
    conn = driver.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT action_type FROM audit ORDER BY id").fetchall()]
    finally:
        conn.close()


def state(path: Path) -> tuple[Any, ...]:
    return tuple(table(path, t) for t in ("memory_entries", "sessions", "session_events", "audit"))


def error_line(result: Result) -> str:
    text = result.stderr if hasattr(result, "stderr") else result.output
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    return lines[0]


def as_json(result: Result) -> Any:
    return json.loads(result.stdout if hasattr(result, "stdout") else result.output)


# --- memory ----------------------------------------------------------------------------------------

def test_memory_round_trip(run: Any, db_path: Path) -> None:
    out = run("memory", "add", "user:alice", "theme", '"dark"', "--by", "me", "--metadata", '{"src": "ui"}')
    assert "v1" in out.output
    made = as_json(run("memory", "update", "user:alice", "theme", '{"mode": "light"}', "--json"))
    assert made["version"] == 2 and made["created_by"] == "me" and made["metadata"] == {"src": "ui"}
    got = as_json(run("memory", "get", "user:alice", "theme", "--json"))
    assert got["value"] == {"mode": "light"} and got["version"] == 2
    assert as_json(run("memory", "get", "user:alice", "theme", "--version", "1", "--json"))["value"] == "dark"
    human = run("memory", "get", "user:alice", "theme").output
    assert "user:alice theme v2" in human and '"mode"' in human
    rolled = as_json(run("memory", "rollback", "user:alice", "theme", "1", "--json"))
    assert rolled["version"] == 3 and rolled["value"] == "dark"
    history = as_json(run("memory", "history", "user:alice", "theme", "--json"))
    assert [h["version"] for h in history] == [1, 2, 3]
    deleted = as_json(run("memory", "delete", "user:alice", "theme", "--json"))
    assert deleted == {"namespace": "user:alice", "key": "theme", "deleted": True, "versions": 3}
    assert as_json(run("memory", "restore", "user:alice", "theme", "--json"))["version"] == 3
    assert actions(db_path) == ["memory_create", "memory_update", "memory_rollback", "memory_delete", "memory_restore"]


def test_memory_value_from_stdin(run: Any) -> None:
    run("memory", "add", "project:p1", "notes", "-", "--type", "procedural", input='{"steps": [1, 2]}\n')
    got = as_json(run("memory", "get", "project:p1", "notes", "--json"))
    assert got["value"] == {"steps": [1, 2]} and got["memory_type"] == "procedural"
    run("memory", "update", "project:p1", "notes", "-", input="[3]")
    assert as_json(run("memory", "get", "project:p1", "notes", "--json"))["value"] == [3]


def test_memory_list_segments_pages_and_type(run: Any) -> None:
    run("memory", "add", "user:alice", "a", "1")
    run("memory", "add", "user:alice:prefs", "b", "2", "--type", "episodic")
    run("memory", "add", "user:alicia", "c", "3")
    run("memory", "update", "user:alice", "a", "10")
    page = as_json(run("memory", "list", "user:alice", "--json"))
    assert [(i["namespace"], i["key"], i["value"]) for i in page["items"]] == [("user:alice", "a", 10),
                                                                               ("user:alice:prefs", "b", 2)]
    assert page["next_cursor"] is None
    assert as_json(run("memory", "list", "user:al", "--json"))["items"] == []
    first = as_json(run("memory", "list", "user", "--limit", "1", "--json"))
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = as_json(run("memory", "list", "user", "--limit", "1", "--cursor", first["next_cursor"], "--json"))
    assert second["items"][0]["key"] != first["items"][0]["key"]
    everything = as_json(run("memory", "list", "user", "--limit", "1", "--all", "--json"))
    assert len(everything["items"]) == 3
    typed = as_json(run("memory", "list", "user", "--type", "episodic", "--json"))
    assert [i["key"] for i in typed["items"]] == ["b"]
    assert "more: --cursor" in run("memory", "list", "user", "--limit", "1").output


def test_memory_cleanup(run: Any, db_path: Path) -> None:
    run("memory", "add", "session:s1", "obs", '"x"', "--type", "episodic")
    assert as_json(run("memory", "cleanup", "--ttl", "1h", "--json"))["deleted"] == 0
    conn = driver.connect(db_path)
    conn.execute("UPDATE memory_entries SET updated_at = '2020-01-01T00:00:00.000Z'")
    conn.close()
    assert as_json(run("memory", "cleanup", "--ttl", "7d", "--json")) == {"deleted": 1, "ttl_seconds": 604800.0}
    assert actions(db_path)[-1] == "memory_cleanup"


@pytest.mark.parametrize("args,needle", [
    (("memory", "add", "bogus:x", "k", "1"), "namespace"),
    (("memory", "add", "user::x", "k", "1"), "empty segment"),
    (("memory", "add", "user:x", "k", "{bad"), "not valid JSON"),
    (("memory", "add", "user:x", "k", "NaN"), "not valid JSON"),
    (("memory", "add", "user:x", "k", "1", "--type", "weird"), "memory_type"),
    (("memory", "add", "user:x", "k", "1", "--metadata", "[1]"), "JSON object"),
    (("memory", "add", "user:alice", "theme", "2"), "already exists"),
    (("memory", "update", "user:alice", "nope", "2"), "no memory"),
    (("memory", "update", "user:alice", "theme", "{"), "not valid JSON"),
    (("memory", "get", "user:alice", "theme", "--version", "9"), "no version 9"),
    (("memory", "get", "user:bob", "theme"), "no memory"),
    (("memory", "restore", "user:alice", "theme"), "not deleted"),
    (("memory", "rollback", "user:alice", "theme", "7"), "no version 7"),
    (("memory", "delete", "user:alice", "nope"), "no memory"),
    (("memory", "history", "user:alice", "nope"), "no memory"),
    (("memory", "list", "user:al:"), "empty segment"),
    (("memory", "list", "user", "--cursor", "garbage!"), "cursor"),
    (("memory", "cleanup", "--ttl", "soon"), "--ttl"),
])
def test_memory_errors_are_one_line_exit_1_and_change_nothing(run: Any, db_path: Path, args: tuple[str, ...],
                                                               needle: str) -> None:
    run("memory", "add", "user:alice", "theme", '"dark"')
    before = state(db_path)
    result = run(*args, ok=False)
    assert result.exit_code == 1, result.output
    assert needle in error_line(result)
    assert state(db_path) == before


def test_memory_error_on_missing_database_creates_no_file(run: Any, db_path: Path) -> None:
    result = run("memory", "get", "user:alice", "theme", ok=False)
    assert result.exit_code == 1 and "no database" in error_line(result)
    result = run("memory", "add", "bogus", "k", "1", ok=False)
    assert result.exit_code == 1
    assert not db_path.exists()


# --- session ---------------------------------------------------------------------------------------------

def test_session_round_trip(run: Any) -> None:
    sid = run("session", "create", "app", "alice", "--project", "p1", "--state", '{"a": 1, "temp:t": 2}').output.strip()
    assert len(sid) == 36
    shown = as_json(run("session", "show", sid, "--json"))
    assert shown["status"] == "created" and shown["state"] == {"a": 1} and shown["events"] == []
    event = as_json(run("session", "append", sid, '{"type": "msg", "text": "hi"}', "--state-delta",
                        '{"user:lang": "fr"}', "--json"))
    assert event["type"] == "msg" and event["id"] and event["timestamp"].endswith("Z")
    eid = run("session", "append", sid, "-", input='{"type": "tool"}').output.strip()
    st = as_json(run("session", "state", sid, '{"a": null, "temp:x": 1, "session:n": 2}', "--json"))
    assert st == {"user:lang": "fr", "session:n": 2}
    assert as_json(run("session", "state", sid, "--json")) == st
    for status in ("active", "paused", "active", "terminated", "archived"):
        out = as_json(run("session", "status", sid, status, "--json"))
        assert out["status"] == status
    assert out["terminated_at"] and out["archived_at"]
    shown = as_json(run("session", "show", sid, "--json"))
    assert [e["type"] for e in shown["events"]] == ["msg", "tool"] and shown["events"][1]["id"] == eid
    human = run("session", "show", sid).output
    assert "status archived" in human and "events 2" in human


def test_session_list(run: Any) -> None:
    ids = [run("session", "create", "app", user, "--id", f"s{i}").output.strip()
           for i, user in enumerate(["alice", "bob", "alice"])]
    run("session", "status", "s2", "active")
    page = as_json(run("session", "list", "--user", "alice", "--json"))
    assert [s["id"] for s in page["items"]] == ["s2", "s0"] and "events" not in page["items"][0]
    assert [s["id"] for s in as_json(run("session", "list", "--status", "active", "--json"))["items"]] == ["s2"]
    first = as_json(run("session", "list", "--limit", "2", "--json"))
    rest = as_json(run("session", "list", "--limit", "2", "--cursor", first["next_cursor"], "--json"))
    assert [s["id"] for s in first["items"] + rest["items"]] == ids[::-1] and rest["next_cursor"] is None
    assert len(as_json(run("session", "list", "--limit", "1", "--all", "--json"))["items"]) == 3
    assert "s1" in run("session", "list").output


@pytest.mark.parametrize("args,needle", [
    (("session", "show", "nope"), "no session"),
    (("session", "append", "nope", "{}"), "no session"),
    (("session", "state", "nope", '{"a": 1}'), "no session"),
    (("session", "status", "nope", "active"), "no session"),
    (("session", "append", "S", "[1, 2]"), "JSON object"),
    (("session", "append", "S", "{oops"), "not valid JSON"),
    (("session", "append", "S", "{}", "--state-delta", '{"bad:k": 1}'), "scope"),
    (("session", "state", "S", '{"bad:k": 1}'), "scope"),
    (("session", "state", "S", '"text"'), "JSON object"),
    (("session", "status", "S", "archived"), "from created to archived"),
    (("session", "status", "S", "paused"), "from created to paused"),
    (("session", "status", "S", "bogus"), "status must be one of"),
    (("session", "create", "app", "bob", "--id", "S"), "already exists"),
    (("session", "create", "app", "bob", "--state", "{x"), "not valid JSON"),
    (("session", "list", "--cursor", "%%%"), "cursor"),
    (("session", "list", "--status", "bogus"), "status must be one of"),
    (("session", "events", "nope"), "no session"),
    (("session", "events", "S", "--after", "-1"), "after must be"),
    (("session", "events", "S", "--limit", "0"), "limit must be"),
    (("session", "show", "S", "--events", "-2"), "--events must be"),
])
def test_session_errors_are_one_line_exit_1_and_change_nothing(run: Any, db_path: Path, args: tuple[str, ...],
                                                                needle: str) -> None:
    run("session", "create", "app", "alice", "--id", "S")
    before = state(db_path)
    result = run(*args, ok=False)
    assert result.exit_code == 1, result.output
    assert needle in error_line(result)
    assert state(db_path) == before


def test_closed_session_append_is_a_conflict(run: Any, db_path: Path) -> None:
    run("session", "create", "app", "alice", "--id", "S")
    run("session", "status", "S", "terminated")
    before = state(db_path)
    result = run("session", "append", "S", '{"type": "late"}', ok=False)
    assert result.exit_code == 1 and "terminated" in error_line(result)
    assert state(db_path) == before


def test_session_events_pages_and_show_tail(run: Any) -> None:
    sid = run("session", "create", "app", "alice").output.strip()
    ids = [run("session", "append", sid, json.dumps({"type": "msg", "n": n})).output.strip() for n in range(7)]
    first = as_json(run("session", "events", sid, "--limit", "3", "--json"))
    assert [i["seq"] for i in first["items"]] == [1, 2, 3] and first["next_after"] == 3 and first["event_count"] == 7
    assert [i["event"]["id"] for i in first["items"]] == ids[:3] and first["items"][0]["type"] == "msg"
    rest = as_json(run("session", "events", sid, "--after", "3", "--limit", "3", "--all", "--json"))
    assert [i["seq"] for i in rest["items"]] == [4, 5, 6, 7] and rest["next_after"] is None
    human = run("session", "events", sid, "--limit", "2").output.splitlines()
    assert human[0].startswith("1  ") and ids[0] in human[0] and human[-1] == "more: --after 2"
    assert "no events after 7" in run("session", "events", sid, "--after", "7").output
    shown = run("session", "show", sid, "--events", "2").output
    assert "events 7 (last 2):" in shown and ids[6] in shown and ids[5] in shown and ids[4] not in shown
    assert "events 7\n" in run("session", "show", sid, "--events", "0").output
