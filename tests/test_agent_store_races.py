"""The agent store under the races a team meets, on both engines (``engine``), and what only a
server engine has: concurrent migrators, a killed connection, a pool through PgBouncer's rules.

Real processes against a real SQLite file and a real PostgreSQL (tests/pg_server.py)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES_SCALE, StoreRows, run_processes
from indexer import MemoryService
from indexer.errors import IndexerError, MigrationError
from indexer.storage.engines import engine as engine_of_db
from indexer.storage.engines import open_agent_database
from pg_server import MIGRATOR

WRITER = r"""
import asyncio, json, sys
from indexer import MemoryService
from indexer.storage.engines import open_agent_database

async def main(location, keys, n, tag):
    async with open_agent_database(location) as db:
        svc = MemoryService(db)
        print("ready", flush=True)
        sys.stdin.readline()
        errors = []
        for i in range(n):
            key = f"k{i % keys:03d}"
            try:
                await svc.update_memory("project:team:race", key, {"by": tag, "i": i}, updated_by=tag)
            except Exception as exc:
                errors.append(type(exc).__name__ + ": " + str(exc))
        print(json.dumps(errors), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
"""


@pytest.mark.process
@pytest.mark.parametrize("keys", [1, 100])
async def test_eight_processes_keep_every_version(agent_db: Any, store_rows: StoreRows, keys: int) -> None:
    """8 processes × 100 updates, on one key and spread over 100 keys: versions exactly 1..N
    per key, every writer's order kept, one audit row per write."""
    svc = MemoryService(agent_db)
    for k in range(keys):
        await svc.create_memory("project:team:race", f"k{k:03d}", {"by": "seed"}, "semantic")
    per_process = 100
    results = run_processes(WRITER, [[store_rows.location, str(keys), str(per_process), f"w{p}"] for p in range(8)])
    assert results == [[]] * 8, results  # no error of any kind (no IntegrityError, no lock timeout)
    total = 0
    for k in range(keys):
        history = await svc.get_memory_history("project:team:race", f"k{k:03d}")
        assert [e.version for e in history] == list(range(1, len(history) + 1))
        total += len(history) - 1
        for p in range(8):
            mine = [e.value["i"] for e in history if e.value.get("by") == f"w{p}"]
            assert mine == sorted(mine)
    assert total == 8 * per_process
    audit = store_rows("SELECT memory_entry_id, action_type FROM audit WHERE memory_namespace = ?", ("project:team:race",))
    assert Counter(a["action_type"] for a in audit) == {"memory_create": keys, "memory_update": 8 * per_process}
    assert len({a["memory_entry_id"] for a in audit}) == keys + 8 * per_process


async def test_concurrent_operations_in_one_process(agent_db: Any) -> None:
    """Tasks of one event loop sharing a store (one connection thread or a pool) lose nothing."""
    svc = MemoryService(agent_db)
    await svc.create_memory("project:team:tasks", "k", 0, "semantic")
    await asyncio.gather(*(svc.update_memory("project:team:tasks", "k", i) for i in range(40)))
    assert [e.version for e in await svc.get_memory_history("project:team:tasks", "k")] == list(range(1, 42))


# --- PostgreSQL only ------------------------------------------------------------------------------

@pytest.mark.process
def test_four_concurrent_migrators_exactly_one_applies(pg_server: Any) -> None:
    """4 processes migrate one fresh database at once: all succeed, exactly one of them applies
    every migration (in order, one transaction), the others find nothing pending, and none is
    left pending. (Through PgBouncer: tests/test_pgbouncer.py.)"""
    from indexer.storage.postgres import migrations

    dsn = pg_server.fresh_database(migrated=False)
    results = run_processes(MIGRATOR, [[dsn] for _ in range(4)])
    names = [m.name for m in migrations.load_migrations()]
    assert sorted(results) == [[], [], [], names], results
    state = migrations.read_state(dsn)
    assert sorted(state.applied) == names and state.pending == []
    assert migrations.migrate(dsn).applied == []  # idempotent


def test_a_failing_migration_leaves_the_store_as_it_was(pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run is one transaction: a broken last migration rolls back the ones before it too,
    and the next run (fixed) applies them all."""
    import psycopg

    from indexer.storage.postgres import migrations
    from indexer.storage.records import Migration

    dsn = pg_server.fresh_database(migrated=False)
    real = migrations.load_migrations()
    monkeypatch.setattr(migrations, "load_migrations",
                        lambda: [*real, Migration("9999_broken", "CREATE TABLE half (x int); SELECT 1/0;")])
    with pytest.raises(MigrationError, match=r"migration 9999_broken failed .*division by zero; nothing was applied"):
        migrations.migrate(dsn)
    with psycopg.connect(dsn) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == []
    monkeypatch.setattr(migrations, "load_migrations", lambda: real)
    assert migrations.migrate(dsn).applied == [m.name for m in real]


def test_an_edited_migration_is_refused(pg_dsn: str) -> None:
    import psycopg

    from indexer.storage.postgres import migrations

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'abc' WHERE name = '0001_memory'")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        migrations.migrate(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES ('9999_future', 'x', 'now')")
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE name = '0001_memory'",
                     (migrations.load_migrations()[0].checksum,))
    with pytest.raises(MigrationError, match="newer indexer"):
        migrations.migrate(pg_dsn)


def _kill_other_backends(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("check", [True, False], ids=["pool-check", "retry"])
async def test_a_killed_connection_the_next_operation_succeeds(pg_dsn: str, check: bool) -> None:
    """pg_terminate_backend on the pool's connection: the next operation succeeds, through the
    pool's health check, or (check off) through the one retry of an operation that had
    committed nothing."""
    async with open_agent_database(pg_dsn, check=check, min_size=1, max_size=1) as db:
        svc = MemoryService(db)
        await svc.create_memory("project:team:k", "k", 1, "semantic")
        assert _kill_other_backends(pg_dsn) == 1
        await asyncio.sleep(0.1)
        updated = await svc.update_memory("project:team:k", "k", 2)
        assert updated.version == 2
        assert [e.version for e in await svc.get_memory_history("project:team:k", "k")] == [1, 2]
        assert db.retries == (0 if check else 1)


async def test_a_deadlock_the_server_breaks_is_run_again(pg_dsn: str) -> None:
    """Two operations lock the same two things in opposite orders: the server detects the
    deadlock and rolls one back; that one is run again (whole) instead of failing with
    psycopg's DeadlockDetected. Before: one of the two raised."""
    import threading

    barrier = threading.Barrier(2)
    attempts: Counter[str] = Counter()

    def crossed(conn: Any, first: int, second: int, name: str) -> str:
        attempts[name] += 1
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (first,))
        if attempts[name] == 1:
            barrier.wait(10)  # each holds its first lock before asking for the other
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (second,))
        return name

    async with open_agent_database(pg_dsn, max_size=2) as db:
        results = await asyncio.gather(db.run(crossed, 1, 2, "a"), db.run(crossed, 2, 1, "b"))
        assert sorted(results) == ["a", "b"]
        assert db.retries == 1 and sorted(attempts.values()) == [1, 2]


async def test_without_prepared_statements_for_pgbouncer(pg_dsn: str) -> None:
    """prepare_threshold=None (PgBouncer in transaction mode): the same operations work, and
    the server holds no prepared statement of ours."""
    async with open_agent_database(pg_dsn, prepare_threshold=None, max_size=1) as db:
        svc = MemoryService(db)
        await svc.create_memory("project:team:p", "k", 0, "semantic")
        for i in range(10):
            await svc.update_memory("project:team:p", "k", i)
            await svc.get_memory("project:team:p", "k")
        prepared = await db.run(lambda conn: conn.execute("SELECT count(*) AS n FROM pg_prepared_statements").fetchone()["n"])
        assert prepared == 0
    async with open_agent_database(pg_dsn, prepare_threshold=0, max_size=1) as db:  # prepared at once
        svc = MemoryService(db)
        await svc.get_memory("project:team:p", "k")
        await svc.get_memory("project:team:p", "k")
        prepared = await db.run(lambda conn: conn.execute("SELECT count(*) AS n FROM pg_prepared_statements").fetchone()["n"])
        assert prepared > 0


async def test_json_and_timestamps_round_trip_byte_for_byte(agent_db: Any, store_rows: StoreRows) -> None:
    """Values keep their JSON text (key order, number spelling) and timestamps their RFC 3339
    text, on both engines alike."""
    svc = MemoryService(agent_db)
    entry = await svc.create_memory("project:team:j", "k", {"z": 1, "a": [1.5, "é", None]}, "semantic", metadata={"b": 2, "a": 1})
    raw = store_rows("SELECT value, metadata, created_at FROM memory_entries WHERE id = ?", (entry.id,))[0]
    assert raw["value"] == '{"z":1,"a":[1.5,"é",null]}'
    assert raw["metadata"] == '{"b":2,"a":1}'
    assert raw["created_at"] == entry.created_at and entry.created_at.endswith("Z") and len(entry.created_at) == 24
    assert list((await svc.get_memory("project:team:j", "k")).value) == ["z", "a"]
    assert engine_of_db(agent_db) == store_rows.engine


def test_a_bad_timestamp_or_json_is_refused_by_the_postgres_schema(pg_dsn: str) -> None:
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        for value, ts in (("{bad", "2026-01-01T00:00:00.000Z"), ("1", "2026-01-01 00:00:00")):
            with pytest.raises(psycopg.errors.DataError if value == "{bad" else psycopg.errors.CheckViolation):
                with conn.transaction():
                    conn.execute("INSERT INTO memory_entries (namespace, key, value, memory_type, created_at, updated_at) "
                                 "VALUES ('user:a', 'k', %s, 'semantic', %s, %s)", (value, ts, ts))


# --- the same operations, the same state, on both engines ------------------------------------------

NAMESPACES = ("user:a", "user:a:x", "user:b", "project:p")
KEYS = ("k1", "k2", "k10")
operation = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(NAMESPACES), st.sampled_from(KEYS),
              st.one_of(st.integers(-3, 3), st.text(max_size=3), st.none(), st.lists(st.booleans(), max_size=2)),
              st.sampled_from(("semantic", "episodic", "procedural"))),
    st.tuples(st.just("update"), st.sampled_from(NAMESPACES), st.sampled_from(KEYS),
              st.dictionaries(st.sampled_from("zab"), st.integers(0, 9), max_size=3)),
    st.tuples(st.just("delete"), st.sampled_from(NAMESPACES), st.sampled_from(KEYS)),
    st.tuples(st.just("restore"), st.sampled_from(NAMESPACES), st.sampled_from(KEYS)),
    st.tuples(st.just("rollback"), st.sampled_from(NAMESPACES), st.sampled_from(KEYS), st.integers(1, 4)),
)


async def _apply(svc: MemoryService, op: tuple[Any, ...]) -> str:
    """Run one operation; its outcome as text (the result's version, or the error's class and message)."""
    kind, ns, key, *rest = op
    try:
        if kind == "create":
            result: Any = await svc.create_memory(ns, key, rest[0], rest[1])
        elif kind == "update":
            result = await svc.update_memory(ns, key, rest[0])
        elif kind == "delete":
            result = await svc.delete_memory(ns, key)
        elif kind == "restore":
            result = await svc.restore_memory(ns, key)
        else:
            result = await svc.rollback_memory(ns, key, rest[0])
    except IndexerError as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"v{result.version}" if hasattr(result, "version") else str(result)


async def _logical_state(svc: MemoryService) -> list[Any]:
    """Every version of every key (ids and timestamps aside), and the listings by prefix."""
    state: list[Any] = []
    for ns in NAMESPACES:
        for key in KEYS:
            try:
                history = await svc.get_memory_history(ns, key)
            except IndexerError:
                continue
            state.append([(e.namespace, e.key, e.version, json.dumps(e.value), e.memory_type, e.is_deleted, e.metadata)
                          for e in history])
    for prefix in ("user", "user:a", "project"):
        state.append([(e.namespace, e.key, e.version) for e in await svc.list_memories(prefix, limit=1000)])
    return state


@settings(max_examples=15 * EXAMPLES_SCALE, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_the_same_operations_leave_the_same_state_on_both_engines(pg_server: Any, tmp_path_factory: Any,
                                                                  ops: list[tuple[Any, ...]]) -> None:
    """A differential test: a random sequence of memory operations, run on an SQLite file and
    on PostgreSQL, gives the same outcome at each step and the same logical state at the end."""
    async def run(location: str) -> tuple[list[str], list[Any], int]:
        async with open_agent_database(location) as db:
            svc = MemoryService(db)
            outcomes = [await _apply(svc, op) for op in ops]
            audit = await db.run(lambda conn: svc.store.audit_rows(conn, "user:a"), write=False)
            return outcomes, await _logical_state(svc), len(audit)

    sqlite = asyncio.run(run(str(tmp_path_factory.mktemp("diff") / "agent.db")))
    dsn = pg_server.fresh_database()
    try:
        postgres = asyncio.run(run(dsn))
    finally:
        pg_server.drop(dsn)
    assert postgres[0] == sqlite[0]
    assert postgres[1] == sqlite[1]
    assert postgres[2] == sqlite[2]


def test_compared_text_uses_byte_order_whatever_the_server_locale(pg_dsn: str) -> None:
    """Namespaces, keys and timestamps are compared in byte order, as SQLite compares them, even
    on a server whose default locale sorts otherwise (prefix ranges and keyset pages rely on it)."""
    rows = StoreRows(pg_dsn)(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        "WHERE table_name IN ('memory_entries', 'audit') AND collation_name IS NOT NULL ORDER BY 1, 2")
    assert {(r["table_name"], r["column_name"]) for r in rows if r["collation_name"] == "C"} >= {
        ("memory_entries", "namespace"), ("memory_entries", "key"), ("memory_entries", "created_at"),
        ("memory_entries", "updated_at"), ("audit", "timestamp"), ("audit", "memory_namespace")}


async def test_a_process_never_holds_more_connections_than_its_pool(pg_dsn: str) -> None:
    """50 operations at once through a pool of 2: at most 2 connections of ours on the server."""
    async with open_agent_database(pg_dsn, min_size=1, max_size=2) as db:
        svc = MemoryService(db)
        await svc.create_memory("project:pool", "k", 0, "semantic")
        seen: list[int] = []

        async def watch() -> None:
            for _ in range(20):
                seen.append(len(StoreRows(pg_dsn)(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")))
                await asyncio.sleep(0.01)

        await asyncio.gather(watch(), *(svc.update_memory("project:pool", "k", i) for i in range(50)))
        assert 1 <= max(seen) <= 2, seen
        assert (await svc.get_memory("project:pool", "k")).version == 51


def test_a_user_server_must_be_named_by_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """INDEXER_TEST_POSTGRES in key=value form would be taken for a file path: refused, saying so."""
    from pg_server import ENV_DSN, ServerError, SuiteServer

    monkeypatch.setenv(ENV_DSN, "host=/tmp dbname=postgres user=postgres")
    with pytest.raises(ServerError, match="must be a postgresql:// URL"):
        SuiteServer()
