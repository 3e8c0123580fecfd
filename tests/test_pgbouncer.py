"""The agent store through a real PgBouncer in transaction pooling mode (the ``pg_bouncer``
fixture: Debian's pgbouncer in front of the suite's PostgreSQL, 4 server connections per
database), with server-side prepared statements off (``agent_prepared_statements = false``):
migrations, memories, sessions and the task queue, from the CLI and the Python services, with
several real processes at once; what prepared statements do there; and the connection share of
N processes, directly and through PgBouncer.

In transaction pooling, each transaction of a client may run on another server connection:
nothing may rely on session state (a session-level advisory lock, a prepared statement)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg.conninfo
import pytest

from conftest import REPO_ROOT, run_processes
from pg_server import MIGRATOR


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


@pytest.mark.process
@pytest.mark.parametrize("run", range(3))
def test_four_concurrent_migrators_through_pgbouncer(pg_server: Any, pg_bouncer: Any, run: int) -> None:
    """4 processes migrate one fresh database at once through PgBouncer: all succeed, exactly
    one applies every migration (the others find nothing pending), and no advisory lock is left
    behind on the server connections PgBouncer keeps open."""
    from indexer.storage.postgres import migrations

    dsn = pg_server.fresh_database(migrated=False)
    results = run_processes(MIGRATOR, [[through(pg_bouncer, dsn)] for _ in range(4)])
    names = [m.name for m in migrations.load_migrations()]
    assert sorted(results) == [[], [], [], names], results
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


# --- a team's processes at once: memories, events, the task queue; the connections they take ------

WORKER = r"""
import asyncio, json, sys
from indexer import MemoryService, SessionService, TaskService
from indexer.storage.engines import open_agent_database

async def main(location, settings, tag, n):
    async with open_agent_database(location, **json.loads(settings)) as db:
        memories, sessions, tasks = MemoryService(db), SessionService(db), TaskService(db)
        print("ready", flush=True)
        sys.stdin.readline()
        for start in range(0, n, 4):  # 4 operations at once: the pool grows to its size
            await asyncio.gather(*(memories.update_memory("project:team:bouncer", "k", {"by": tag, "i": i}, updated_by=tag)
                                   for i in range(start, min(n, start + 4))))
            await asyncio.gather(*(sessions.append_event("s-team", {"type": "step", "by": tag, "i": i})
                                   for i in range(start, min(n, start + 4))))

        async def work():
            done = []
            while (claim := await tasks.claim(tag)) is not None:
                await tasks.complete(claim.task.id, {"by": tag}, claim.agent_id)
                done.append(claim.task.id)
            return done

        claimed = [t for done in await asyncio.gather(work(), work()) for t in done]
        print(json.dumps(claimed), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


class ConnectionSampler:
    """Polls, in a thread, the server's connections to one database (``pg_stat_activity``'s
    client backends, from another database: an autovacuum worker on the database is not a
    connection) and, through PgBouncer, its client connections to it (``SHOW CLIENTS``); keeps
    the peaks. Sampling starts once the set-up's own connections have left the server."""

    COUNT = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"

    def __init__(self, server: Any, dsn: str, bouncer: Any = None) -> None:
        import threading

        self.server, self.bouncer = server, bouncer
        self.name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        self.server_peak = self.client_peak = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        console = (psycopg.connect(self.bouncer.dsn("pgbouncer"), autocommit=True, prepare_threshold=None)
                   if self.bouncer else None)
        try:
            with psycopg.connect(self.server.admin_dsn, autocommit=True) as conn:
                while not self._stop.is_set():
                    row = conn.execute(self.COUNT, (self.name,)).fetchone()
                    self.server_peak = max(self.server_peak, int(row[0]) if row else 0)
                    if console is not None:
                        cursor = console.execute("SHOW CLIENTS")
                        database = [d.name for d in cursor.description or []].index("database")
                        self.client_peak = max(self.client_peak,
                                               sum(1 for c in cursor.fetchall() if c[database] == self.name))
                    self.samples += 1
                    self._stop.wait(0.02)
        finally:
            if console is not None:
                console.close()

    def __enter__(self) -> ConnectionSampler:
        import time

        import psycopg

        with psycopg.connect(self.server.admin_dsn, autocommit=True) as conn:  # a closed backend exits shortly after
            deadline = time.monotonic() + 10
            while (left := int(conn.execute(self.COUNT, (self.name,)).fetchone()[0])) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert left == 0, f"{left} connections of the set-up still open on {self.name} after 10 s"
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.mark.process
@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
async def test_four_processes_share_the_store_and_stay_within_their_connections(
        pg_server: Any, pg_dsn: str, request: pytest.FixtureRequest, route: str) -> None:
    """4 processes at once, each 4 operations at a time: 40 versions of one key each (versions
    exactly 1..161, one audit row per write), 40 events each on one session (seq exactly
    1..160), and 2 claim loops each over one queue of 60 tasks (each claimed and completed
    exactly once). Every connection runs the same statements far more than psycopg's prepare
    threshold (5) times. Directly (pool size 2, prepared statements on): the server never sees
    more than 4 × 2 connections to the database. Through PgBouncer (pool size 4, prepared
    statements off): up to 16 clients, never more than PgBouncer's 4 server connections."""
    from indexer import MemoryService, SessionService, TaskService
    from indexer.storage.engines import open_agent_database

    processes, per_process, tasks = 4, 40, 60
    async with open_agent_database(pg_dsn) as db:
        await MemoryService(db).create_memory("project:team:bouncer", "k", {"by": "seed"}, "semantic")
        await SessionService(db).create_session("team", "alice", session_id="s-team")
        submitted = {(await TaskService(db).submit(f"task {i}")).id for i in range(tasks)}
    if route == "direct":
        location, settings, bouncer, pool = pg_dsn, {"max_size": 2}, None, 2
    else:
        bouncer = request.getfixturevalue("pg_bouncer")
        location, settings, pool = through(bouncer, pg_dsn), {"max_size": 4, "prepare_threshold": None}, 4
    with ConnectionSampler(pg_server, pg_dsn, bouncer) as sampler:
        results = run_processes(WORKER, [[location, json.dumps(settings), f"w{p}", str(per_process)]
                                         for p in range(processes)])
    claimed = [t for r in results for t in r]
    assert sorted(claimed) == sorted(submitted)  # each task claimed exactly once, none left
    async with open_agent_database(pg_dsn) as db:
        history = await MemoryService(db).get_memory_history("project:team:bouncer", "k")
        assert [e.version for e in history] == list(range(1, processes * per_process + 2))
        events = await SessionService(db).list_events("s-team", limit=1000)
        assert [e.seq for e in events.items] == list(range(1, processes * per_process + 1))
        assert await TaskService(db).counts() == {"completed": tasks}
        audit = await db.run(lambda conn: conn.execute(
            "SELECT count(*) AS n FROM audit WHERE memory_namespace = 'project:team:bouncer'").fetchone()["n"])
        assert audit == processes * per_process + 1
    assert sampler.samples > 10
    if bouncer is None:
        assert pool < sampler.server_peak <= processes * pool, sampler.server_peak  # N processes' share: N × k
    else:
        assert sampler.server_peak <= bouncer.pool_size < sampler.client_peak <= processes * pool, \
            (sampler.server_peak, sampler.client_peak)


# --- the CLI through PgBouncer ---------------------------------------------------------------------

def indexer(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "indexer", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finish(*procs: subprocess.Popen[str]) -> list[str]:
    """Each process's output; every one must exit 0."""
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (proc.args, out, err)
        outputs.append(out)
    return outputs


def in_process(*args: str, env: dict[str, str]) -> str:
    """One command through CliRunner (the same CLI, without a process's start-up)."""
    from click.testing import CliRunner

    from indexer.cli.app import cli

    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


@pytest.mark.process
def test_the_cli_through_pgbouncer(pg_server: Any, pg_bouncer: Any, isolated_home: Path) -> None:
    """``indexer`` with INDEXER_AGENT_DB pointing at PgBouncer and
    INDEXER_AGENT_PREPARED_STATEMENTS=false; 4 real processes at once for each write: 4
    ``migrate`` on a fresh database (one of them applies them all, no advisory lock left), 4
    updates of one memory (versions 1..5), 4 appends to one session (seq 1..4), 4 claimers
    on 4 tasks (each claimed once); then reads, completes, ``status`` and ``doctor``."""
    from indexer.storage.postgres import migrations

    dsn = pg_server.fresh_database(migrated=False)
    env = {**os.environ, "INDEXER_HOME": str(isolated_home), "INDEXER_AGENT_DB": through(pg_bouncer, dsn),
           "INDEXER_AGENT_PREPARED_STATEMENTS": "false",
           "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    reports = [json.loads(out) for out in finish(*(indexer("migrate", "--json", env=env) for _ in range(4)))]
    names = [m.name for m in migrations.load_migrations()]
    assert sorted(r["agent_store"]["applied"] for r in reports) == [[], [], [], names], reports
    assert advisory_locks(pg_server, dsn) == 0

    in_process("memory", "add", "project:team:cli", "style", '{"tabs": false}', "--by", "alice", env=env)
    finish(*(indexer("memory", "update", "project:team:cli", "style", json.dumps({"n": i}), "--by", f"w{i}", env=env)
             for i in range(4)))
    assert json.loads(in_process("memory", "get", "project:team:cli", "style", "--json", env=env))["version"] == 5
    history = json.loads(in_process("memory", "history", "project:team:cli", "style", "--json", env=env))
    assert [h["version"] for h in history] == list(range(1, 6))

    in_process("session", "create", "team", "alice", "--id", "s-cli", env=env)
    finish(*(indexer("session", "append", "s-cli", json.dumps({"type": "step", "i": i}), env=env) for i in range(4)))
    events = json.loads(in_process("session", "events", "s-cli", "--json", env=env))
    assert [e["seq"] for e in events["items"]] == list(range(1, 5))

    for i in range(4):
        in_process("task", "submit", f"task {i}", "--id", f"t-{i}", env=env)
    claims = [json.loads(out) for out in finish(*(indexer("task", "claim", "--worker", f"w{w}", "--json", env=env)
                                                  for w in range(4)))]
    assert sorted(c["task"]["id"] for c in claims) == [f"t-{i}" for i in range(4)]
    for c in claims:
        in_process("task", "complete", c["task"]["id"], "--agent", c["agent_id"], env=env)
    assert json.loads(in_process("task", "claim", "--worker", "late", "--json", env=env)) is None

    status = in_process("status", env=env)
    assert "agent store: postgresql" in status and "1 memories, 5 versions" in status, status
    assert "4 events, 4 tasks" in status, status
    assert "postgresql" in in_process("doctor", env=env)
