"""The async Database API of the report: initialise (migrate), transactions, validation."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from indexer.aio import settle
from indexer.errors import IndexerError
from indexer.locations import is_postgres
from indexer.storage.records import MigrationReport
from indexer.storage.sqlite import driver, hot_queries, migrations, transactions
from indexer.storage.sqlite.driver import Connection
from indexer.storage.sqlite.worker import AsyncConnection, ConnectionThread

T = TypeVar("T")


def run_sync(conn: Connection, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
    """``fn(conn, *args)`` as one transaction: what :meth:`Database.run` does on the thread."""
    return transactions.run_in_transaction(conn, fn, args, immediate=write)


class Database:
    """One database file (or ``":memory:"``), one connection on its own thread.

    ``await initialize()`` applies pending migrations (adopting a legacy file, after a
    backup) and opens the connection; use ``async with Database(path) as db:`` to do both
    and close at the end. Writes go through :meth:`run` or ``async with db.transaction() as conn``.
    """

    def __init__(self, path: str | Path, *, migrate: bool = True, backup: bool = True) -> None:
        if is_postgres(path):
            raise IndexerError(f"Database is an SQLite file; for {str(path).split('://')[0]}:// use "
                               "indexer.storage.engines.open_agent_database (memories only, so far)")
        self.path = Path(path) if str(path) != ":memory:" else Path(":memory:")
        self._migrate = migrate
        self._backup = backup
        self._worker: ConnectionThread | None = None
        self._closer: weakref.finalize[[], Database] | None = None
        self._lock = asyncio.Lock()
        self.migration_report: MigrationReport | None = None

    @property
    def in_memory(self) -> bool:
        return str(self.path) == ":memory:"

    async def initialize(self) -> Database:
        if self._worker is not None:
            return self
        if not self.in_memory:
            await self._bring_up_to_date()
        path = self.path
        worker = ConnectionThread(lambda: driver.connect(path))
        conn = await worker.start()
        try:
            if self.in_memory:
                await worker.call(migrations.apply_all, conn, migrations.load_migrations())
        except BaseException:
            await worker.close()
            raise
        # a script that raises before close() still closes (and checkpoints) at exit
        self._closer = weakref.finalize(self, worker.shutdown)
        self._worker = worker
        return self

    async def _bring_up_to_date(self) -> None:
        if self._migrate:
            self.migration_report = await asyncio.to_thread(
                migrations.migrate, self.path, backup=self._backup
            )
            return
        state = await asyncio.to_thread(migrations.read_state, self.path)
        pending = migrations.pending_migrations(state, migrations.load_migrations())
        if state.kind == "missing" or pending:
            raise IndexerError(
                f"database {self.path} is not up to date ({len(pending)} pending); run: indexer migrate"
            )

    async def close(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            if self._closer is not None:
                self._closer.detach()
            await worker.close()

    async def __aenter__(self) -> Database:
        return await self.initialize()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _require(self) -> ConnectionThread:
        if self._worker is None:
            raise IndexerError("Database is not initialised: await db.initialize() first")
        return self._worker

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """The connection, for reads; serialised with writes of this process."""
        worker = self._require()
        async with self._lock:
            yield AsyncConnection(worker)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any error), statement by statement.

        :func:`indexer.storage.sqlite.transactions.begin` on the connection's thread: the write
        lock first, retried with back-off for up to 30 s while another process holds it.

        A cancelled caller cannot stop the thread, so each step is awaited to its end
        (:func:`indexer.aio.settle`) before the cancellation is raised: cancelled while the lock
        is being taken, the transaction is rolled back once it began (the write lock is never
        left held); cancelled in the body, rolled back; cancelled during ``COMMIT``, committed.
        """
        worker = self._require()
        async with self._lock:
            began = worker.call(transactions.begin, worker.conn)
            try:
                await settle(began)
            except asyncio.CancelledError:
                if not began.cancelled() and began.exception() is None:
                    await settle(worker.call(transactions.rollback, worker.conn))
                raise
            try:
                yield AsyncConnection(worker)
            except BaseException:
                await settle(worker.call(transactions.rollback, worker.conn))
                raise
            await settle(worker.call(transactions.commit, worker.conn))

    async def run(self, fn: Callable[..., T], *args: Any, write: bool = True, inline: bool = False) -> T:
        """``fn(sqlite_connection, *args)`` as one transaction on the connection's own thread.

        One thread hop for a whole operation (its statements, audit row and commit) instead of
        one per statement: on 2 cores a hop costs ~0.15 ms, more than the SQL of a write.
        ``write=True`` takes the write lock first (``BEGIN IMMEDIATE``, retried like
        :meth:`transaction`); ``write=False`` reads from one snapshot.

        ``inline=True`` is for operations of a few indexed statements (a point read, one
        version, one event): when the write lock is free *right now* (asked with a zero busy
        timeout, so the event loop can never wait on another process) the operation runs on
        the event loop's thread without the hop, then yields to other tasks; when another
        process holds the lock, it takes the thread path and its patient retries.
        """
        worker = self._require()
        async with self._lock:  # every use of the connection holds it
            if inline and worker.idle:  # idle: no job of a cancelled caller still running there
                try:
                    result = transactions.run_in_transaction(worker.conn, fn, args, immediate=write, wait=False)
                except transactions.LockBusy:
                    pass
                else:
                    await asyncio.sleep(0)  # let other tasks in between operations
                    return result
            return await worker.call(run_sync, worker.conn, fn, args, write)

    async def validate_foreign_keys(self) -> list[dict[str, Any]]:
        """Rows of ``PRAGMA foreign_key_check``: table, rowid, parent, fk index."""
        async with self.read() as conn:
            rows = await conn.execute_fetchall("PRAGMA foreign_key_check")
        return [{"table": r[0], "rowid": r[1], "parent": r[2], "fkid": r[3]} for r in rows]

    async def explain_query_plan(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[str]:
        async with self.read() as conn:
            rows = await conn.execute_fetchall("EXPLAIN QUERY PLAN " + sql, tuple(params))
        return [str(r[3]) for r in rows]

    async def get_index_usage(self) -> dict[str, Any]:
        """The named indexes that exist, and for each hot query the index its plan uses."""
        async with self.read() as conn:
            names = [r[0] for r in await conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL ORDER BY name"
            )]
        queries = {}
        for query in hot_queries.HOT_QUERIES:
            plan = await self.explain_query_plan(query.sql, query.params)
            queries[query.name] = {"sql": query.sql, **hot_queries.plan_verdict(plan, query.json_each)}
        return {"indexes": names, "count": len(names), "queries": queries}
