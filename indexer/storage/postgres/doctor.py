"""``indexer doctor`` and ``indexer status`` for an agent store on PostgreSQL: read-only checks
(the server answers and is recent enough, every migration applied with its checksum, the
tables and indexes of the migrations present, the JSON and timestamp constraints in force)
and the figures ``status`` prints (engine, server version, memories, audit rows, sessions,
events, tasks)."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from indexer.errors import IndexerError
from indexer.storage.postgres import migrations
from indexer.storage.records import Check

MIN_SERVER = 15  # the oldest major version the schema and the tests are written for
_NAMED = re.compile(r"CREATE (?:UNIQUE )?(TABLE|INDEX) IF NOT EXISTS (\w+)", re.IGNORECASE)


def expected_objects() -> dict[str, set[str]]:
    """The tables and indexes the shipped migrations create, by kind."""
    found: dict[str, set[str]] = {"table": set(), "index": set()}
    for migration in migrations.load_migrations():
        for kind, name in _NAMED.findall(migration.sql):
            found[kind.lower()].add(name)
    return found


def _server(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    row = conn.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int").fetchone()
    assert row is not None
    return str(row[0]), int(row[1]) // 10000


def run_doctor(dsn: str) -> list[Check]:
    checks: list[Check] = []
    try:
        conn = migrations.connect(dsn, autocommit=True)
    except IndexerError as exc:
        return [Check("postgres.connect", False, str(exc), "a server that accepts the DSN")]
    with conn:
        version, major = _server(conn)
        checks.append(Check("postgres.server_version", major >= MIN_SERVER, version, f">= {MIN_SERVER}"))
        try:
            state = migrations.read_state(dsn)
            checks.append(Check("postgres.migrations", not state.pending,
                                f"{len(state.applied)} applied, {len(state.pending)} pending", "0 pending"))
        except IndexerError as exc:
            checks.append(Check("postgres.migrations", False, str(exc), "checksums matching the files"))
        want = expected_objects()
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
        missing_tables = sorted(want["table"] - tables)
        missing_indexes = sorted(want["index"] - indexes)
        checks.append(Check("postgres.tables", not missing_tables, f"missing: {', '.join(missing_tables)}"
                            if missing_tables else f"{len(want['table'])} present", "all present"))
        checks.append(Check("postgres.indexes", not missing_indexes, f"missing: {', '.join(missing_indexes)}"
                            if missing_indexes else f"{len(want['index'])} present", "all present"))
        if "memory_entries" in tables:
            checks.append(_probe(conn, "json_check.memory_entries.value",
                                 "INSERT INTO memory_entries (namespace, key, value, memory_type, created_at, updated_at) "
                                 "VALUES ('temp:doctor', 'k', '{bad', 'semantic', '2026-01-01T00:00:00.000Z', "
                                 "'2026-01-01T00:00:00.000Z')"))
            checks.append(_probe(conn, "timestamp_check.memory_entries.created_at",
                                 "INSERT INTO memory_entries (namespace, key, value, memory_type, created_at, updated_at) "
                                 "VALUES ('temp:doctor', 'k', '1', 'semantic', '2026-01-01 00:00:00', "
                                 "'2026-01-01T00:00:00.000Z')"))
        if "session_events" in tables:
            checks.append(_probe(conn, "unique_check.session_events.seq", _PROBE_SESSION +
                                 "INSERT INTO session_events (session_id, seq, created_at, payload) "
                                 f"VALUES ((SELECT id FROM s), 1, '{_TS}', '{{}}'), ((SELECT id FROM s), 1, '{_TS}', '{{}}')"))
            checks.append(_probe(conn, "json_check.session_events.payload", _PROBE_SESSION +
                                 "INSERT INTO session_events (session_id, seq, created_at, payload) "
                                 f"VALUES ((SELECT id FROM s), 1, '{_TS}', '{{bad')"))
        if "tasks" in tables:
            checks.append(_probe(conn, "timestamp_check.tasks.submitted_at",
                                 "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at) "
                                 f"VALUES ('doctor-probe', 'p', 'pending', '{{}}', '2026-01-01 00:00:00', '{_TS}')"))
        if "metrics" in tables:
            checks.append(_probe(conn, "value_check.metrics.metric_value",
                                 f"INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('{_TS}', 'doctor', -1)"))
    return checks


_TS = "2026-01-01T00:00:00.000Z"
# a session made for a probe (the probe's transaction is rolled back)
_PROBE_SESSION = ("WITH s AS (INSERT INTO sessions (id, app_name, user_id, created_at, last_update_time) "
                  f"VALUES ('doctor-probe', 'doctor', 'doctor', '{_TS}', '{_TS}') RETURNING id) ")


def _probe(conn: psycopg.Connection[Any], name: str, sql: str) -> Check:
    """A bad row must be refused; the probe is rolled back either way (nothing is written)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql)
    except psycopg.errors.DataError as exc:
        return Check(name, True, f"refused ({type(exc).__name__})", "refused")
    except psycopg.errors.IntegrityError as exc:
        return Check(name, True, f"refused ({type(exc).__name__})", "refused")
    return Check(name, False, "accepted", "refused")


def status(dsn: str) -> dict[str, Any]:
    """What ``indexer status`` says of the agent store."""
    with migrations.connect(dsn, autocommit=True) as conn:
        version, _ = _server(conn)
        exists = conn.execute("SELECT to_regclass('memory_entries') IS NOT NULL").fetchone()
        info: dict[str, Any] = {"engine": "postgresql", "location": migrations.redact(dsn), "server_version": version,
                                "migrated": bool(exists and exists[0])}
        if info["migrated"]:
            row = conn.execute(
                "SELECT count(*) AS versions, count(DISTINCT (namespace, key)) AS keys, "
                "(SELECT count(*) FROM audit) AS audit_rows FROM memory_entries").fetchone()
            assert row is not None
            info.update(memory_versions=int(row[0]), memory_keys=int(row[1]), audit_rows=int(row[2]))
            # 0002-0004: absent from an older store (its pending migrations say so)
            for table in ("sessions", "session_events", "tasks", "agents", "checkpoints", "state", "metrics"):
                present = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
                if present and present[0]:
                    counted = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                    info[table] = int(counted[0]) if counted else 0
            applied = migrations.applied_migrations(conn)
            info["pending_migrations"] = [m.name for m in migrations.load_migrations() if m.name not in applied]
        return info
