"""The async Database API of the report: initialise (migrate), transactions, validation."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

import aiosqlite

from indexer.errors import IndexerError
from indexer.storage import driver, hot_queries, migrations

LOCK_RETRY_SECONDS = 30.0
T = TypeVar("T")


def is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, driver.OperationalError) and ("locked" in text or "busy" in text)


def _begin_immediate(raw: Any) -> None:
    """``BEGIN IMMEDIATE``, retried with back-off for up to 30 s while another process writes."""
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    delay = 0.01
    while True:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except driver.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _finish(raw: Any, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """``fn`` inside the transaction just begun, then COMMIT (ROLLBACK on any error)."""
    try:
        result = fn(raw, *args)
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return result


def _run_sync(raw: Any, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
    if write:
        _begin_immediate(raw)
    else:
        raw.execute("BEGIN")  # one snapshot for every statement of fn
    return _finish(raw, fn, args)


def _run_inline(raw: Any, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> tuple[bool, T | None]:
    """(True, result) when the transaction could start at once; (False, None) when the write
    lock is held elsewhere (nothing was done: the caller takes the patient path)."""
    if write:
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute("BEGIN IMMEDIATE")
        except driver.OperationalError as exc:
            if is_busy(exc):
                return False, None
            raise
        finally:
            raw.execute(f"PRAGMA busy_timeout={driver.EXPECTED_PRAGMAS['busy_timeout']}")
    else:
        raw.execute("BEGIN")
    return True, _finish(raw, fn, args)


class Database:
    """One database file (or ``":memory:"``), one serialised aiosqlite connection.

    ``await initialize()`` applies pending migrations (adopting a legacy file, after a
    backup) and opens the connection; use ``async with Database(path) as db:`` to do both
    and close at the end. Writes go through ``async with db.transaction() as conn``.
    """

    def __init__(self, path: str | Path, *, migrate: bool = True, backup: bool = True) -> None:
        self.path = Path(path) if str(path) != ":memory:" else Path(":memory:")
        self._migrate = migrate
        self._backup = backup
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.migration_report: migrations.MigrationReport | None = None

    @property
    def in_memory(self) -> bool:
        return str(self.path) == ":memory:"

    async def initialize(self) -> "Database":
        if self._conn is not None:
            return self
        if self.in_memory:
            self._conn = await driver.connect_async(":memory:")
            await self._apply_fresh_in_memory()
            return self
        if self._migrate:
            self.migration_report = await asyncio.to_thread(
                migrations.migrate, self.path, backup=self._backup
            )
        else:
            state = await asyncio.to_thread(migrations.read_state, self.path)
            pending = migrations.pending_migrations(state, migrations.load_migrations())
            if state.kind == "missing" or pending:
                raise IndexerError(
                    f"database {self.path} is not up to date ({len(pending)} pending); run: indexer migrate"
                )
        self._conn = await driver.connect_async(self.path)
        return self

    async def _apply_fresh_in_memory(self) -> None:
        assert self._conn is not None
        await self._conn.execute("BEGIN")
        await self._conn.execute(migrations.VERSION_DDL)
        for migration in migrations.load_migrations():
            for statement in migrations.split_statements(migration.sql):
                await self._conn.execute(statement)
            await self._conn.execute(
                f"INSERT INTO {migrations.VERSION_TABLE} (name, checksum, applied_at) "
                "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                (migration.name, migration.checksum),
            )
        await self._conn.execute("COMMIT")

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> "Database":
        return await self.initialize()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise IndexerError("Database is not initialised: await db.initialize() first")
        return self._conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for reads; serialised with writes of this process."""
        conn = self._require()
        async with self._lock:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any error).

        Taking the write lock first means no read-then-write race with other processes;
        a lock held elsewhere longer than ``busy_timeout`` is retried with back-off for up
        to 30 s, so "database is locked" does not reach callers under normal contention.
        """
        conn = self._require()
        async with self._lock:
            deadline = time.monotonic() + LOCK_RETRY_SECONDS
            delay = 0.01
            while True:
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                    break
                except driver.OperationalError as exc:
                    if not is_busy(exc) or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

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
        conn = self._require()
        raw = getattr(conn, "_conn", None)
        if raw is None or not hasattr(conn, "_execute"):  # pragma: no cover - aiosqlite internals moved
            raise IndexerError("this aiosqlite version lacks Connection._conn / _execute")
        async with self._lock:  # every use of the connection holds it: its thread is idle now
            if inline:
                done, result = _run_inline(raw, fn, args, write)
                if done:
                    await asyncio.sleep(0)  # let other tasks in between operations
                    return result  # type: ignore[return-value]
            return await conn._execute(_run_sync, raw, fn, args, write)  # type: ignore[no-any-return]

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
            queries[query.name] = {"sql": query.sql, **hot_queries.plan_verdict(plan)}
        return {"indexes": names, "count": len(names), "queries": queries}
