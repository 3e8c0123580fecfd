"""The migration runner on fresh files: the schema of schema.md, records, refusals, atomicity."""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.errors import MigrationError, SchemaError
from indexer.storage import driver, migrations
from indexer.storage.introspect import named_indexes

REPORT_TABLES = {"sessions", "memory_entries", "document_index", "tasks", "agents", "state", "audit", "metrics", "checkpoints"}
DOCUMENT_TABLES = {"document_chunks", "embedding_settings", "chunk_fts"}  # 0002, the sync issue

# schema.md §2, transcribed as the independent oracle: name -> (table, columns, unique, partial WHERE)
SCHEMA_MD_INDEXES = {
    "idx_sessions_pk": ("sessions", "id", True, None),
    "idx_sessions_status_updated": ("sessions", "status, last_update_time DESC", False, "status IN('active','paused')"),
    "idx_sessions_user_created": ("sessions", "user_id, created_at DESC", False, None),
    "idx_sessions_project": ("sessions", "project_id, created_at DESC", False, "project_id IS NOT NULL"),
    "idx_memory_entries_pk": ("memory_entries", "id", True, None),
    "idx_memory_namespace_key_version": ("memory_entries", "namespace, key, is_deleted, version DESC", False, None),
    "idx_memory_type_updated": ("memory_entries", "memory_type, updated_at DESC", False, "is_deleted = 0"),
    "idx_memory_namespace_prefix": ("memory_entries", "namespace, updated_at DESC", False, "is_deleted = 0"),
    "idx_memory_episodic_ttl": ("memory_entries", "memory_type, updated_at", False, "memory_type = 'episodic' AND is_deleted = 0"),
    "idx_memory_created_by": ("memory_entries", "created_by, created_at DESC", False, None),
    "idx_document_index_pk": ("document_index", "id", True, None),
    "idx_document_file_path": ("document_index", "file_path", True, None),
    "idx_document_type_created": ("document_index", "document_type, created_at DESC", False, "document_type IS NOT NULL"),
    "idx_document_sync_status": ("document_index", "sync_status, last_synced_at", False, "sync_status IN('pending','stale')"),
    "idx_document_content_hash": ("document_index", "content_hash", False, None),
    "idx_tasks_status_priority": ("tasks", "status, priority DESC, submitted_at", False, None),
    "idx_tasks_submitted_at": ("tasks", "submitted_at", False, None),
    "idx_tasks_parent": ("tasks", "parent_task_id", False, None),
    "idx_tasks_running_timeout": ("tasks", "status, last_updated_at", False, "status = 'running'"),
    "idx_tasks_session": ("tasks", "session_id, submitted_at DESC", False, "session_id IS NOT NULL"),
    "idx_agents_task": ("agents", "task_id", False, None),
    "idx_agents_state": ("agents", "state", False, None),
    "idx_agents_session": ("agents", "session_id, spawned_at DESC", False, "session_id IS NOT NULL"),
    "idx_audit_task": ("audit", "task_id, timestamp DESC", False, None),
    "idx_audit_agent": ("audit", "agent_id, timestamp DESC", False, None),
    "idx_audit_timestamp": ("audit", "timestamp DESC", False, None),
    "idx_audit_memory_operations": ("audit", "memory_operation_type, timestamp DESC", False, "memory_operation_type IS NOT NULL"),
    "idx_audit_memory_namespace": ("audit", "memory_namespace, timestamp DESC", False, "memory_namespace IS NOT NULL"),
    "idx_audit_memory_entry": ("audit", "memory_entry_id, timestamp DESC", False, "memory_entry_id IS NOT NULL"),
    "idx_state_task_key": ("state", "task_id, key", False, None),
    "idx_metrics_name_timestamp": ("metrics", "metric_name, timestamp DESC", False, None),
    "idx_checkpoints_task": ("checkpoints", "task_id, iteration DESC", False, None),
}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def conn(db_path: Path):
    migrations.migrate(db_path)
    c = driver.connect(db_path)
    yield c
    c.close()


def test_fresh_database_has_the_report_tables(conn) -> None:
    tables = migrations.user_tables(conn)
    assert REPORT_TABLES <= tables
    extra = {t for t in tables - REPORT_TABLES if not t.startswith("chunk_fts_")}
    assert extra == {"schema_migrations"} | DOCUMENT_TABLES


def columns(conn, table: str) -> dict[str, tuple[str, int, str | None, int]]:
    return {r[1]: (r[2], r[3], r[4], r[5]) for r in conn.execute(f"PRAGMA table_info({table})")}


def test_columns_types_and_defaults(conn) -> None:
    now_default = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    sessions = columns(conn, "sessions")
    assert list(sessions) == ["id", "app_name", "user_id", "project_id", "status", "events", "state", "metadata",
                              "created_at", "last_update_time", "terminated_at", "archived_at"]
    assert sessions["status"] == ("TEXT", 1, "'created'", 0)
    assert sessions["events"][2] == "'[]'" and sessions["state"][2] == "'{}'"
    assert sessions["created_at"][:2] == ("TIMESTAMP", 1) and now_default in sessions["created_at"][2]
    memory = columns(conn, "memory_entries")
    assert memory["id"][3] == 1 and memory["version"] == ("INTEGER", 1, "1", 0)
    assert memory["is_deleted"] == ("BOOLEAN", 1, "0", 0)
    docs = columns(conn, "document_index")
    assert docs["sync_status"] == ("TEXT", 0, "'pending'", 0) and docs["embedding_blob"][0] == "BLOB"
    tasks = columns(conn, "tasks")
    assert tasks["agent_type"] == ("TEXT", 1, "'general'", 0) and tasks["priority"] == ("INTEGER", 1, "5", 0)
    assert tasks["max_execution_timeout_seconds"][2] == "3600" and "session_id" in tasks
    audit = columns(conn, "audit")
    assert audit["task_id"] == ("TEXT", 0, None, 0)  # nullable (schema.md §3.4)
    assert {"memory_operation_type", "memory_namespace", "memory_entry_id"} <= set(audit)
    for table in ("agents", "checkpoints"):
        assert "session_id" in columns(conn, table)


def foreign_keys(conn, table: str) -> set[tuple[str, str, str, str]]:
    return {(r[3], r[2], r[4], r[6]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")}


def test_foreign_keys(conn) -> None:
    for table in ("tasks", "agents", "checkpoints"):
        assert ("session_id", "sessions", "id", "SET NULL") in foreign_keys(conn, table)
    assert ("parent_task_id", "tasks", "id", "NO ACTION") in foreign_keys(conn, "tasks")
    audit = foreign_keys(conn, "audit")
    assert ("memory_entry_id", "memory_entries", "id", "SET NULL") in audit
    assert not any(fk[0] == "task_id" for fk in audit)


def test_session_delete_sets_null(conn) -> None:
    conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'a', 'u')")
    conn.execute("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at, session_id) "
                 "VALUES ('t1', 'p', 'pending', '{}', 'x', 'x', 's1')")
    conn.execute("INSERT INTO audit (timestamp, action_type, memory_operation_type) VALUES ('x', 'memory_create', 'create')")
    conn.execute("DELETE FROM sessions WHERE id = 's1'")
    assert conn.execute("SELECT session_id FROM tasks").fetchone()[0] is None


@pytest.mark.parametrize("sql", [
    "INSERT INTO sessions (id, app_name, user_id, status) VALUES ('s', 'a', 'u', 'zombie')",
    "INSERT INTO sessions (id, app_name, user_id, state) VALUES ('s', 'a', 'u', '{oops')",
    "INSERT INTO memory_entries (namespace, key, value, memory_type) VALUES ('user:a', 'k', '1', 'dream')",
    "INSERT INTO memory_entries (namespace, key, value, memory_type, version) VALUES ('user:a', 'k', '1', 'semantic', 0)",
    "INSERT INTO memory_entries (namespace, key, value, memory_type, metadata) VALUES ('user:a', 'k', '1', 'semantic', 'x')",
    "INSERT INTO document_index (file_path, title, content_hash, sync_status) VALUES ('/a', 't', 'h', 'lost')",
    "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('x', 'm', -1)",
])
def test_check_constraints_reject(conn, sql: str) -> None:
    with pytest.raises(driver.IntegrityError, match="CHECK"):
        conn.execute(sql)


def test_unique_version_per_key(conn) -> None:
    insert = "INSERT INTO memory_entries (namespace, key, value, memory_type, version) VALUES ('user:a', 'k', '1', 'semantic', 1)"
    conn.execute(insert)
    with pytest.raises(driver.IntegrityError, match="UNIQUE"):
        conn.execute(insert)


def test_default_timestamps_are_rfc3339_ms(conn) -> None:
    conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s', 'a', 'u')")
    created, updated = conn.execute("SELECT created_at, last_update_time FROM sessions").fetchone()
    assert RFC3339_MS.match(created) and RFC3339_MS.match(updated)


def test_the_32_named_indexes_of_schema_md(conn) -> None:
    found = named_indexes(conn)
    for name, (table, cols, unique, where) in SCHEMA_MD_INDEXES.items():
        assert name in found, name
        info = found[name]
        got_cols = ", ".join(c if o == "ASC" else f"{c} DESC" for c, o in info["columns"])
        assert (info["table"], got_cols, info["unique"]) == (table, cols, unique), name
        got_where = info["where"].replace(" ,", ",").replace(", ", ",") if info["where"] else None
        want_where = where.replace(", ", ",") if where else None
        assert got_where == want_where, name
    assert len(SCHEMA_MD_INDEXES) == 32


def test_migrations_are_recorded_with_checksums(conn) -> None:
    rows = conn.execute("SELECT name, checksum, applied_at FROM schema_migrations ORDER BY name").fetchall()
    shipped = migrations.load_migrations()
    assert [r[0] for r in rows] == [m.name for m in shipped]
    for (name, checksum, applied_at), m in zip(rows, shipped):
        assert checksum == hashlib.sha256(m.sql.encode()).hexdigest()
        assert RFC3339_MS.match(applied_at)


def test_second_run_writes_nothing(db_path: Path) -> None:
    migrations.migrate(db_path)
    c = driver.connect(db_path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    before = (db_path.read_bytes(), db_path.stat().st_mtime_ns)
    report = migrations.migrate(db_path)
    assert report.applied == [] and report.pending == []
    assert (db_path.read_bytes(), db_path.stat().st_mtime_ns) == before
    wal = Path(f"{db_path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_dry_run_does_not_create_the_file(tmp_path: Path) -> None:
    target = tmp_path / "new.db"
    report = migrations.migrate(target, dry_run=True)
    assert report.kind == "missing" and report.pending and not target.exists()


def tamper(db_path: Path, sql: str) -> bytes:
    c = driver.connect(db_path)
    c.execute(sql)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return db_path.read_bytes()


def test_checksum_mismatch_is_refused(db_path: Path) -> None:
    migrations.migrate(db_path)
    before = tamper(db_path, "UPDATE schema_migrations SET checksum = 'abc' WHERE name = '0001_initial'")
    with pytest.raises(SchemaError, match="differs"):
        migrations.migrate(db_path)
    assert db_path.read_bytes() == before


def test_newer_database_is_refused(db_path: Path) -> None:
    migrations.migrate(db_path)
    before = tamper(db_path, "INSERT INTO schema_migrations VALUES ('9999_future', 'x', '2030-01-01T00:00:00.000Z')")
    with pytest.raises(SchemaError, match="newer"):
        migrations.migrate(db_path)
    assert db_path.read_bytes() == before


def test_foreign_sqlite_file_is_refused(db_path: Path) -> None:
    raw = driver.sqlite.connect(str(db_path))
    raw.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY, name TEXT)")
    raw.commit()
    raw.close()
    before = db_path.read_bytes()
    with pytest.raises(SchemaError, match="another application"):
        migrations.migrate(db_path)
    assert db_path.read_bytes() == before


def test_non_sqlite_file_is_refused(db_path: Path) -> None:
    db_path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(SchemaError):
        migrations.migrate(db_path)
    assert db_path.read_bytes() == b"\x00garbage" * 512


def test_failing_migration_rolls_back_whole(tmp_path: Path, db_path: Path) -> None:
    shipped = migrations.load_migrations()
    broken = migrations.Migration("0099_broken", "CREATE TABLE half_done (x);\nINSERT INTO no_such_table VALUES (1);\n")
    migrations.migrate(db_path, migrations=shipped)
    with pytest.raises(MigrationError, match="0099_broken"):
        migrations.migrate(db_path, migrations=shipped + [broken])
    c = driver.connect(db_path)
    try:
        assert "half_done" not in migrations.user_tables(c)
        names = [r[0] for r in c.execute("SELECT name FROM schema_migrations")]
        assert "0099_broken" not in names and len(names) == len(shipped)
    finally:
        c.close()


def _migrate_in_child(path: str) -> list[str]:
    return migrations.migrate(Path(path)).applied


def test_two_processes_migrating_a_new_file_at_once(db_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_migrate_in_child, [str(db_path)] * 2)
    applied = [name for r in results for name in r]
    assert sorted(applied) == sorted(m.name for m in migrations.load_migrations())  # each once
    c = driver.connect(db_path)
    try:
        assert c.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations.load_migrations())
    finally:
        c.close()


def test_split_statements_respects_strings_and_comments() -> None:
    sql = "-- a; comment\nCREATE TABLE a (x TEXT DEFAULT ';');\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  SELECT 1;\nEND;\n"
    assert len(list(migrations.split_statements(sql))) == 2


@pytest.mark.slow
def test_installed_wheel_finds_the_sql_files(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
                   check=True, capture_output=True)
    wheel = next(wheels.glob("indexer-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import indexer, sys; from indexer.storage.migrations import load_migrations; "
             "print(indexer.__file__); print(','.join(m.name for m in load_migrations()))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                         check=True, capture_output=True, text=True).stdout.splitlines()
    assert out[0].startswith(str(site))
    assert out[1].split(",") == [m.name for m in migrations.load_migrations()]
