"""Adopting legacy (reference-implementation) databases in place (schema.md §1, §3.2, §3.5).

The oracle for every row is the legacy file itself, read before the migration, plus the rules
of schema.md: timestamps become ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC (unparseable text kept
verbatim), template_name becomes prompt with agent_type 'general', last_updated_at is
back-filled from COALESCE(completed_at, started_at, submitted_at), and a missing
max_execution_timeout_seconds is 3600.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from indexer.errors import MigrationError
from indexer.storage.sqlite import driver, legacy, migrations
from indexer.storage.sqlite.doctor import run_doctor
from indexer.storage.sqlite.introspect import schema_snapshot
from legacy_fixtures import (
    AUTOINCREMENT_TABLES,
    FK_ORPHANS,
    LEGACY_INDEXES,
    LEGACY_TABLES,
    MEMORY_TABLES,
    NEEDS_LAST_UPDATED_AT,
    ODD_TIMESTAMPS,
    ORPHAN_ROWS,
    assert_equal,
    assert_no_pending_content,
    build_legacy,
    build_reference_milestone,
    disk_state,
    opened,
    read_database,
)

VARIANTS = ("standard", "template_name")
CANONICAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ISO_UTC_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")  # what iso() writes
SQL_CURRENT_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")  # the reference's DEFAULT CURRENT_TIMESTAMP
NEW_COLUMNS = {  # schema.md §2: added to the legacy tables, empty in adopted rows
    "tasks": ("session_id",), "agents": ("session_id",), "checkpoints": ("session_id",),
    "audit": ("memory_operation_type", "memory_namespace", "memory_entry_id"),
}


# --- the oracle ----------------------------------------------------------------------------------

def expected_ts(value: Any) -> Any:
    if value is None:
        return None
    if value in ODD_TIMESTAMPS:
        return ODD_TIMESTAMPS[value]
    if SQL_CURRENT_TIMESTAMP.match(value):
        return value.replace(" ", "T") + ".000Z"
    assert ISO_UTC_US.match(value), f"the fixture wrote an unexpected form: {value!r}"
    return value[:23] + "Z"  # UTC already: keep the date and time, milliseconds, Z


def coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def timestamp_columns(path: Path) -> dict[str, list[str]]:
    """The columns the legacy file declares TIMESTAMP, read from the file itself."""
    conn = driver.sqlite.connect(str(path))
    try:
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})") if r[2] == "TIMESTAMP"]
                for t in LEGACY_TABLES + MEMORY_TABLES}
    finally:
        conn.close()


def expected_adoption(before: dict[str, Any], stamps: dict[str, list[str]], variant: str) -> tuple[dict, dict]:
    """The rows an adopted file must hold, and the timestamp counts its report must give."""
    rows: dict[str, dict] = {}
    counts = {"converted_other_formats": 0, "unparseable": 0}
    for table, table_rows in before["rows"].items():
        rows[table] = {}
        for key, old in table_rows.items():
            new = dict(old)
            sources = {column: old[column] for column in stamps[table]}
            if table == "tasks" and variant == "template_name":
                new["prompt"] = new.pop("template_name")
                new["agent_type"] = "general"
                new["max_execution_timeout_seconds"] = 3600
                sources["last_updated_at"] = coalesce(old["completed_at"], old["started_at"], old["submitted_at"])
            for column, value in sources.items():
                new[column] = expected_ts(value)
                if value is not None:
                    counts["converted_other_formats"] += new[column] != value and not ISO_UTC_US.match(value)
                    counts["unparseable"] += not CANONICAL.match(new[column])
            for column in NEW_COLUMNS.get(table, ()):
                new.setdefault(column, None)  # kept where a reference file already had it
            rows[table][key] = new
    for table in MEMORY_TABLES:
        rows.setdefault(table, {})  # created empty where the legacy file did not have them
    rows["session_events"] = expected_events(rows["sessions"])
    return rows, counts


def event_time(event: Any, fallback: str) -> str:
    """0004's created_at of a back-filled event: its "timestamp" text read as a time (in UTC,
    to the millisecond), else the session's created_at."""
    stamp = event.get("timestamp") if isinstance(event, dict) else None
    if not isinstance(stamp, str):
        return fallback
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return fallback
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def expected_events(sessions: dict[tuple[Any, ...], dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Migration 0004 on adopted sessions: each element of an events array becomes a row of
    session_events (seq = position + 1; payload decoded here), and the column holds '[]'."""
    events: dict[tuple[Any, ...], dict[str, Any]] = {}
    for (session_id,), row in sessions.items():
        array = json.loads(row["events"])
        if not isinstance(array, list):
            continue
        row["events"] = "[]"
        for seq, event in enumerate(array, 1):
            kind = event.get("type") if isinstance(event, dict) else None
            events[(session_id, seq)] = {
                "session_id": session_id, "seq": seq, "created_at": event_time(event, row["created_at"]),
                "type": kind if isinstance(kind, str) else None, "payload": event}
    return events


# --- helpers -------------------------------------------------------------------------------------

def schema_of(path: Path) -> dict[str, Any]:
    """Everything that makes up a schema: sqlite_master text as stored, the normalised
    snapshot (columns, FKs, index details) and the header PRAGMAs."""
    with opened(path) as conn:
        return {
            "sqlite_master": [tuple(r) for r in conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")],
            "snapshot": schema_snapshot(conn),
            "pragmas": {p: conn.execute(f"PRAGMA {p}").fetchone()[0]
                        for p in ("journal_mode", "user_version", "application_id", "auto_vacuum", "encoding")},
        }


def fk_violations(conn: Any) -> dict[str, int]:
    """PRAGMA foreign_key_check, as the number of offending rows per table."""
    found: dict[str, int] = {}
    for row in conn.execute("PRAGMA foreign_key_check"):
        found[row[0]] = found.get(row[0], 0) + 1
    return found


def adopted_rows(path: Path) -> dict[str, Any]:
    rows = read_database(path)["rows"]
    for row in rows["session_events"].values():
        row["payload"] = json.loads(row["payload"])  # compared as JSON values, not as text
    return rows


def others_in(directory: Path, name: str) -> list[Path]:
    """Files beside the database ``name`` other than itself and its own -wal/-shm/-journal."""
    own = {name, f"{name}-wal", f"{name}-shm", f"{name}-journal"}
    return sorted(p for p in directory.iterdir() if p.name not in own)


@pytest.fixture(scope="module")
def fresh_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("fresh") / "fresh.db"
    migrations.migrate(path)
    return schema_of(path)


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    """A directory of its own, so that tests can see every file a migration leaves."""
    directory = tmp_path / "db"
    directory.mkdir()
    return directory


@pytest.fixture
def legacy_db(db_dir: Path) -> Path:
    path = db_dir / "legacy.db"
    build_legacy(path)
    return path


# --- the fixture is what schema.md §1 describes ------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_the_fixture_is_a_legacy_database(tmp_path: Path, variant: str) -> None:
    path = tmp_path / "legacy.db"
    counts = build_legacy(path, variant=variant)
    content = read_database(path)
    tables = {name for kind, name, _, _ in content["master"] if kind == "table"}
    indexes = {name for kind, name, _, sql in content["master"] if kind == "index" and sql}
    assert tables == set(LEGACY_TABLES) | {"sqlite_sequence"}
    assert indexes == set(LEGACY_INDEXES) - (NEEDS_LAST_UPDATED_AT if variant == "template_name" else set())
    assert content["pragmas"] == {"journal_mode": "delete", "user_version": 0, "application_id": 0,
                                  "integrity_check": "ok"}
    assert all(counts[t] > 0 for t in LEGACY_TABLES)
    conn = driver.sqlite.connect(str(path))
    try:
        for table in LEGACY_TABLES:
            for _, column, _, notnull, _, pk in conn.execute(f"PRAGMA table_info({table})").fetchall():
                nulls, values = conn.execute(f"SELECT count(*) - count({column}), count({column}) FROM {table}").fetchone()
                assert values > 0 and (nulls > 0 or notnull or pk), f"{table}.{column} needs NULLs and values"
        stamps = {v for t, cols in timestamp_columns(path).items() for c in cols
                  for (v,) in conn.execute(f"SELECT {c} FROM {t}")}
        assert set(ODD_TIMESTAMPS) <= stamps
        assert conn.execute("SELECT count(*) FROM tasks WHERE prompt LIKE '%🙂%'" if variant == "standard"
                            else "SELECT count(*) FROM tasks WHERE template_name LIKE '%ñ%'").fetchone()[0] > 0
        assert fk_violations(conn) == ORPHAN_ROWS  # under the legacy foreign keys
        for table in AUTOINCREMENT_TABLES:
            seq, top, n = conn.execute(f"SELECT (SELECT seq FROM sqlite_sequence WHERE name = '{table}'), "
                                       f"max(id), count(*) FROM {table}").fetchone()
            assert seq > top > n, f"{table}: gaps in the middle and at the end"
    finally:
        conn.close()


# --- adoption ------------------------------------------------------------------------------------

@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_adoption_gives_the_fresh_schema_and_keeps_every_row(
    tmp_path: Path, fresh_schema: dict[str, Any], variant: str, journal_mode: str
) -> None:
    path = tmp_path / "legacy.db"
    counts = build_legacy(path, variant=variant, journal_mode=journal_mode)
    before = read_database(path)
    want_rows, want_counts = expected_adoption(before, timestamp_columns(path), variant)

    report = migrations.migrate(path)

    assert (report.kind, report.applied) == ("legacy", [m.name for m in migrations.load_migrations()])
    assert_equal(schema_of(path), fresh_schema, "schema (adopted vs fresh)")
    assert_equal(adopted_rows(path), want_rows, "rows")
    info = report.legacy
    assert info["variant"] == variant and info["rows"] == counts
    assert info["timestamps_unparseable_kept"] == want_counts["unparseable"] > 0
    assert info["timestamps_converted_other_formats"] == want_counts["converted_other_formats"] > 0
    assert info["preexisting_fk_violations"] == FK_ORPHANS
    with opened(path) as conn:
        assert fk_violations(conn) == FK_ORPHANS  # the orphans are kept, not dropped


@pytest.mark.parametrize("interrupted", [False, True], ids=["complete", "interrupted"])
def test_a_reference_file_from_after_the_memory_milestone_is_adopted(
    tmp_path: Path, fresh_schema: dict[str, Any], interrupted: bool
) -> None:
    """schema.md §3.1/§3.2: the reference's ALTER TABLE migration left session_id without its
    foreign key (and an interrupted run left columns missing); adoption ends equal to fresh."""
    path = tmp_path / "reference.db"
    counts = build_reference_milestone(path, interrupted=interrupted)
    before = read_database(path)
    want_rows, want_counts = expected_adoption(before, timestamp_columns(path), "standard")
    report = migrations.migrate(path, backup=False)
    assert report.kind == "legacy" and report.legacy["rows"] == counts
    assert_equal(schema_of(path), fresh_schema, "schema (adopted vs fresh)")
    assert_equal(adopted_rows(path), want_rows, "rows")
    assert report.legacy["timestamps_unparseable_kept"] == want_counts["unparseable"]
    assert report.legacy["preexisting_fk_violations"] == FK_ORPHANS
    with opened(path) as conn:  # the session links now have their foreign key
        linked = conn.execute("SELECT count(*) FROM tasks WHERE session_id = 'session-1'").fetchone()[0]
        assert linked > 0
        conn.execute("DELETE FROM sessions WHERE id = 'session-1'")
        assert conn.execute("SELECT count(*) FROM tasks WHERE session_id IS NOT NULL").fetchone()[0] == 0


@pytest.mark.parametrize("emptied", [None, "metrics"])
def test_the_autoincrement_high_water_mark_is_kept(legacy_db: Path, emptied: str | None) -> None:
    if emptied:  # a table whose rows were all deleted still has its high-water mark
        raw = driver.sqlite.connect(str(legacy_db), isolation_level=None)
        raw.execute(f"DELETE FROM {emptied}")
        raw.close()
    legacy_seq = dict(read_database(legacy_db)["sqlite_sequence"])
    migrations.migrate(legacy_db)
    new_rows = {
        "state": "INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES ('task-1', 'new', '1', 'x', 'x')",
        "audit": "INSERT INTO audit (timestamp, action_type) VALUES ('x', 'y')",
        "metrics": "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('x', 'm', 1)",
    }
    with opened(legacy_db) as conn:
        for table in AUTOINCREMENT_TABLES:
            assert conn.execute(new_rows[table]).lastrowid == legacy_seq[table] + 1, table


def test_the_backup_is_written_before_the_file_is_touched_and_holds_the_original(
    legacy_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original_bytes, original = legacy_db.read_bytes(), read_database(legacy_db)
    seen: dict[str, Any] = {}
    real_adopt = legacy.adopt

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen["others"] = others_in(legacy_db.parent, legacy_db.name)
        seen["untouched"] = legacy_db.read_bytes() == original_bytes
        return real_adopt(*args, **kwargs)

    monkeypatch.setattr(legacy, "adopt", spy)
    report = migrations.migrate(legacy_db)
    backup = Path(report.backup)
    assert seen == {"others": [backup], "untouched": True}
    assert backup.parent == legacy_db.parent and backup.name.startswith(legacy_db.name)
    assert_equal(read_database(backup), original, "backup content")
    assert others_in(legacy_db.parent, legacy_db.name) == [backup]  # and no sidecar of it left


def test_no_backup_when_disabled(legacy_db: Path) -> None:
    assert migrations.migrate(legacy_db, backup=False).backup is None
    assert others_in(legacy_db.parent, legacy_db.name) == []


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_dry_run_lists_pending_and_writes_nothing(db_dir: Path, journal_mode: str) -> None:
    path = db_dir / "legacy.db"
    build_legacy(path, journal_mode=journal_mode)
    before = disk_state(path)
    report = migrations.migrate(path, dry_run=True)
    assert (report.kind, report.pending, report.applied, report.backup) == (
        "legacy", [m.name for m in migrations.load_migrations()], [], None)
    assert disk_state(path) == before
    assert others_in(db_dir, path.name) == []


def test_adoption_is_idempotent(legacy_db: Path) -> None:
    migrations.migrate(legacy_db, backup=False)
    before, rows = disk_state(legacy_db), adopted_rows(legacy_db)
    report = migrations.migrate(legacy_db)
    assert (report.kind, report.pending, report.applied, report.backup) == ("current", [], [], None)
    assert disk_state(legacy_db) == before
    assert adopted_rows(legacy_db) == rows


# --- failures leave the file exactly as it was ---------------------------------------------------

def fail_on_nth_table(n: int, how: str):
    """A wrapper of legacy._select_list that breaks the copy of the n-th table: either by
    raising an SQLite error, or by handing the INSERT … SELECT a column that does not exist."""
    real = legacy._select_list
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            if how == "raise":
                raise driver.OperationalError("disk I/O error (injected)")
            return ["no_such_column"], ["1"]
        return real(*args, **kwargs)

    return wrapper


INJECTIONS = ["raise-on-1st-table", "raise-on-4th-table", "raise-on-6th-table", "bad-copy-of-4th-table",
              "broken-later-migration"]


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
@pytest.mark.parametrize("injection", INJECTIONS)
def test_a_failure_mid_adoption_leaves_the_file_as_it_was(
    db_dir: Path, monkeypatch: pytest.MonkeyPatch, injection: str, journal_mode: str
) -> None:
    path = db_dir / "legacy.db"
    build_legacy(path, journal_mode=journal_mode)
    before_disk, before = disk_state(path), read_database(path)
    todo = None
    if injection == "broken-later-migration":
        first = migrations.load_migrations()[0]
        todo = [first, migrations.Migration("0002_broken", "CREATE TABLE half_done (x);\nINSERT INTO nowhere VALUES (1);\n")]
    else:
        how, nth = ("raise" if injection.startswith("raise") else "bad-copy"), int(re.search(r"(\d)", injection)[1])
        monkeypatch.setattr(legacy, "_select_list", fail_on_nth_table(nth, how))

    with pytest.raises(MigrationError, match="unchanged"):
        migrations.migrate(path, backup=False, migrations=todo)

    assert path.read_bytes() == before_disk["bytes"]
    assert_no_pending_content(path)
    assert others_in(db_dir, path.name) == []
    assert_equal(read_database(path), before, "content after the failed adoption")  # incl. journal_mode
    monkeypatch.undo()
    assert migrations.migrate(path, backup=False).applied  # and a later run succeeds


def test_an_unknown_legacy_column_is_refused_and_nothing_changes(legacy_db: Path) -> None:
    raw = driver.sqlite.connect(str(legacy_db), isolation_level=None)
    raw.execute("ALTER TABLE metrics ADD COLUMN host TEXT")
    raw.close()
    before = disk_state(legacy_db)
    with pytest.raises(MigrationError, match="host"):
        migrations.migrate(legacy_db, backup=False)
    assert legacy_db.read_bytes() == before["bytes"]
    assert_no_pending_content(legacy_db)


def test_a_committed_adoption_is_not_reported_as_failed_when_the_switch_to_wal_is_blocked(
    legacy_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process taking the write lock between the adoption's COMMIT and its switch to
    WAL makes the switch fail at once; the adoption is committed and must be reported so."""
    others: list[Any] = []
    real_connect = driver.connect

    class Adopter:
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if re.fullmatch(r"PRAGMA journal_mode\s*=\s*WAL", sql.strip(), re.IGNORECASE):
                other = driver.sqlite.connect(str(legacy_db), isolation_level=None)
                other.execute("BEGIN IMMEDIATE")
                others.append(other)
            return self._conn.execute(sql, *args)

    monkeypatch.setattr(driver, "connect", lambda p, **kw: Adopter(real_connect(p, **kw)) if kw.get("defer_wal")
                        else real_connect(p, **kw))
    try:
        report = migrations.migrate(legacy_db, backup=False)
    finally:
        for other in others:
            other.execute("ROLLBACK")
            other.close()
    monkeypatch.undo()
    assert others, "the adoption never switched to WAL"
    assert report.applied == [m.name for m in migrations.load_migrations()]
    assert migrations.read_state(legacy_db).kind == "current"
    with opened(legacy_db) as conn:  # the next connection switches
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- doctor --------------------------------------------------------------------------------------

def test_doctor_after_adoption_reports_only_the_orphans(tmp_path: Path) -> None:
    with_orphans, clean = tmp_path / "orphans.db", tmp_path / "clean.db"
    build_legacy(with_orphans)
    build_legacy(clean, orphans=False)
    for path in (with_orphans, clean):
        migrations.migrate(path, backup=False)
    failed = [c for c in run_doctor(with_orphans) if not c.ok]
    assert [(c.name, c.observed) for c in failed] == [("foreign_key_check", sum(FK_ORPHANS.values()))]
    assert [c.name for c in run_doctor(clean) if not c.ok] == []
