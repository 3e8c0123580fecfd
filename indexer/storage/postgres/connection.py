"""A pool of psycopg 3 connections to one PostgreSQL database, and operations run on it.

:class:`PostgresDatabase` has the shape of :class:`indexer.storage.sqlite.database.Database` that
the agent services use (``initialize``/``close``/``async with``, ``await run(fn, *args)``):
``fn(conn, *args)`` runs as one transaction on a pooled connection, in a worker thread (one
thread hop per operation, as on SQLite).

The pool (psycopg_pool) is bounded (``max_size``: N processes never hold more than N ×
max_size of the server's ``max_connections``), waits at most ``timeout`` seconds for a
connection, replaces connections older than ``max_lifetime``, and checks a connection before
lending it (a connection the server or an idle timeout closed is replaced, not handed out).
``prepare_threshold=None`` turns off server-side prepared statements, for PgBouncer in
transaction mode (with them on, an operation that meets another client's prepared statement on
its server connection, or misses its own, says to turn them off, in one sentence). An operation
whose connection dies before it committed (``pg_terminate_backend``, a server restart) is
retried once on a fresh connection; one that dies during its COMMIT is reported, since it may
or may not have been applied. One the server rolled back for a deadlock (two writers locking
the same rows in opposite orders, which the server detects and breaks) is run again, up to
three times.

Rows come back as dicts; ``json`` columns come back as their text (the services decode JSON
themselves, exactly as on SQLite).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import postgres
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

from indexer.errors import IndexerError
from indexer.storage.postgres import migrations

T = TypeVar("T")
log = logging.getLogger(__name__)
ROLLBACK_RETRIES = 3  # a transaction the server rolled back (deadlock, serialization failure) is run again
# SQLSTATE class 40 (psycopg makes deadlock_detected an OperationalError of its own)
_ROLLED_BACK = (psycopg.errors.TransactionRollback, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
Connection = psycopg.Connection[dict[str, Any]]
# What a server-side prepared statement meets behind a pooler that hands each transaction to any
# server connection (PgBouncer in transaction mode): "prepared statement "_pg3_0" already exists"
# (another client's, on this server connection) or "… does not exist" (ours is on another one).
_PREPARED_LOST = (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName)


class ConnectionLost(IndexerError):
    """The server went away while an operation was committing: its outcome is unknown."""


@dataclass(frozen=True)
class PoolSettings:
    min_size: int = 1
    max_size: int = 4
    timeout: float = 30.0
    max_lifetime: float = 1800.0
    max_idle: float = 300.0
    check: bool = True
    prepare_threshold: int | None = 5  # None: no server-side prepared statements (PgBouncer)


def _configure(conn: Connection) -> None:
    """json/jsonb as text: the services parse JSON themselves, on both engines alike."""
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(postgres.types[name].oid, TextLoader)


def _is_disconnect(exc: BaseException, conn: Connection | None) -> bool:
    return isinstance(exc, psycopg.OperationalError) and (conn is None or conn.broken or conn.closed)


class PostgresDatabase:
    """The agent store on PostgreSQL: ``async with PostgresDatabase(dsn) as db: await db.run(fn)``."""

    engine = "postgresql"

    def __init__(self, dsn: str, *, migrate: bool = True, settings: PoolSettings | None = None) -> None:
        self.dsn = dsn
        self.settings = settings or PoolSettings()
        self._migrate = migrate
        self._pool: ConnectionPool[Connection] | None = None
        self.migration_report: migrations.MigrationReport | None = None
        self.retries = 0  # operations retried after a lost connection (for tests and doctor)

    @property
    def location(self) -> str:
        return migrations.redact(self.dsn)

    def _open_pool(self) -> ConnectionPool[Connection]:
        s = self.settings
        kwargs: dict[str, Any] = {"row_factory": dict_row, "prepare_threshold": s.prepare_threshold}
        pool: ConnectionPool[Connection] = ConnectionPool(
            self.dsn, min_size=s.min_size, max_size=s.max_size, timeout=s.timeout, max_lifetime=s.max_lifetime,
            max_idle=s.max_idle, kwargs=kwargs, configure=_configure, open=False,
            check=ConnectionPool.check_connection if s.check else None, name="indexer-agent-store",
        )
        try:
            pool.open(wait=True, timeout=s.timeout)
        except Exception as exc:
            pool.close()
            raise IndexerError(f"cannot connect to PostgreSQL at {self.location}: {migrations.one_line(exc)}") from None
        return pool

    async def initialize(self) -> PostgresDatabase:
        if self._pool is not None:
            return self
        if self._migrate:
            self.migration_report = await asyncio.to_thread(migrations.migrate, self.dsn)
        else:
            state = await asyncio.to_thread(migrations.read_state, self.dsn)
            if state.pending:
                raise IndexerError(f"database {self.location} is not up to date ({len(state.pending)} pending); "
                                   "run: indexer migrate")
        self._pool = await asyncio.to_thread(self._open_pool)
        return self

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.close)

    async def __aenter__(self) -> PostgresDatabase:
        return await self.initialize()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _require(self) -> ConnectionPool[Connection]:
        if self._pool is None:
            raise IndexerError("PostgresDatabase is not initialised: await db.initialize() first")
        return self._pool

    def run_sync(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool = True) -> T:
        """``fn(conn, *args)`` as one transaction; retried once on a fresh connection when the
        connection was lost before anything committed, and up to :data:`ROLLBACK_RETRIES` times
        when the server rolled it back for a deadlock or a serialization failure (the whole
        transaction was undone: running it again is safe)."""
        pool = self._require()
        lost = rolled_back = 0
        while True:
            conn: Connection | None = None
            committing = False
            try:
                with pool.connection() as conn:
                    if not write:
                        conn.read_only = True
                    try:
                        result = fn(conn, *args)
                        committing = True
                        conn.commit()
                    except BaseException:
                        if not conn.broken:
                            conn.rollback()
                        raise
                    finally:
                        if not write and not conn.broken:
                            conn.read_only = False
                    return result
            except _PREPARED_LOST as exc:
                if self.settings.prepare_threshold is None:
                    raise
                raise IndexerError(f"server-side prepared statements got mixed up between connections at {self.location} "
                                   f"({migrations.one_line(exc)}), as behind PgBouncer in transaction mode: set "
                                   "agent_prepared_statements = false (or INDEXER_AGENT_PREPARED_STATEMENTS=false); "
                                   "nothing was applied") from None
            except _ROLLED_BACK as exc:
                rolled_back += 1
                if rolled_back > ROLLBACK_RETRIES:
                    raise IndexerError(f"the operation on {self.location} was rolled back {rolled_back} times by the "
                                       f"server ({migrations.one_line(exc)}); nothing was applied: try again") from exc
                self.retries += 1
                log.warning("transaction on %s rolled back by the server (%s); retrying", self.location, exc)
            except psycopg.OperationalError as exc:
                if not _is_disconnect(exc, conn):
                    raise
                if committing:
                    raise ConnectionLost(f"the connection to {self.location} was lost while committing; "
                                         "the operation may or may not have been applied: check before repeating it") from exc
                lost += 1
                if lost == 2:
                    raise IndexerError(f"the connection to {self.location} was lost twice: {exc}") from exc
                self.retries += 1
                log.warning("connection to %s lost before commit (%s); retrying once", self.location, exc)

    async def run(self, fn: Callable[..., T], *args: Any, write: bool = True, inline: bool = False) -> T:
        """The same call as :meth:`Database.run`; ``inline`` has no meaning here (every
        operation is a network round trip, done off the event loop)."""
        return await asyncio.to_thread(self.run_sync, fn, args, write)
