"""``indexer doctor``: the report's validation suite, as checks that never modify the file.

It opens the database read-only. Only when the file is already in WAL mode (so that opening
it read-write writes nothing) does it also open a connection as every code path does, to
report the PRAGMAs "as seen on a new connection" and to try invalid JSON inside a
transaction that is always rolled back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.storage.records import Check
from indexer.storage.sqlite import driver, hot_queries, introspect, migrations, transactions
from indexer.storage.sqlite.driver import Connection

REQUIRED_TABLES = (
    "sessions", "memory_entries", "document_index", "tasks", "agents",
    "state", "audit", "metrics", "checkpoints", "session_events",
)

# The 32 named indexes of schema/0001_initial.sql (the spec's index list; docs/database.md),
# and the one of the events table (schema/0004_session_events.sql):
# name -> (table, key columns; a trailing " DESC" marks descending).
EXPECTED_INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "idx_sessions_pk": ("sessions", ("id",)),
    "idx_sessions_status_updated": ("sessions", ("status", "last_update_time DESC")),
    "idx_sessions_user_created": ("sessions", ("user_id", "created_at DESC")),
    "idx_sessions_project": ("sessions", ("project_id", "created_at DESC")),
    "idx_memory_entries_pk": ("memory_entries", ("id",)),
    "idx_memory_namespace_key_version": ("memory_entries", ("namespace", "key", "is_deleted", "version DESC")),
    "idx_memory_type_updated": ("memory_entries", ("memory_type", "updated_at DESC")),
    "idx_memory_namespace_prefix": ("memory_entries", ("namespace", "updated_at DESC")),
    "idx_memory_episodic_ttl": ("memory_entries", ("memory_type", "updated_at")),
    "idx_memory_created_by": ("memory_entries", ("created_by", "created_at DESC")),
    "idx_document_index_pk": ("document_index", ("id",)),
    "idx_document_file_path": ("document_index", ("file_path",)),
    "idx_document_type_created": ("document_index", ("document_type", "created_at DESC")),
    "idx_document_sync_status": ("document_index", ("sync_status", "last_synced_at")),
    "idx_document_content_hash": ("document_index", ("content_hash",)),
    "idx_tasks_status_priority": ("tasks", ("status", "priority DESC", "submitted_at")),
    "idx_tasks_submitted_at": ("tasks", ("submitted_at",)),
    "idx_tasks_parent": ("tasks", ("parent_task_id",)),
    "idx_tasks_running_timeout": ("tasks", ("status", "last_updated_at")),
    "idx_tasks_session": ("tasks", ("session_id", "submitted_at DESC")),
    "idx_agents_task": ("agents", ("task_id",)),
    "idx_agents_state": ("agents", ("state",)),
    "idx_agents_session": ("agents", ("session_id", "spawned_at DESC")),
    "idx_audit_task": ("audit", ("task_id", "timestamp DESC")),
    "idx_audit_agent": ("audit", ("agent_id", "timestamp DESC")),
    "idx_audit_timestamp": ("audit", ("timestamp DESC",)),
    "idx_audit_memory_operations": ("audit", ("memory_operation_type", "timestamp DESC")),
    "idx_audit_memory_namespace": ("audit", ("memory_namespace", "timestamp DESC")),
    "idx_audit_memory_entry": ("audit", ("memory_entry_id", "timestamp DESC")),
    "idx_state_task_key": ("state", ("task_id", "key")),
    "idx_metrics_name_timestamp": ("metrics", ("metric_name", "timestamp DESC")),
    "idx_checkpoints_task": ("checkpoints", ("task_id", "iteration DESC")),
    "idx_session_events_seq": ("session_events", ("session_id", "seq")),
}

JSON_PROBES = (
    ("json_check.sessions.events",
     "INSERT INTO sessions (id, app_name, user_id, events) VALUES ('doctor-probe', 'a', 'u', 'not json')"),
    ("json_check.session_events.payload",
     "INSERT INTO session_events (session_id, seq, payload) VALUES ('doctor-probe', 1, '{bad')"),
    ("json_check.memory_entries.value",
     "INSERT INTO memory_entries (namespace, key, value, memory_type) VALUES ('temp:doctor', 'k', '{bad', 'semantic')"),
)


def _index_columns(info: dict[str, Any]) -> tuple[str, ...]:
    return tuple(c if order == "ASC" else f"{c} DESC" for c, order in info["columns"])


def _schema_checks(conn: Connection) -> list[Check]:
    checks: list[Check] = []
    tables = migrations.user_tables(conn)
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    checks.append(Check("tables", not missing, sorted(t for t in tables if t in REQUIRED_TABLES),
                        f"all of {len(REQUIRED_TABLES)}" if not missing else f"missing: {', '.join(missing)}"))
    named = introspect.named_indexes(conn)
    for name, (table, columns) in EXPECTED_INDEXES.items():
        info = named.get(name)
        observed = None if info is None else f"{info['table']}({', '.join(_index_columns(info))})"
        ok = info is not None and info["table"] == table and _index_columns(info) == columns
        checks.append(Check(f"index.{name}", ok, observed, f"{table}({', '.join(columns)})"))
    checks.append(Check("index_count", len(named) >= len(EXPECTED_INDEXES), len(named), f">= {len(EXPECTED_INDEXES)}"))
    return checks


def _events_column_check(conn: Connection) -> Check:
    """Since 0004 a session's events are rows and ``sessions.events`` holds ``'[]'``: any
    other value was written by code made for the report's schema, and this indexer does
    not see those events (docs/database.md, "Session events")."""
    try:
        count = conn.execute("SELECT count(*) FROM sessions WHERE events != '[]'").fetchone()[0]
    except driver.Error as exc:
        return Check("sessions.events_moved", False, str(exc), "0 sessions with events left in sessions.events")
    return Check("sessions.events_moved", count == 0, f"{count} sessions with events in sessions.events",
                 "0 (events are rows of session_events)")


def _json_checks(conn: Connection) -> list[Check]:
    checks = []
    for name, sql in JSON_PROBES:
        with transactions.transaction(conn, immediate=False, keep=False):  # a probe: never kept
            try:
                conn.execute(sql)
                observed, ok = "accepted invalid JSON", False
            except driver.IntegrityError as exc:
                observed, ok = f"rejected ({exc})", "CHECK" in str(exc)
        checks.append(Check(name, ok, observed, "rejected by CHECK"))
    return checks


def run_doctor(path: Path) -> list[Check]:
    """All checks, in order. Raises SchemaError only when the file cannot be opened at all."""
    state = migrations.read_state(path)
    if state.kind == "missing":
        return [Check("database_file", False, f"no database at {path}", "an existing file (run: indexer migrate)")]
    known = migrations.load_migrations()
    checks = [Check("database_file", True, str(path))]
    try:
        pending = [m.name for m in migrations.pending_migrations(state, known)]
        checks.append(Check("schema_version", not pending and state.kind == "current",
                            sorted(state.applied) or state.kind, f"all of {[m.name for m in known]}"))
    except Exception as exc:  # newer database or checksum mismatch: report, do not raise
        checks.append(Check("schema_version", False, str(exc), "migrations this indexer knows"))
    ro = driver.connect(path, readonly=True)
    try:
        wal = ro.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        live = driver.connect(path) if wal else None
        try:
            seen = driver.read_pragmas(live or ro)
            if live is None:
                seen["journal_mode"] = ro.execute("PRAGMA journal_mode").fetchone()[0]
            for name, expected in driver.EXPECTED_PRAGMAS.items():
                checks.append(Check(f"pragma.{name}", seen[name] == expected, seen[name], expected))
            checks.append(Check("sqlite_vec", True, driver.vec_version(ro), "loaded on every connection"))
            integrity = [r[0] for r in ro.execute("PRAGMA integrity_check").fetchall()]
            checks.append(Check("integrity_check", integrity == ["ok"], integrity[:10], ["ok"]))
            violations = ro.execute("PRAGMA foreign_key_check").fetchall()
            checks.append(Check("foreign_key_check", not violations, len(violations), 0))
            checks.extend(_schema_checks(ro))
            checks.append(_events_column_check(ro))
            if live is not None and not [c for c in checks if c.name == "tables" and not c.ok]:
                checks.extend(_json_checks(live))
            else:
                checks.append(Check("json_check", False, "skipped: database not migrated (not in WAL mode or tables missing)",
                                    "rejected by CHECK"))
            for query in hot_queries.HOT_QUERIES:
                try:
                    verdict = hot_queries.plan_verdict(hot_queries.explain(ro, query.sql, query.params), query.json_each)
                    checks.append(Check(f"plan.{query.name}", verdict["uses_index"], "; ".join(verdict["plan"]),
                                        "SEARCH using an index"))
                except driver.Error as exc:
                    checks.append(Check(f"plan.{query.name}", False, str(exc), "SEARCH using an index"))
        finally:
            if live is not None:
                live.close()
    finally:
        ro.close()
    return checks
