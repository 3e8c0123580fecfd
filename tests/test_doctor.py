"""``indexer doctor``: every check on a healthy database, failures on broken ones, no writes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from indexer.cli import cli
from indexer.storage.sqlite import driver, migrations
from indexer.storage.sqlite.doctor import EXPECTED_INDEXES, run_doctor


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def checks_by_name(path: Path) -> dict[str, bool]:
    return {c.name: c.ok for c in run_doctor(path)}


def test_healthy_database_passes_every_check(db_path: Path) -> None:
    migrations.migrate(db_path)
    checks = run_doctor(db_path)
    failed = [c for c in checks if not c.ok]
    assert failed == []
    names = {c.name for c in checks}
    for expected in ("pragma.journal_mode", "pragma.foreign_keys", "pragma.synchronous", "pragma.busy_timeout",
                     "pragma.wal_autocheckpoint", "integrity_check", "foreign_key_check", "tables",
                     "json_check.sessions.events", "json_check.session_events.payload",
                     "json_check.memory_entries.value", "plan.task_dequeue",
                     "plan.memory_prefix_listing", "plan.sessions_by_status", "plan.audit_by_memory_entry",
                     "plan.session_events_page", "index.idx_session_events_seq", "sessions.events_moved"):
        assert expected in names
    assert sum(n.startswith("index.idx_") for n in names) == len(EXPECTED_INDEXES) == 33  # 32 of 0001, 1 of 0004


def test_doctor_never_modifies_the_database(db_path: Path) -> None:
    migrations.migrate(db_path)
    conn = driver.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = fingerprint(db_path)
    run_doctor(db_path)
    assert fingerprint(db_path) == before
    conn = driver.connect(db_path)
    try:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM memory_entries").fetchone()[0] == 0
    finally:
        conn.close()


def break_database(path: Path) -> None:
    """Drop an index, plant a foreign-key violation, leave WAL mode."""
    conn = driver.connect(path)
    conn.execute("DROP INDEX idx_tasks_status_priority")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(
        "INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at) "
        "VALUES ('a1', 'n', 's', 'missing-task', 'idle', 'm', '2025-01-01T00:00:00.000Z')"
    )
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()


def test_broken_database_fails_the_right_checks(db_path: Path) -> None:
    migrations.migrate(db_path)
    break_database(db_path)
    before = fingerprint(db_path)
    result = checks_by_name(db_path)
    assert result["index.idx_tasks_status_priority"] is False
    assert result["plan.task_dequeue"] is False  # the dequeue now SCANs
    assert result["foreign_key_check"] is False
    assert result["pragma.journal_mode"] is False
    assert result["integrity_check"] is True
    assert result["index.idx_sessions_pk"] is True
    assert fingerprint(db_path) == before  # still never writes, even out of WAL mode


def test_events_written_to_the_old_column_are_reported(db_path: Path) -> None:
    """Code made for the report's schema appends to sessions.events, which this indexer no
    longer reads (its events are rows of session_events): doctor says so."""
    migrations.migrate(db_path)
    conn = driver.connect(db_path)
    conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('new', 'a', 'u')")
    conn.close()
    assert checks_by_name(db_path)["sessions.events_moved"] is True
    conn = driver.connect(db_path)
    conn.execute("""INSERT INTO sessions (id, app_name, user_id, events) VALUES ('old-code', 'a', 'u', '[{"type": "x"}]')""")
    conn.close()
    found = {c.name: c for c in run_doctor(db_path)}["sessions.events_moved"]
    assert found.ok is False and found.observed.startswith("1 sessions")


def test_cli_exit_codes_and_json(db_path: Path) -> None:
    runner = CliRunner()
    migrations.migrate(db_path)
    ok = runner.invoke(cli, ["--db", str(db_path), "doctor", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["ok"] is True and report["failed"] == 0
    assert all({"name", "ok", "observed", "expected"} <= set(c) for c in report["checks"])
    break_database(db_path)
    bad = runner.invoke(cli, ["--db", str(db_path), "doctor"])
    assert bad.exit_code == 1
    assert "FAIL  foreign_key_check" in bad.output
    assert "failed" in bad.output.splitlines()[-1]


def test_doctor_on_missing_file_fails_without_creating_it(tmp_path: Path) -> None:
    target = tmp_path / "absent.db"
    result = CliRunner().invoke(cli, ["--db", str(target), "doctor"])
    assert result.exit_code == 1
    assert "no database" in result.output
    assert not target.exists()


def test_doctor_on_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    target = tmp_path / "junk.db"
    target.write_bytes(b"this is not a database" * 100)
    result = CliRunner().invoke(cli, ["--db", str(target), "doctor"])
    assert result.exit_code == 1
    assert "error:" in result.output
    assert target.read_bytes() == b"this is not a database" * 100
