"""The agent store under the races a team meets, on both engines (``engine``), and what only a
server engine has: concurrent migrators, a killed connection, a pool through PgBouncer's rules.

Real processes against a real SQLite file and a real PostgreSQL (tests/pg_server.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from conftest import StoreRows, run_processes
from indexer import MemoryService
from indexer.errors import MigrationError
from indexer.storage.engines import engine as engine_of_db
from indexer.storage.engines import open_agent_database

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

MIGRATOR = r"""
import json, sys
from indexer.storage.postgres import migrations
print("ready", flush=True)
sys.stdin.readline()
report = migrations.migrate(sys.argv[1])
print(json.dumps(report.applied), flush=True)
"""


@pytest.mark.process
def test_four_concurrent_migrators_exactly_one_applies(pg_server: Any) -> None:
    from indexer.storage.postgres import migrations

    dsn = pg_server.fresh_database(migrated=False)
    results = run_processes(MIGRATOR, [[dsn] for _ in range(4)])
    names = [m.name for m in migrations.load_migrations()]
    assert sorted(results, key=len) == [[], [], [], names], results
    state = migrations.read_state(dsn)
    assert sorted(state.applied) == names and state.pending == []
    assert migrations.migrate(dsn).applied == []  # idempotent


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
