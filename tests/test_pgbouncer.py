"""The agent store through a real PgBouncer in transaction pooling mode (the ``pg_bouncer``
fixture: Debian's pgbouncer in front of the suite's PostgreSQL, 4 server connections per
database), with server-side prepared statements off (``agent_prepared_statements = false``):
migrations, memories, sessions and the task queue, from the CLI and the Python services, with
several real processes at once; what prepared statements do there; and the connection share of
N processes, directly and through PgBouncer.

In transaction pooling, each transaction of a client may run on another server connection:
nothing may rely on session state (a session-level advisory lock, a prepared statement)."""

from __future__ import annotations

from typing import Any

import psycopg.conninfo
import pytest

from conftest import run_processes


def through(bouncer: Any, dsn: str) -> str:
    """The DSN of the same database through PgBouncer."""
    return str(bouncer.dsn(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]))


def advisory_locks(server: Any, dsn: str) -> int:
    """Advisory locks held on the database of ``dsn`` (by any backend), seen from another database."""
    import psycopg

    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                           "WHERE l.locktype = 'advisory' AND d.datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


MIGRATOR = r"""
import json, sys
from indexer.storage.postgres import migrations
print("ready", flush=True)
sys.stdin.readline()
report = migrations.migrate(sys.argv[1])
print(json.dumps(report.applied), flush=True)
"""


@pytest.mark.process
@pytest.mark.parametrize("run", range(3))
def test_four_concurrent_migrators_through_pgbouncer(pg_server: Any, pg_bouncer: Any, run: int) -> None:
    """4 processes migrate one fresh database at once through PgBouncer: all succeed, each
    migration is applied exactly once, and no advisory lock is left behind on the server
    connections PgBouncer keeps open."""
    from indexer.storage.postgres import migrations

    dsn = pg_server.fresh_database(migrated=False)
    results = run_processes(MIGRATOR, [[through(pg_bouncer, dsn)] for _ in range(4)])
    names = [m.name for m in migrations.load_migrations()]
    applied = [name for result in results for name in result]
    assert sorted(applied) == names, results
    state = migrations.read_state(dsn)
    assert sorted(state.applied) == names and state.pending == []
    assert advisory_locks(pg_server, dsn) == 0
    assert migrations.migrate(through(pg_bouncer, dsn)).applied == []
    assert advisory_locks(pg_server, dsn) == 0


# --- prepared statements through PgBouncer -------------------------------------------------------

async def test_prepared_statements_through_pgbouncer_say_to_turn_them_off(pg_dsn: str, pg_bouncer: Any) -> None:
    """Two stores (two client connections) take turns writing one key through PgBouncer, which
    runs both on its one server connection. With psycopg's prepared statements on (after 5
    runs of a statement), the second store's PREPARE meets the first one's on that server
    connection ("prepared statement "_pg3_0" already exists"): the operation is refused in one
    sentence naming agent_prepared_statements = false, and nothing of it is applied. With them
    off, the same turns all succeed."""
    from indexer import MemoryService
    from indexer.errors import IndexerError
    from indexer.storage.engines import open_agent_database

    dsn = through(pg_bouncer, pg_dsn)
    async with open_agent_database(pg_dsn) as direct:
        await MemoryService(direct).create_memory("project:team:turns", "k", 0, "semantic")
    await take_turns(dsn, prepare_threshold=None, writes=20)  # > 5 runs of each statement per client
    async with open_agent_database(dsn, max_size=1) as first, open_agent_database(dsn, max_size=1) as second:
        assert first.settings.prepare_threshold == 5
        with pytest.raises(IndexerError) as refused:
            await take_turns(dsn, stores=(first, second), writes=20)
        message = str(refused.value)
        assert "agent_prepared_statements = false" in message and "nothing was applied" in message, message
        assert "prepared statement" in message and "\n" not in message
    async with open_agent_database(pg_dsn) as direct:  # what was written: versions 1..N, one audit row each
        history = await MemoryService(direct).get_memory_history("project:team:turns", "k")
        assert [e.version for e in history] == list(range(1, len(history) + 1))
        assert 21 < len(history) < 41  # the 20 turns without, then those before the refusal
        audit = await direct.run(lambda conn: conn.execute(
            "SELECT count(*) AS n FROM audit WHERE memory_namespace = 'project:team:turns'").fetchone()["n"])
        assert audit == len(history)


async def take_turns(dsn: str, *, writes: int, prepare_threshold: int | None = 5, stores: tuple[Any, ...] = ()) -> None:
    """``writes`` updates of one key, alternately through two stores (opened here unless given)."""
    from indexer import MemoryService
    from indexer.storage.engines import open_agent_database

    if not stores:
        async with (open_agent_database(dsn, max_size=1, prepare_threshold=prepare_threshold) as first,
                    open_agent_database(dsn, max_size=1, prepare_threshold=prepare_threshold) as second):
            return await take_turns(dsn, writes=writes, stores=(first, second))
    services = [MemoryService(s) for s in stores]
    for i in range(writes):
        await services[i % 2].update_memory("project:team:turns", "k", i)
        await services[i % 2].get_memory("project:team:turns", "k")
