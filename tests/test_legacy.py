"""Adopting legacy (reference-implementation) databases in place."""

from __future__ import annotations

import difflib
import pprint
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from indexer.errors import MigrationError
from indexer.storage import driver, legacy, migrations
from indexer.storage.doctor import run_doctor
from indexer.storage.introspect import schema_snapshot
from legacy_fixtures import ODD_TIMESTAMPS, all_rows, build_legacy

TABLES = ("tasks", "agents", "state", "audit", "metrics", "checkpoints")
STAMPS = legacy.TIMESTAMP_COLUMNS


def expected_ts(value: Any) -> Any:
    """The oracle: canonical UTC with milliseconds; unparseable text unchanged."""
    if value is None:
        return None
    if value in ODD_TIMESTAMPS:
        return ODD_TIMESTAMPS[value]
    moment = datetime.fromisoformat(value).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def snapshot(path: Path) -> dict[str, Any]:
    conn = driver.connect(path)
    try:
        snap = schema_snapshot(conn)
    finally:
        conn.close()
    snap["master"] = [m for m in snap["master"] if m[1] != "sqlite_sequence"]
    return snap


def assert_same_schema(a: dict[str, Any], b: dict[str, Any]) -> None:
    if a != b:
        diff = "\n".join(difflib.unified_diff(pprint.pformat(a).splitlines(), pprint.pformat(b).splitlines(), lineterm=""))
        pytest.fail("schemas differ:\n" + diff[:6000])


def read_rows(path: Path, *, raw: bool = False) -> dict[str, list[dict[str, Any]]]:
    conn = driver.sqlite.connect(str(path)) if raw else driver.connect(path)
    try:
        return {t: all_rows(conn, t) for t in TABLES}
    finally:
        conn.close()


def file_state(path: Path) -> tuple[bytes, bool]:
    wal = Path(f"{path}-wal")
    return path.read_bytes(), wal.exists() and wal.stat().st_size > 0


@pytest.fixture
def fresh(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "fresh.db"
    migrations.migrate(path)
    return snapshot(path)


@pytest.mark.parametrize("variant", ["standard", "template_name"])
def test_adopted_schema_equals_fresh_and_rows_are_kept(tmp_path: Path, fresh: dict[str, Any], variant: str) -> None:
    path = tmp_path / "legacy.db"
    counts = build_legacy(path, variant=variant)
    before = read_rows(path, raw=True)
    report = migrations.migrate(path)
    assert report.kind == "legacy" and report.applied == [m.name for m in migrations.load_migrations()]
    assert report.legacy["rows"] == counts
    assert_same_schema(snapshot(path), fresh)
    after = read_rows(path)
    for table in TABLES:
        assert len(after[table]) == len(before[table]) == counts[table]
        for old, new in zip(before[table], after[table]):
            for column, value in old.items():
                if variant == "template_name" and table == "tasks" and column == "template_name":
                    assert new["prompt"] == value and new["agent_type"] == "general"
                    continue
                want = expected_ts(value) if column in STAMPS[table] else value
                assert new[column] == want, (table, column, value, new[column])
            if table in ("tasks", "agents", "checkpoints"):
                assert new["session_id"] is None
    if variant == "template_name":
        for old, new in zip(before["tasks"], after["tasks"]):
            backfill = old["completed_at"] or old["started_at"] or old["submitted_at"]
            assert new["last_updated_at"] == expected_ts(backfill)
            assert new["max_execution_timeout_seconds"] == 3600
    assert report.legacy["timestamps_unparseable_kept"] >= 1
    assert report.legacy["preexisting_fk_violations"] == {"agents": 1}


def test_backup_is_written_first_and_holds_the_original(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    before = read_rows(path, raw=True)
    report = migrations.migrate(path)
    assert report.backup is not None
    backup = Path(report.backup)
    assert backup.exists() and backup.parent == path.parent
    assert read_rows(backup, raw=True) == before
    conn = driver.sqlite.connect(str(backup))
    try:
        assert "schema_migrations" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def test_autoincrement_high_water_mark_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    raw = driver.sqlite.connect(str(path))
    seq = dict(raw.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    maxima = {t: raw.execute(f"SELECT max(id) FROM {t}").fetchone()[0] for t in ("state", "audit", "metrics")}
    raw.close()
    migrations.migrate(path)
    conn = driver.connect(path)
    try:
        for table in ("state", "audit", "metrics"):
            assert seq[table] > maxima[table]
            conn.execute("BEGIN")
            if table == "state":
                cur = conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) "
                                   "VALUES ('task-1', 'new-key', '1', 'x', 'x')")
            elif table == "audit":
                cur = conn.execute("INSERT INTO audit (timestamp, action_type) VALUES ('x', 'y')")
            else:
                cur = conn.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('x', 'm', 1)")
            assert cur.lastrowid == seq[table] + 1
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_dry_run_lists_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    path = tmp_path / "d" / "legacy.db"
    build_legacy(path)
    before = path.read_bytes()
    report = migrations.migrate(path, dry_run=True)
    assert report.kind == "legacy" and report.pending and not report.applied
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["legacy.db"]


@pytest.mark.parametrize("fail_on_table", [1, 4])
def test_failure_mid_adoption_leaves_the_file_exactly_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on_table: int
) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    before_bytes = path.read_bytes()
    before_rows = read_rows(path, raw=True)
    calls = {"n": 0}
    real = legacy._select_list

    def failing(table: str, source: list[str], target: list[str]) -> tuple[list[str], list[str]]:
        calls["n"] += 1
        if calls["n"] == fail_on_table:
            return ["no_such_column"], ["1"]  # makes the copy's INSERT fail inside the transaction
        return real(table, source, target)

    monkeypatch.setattr(legacy, "_select_list", failing)
    with pytest.raises(MigrationError, match="unchanged"):
        migrations.migrate(path, backup=False)
    assert path.read_bytes() == before_bytes
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    assert read_rows(path, raw=True) == before_rows
    monkeypatch.setattr(legacy, "_select_list", real)
    assert migrations.migrate(path, backup=False).applied  # and a later run succeeds


def test_unknown_legacy_column_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    raw = driver.sqlite.connect(str(path), isolation_level=None)
    raw.execute("ALTER TABLE metrics ADD COLUMN host TEXT")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(MigrationError, match="host"):
        migrations.migrate(path, backup=False)
    assert path.read_bytes() == before


def test_adoption_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    migrations.migrate(path)
    conn = driver.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = path.read_bytes()
    report = migrations.migrate(path)
    assert report.pending == [] and report.applied == [] and report.kind == "current"
    assert path.read_bytes() == before


def test_doctor_after_adoption(tmp_path: Path) -> None:
    with_orphans = tmp_path / "orphans.db"
    build_legacy(with_orphans)
    migrations.migrate(with_orphans)
    failed = [c.name for c in run_doctor(with_orphans) if not c.ok]
    assert failed == ["foreign_key_check"]  # the legacy orphans, reported, never dropped

    clean = tmp_path / "clean.db"
    build_legacy(clean, orphans=False)
    migrations.migrate(clean)
    assert [c.name for c in run_doctor(clean) if not c.ok] == []
