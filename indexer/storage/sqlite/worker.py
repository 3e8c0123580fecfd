"""One sqlite connection owned by one dedicated thread, driven from asyncio.

:class:`ConnectionThread` is what :class:`indexer.storage.sqlite.database.Database` runs its SQL on:
a daemon thread that opens the connection, then runs the functions queued to it one at a
time and hands each result (or exception) back to the awaiting event loop through a future.
One thread hop per call, as aiosqlite does, but with a public surface this package owns.

The thread is a daemon, so a script that raises before closing its Database still exits; a
finalizer closes the connection at interpreter exit (or when the Database is garbage
collected), so SQLite still checkpoints the WAL into the file.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any, TypeVar

from indexer.errors import IndexerError
from indexer.storage.sqlite.driver import Connection, Row

T = TypeVar("T")
EXIT_JOIN_SECONDS = 10.0
_Job = tuple["asyncio.Future[Any] | None", Callable[[], Any]]


def _deliver(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ConnectionThread:
    """The connection made by ``connector``, used only from this thread (or, by
    :meth:`indexer.storage.sqlite.database.Database.run`'s inline path, while :attr:`idle`)."""

    def __init__(self, connector: Callable[[], Connection], *, name: str = "indexer-db") -> None:
        self._connector = connector
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._submitted = 0  # written by the submitting thread only
        self._finished = 0  # written by the worker thread only
        self._connection: Connection | None = None

    @property
    def conn(self) -> Connection:
        if self._connection is None:
            raise IndexerError("the database connection is closed")
        return self._connection

    @property
    def idle(self) -> bool:
        """No queued or running job: the connection may be used from the caller's thread."""
        return self._submitted == self._finished

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting task
                error = exc
            self._finished += 1
            if future is not None:
                try:
                    future.get_loop().call_soon_threadsafe(_deliver, future, result, error)
                except RuntimeError:  # the event loop is closed: nobody waits for it any more
                    pass

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """``fn(*args, **kwargs)`` on the thread; await the returned future for its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._submitted += 1
        self._jobs.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    async def start(self) -> Connection:
        self._thread.start()
        try:
            self._connection = await self.call(self._connector)
        except BaseException:
            self._jobs.put(None)
            raise
        return self._connection

    def _close_connection(self) -> None:
        if self._connection is not None:
            conn, self._connection = self._connection, None
            conn.close()

    async def close(self) -> None:
        """Close the connection on its thread (after the jobs queued before), then end the thread."""
        try:
            await self.call(self._close_connection)
        finally:
            self._jobs.put(None)

    def shutdown(self) -> None:
        """Close without an event loop: at interpreter exit, or when the owner was collected
        unclosed. Waits (a bounded time) for the job running now, unless called from the thread."""
        if not self._thread.is_alive():
            return
        self._submitted += 1
        self._jobs.put((None, self._close_connection))
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(EXIT_JOIN_SECONDS)


@dataclass(frozen=True)
class Result:
    """What :meth:`AsyncConnection.execute` returns: the rows, already fetched on the thread."""

    rows: list[Row]
    rowcount: int
    lastrowid: int | None

    async def fetchall(self) -> list[Row]:
        return self.rows

    async def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None


def _run_statement(conn: Connection, sql: str, params: Sequence[Any] | dict[str, Any]) -> Result:
    cursor = conn.execute(sql, params)
    rows = cursor.fetchall()
    return Result(rows, cursor.rowcount, cursor.lastrowid)


class AsyncConnection:
    """The connection of :meth:`Database.read` / :meth:`Database.transaction`: each call one
    hop to the connection's thread (aiosqlite's ``execute`` / ``execute_fetchall`` /
    ``executemany``, with rows fetched at once)."""

    def __init__(self, worker: ConnectionThread) -> None:
        self._worker = worker

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        return await self._worker.call(_run_statement, self._worker.conn, sql, params)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        return (await self.execute(sql, params)).rows

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._worker.call(self._worker.conn.executemany, sql, rows)
