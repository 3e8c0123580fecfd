"""The one transaction primitive and the one busy-retry helper, on real database files."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.storage.sqlite import driver, migrations, transactions


@pytest.fixture
def conn(db_path: Path) -> Iterator[driver.Connection]:
    migrations.migrate(db_path)
    connection = driver.connect(db_path)
    yield connection
    connection.close()


def _metrics(path: Path) -> int:
    other = driver.connect(path)
    try:
        return int(other.execute("SELECT count(*) FROM metrics").fetchone()[0])
    finally:
        other.close()


INSERT = "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('t', 'm', 1)"


def test_a_transaction_commits_what_its_block_wrote(conn: driver.Connection, db_path: Path) -> None:
    with transactions.transaction(conn):
        conn.execute(INSERT)
        assert conn.in_transaction
    assert not conn.in_transaction
    assert _metrics(db_path) == 1


def test_an_error_in_the_block_rolls_back_and_is_raised(conn: driver.Connection, db_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with transactions.transaction(conn):
            conn.execute(INSERT)
            raise RuntimeError("boom")
    assert not conn.in_transaction
    assert _metrics(db_path) == 0


def test_a_transaction_sqlite_already_ended_is_not_rolled_back_twice(conn: driver.Connection, db_path: Path) -> None:
    """SQLite ends some transactions itself (SQLITE_FULL, an interrupt): the block's own
    error reaches the caller, not "cannot rollback - no transaction is active"."""
    with pytest.raises(ValueError, match="the real error"):
        with transactions.transaction(conn):
            conn.execute(INSERT)
            conn.execute("ROLLBACK")
            raise ValueError("the real error")
    assert _metrics(db_path) == 0


def test_a_failed_commit_is_rolled_back(conn: driver.Connection, db_path: Path) -> None:
    """A foreign key checked at COMMIT (deferred) fails the COMMIT; the transaction must not
    stay open holding the write lock."""
    with pytest.raises(driver.IntegrityError, match="FOREIGN KEY"):
        with transactions.transaction(conn):
            conn.execute("PRAGMA defer_foreign_keys=ON")
            conn.execute("INSERT INTO checkpoints (task_id, iteration, state, created_at) "
                          "VALUES ('no-such-task', 1, '{}', 'x')")
    assert not conn.in_transaction
    other = driver.connect(db_path)
    try:
        with transactions.transaction(other, wait=False):  # the write lock is free again
            pass
        assert other.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0
    finally:
        other.close()


def test_keep_false_always_rolls_back(conn: driver.Connection, db_path: Path) -> None:
    with transactions.transaction(conn, immediate=False, keep=False):
        conn.execute(INSERT)
    assert _metrics(db_path) == 0 and not conn.in_transaction


def test_busy_is_told_by_error_code_not_by_message(conn: driver.Connection, db_path: Path) -> None:
    holder = driver.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("PRAGMA busy_timeout=0")
        with pytest.raises(driver.OperationalError) as busy:
            conn.execute("BEGIN IMMEDIATE")
        assert transactions.is_busy(busy.value)
        assert getattr(busy.value, "sqlite_errorname", "SQLITE_BUSY").startswith("SQLITE_BUSY")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        conn.execute(f"PRAGMA busy_timeout={driver.EXPECTED_PRAGMAS['busy_timeout']}")
    with pytest.raises(driver.OperationalError, match="locked") as other:
        conn.execute('SELECT * FROM "database is locked"')  # no such table, named like the busy message
    assert not transactions.is_busy(other.value)
    assert not transactions.is_busy(RuntimeError("database is locked"))


def test_begin_without_waiting_raises_lock_busy_and_restores_the_timeout(conn: driver.Connection, db_path: Path) -> None:
    holder = driver.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(transactions.LockBusy):
            with transactions.transaction(conn, wait=False):
                raise AssertionError("the block must not run")
        assert time.monotonic() - started < 1.0  # busy_timeout (5 s) was not waited
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not conn.in_transaction
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == driver.EXPECTED_PRAGMAS["busy_timeout"]


def test_begin_immediate_waits_out_a_lock_longer_than_busy_timeout(conn: driver.Connection, db_path: Path) -> None:
    conn.execute("PRAGMA busy_timeout=50")  # so the retry loop, not SQLite's handler, does the waiting
    holder = driver.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        started = time.monotonic()
        with transactions.transaction(conn):
            conn.execute(INSERT)
        assert time.monotonic() - started >= 0.4
    finally:
        release.join()
        holder.close()
    assert _metrics(db_path) == 1


def test_retry_busy_gives_up_after_its_deadline_and_passes_other_errors_at_once(conn: driver.Connection, db_path: Path) -> None:
    conn.execute("PRAGMA busy_timeout=0")
    holder = driver.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(driver.OperationalError) as busy:
            transactions.retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), seconds=0.3)
        assert transactions.is_busy(busy.value) and 0.3 <= time.monotonic() - started < 3
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    calls = []

    def bad_sql() -> None:
        calls.append(1)
        conn.execute("SELEC 1")

    with pytest.raises(driver.OperationalError, match="syntax"):
        transactions.retry_busy(bad_sql)
    assert calls == [1]
