"""The async Database API of the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer import Database
from indexer.errors import IndexerError
from indexer.storage.sqlite import driver, hot_queries
from indexer.storage.sqlite.migrations import load_migrations


async def test_initialize_creates_and_migrates(db_path: Path) -> None:
    db = Database(db_path)
    await db.initialize()
    try:
        assert db.migration_report is not None and db.migration_report.applied == [m.name for m in load_migrations()]
        assert await db.validate_foreign_keys() == []
    finally:
        await db.close()
    async with Database(db_path) as again:  # second open: nothing to apply
        assert again.migration_report is not None and again.migration_report.applied == []


async def test_explain_query_plan_uses_the_critical_index(db_path: Path) -> None:
    async with Database(db_path) as db:
        plan = await db.explain_query_plan(
            "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0",
            ("user:alice:preferences", "theme"),
        )
    assert any("idx_memory_namespace_key_version" in line for line in plan)


async def test_get_index_usage_lists_indexes_and_hot_query_plans(db_path: Path) -> None:
    async with Database(db_path) as db:
        usage = await db.get_index_usage()
    assert usage["count"] == len(usage["indexes"]) >= 32
    assert "idx_memory_namespace_key_version" in usage["indexes"]
    assert set(usage["queries"]) == {q.name for q in hot_queries.HOT_QUERIES}
    for name, info in usage["queries"].items():
        assert info["uses_index"], (name, info["plan"])
    assert usage["queries"]["task_dequeue"]["index"] == "idx_tasks_status_priority"


async def test_validate_foreign_keys_reports_violations(db_path: Path) -> None:
    async with Database(db_path) as db:
        assert await db.validate_foreign_keys() == []
        raw = driver.connect(db_path)
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute(
            "INSERT INTO checkpoints (task_id, iteration, state, created_at) VALUES ('ghost', 1, '{}', 'x')"
        )
        raw.close()
        violations = await db.validate_foreign_keys()
    assert len(violations) == 1
    assert (violations[0]["table"], violations[0]["parent"]) == ("checkpoints", "tasks")


async def test_transaction_rolls_back_on_error(db_path: Path) -> None:
    async with Database(db_path) as db:
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('t', 'm', 1)"
                )
                raise RuntimeError("boom")
        async with db.read() as conn:
            rows = await conn.execute_fetchall("SELECT count(*) FROM metrics")
    assert rows[0][0] == 0


async def test_fk_enforced_through_the_api(db_path: Path) -> None:
    async with Database(db_path) as db:
        with pytest.raises(driver.IntegrityError):
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at) "
                    "VALUES ('a', 'n', 's', 'no-task', 'idle', 'm', 'x')"
                )


async def test_in_memory_database_works_like_the_report_example() -> None:
    async with Database(":memory:") as db:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO memory_entries (namespace, key, value, memory_type) VALUES (?, ?, ?, ?)",
                ("user:test", "pref", '{"theme": "dark"}', "semantic"),
            )
        async with db.read() as conn:
            rows = await conn.execute_fetchall("SELECT version, created_at FROM memory_entries")
    assert rows[0][0] == 1
    assert rows[0][1].endswith("Z") and "T" in rows[0][1]


async def test_use_before_initialize_is_a_clear_error(db_path: Path) -> None:
    db = Database(db_path)
    with pytest.raises(IndexerError, match="initialize"):
        await db.validate_foreign_keys()


async def test_migrate_false_refuses_an_unmigrated_file(db_path: Path) -> None:
    with pytest.raises(IndexerError, match="indexer migrate"):
        await Database(db_path, migrate=False).initialize()
    assert not db_path.exists()


def test_public_api_is_importable_from_the_top_level() -> None:
    import indexer

    assert indexer.Database is Database
    with pytest.raises(AttributeError):
        getattr(indexer, "NoSuchThing")  # noqa: B009 (the lookup at run time is what is tested)


async def test_inline_operations_never_block_the_event_loop_on_another_writer(db_path: Path) -> None:
    """The inline fast path asks for the write lock with a zero timeout: while another
    connection holds it, the operation waits on the thread path and the loop keeps running."""
    import asyncio
    import threading
    import time

    from indexer import MemoryService

    async with Database(db_path) as db:
        memories = MemoryService(db)
        await memories.create_memory("user:a", "fast", 1, "semantic")  # inline, uncontended
        other = driver.connect(db_path)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        release = threading.Timer(0.6, lambda: other.execute("COMMIT"))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        started = time.monotonic()
        release.start()
        entry = await memories.update_memory("user:a", "fast", 2)
        waited = time.monotonic() - started
        tick_task.cancel()
        release.join()
        other.close()
        assert entry.version == 2 and waited >= 0.5
        assert ticks >= 20  # the loop ran throughout the wait
        rows = await db.run(lambda conn: conn.execute("PRAGMA busy_timeout").fetchone()[0], write=False)
        assert rows == 5000  # the zero timeout of the fast path is never left behind


UNCLOSED_SCRIPT = """
import asyncio, sys
from indexer import Database, MemoryService

async def main(path):
    db = Database(path)
    await db.initialize()
    await MemoryService(db).create_memory("user:exit", "kept", {"v": 1}, "semantic")
    globals()["still_referenced"] = db  # not even garbage: only the exit can close it
    raise RuntimeError("the script fails before closing its Database")

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.process
def test_a_script_that_raises_before_closing_exits_and_closes_cleanly(db_path: Path) -> None:
    """The connection's thread never keeps the interpreter alive; at exit the connection is
    closed, so SQLite checkpoints the WAL into the file and removes it."""
    import subprocess
    import sys

    from indexer.storage.sqlite.migrations import migrate

    migrate(db_path)
    done = subprocess.run([sys.executable, "-c", UNCLOSED_SCRIPT, str(db_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "fails before closing" in done.stderr, done.stderr
    assert not Path(f"{db_path}-wal").exists()  # closed by the last connection: checkpointed
    conn = driver.connect(db_path, readonly=True)
    try:
        assert conn.execute("SELECT value FROM memory_entries WHERE key = 'kept'").fetchone()[0] == '{"v":1}'
    finally:
        conn.close()


async def test_transaction_connection_returns_rows_and_counts(db_path: Path) -> None:
    async with Database(db_path) as db:
        async with db.transaction() as conn:
            inserted = await conn.execute(
                "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('t', 'm', 1)")
            await conn.executemany("INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES (?, ?, ?)",
                                   [("t", "n", 2), ("t", "n", 3)])
        async with db.read() as conn:
            cursor = await conn.execute("SELECT sum(metric_value) FROM metrics")
            total = (await cursor.fetchone())[0]
    assert inserted.rowcount == 1 and inserted.lastrowid == 1
    assert total == 6


async def test_a_cancelled_operation_does_not_let_the_next_one_run_beside_it(db_path: Path) -> None:
    """A task cancelled while its operation runs on the connection's thread: the next inline
    operation must not use the connection from the loop's thread meanwhile."""
    import asyncio
    import threading

    started, release = threading.Event(), threading.Event()

    def slow(conn: driver.Connection) -> int:
        started.set()
        release.wait(5)
        return int(conn.execute("SELECT count(*) FROM metrics").fetchone()[0])

    def count(conn: driver.Connection) -> tuple[str, int]:
        return threading.current_thread().name, int(conn.execute("SELECT count(*) FROM metrics").fetchone()[0])

    async with Database(db_path) as db:
        task = asyncio.create_task(db.run(slow, write=False))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        follower = asyncio.create_task(db.run(count, write=False, inline=True))
        await asyncio.sleep(0.05)
        assert not follower.done()  # queued behind the cancelled caller's job
        release.set()
        thread_name, rows = await asyncio.wait_for(follower, 5)
    assert thread_name == "indexer-db" and rows == 0


INSERT_METRIC = "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('2026-01-01T00:00:00.000Z', ?, ?)"


async def test_a_transaction_cancelled_while_taking_the_lock_leaves_no_lock_held(db_path: Path) -> None:
    """Cancelled while BEGIN IMMEDIATE waits for another process's write lock: the thread went
    on and took the lock once free, and the transaction stayed open for good (every other
    connection then found the database locked; the next call of this one, "cannot start a
    transaction within a transaction"). Now the cancellation waits for the BEGIN, rolls back,
    then is raised."""
    import asyncio

    async with Database(db_path) as db:
        other = driver.connect(db_path)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

        async def write() -> None:
            async with db.transaction() as conn:
                await conn.execute(INSERT_METRIC, ("x", 1))

        task = asyncio.create_task(write())
        await asyncio.sleep(0.3)  # its BEGIN IMMEDIATE is being retried on the thread
        task.cancel()
        await asyncio.sleep(0.1)
        other.execute("ROLLBACK")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await asyncio.sleep(1)  # (the thread's retries of BEGIN are at most 0.5 s apart)
        # another connection can write at once, and so can this one
        other.execute("PRAGMA busy_timeout=1000")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()
        assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM metrics").fetchone()[0]) == 0
        async with db.transaction() as conn:
            await conn.execute(INSERT_METRIC, ("y", 2))
        assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM metrics").fetchone()[0], write=False) == 1


async def test_a_transaction_cancelled_in_its_body_is_rolled_back_before_the_lock_goes(db_path: Path) -> None:
    import asyncio

    async with Database(db_path) as db:
        inside = asyncio.Event()

        async def write() -> None:
            async with db.transaction() as conn:
                await conn.execute(INSERT_METRIC, ("x", 1))
                inside.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(write())
        await asyncio.wait_for(inside.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        other = driver.connect(db_path)
        other.execute("PRAGMA busy_timeout=1000")
        other.execute("BEGIN IMMEDIATE")  # the write lock is free
        assert other.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0
        other.execute("ROLLBACK")
        other.close()
        assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM metrics").fetchone()[0]) == 0
