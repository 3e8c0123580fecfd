"""The migration runner on new files: the schema of schema.md §2, the records, the refusals,
atomicity, FK enforcement and sqlite-vec on every connection, concurrency, packaging.

The expected schema below is transcribed from milestone-1-report.md and schema.md (with the
deliberate deviations of schema.md §3: RFC 3339 defaults, audit.task_id nullable without FK);
it is the independent oracle, nothing here is read back from the implementation.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from indexer.errors import MigrationError, SchemaError
from indexer.storage.sqlite import driver, migrations
from legacy_fixtures import assert_equal, disk_state, opened

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "schema"
REPORT_TABLES = {"sessions", "memory_entries", "document_index", "tasks", "agents", "state", "audit", "metrics",
                 "checkpoints"}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"  # schema.md §3.5: every timestamp default

# name, declared type, NOT NULL, default, position in the primary key
COLUMNS: dict[str, list[tuple[str, str, int, str | None, int]]] = {
    "sessions": [
        ("id", "TEXT", 0, None, 1), ("app_name", "TEXT", 1, None, 0), ("user_id", "TEXT", 1, None, 0),
        ("project_id", "TEXT", 0, None, 0), ("status", "TEXT", 1, "'created'", 0), ("events", "TEXT", 1, "'[]'", 0),
        ("state", "TEXT", 1, "'{}'", 0), ("metadata", "TEXT", 0, "'{}'", 0), ("created_at", "TIMESTAMP", 1, NOW, 0),
        ("last_update_time", "TIMESTAMP", 1, NOW, 0), ("terminated_at", "TIMESTAMP", 0, None, 0),
        ("archived_at", "TIMESTAMP", 0, None, 0),
    ],
    "memory_entries": [
        ("id", "INTEGER", 0, None, 1), ("namespace", "TEXT", 1, None, 0), ("key", "TEXT", 1, None, 0),
        ("value", "TEXT", 1, None, 0), ("memory_type", "TEXT", 1, None, 0), ("version", "INTEGER", 1, "1", 0),
        ("is_deleted", "BOOLEAN", 1, "0", 0), ("metadata", "TEXT", 0, "'{}'", 0), ("created_by", "TEXT", 0, None, 0),
        ("updated_by", "TEXT", 0, None, 0), ("created_at", "TIMESTAMP", 1, NOW, 0),
        ("updated_at", "TIMESTAMP", 1, NOW, 0),
    ],
    "document_index": [
        ("id", "INTEGER", 0, None, 1), ("file_path", "TEXT", 1, None, 0), ("title", "TEXT", 1, None, 0),
        ("document_type", "TEXT", 0, None, 0), ("content_hash", "TEXT", 1, None, 0),
        ("chunk_count", "INTEGER", 0, "1", 0), ("embedding_model", "TEXT", 0, None, 0),
        ("embedding_blob", "BLOB", 0, None, 0), ("metadata", "TEXT", 0, "'{}'", 0),
        ("last_synced_at", "TIMESTAMP", 0, None, 0), ("sync_status", "TEXT", 0, "'pending'", 0),
        ("created_at", "TIMESTAMP", 1, NOW, 0), ("updated_at", "TIMESTAMP", 1, NOW, 0),
    ],
    "tasks": [
        ("id", "TEXT", 0, None, 1), ("prompt", "TEXT", 1, None, 0), ("agent_type", "TEXT", 1, "'general'", 0),
        ("priority", "INTEGER", 1, "5", 0), ("status", "TEXT", 1, None, 0), ("input_data", "TEXT", 1, None, 0),
        ("result_data", "TEXT", 0, None, 0), ("error_message", "TEXT", 0, None, 0),
        ("retry_count", "INTEGER", 0, "0", 0), ("max_retries", "INTEGER", 0, "3", 0),
        ("max_execution_timeout_seconds", "INTEGER", 0, "3600", 0), ("submitted_at", "TIMESTAMP", 1, None, 0),
        ("started_at", "TIMESTAMP", 0, None, 0), ("completed_at", "TIMESTAMP", 0, None, 0),
        ("last_updated_at", "TIMESTAMP", 1, None, 0), ("created_by", "TEXT", 0, None, 0),
        ("parent_task_id", "TEXT", 0, None, 0), ("dependencies", "TEXT", 0, None, 0),
        ("session_id", "TEXT", 0, None, 0),
    ],
    "agents": [
        ("id", "TEXT", 0, None, 1), ("name", "TEXT", 1, None, 0), ("specialization", "TEXT", 1, None, 0),
        ("task_id", "TEXT", 1, None, 0), ("state", "TEXT", 1, None, 0), ("model", "TEXT", 1, None, 0),
        ("spawned_at", "TIMESTAMP", 1, None, 0), ("terminated_at", "TIMESTAMP", 0, None, 0),
        ("resource_usage", "TEXT", 0, None, 0), ("session_id", "TEXT", 0, None, 0),
    ],
    "state": [
        ("id", "INTEGER", 0, None, 1), ("task_id", "TEXT", 1, None, 0), ("key", "TEXT", 1, None, 0),
        ("value", "TEXT", 1, None, 0), ("created_at", "TIMESTAMP", 1, None, 0), ("updated_at", "TIMESTAMP", 1, None, 0),
    ],
    "audit": [
        ("id", "INTEGER", 0, None, 1), ("timestamp", "TIMESTAMP", 1, None, 0), ("agent_id", "TEXT", 0, None, 0),
        ("task_id", "TEXT", 0, None, 0),  # nullable: schema.md §3.4
        ("action_type", "TEXT", 1, None, 0), ("action_data", "TEXT", 0, None, 0), ("result", "TEXT", 0, None, 0),
        ("memory_operation_type", "TEXT", 0, None, 0), ("memory_namespace", "TEXT", 0, None, 0),
        ("memory_entry_id", "INTEGER", 0, None, 0),
    ],
    "metrics": [
        ("id", "INTEGER", 0, None, 1), ("timestamp", "TIMESTAMP", 1, None, 0), ("metric_name", "TEXT", 1, None, 0),
        ("metric_value", "REAL", 1, None, 0), ("labels", "TEXT", 0, None, 0),
    ],
    "checkpoints": [
        ("task_id", "TEXT", 1, None, 1), ("iteration", "INTEGER", 1, None, 2), ("state", "TEXT", 1, None, 0),
        ("created_at", "TIMESTAMP", 1, None, 0), ("session_id", "TEXT", 0, None, 0),
    ],
}
AUTOINCREMENT = {"memory_entries", "document_index", "state", "audit", "metrics"}
# UNIQUE constraints and non-rowid primary keys: (origin, columns)
UNIQUE_KEYS = {
    "sessions": {("pk", ("id",))}, "tasks": {("pk", ("id",))}, "agents": {("pk", ("id",))},
    "checkpoints": {("pk", ("task_id", "iteration"))},
    "memory_entries": {("u", ("namespace", "key", "version"))}, "document_index": {("u", ("file_path",))},
    "state": {("u", ("task_id", "key"))}, "audit": set(), "metrics": set(),
}
# from column, parent table, parent column, ON DELETE
FOREIGN_KEYS = {
    "sessions": set(), "memory_entries": set(), "document_index": set(), "metrics": set(),
    "tasks": {("parent_task_id", "tasks", "id", "NO ACTION"), ("session_id", "sessions", "id", "SET NULL")},
    "agents": {("task_id", "tasks", "id", "NO ACTION"), ("session_id", "sessions", "id", "SET NULL")},
    "state": {("task_id", "tasks", "id", "NO ACTION")},
    "audit": {("agent_id", "agents", "id", "NO ACTION"), ("memory_entry_id", "memory_entries", "id", "SET NULL")},
    "checkpoints": {("task_id", "tasks", "id", "NO ACTION"), ("session_id", "sessions", "id", "SET NULL")},
}

# schema.md §2, transcribed: name -> (table, columns, partial WHERE); "UNIQUE (x)" is a unique index
SCHEMA_MD_INDEXES = {
    "idx_sessions_pk": ("sessions", "UNIQUE (id)", None),
    "idx_sessions_status_updated": ("sessions", "status, last_update_time DESC", "status IN ('active','paused')"),
    "idx_sessions_user_created": ("sessions", "user_id, created_at DESC", None),
    "idx_sessions_project": ("sessions", "project_id, created_at DESC", "project_id IS NOT NULL"),
    "idx_memory_entries_pk": ("memory_entries", "UNIQUE (id)", None),
    "idx_memory_namespace_key_version": ("memory_entries", "namespace, key, is_deleted, version DESC", None),
    "idx_memory_type_updated": ("memory_entries", "memory_type, updated_at DESC", "is_deleted = 0"),
    "idx_memory_namespace_prefix": ("memory_entries", "namespace, updated_at DESC", "is_deleted = 0"),
    "idx_memory_episodic_ttl": ("memory_entries", "memory_type, updated_at", "memory_type = 'episodic' AND is_deleted = 0"),
    "idx_memory_created_by": ("memory_entries", "created_by, created_at DESC", None),
    "idx_document_index_pk": ("document_index", "UNIQUE (id)", None),
    "idx_document_file_path": ("document_index", "UNIQUE (file_path)", None),
    "idx_document_type_created": ("document_index", "document_type, created_at DESC", "document_type IS NOT NULL"),
    "idx_document_sync_status": ("document_index", "sync_status, last_synced_at", "sync_status IN ('pending','stale')"),
    "idx_document_content_hash": ("document_index", "content_hash", None),
    "idx_tasks_status_priority": ("tasks", "status, priority DESC, submitted_at ASC", None),
    "idx_tasks_submitted_at": ("tasks", "submitted_at", None),
    "idx_tasks_parent": ("tasks", "parent_task_id", None),
    "idx_tasks_running_timeout": ("tasks", "status, last_updated_at", "status = 'running'"),
    "idx_tasks_session": ("tasks", "session_id, submitted_at DESC", "session_id IS NOT NULL"),
    "idx_agents_task": ("agents", "task_id", None),
    "idx_agents_state": ("agents", "state", None),
    "idx_agents_session": ("agents", "session_id, spawned_at DESC", "session_id IS NOT NULL"),
    "idx_audit_task": ("audit", "task_id, timestamp DESC", None),
    "idx_audit_agent": ("audit", "agent_id, timestamp DESC", None),
    "idx_audit_timestamp": ("audit", "timestamp DESC", None),
    "idx_audit_memory_operations": ("audit", "memory_operation_type, timestamp DESC", "memory_operation_type IS NOT NULL"),
    "idx_audit_memory_namespace": ("audit", "memory_namespace, timestamp DESC", "memory_namespace IS NOT NULL"),
    "idx_audit_memory_entry": ("audit", "memory_entry_id, timestamp DESC", "memory_entry_id IS NOT NULL"),
    "idx_state_task_key": ("state", "task_id, key", None),
    "idx_metrics_name_timestamp": ("metrics", "metric_name, timestamp DESC", None),
    "idx_checkpoints_task": ("checkpoints", "task_id, iteration DESC", None),
}


# --- helpers -----------------------------------------------------------------------------------

def squash(sql: str | None) -> str | None:
    """SQL text without any whitespace and without one pair of enclosing parentheses."""
    if sql is None:
        return None
    text = re.sub(r"\s+", "", sql)
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text


def shipped_files() -> list[Path]:
    return sorted(SCHEMA_DIR.glob("*.sql"))


def migrations_dir(tmp_path: Path, *files: Path | tuple[str, str]) -> Path:
    """A directory of migration files: copies of shipped ones, or (name, sql) pairs."""
    target = tmp_path / "migrations"
    target.mkdir(exist_ok=True)
    for item in files:
        if isinstance(item, Path):
            shutil.copy(item, target / item.name)
        else:
            (target / f"{item[0]}.sql").write_text(item[1], encoding="utf-8")
    return target


def table_names(conn: Any) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def explicit_indexes(conn: Any) -> dict[str, tuple[str, str, str | None]]:
    """name -> (table, "[UNIQUE (]columns[)]" with DESC marks, squashed partial WHERE)."""
    result = {}
    for name, table, sql in conn.execute("SELECT name, tbl_name, sql FROM sqlite_master "
                                         "WHERE type='index' AND sql IS NOT NULL").fetchall():
        cols = ", ".join(r[2] + (" DESC" if r[3] else "") for r in conn.execute(f"PRAGMA index_xinfo('{name}')") if r[5])
        unique, partial = conn.execute('SELECT "unique", partial FROM pragma_index_list(?) WHERE name = ?',
                                       (table, name)).fetchone()
        where = re.search(r"\bWHERE\b(.*)$", sql, re.IGNORECASE | re.DOTALL)
        assert bool(partial) == bool(where), name
        result[name] = (table, f"UNIQUE ({cols})" if unique else cols, squash(where.group(1)) if where else None)
    return result


def insert(conn: Any, table: str, row: dict[str, Any]) -> Any:
    sql = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
    return conn.execute(sql, tuple(row.values()))


@pytest.fixture
def conn(db_path: Path):
    migrations.migrate(db_path)
    c = driver.connect(db_path)
    yield c
    c.close()


# --- tables, columns, constraints ----------------------------------------------------------------

def test_0001_creates_exactly_the_report_tables(db_path: Path) -> None:
    migrations.migrate(db_path, migrations=migrations.load_migrations()[:1])
    with opened(db_path) as c:
        assert table_names(c) == REPORT_TABLES | {"schema_migrations", "sqlite_sequence"}


def test_later_migrations_add_only_the_tables_their_files_declare(conn) -> None:
    declared = set()
    for migration in migrations.load_migrations()[1:]:
        declared |= set(re.findall(r"CREATE\s+(?:VIRTUAL\s+)?TABLE\s+(\w+)", migration.sql, re.IGNORECASE))
    extra = table_names(conn) - REPORT_TABLES - {"schema_migrations", "sqlite_sequence"}
    assert {t for t in extra if not any(t.startswith(f"{v}_") for v in declared)} == declared  # + FTS shadow tables


def test_columns_types_not_null_defaults_and_keys(conn) -> None:
    for table, expected in COLUMNS.items():
        got = [(r[1], r[2], r[3], squash(r[4]), r[5]) for r in conn.execute(f"PRAGMA table_info({table})")]
        assert_equal(got, [(n, t, nn, squash(d), pk) for n, t, nn, d, pk in expected], f"columns of {table}")
        keys = {(r[3], tuple(c[2] for c in conn.execute(f"PRAGMA index_info('{r[1]}')")))
                for r in conn.execute(f"PRAGMA index_list({table})") if r[3] in ("u", "pk")}
        assert keys == UNIQUE_KEYS[table], table
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        assert ("AUTOINCREMENT" in sql.upper()) == (table in AUTOINCREMENT), table


def test_default_timestamps_are_rfc3339_utc_milliseconds(conn) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    insert(conn, "sessions", {"id": "s", "app_name": "a", "user_id": "u"})
    insert(conn, "memory_entries", {"namespace": "user:a", "key": "k", "value": "1", "memory_type": "semantic"})
    insert(conn, "document_index", {"file_path": "/a.md", "title": "t", "content_hash": "h"})
    after = datetime.now(UTC) + timedelta(seconds=1)
    for table, columns in (("sessions", ("created_at", "last_update_time")),
                           ("memory_entries", ("created_at", "updated_at")),
                           ("document_index", ("created_at", "updated_at"))):
        for value in conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchone():
            assert RFC3339_MS.match(value), (table, value)
            assert before <= datetime.fromisoformat(value.replace("Z", "+00:00")) <= after


VALID_ROWS = {
    "sessions": {"id": "s1", "app_name": "app", "user_id": "alice"},
    "memory_entries": {"namespace": "user:alice", "key": "k", "value": '{"a": 1}', "memory_type": "semantic"},
    "document_index": {"file_path": "/docs/a.md", "title": "A", "content_hash": "abc"},
    "metrics": {"timestamp": "2025-10-09T17:04:11.123Z", "metric_name": "latency", "metric_value": 0.0},
}
ALLOWED = [
    ("sessions", "status", ["created", "active", "paused", "terminated", "archived"]),
    ("memory_entries", "memory_type", ["semantic", "episodic", "procedural"]),
    ("document_index", "sync_status", ["pending", "synced", "failed", "stale"]),
]
VIOLATIONS = [
    ("sessions", {"status": "zombie"}), ("sessions", {"events": "not json"}), ("sessions", {"state": "{oops"}),
    ("sessions", {"metadata": "[1,"}), ("memory_entries", {"memory_type": "dream"}),
    ("memory_entries", {"value": "{bad"}), ("memory_entries", {"metadata": "x"}), ("memory_entries", {"version": 0}),
    ("memory_entries", {"version": -3}), ("document_index", {"sync_status": "lost"}),
    ("document_index", {"metadata": "{"}), ("metrics", {"metric_value": -0.001}),
]


@pytest.mark.parametrize("table, change", VIOLATIONS,
                         ids=[f"{t}-{next(iter(c))}={next(iter(c.values()))}" for t, c in VIOLATIONS])
def test_check_constraints_reject(conn, table: str, change: dict[str, Any]) -> None:
    conn.execute("BEGIN")
    insert(conn, table, VALID_ROWS[table])  # the control: the unchanged row is accepted
    conn.execute("ROLLBACK")
    with pytest.raises(driver.IntegrityError, match="CHECK"):
        insert(conn, table, {**VALID_ROWS[table], **change})


@pytest.mark.parametrize("table, column, values", ALLOWED)
def test_check_constraints_accept_every_allowed_value(conn, table: str, column: str, values: list[str]) -> None:
    for i, value in enumerate(values):
        row = {**VALID_ROWS[table], column: value}
        row["key" if table == "memory_entries" else "file_path" if table == "document_index" else "id"] = f"x{i}"
        insert(conn, table, row)
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == len(values)


def test_one_version_per_namespace_and_key(conn) -> None:
    insert(conn, "memory_entries", VALID_ROWS["memory_entries"])
    insert(conn, "memory_entries", {**VALID_ROWS["memory_entries"], "version": 2})
    with pytest.raises(driver.IntegrityError, match="UNIQUE"):
        insert(conn, "memory_entries", {**VALID_ROWS["memory_entries"], "version": 2})


def test_foreign_keys_as_declared(conn) -> None:
    for table, expected in FOREIGN_KEYS.items():
        got = {(r[3], r[2], r[4], r[6]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")}
        assert got == expected, table
        assert {r[5] for r in conn.execute(f"PRAGMA foreign_key_list({table})")} <= {"NO ACTION"}, table


TASK = {"prompt": "p", "status": "pending", "input_data": "{}", "submitted_at": "2025-10-09T17:04:11.123Z",
        "last_updated_at": "2025-10-09T17:04:11.123Z"}


def test_deleting_a_session_or_memory_entry_sets_references_null(conn) -> None:
    insert(conn, "sessions", {"id": "s1", "app_name": "a", "user_id": "u"})
    insert(conn, "tasks", {**TASK, "id": "t1", "session_id": "s1"})
    insert(conn, "agents", {"id": "a1", "name": "n", "specialization": "s", "task_id": "t1", "state": "idle",
                            "model": "m", "spawned_at": "x", "session_id": "s1"})
    insert(conn, "checkpoints", {"task_id": "t1", "iteration": 1, "state": "{}", "created_at": "x", "session_id": "s1"})
    entry = insert(conn, "memory_entries", VALID_ROWS["memory_entries"]).lastrowid
    insert(conn, "audit", {"timestamp": "x", "action_type": "memory_create", "memory_operation_type": "create",
                           "memory_namespace": "user:alice", "memory_entry_id": entry})
    conn.execute("DELETE FROM sessions")
    conn.execute("DELETE FROM memory_entries")
    for table, column in (("tasks", "session_id"), ("agents", "session_id"), ("checkpoints", "session_id"),
                          ("audit", "memory_entry_id")):
        assert tuple(conn.execute(f"SELECT count(*), count({column}) FROM {table}").fetchone()) == (1, 0), table


@pytest.mark.parametrize("table, row", [
    ("tasks", {**TASK, "id": "t1", "session_id": "no-such-session"}),
    ("tasks", {**TASK, "id": "t1", "parent_task_id": "no-such-task"}),
    ("agents", {"id": "a1", "name": "n", "specialization": "s", "task_id": "no-such-task", "state": "idle",
                "model": "m", "spawned_at": "x"}),
    ("audit", {"timestamp": "x", "action_type": "y", "memory_entry_id": 12345}),
    ("audit", {"timestamp": "x", "action_type": "y", "agent_id": "no-such-agent"}),
    ("checkpoints", {"task_id": "no-such-task", "iteration": 1, "state": "{}", "created_at": "x"}),
])
def test_foreign_keys_are_enforced(conn, table: str, row: dict[str, Any]) -> None:
    with pytest.raises(driver.IntegrityError, match="FOREIGN KEY"):
        insert(conn, table, row)


def test_audit_task_id_is_nullable_and_not_a_foreign_key(conn) -> None:
    insert(conn, "audit", {"timestamp": "x", "action_type": "memory_create", "memory_operation_type": "create"})
    insert(conn, "audit", {"timestamp": "x", "action_type": "run", "task_id": "a-task-that-never-existed"})
    assert conn.execute("SELECT task_id FROM audit ORDER BY id").fetchall()[0][0] is None
    assert conn.execute("PRAGMA foreign_key_check(audit)").fetchall() == []


# --- indexes -------------------------------------------------------------------------------------

def test_the_32_named_indexes_of_schema_md(conn) -> None:
    assert len(SCHEMA_MD_INDEXES) == 32
    found = explicit_indexes(conn)
    expected = {name: (table, cols.replace(" ASC", ""), squash(where))
                for name, (table, cols, where) in SCHEMA_MD_INDEXES.items()}
    assert_equal({name: found.get(name) for name in expected}, expected, "indexes of schema.md §2")


def test_no_further_redundant_index_on_the_report_tables(conn) -> None:
    """schema.md §2: six of the 32 duplicate a key and stay; nothing else may duplicate
    (or be a prefix of) another index of the same table."""
    indexes = []
    for table in sorted(REPORT_TABLES):
        for _, name, _, _, partial in conn.execute(f"PRAGMA index_list({table})").fetchall():
            cols = tuple((r[2], r[3]) for r in conn.execute(f"PRAGMA index_xinfo('{name}')") if r[5])
            indexes.append((table, name, cols, partial))
    for table, name, cols, _partial in indexes:
        if name in SCHEMA_MD_INDEXES or name.startswith("sqlite_autoindex"):
            continue
        covering = [other for t, other, ocols, opartial in indexes
                    if t == table and other != name and ocols[:len(cols)] == cols and not opartial]
        assert not covering, f"{name} is redundant with {covering}"


# --- the runner ----------------------------------------------------------------------------------

def test_migrations_are_recorded_with_name_checksum_and_time(db_path: Path) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    report = migrations.migrate(db_path)
    end = datetime.now(UTC) + timedelta(seconds=1)
    files = shipped_files()
    assert report.kind == "missing" and report.applied == [f.stem for f in files]
    with opened(db_path) as c:
        rows = c.execute("SELECT name, checksum, applied_at FROM schema_migrations ORDER BY name").fetchall()
    assert [r[0] for r in rows] == [f.stem for f in files]
    for (name, checksum, applied_at), file in zip(rows, files):
        assert checksum == hashlib.sha256(file.read_bytes()).hexdigest(), name
        assert RFC3339_MS.match(applied_at), applied_at
        assert start <= datetime.fromisoformat(applied_at.replace("Z", "+00:00")) <= end


def test_second_run_applies_nothing_and_writes_nothing(db_path: Path) -> None:
    migrations.migrate(db_path)
    before = disk_state(db_path)
    for _ in range(2):
        report = migrations.migrate(db_path)
        assert (report.kind, report.pending, report.applied) == ("current", [], [])
        assert disk_state(db_path) == before  # same bytes, same mtime, no -wal content


def test_a_zero_byte_file_is_a_new_database(db_path: Path) -> None:
    db_path.touch()
    report = migrations.migrate(db_path)
    assert report.kind == "empty" and report.applied == [f.stem for f in shipped_files()]


def test_dry_run_on_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet" / "new.db"
    report = migrations.migrate(target, dry_run=True)
    assert (report.kind, report.pending, report.applied) == ("missing", [f.stem for f in shipped_files()], [])
    assert not (tmp_path / "not").exists()


def test_dry_run_lists_only_what_is_pending(tmp_path: Path, db_path: Path) -> None:
    first, *later = shipped_files()
    migrations.migrate(db_path, migrations=migrations.load_migrations(migrations_dir(tmp_path, first)))
    before = disk_state(db_path)
    report = migrations.migrate(db_path, dry_run=True)
    assert (report.kind, report.pending, report.applied) == ("current", [f.stem for f in later], [])
    assert disk_state(db_path) == before


def test_checksum_mismatch_is_refused_before_anything_is_written(tmp_path: Path, db_path: Path) -> None:
    first, *later = shipped_files()
    directory = migrations_dir(tmp_path, first)
    migrations.migrate(db_path, migrations=migrations.load_migrations(directory))
    edited = directory / first.name
    edited.write_text(edited.read_text(encoding="utf-8") + "\n-- edited after it was applied\n", encoding="utf-8")
    migrations_dir(tmp_path, *later)  # and something pending, which must not be applied
    before = disk_state(db_path)
    with pytest.raises(SchemaError, match=first.stem):
        migrations.migrate(db_path, migrations=migrations.load_migrations(directory))
    assert disk_state(db_path) == before


def test_a_database_from_a_newer_indexer_is_refused(tmp_path: Path, db_path: Path) -> None:
    newer = migrations_dir(tmp_path, *shipped_files(), ("9999_future", "CREATE TABLE future_feature (x INTEGER);\n"))
    migrations.migrate(db_path, migrations=migrations.load_migrations(newer))
    before = disk_state(db_path)
    with pytest.raises(SchemaError, match="9999_future"):
        migrations.migrate(db_path)
    assert disk_state(db_path) == before


def test_a_foreign_sqlite_file_is_refused_and_left_alone(db_path: Path) -> None:
    raw = driver.sqlite.connect(str(db_path))
    raw.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY, name TEXT)")
    raw.execute("INSERT INTO recipes (name) VALUES ('bread')")
    raw.commit()
    raw.close()
    before, listing = disk_state(db_path), sorted(os.listdir(db_path.parent))
    for dry_run in (True, False):
        with pytest.raises(SchemaError, match="another application"):
            migrations.migrate(db_path, dry_run=dry_run)
    assert disk_state(db_path) == before and sorted(os.listdir(db_path.parent)) == listing


@pytest.mark.parametrize("content", [b"\x00garbage" * 512, b"just some text\n" * 300,
                                     b"SQLite format 3\x00" + b"\xff" * 4000], ids=["binary", "text", "bad-header"])
def test_a_non_sqlite_file_is_refused_and_left_alone(db_path: Path, content: bytes) -> None:
    db_path.write_bytes(content)
    before, listing = disk_state(db_path), sorted(os.listdir(db_path.parent))
    with pytest.raises(SchemaError):
        migrations.migrate(db_path)
    assert disk_state(db_path) == before and sorted(os.listdir(db_path.parent)) == listing


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="directory"):
        migrations.migrate(tmp_path)


BROKEN = ("0002_broken", "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n")


def test_a_failing_migration_is_rolled_back_whole(tmp_path: Path, db_path: Path) -> None:
    first = shipped_files()[0]
    directory = migrations_dir(tmp_path, first, BROKEN)
    with pytest.raises(MigrationError, match="0002_broken"):
        migrations.migrate(db_path, migrations=migrations.load_migrations(directory))
    with opened(db_path) as c:
        assert "half_done" not in table_names(c)  # the first statement's effect is gone
        assert [r[0] for r in c.execute("SELECT name FROM schema_migrations")] == [first.stem]
    # once the file is fixed, the same database migrates
    (directory / "0002_broken.sql").write_text("CREATE TABLE half_done (x INTEGER);\n", encoding="utf-8")
    assert migrations.migrate(db_path, migrations=migrations.load_migrations(directory)).applied == ["0002_broken"]


# --- every connection: foreign keys and sqlite-vec -----------------------------------------------

def test_a_second_connection_to_the_file_enforces_foreign_keys_and_has_sqlite_vec(db_path: Path) -> None:
    migrations.migrate(db_path)
    first = driver.connect(db_path)
    second = driver.connect(db_path)
    readonly = driver.connect(db_path, readonly=True)
    try:
        for c in (first, second, readonly):
            assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert str(c.execute("SELECT vec_version()").fetchone()[0]).startswith("v")
        with pytest.raises(driver.IntegrityError, match="FOREIGN KEY"):
            insert(second, "tasks", {**TASK, "id": "t1", "session_id": "no-such-session"})
        assert second.execute("SELECT vec_length(vec_f32('[1, 2, 3]'))").fetchone()[0] == 3
    finally:
        for c in (first, second, readonly):
            c.close()


# --- two processes at once -----------------------------------------------------------------------

def _race_worker(paths: list[str], barrier: Any, results: Any) -> None:
    for path in paths:
        barrier.wait(timeout=60)
        try:
            results.put((path, "ok", migrations.migrate(Path(path)).applied))
        except Exception as exc:  # reported to the parent, which fails the test
            results.put((path, "error", repr(exc)))


def test_migrate_waits_for_a_lock_on_a_new_file_instead_of_failing(db_path: Path) -> None:
    """Where two processes creating the same file meet: SQLite does not wait (busy_timeout)
    when ``PRAGMA journal_mode=WAL`` finds the file locked by another connection, it fails at
    once with "database is locked". The runner must wait for the lock like everywhere else."""
    db_path.touch()
    holder = driver.sqlite.connect(str(db_path), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, holder.execute, ("ROLLBACK",))
    release.start()
    try:
        report = migrations.migrate(db_path)
    finally:
        release.join()
        holder.close()
    assert report.applied == [f.stem for f in shipped_files()]


@pytest.mark.process
def test_processes_migrating_the_same_new_file_at_once(tmp_path: Path) -> None:
    workers, rounds = 3, 8
    paths = [str(tmp_path / f"race-{i}.db") for i in range(rounds)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(paths, barrier, results)) for _ in range(workers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(workers * rounds)]
    for p in procs:
        p.join(timeout=60)
    assert [o for o in outcomes if o[1] != "ok"] == []
    names = [f.stem for f in shipped_files()]
    for path in paths:
        applied = sorted(name for p, _, done in outcomes if p == path for name in done)
        assert applied == names, path  # every migration applied once, by one of the processes
        with opened(path) as c:
            assert sorted(r[0] for r in c.execute("SELECT name FROM schema_migrations")) == names


# --- packaging -----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.process
def test_an_installed_wheel_finds_the_sql_files(tmp_path: Path) -> None:
    # build from a copy, so that the build leaves no build/ or egg-info in the working tree
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__",
                                                              "tests", "bench"))
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(src)], check=True, capture_output=True)
    wheel = next(wheels.glob("indexer-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import indexer, pathlib; from indexer.storage.sqlite import migrations\n"
             "from indexer.storage.postgres import migrations as pg\n"
             f"assert len(pg.load_migrations()) == {len(list((ROOT / 'schema' / 'postgres').glob('*.sql')))}\n"
             "print(indexer.__file__)\n"
             "for m in migrations.load_migrations(): print(m.name, m.checksum)\n"
             "print(migrations.migrate(pathlib.Path('probe.db')).applied)\n")
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert run.returncode == 0, run.stderr
    first, *records, applied = run.stdout.splitlines()
    assert Path(first).resolve().is_relative_to(site.resolve())
    assert records == [f"{f.stem} {hashlib.sha256(f.read_bytes()).hexdigest()}" for f in shipped_files()]
    assert applied == repr([f.stem for f in shipped_files()])
