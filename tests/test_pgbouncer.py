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
