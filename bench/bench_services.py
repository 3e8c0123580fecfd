"""MemoryService / SessionService benchmarks on file databases.

    .venv/bin/python bench/bench_services.py [--memories 100000] [--sessions 10000]
        [--list-memories 1000000] [--big-events 10000] [--ops 2000] [--repeat 3] [--samples 2000]
        [--json out.json] [--only reads|writes|session-listing|big-session|listing|tasks|team-store ...]
        [--only-compare] [--db postgresql://…]

Figures (all through the async services, one ``await`` at a time, a commit per write):

* ``get_memory`` and ``get_session`` latency, p50/p99, with --memories memories and --sessions
  sessions (10 events each) in the database;
* write throughput with a commit per operation: ``create_memory``, ``update_memory``,
  ``append_event`` (spread over the sessions, as a server sees them), on a file database and
  on ``:memory:``; beside it, on the same machine, a reference-style baseline: one aiosqlite
  ``await`` per statement (INSERT, then commit; events read, extended and written back) on
  ``:memory:``, no audit row. Median of --repeat rounds, the kinds interleaved;
* like for like (``like_*``): ours and the reference style each on a fresh file with the
  spec's PRAGMAs, and each in memory, in the same round; the ratio ours / reference;
* concurrent writers (``writers_N_*``): 1, 4 and 8 asyncio writers on one Database, and the
  ceiling group commit could reach (``grouped_N_per_commit_sql_*``: the same transactions N
  to a commit, one SAVEPOINT each);
* the same write transactions in a plain loop without asyncio (``sql_floor_*``): the ceiling
  the database file allows on this machine; beside it the WAL frames a create writes and the
  create floor in memory, on the file with no checkpoint, and with ``synchronous=OFF``
  (``ceiling_*``: settings the spec does not allow, to show where the time goes);
* ``append_event`` latency as --repeat sessions grow in turn to --big-events events through the
  service: p50/p95/p99 of the --appends appends of each that bring it to 100, 1,000 and
  --big-events events (pooled),
  and the ratio of the last p95 to the first (flat: within 2x); beside it, the same run, the
  JSON-array append of before schema/0004 at the same sizes (``json_column_sql_append_at_*``);
  then ``get_session`` with and without its events and a 100-event page of the big session;
* ``list_memories`` page latency (50 per page, first and deep pages, with and without a
  memory_type filter) with --list-memories memories;
* ``list_sessions`` page latency per filter, and for no filter with and without the two
  indexes proposed for the schema;
* the task queue: claims/s (each claim followed by its complete) of 1 and of 4 processes
  emptying a queue of --tasks tasks, median of --repeat rounds (``--only tasks`` for just these).
* with ``--db postgresql://…`` (a database you can write to), the memory figures on both engines
  in the same run (``team_sqlite_*`` beside ``team_postgresql_*``): bench/bench_team_store.py's
  measure() (update_memory writes/s from 1 and from 8 processes, get_memory p50/p99) on a fresh
  SQLite file and on the server (``--db … --only team-store`` for just these).

Bulk data is loaded with plain SQL in one transaction (the services would take minutes);
every measured call goes through the services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer import Database, MemoryService, SessionService  # noqa: E402
from indexer.storage.sqlite import (  # noqa: E402
    database,  # noqa: E402
    driver,
    migrations,
)

TYPES = ("semantic", "episodic", "procedural")
TS = "2025-06-01T12:00:00.000Z"
PROPOSED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_sessions_created ON sessions(created_at DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS idx_sessions_app_created ON sessions(app_name, created_at DESC, id DESC)",
)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(name: str, samples: list[float]) -> dict[str, float]:
    return {f"{name}_p50_ms": pct(samples, 0.50) * 1e3, f"{name}_p95_ms": pct(samples, 0.95) * 1e3,
            f"{name}_p99_ms": pct(samples, 0.99) * 1e3,
            f"{name}_median_ms": statistics.median(samples) * 1e3}


async def timed_calls(make: Callable[[int], Awaitable[Any]], n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await make(i)
        samples.append(time.perf_counter() - start)
    return samples


async def throughput(make: Callable[[int], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await make(i)
    return n / (time.perf_counter() - start)


# --- bulk loading (setup only) ------------------------------------------------------------------

def memory_rows(count: int, users: int) -> list[tuple[Any, ...]]:
    """``count`` rows: keys spread over user:uN and user:uN:prefs namespaces, one key in ten
    with three versions."""
    rows: list[tuple[Any, ...]] = []
    i = 0
    while len(rows) < count:
        ns = f"user:u{i % users}" + (":prefs" if i % 3 == 0 else "")
        key = f"k{i // users:06d}"
        versions = 3 if i % 10 == 0 else 1
        for v in range(1, versions + 1):
            rows.append((ns, key, json.dumps({"text": f"memory {i} v{v}", "n": i}), TYPES[i % 3], v, 0, "{}",
                         "bench", "bench", TS, TS))
        i += 1
    return rows[:count]


def load_memories(path: Path, count: int, users: int) -> float:
    start = time.perf_counter()
    conn = driver.connect(path)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO memory_entries (namespace, key, value, memory_type, version, is_deleted, metadata, "
            "created_by, updated_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            memory_rows(count, users))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - start


def load_sessions(path: Path, count: int, events_each: int) -> float:
    start = time.perf_counter()
    statuses = ("created", "active", "paused", "terminated", "archived")
    conn = driver.connect(path)
    try:
        conn.execute("BEGIN")
        rows, events = [], []
        for i in range(count):
            created = f"2025-06-01T12:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z"
            rows.append((f"s{i:06d}", f"app{i % 4}", f"u{i % 500}", f"p{i % 50}" if i % 2 else None,
                         statuses[i % 5], json.dumps({"user:lang": "en", "n": i}), created, created))
            events.extend((f"s{i:06d}", j + 1, TS, "message", json.dumps(
                {"id": f"e{i}-{j}", "timestamp": TS, "type": "message", "author": "user",
                 "text": f"message {j} of session {i}"})) for j in range(events_each))
        conn.executemany(
            "INSERT INTO sessions (id, app_name, user_id, project_id, status, state, created_at, "
            "last_update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO session_events (session_id, seq, created_at, type, payload) "
                         "VALUES (?, ?, ?, ?, ?)", events)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - start


# --- the measurements ----------------------------------------------------------------------------

async def bench_reads(path: Path, memories: int, sessions: int, samples: int) -> dict[str, Any]:
    result: dict[str, Any] = {"memories": memories, "sessions": sessions}
    migrations.migrate(path)
    users = max(1, memories // 100)
    result["load_memories_s"] = load_memories(path, memories, users)
    result["load_sessions_s"] = load_sessions(path, sessions, 10)
    rng = random.Random(7)
    keys = [(f"user:u{i % users}" + (":prefs" if i % 3 == 0 else ""), f"k{i // users:06d}")
            for i in range(int(memories / 1.2))]
    async with Database(path) as db:
        mem, ses = MemoryService(db), SessionService(db)
        picks = [rng.choice(keys) for _ in range(samples)]
        await timed_calls(lambda i: mem.get_memory(*picks[i % 50]), 50)  # warm the page cache
        result.update(summary("get_memory", await timed_calls(lambda i: mem.get_memory(*picks[i]), samples)))
        sids = [f"s{rng.randrange(sessions):06d}" for _ in range(samples)]
        result.update(summary("get_session", await timed_calls(lambda i: ses.get_session(sids[i]), samples)))
    return result


async def file_writes(path: Path, ops: int, round_no: int, open_ids: list[str]) -> dict[str, float]:
    async with Database(path) as db:
        mem, ses = MemoryService(db), SessionService(db)
        ns = [f"user:w{round_no}-{i}" for i in range(100)]
        created = await throughput(lambda i: mem.create_memory(ns[i % 100], f"new{i}", {"text": "hello", "i": i},
                                                               "semantic", created_by="bench"), ops)
        updated = await throughput(lambda i: mem.update_memory(ns[i % 100], f"new{i}", {"text": "again", "i": i},
                                                               updated_by="bench"), ops)
        appended = await throughput(lambda i: ses.append_event(open_ids[i % len(open_ids)],
                                                               {"type": "message", "author": "agent", "text": f"reply {i}"}), ops)
    return {"create_memory_per_s": created, "update_memory_per_s": updated, "append_event_per_s": appended}


def schema_in_memory(conn: Any) -> Any:
    """``conn`` (a ``:memory:`` connection) with every migration's statements applied."""
    for migration in migrations.load_migrations():
        for statement in migrations.split_statements(migration.sql):
            conn.execute(statement)
    return conn


def sql_creates(conn: Any, ops: int, namespace: str) -> float:
    """create_memory's transaction (same SQL, audit row, commit) ``ops`` times in a plain loop
    on one thread: no asyncio, no thread hop, no validation. Creates per second."""
    from indexer.agent import memory
    from indexer.timeutil import now_ts

    start = time.perf_counter()
    for i in range(ops):
        args = (f"user:{namespace}-{i % 100}", f"k{i}", '{"i":1}', "semantic", "{}", "bench", now_ts())
        database.run_sync(conn, memory._create, args, True)
    return ops / (time.perf_counter() - start)


def sql_floor(path: Path, ops: int, round_no: int, open_ids: list[str]) -> dict[str, float]:
    """The same transactions (same SQL, audit row, commit) in a plain loop on one thread:
    no asyncio, no thread hop, no validation. What the database file itself allows."""
    from indexer.agent import sessions
    from indexer.timeutil import now_ts

    conn = driver.connect(path)
    try:
        created = sql_creates(conn, ops, f"floor{round_no}")
        start = time.perf_counter()
        for i in range(ops):
            event = json.dumps({"type": "message", "author": "agent", "text": f"floor {i}", "id": str(i), "timestamp": TS})
            database.run_sync(conn, sessions._append, (open_ids[i % len(open_ids)], event, "message", [], now_ts()), True)
        appended = ops / (time.perf_counter() - start)
    finally:
        conn.close()
    return {"sql_floor_create_memory_per_s": created, "sql_floor_append_event_per_s": appended}


def write_ceilings(path: Path, ops: int, round_no: int) -> dict[str, float]:
    """What bounds a create on this machine, the services aside: the WAL frames one create
    writes (fixed by the schema's 13 indexes on memory_entries + audit), and the SQL floor of
    creates in memory, on the file without any checkpoint, and on the file with
    ``synchronous=OFF`` (neither allowed by the spec: shown as ceilings, not as options)."""
    def creates(conn: Any, tag: str) -> float:
        return sql_creates(conn, ops, f"{tag}{round_no}")

    result: dict[str, float] = {}
    conn = driver.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        conn.execute("PRAGMA wal_autocheckpoint=0")
        result["ceiling_no_checkpoint_create_memory_per_s"] = creates(conn, "nockpt")
        result["wal_frames_per_create"] = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] / ops
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        conn.execute("PRAGMA wal_autocheckpoint=1000")
        conn.execute("PRAGMA synchronous=OFF")
        result["ceiling_sync_off_create_memory_per_s"] = creates(conn, "syncoff")
    finally:
        conn.close()
    mem = schema_in_memory(driver.connect(":memory:"))
    try:
        result["ceiling_in_memory_sql_create_memory_per_s"] = creates(mem, "inmem")
    finally:
        mem.close()
    return result


async def in_memory_writes(ops: int) -> dict[str, float]:
    async with Database(":memory:") as db:
        mem, ses = MemoryService(db), SessionService(db)
        created = await throughput(lambda i: mem.create_memory(f"user:w{i % 100}", f"k{i}", {"i": i}, "semantic"), ops)
        updated = await throughput(lambda i: mem.update_memory(f"user:w{i % 100}", f"k{i}", {"i": -i}), ops)
        ids = [(await ses.create_session("app", f"u{i}")).id for i in range(1000)]
        appended = await throughput(lambda i: ses.append_event(ids[i % 1000], {"type": "m", "i": i}), ops)
    return {"inmem_create_memory_per_s": created, "inmem_update_memory_per_s": updated,
            "inmem_append_event_per_s": appended}


async def reference_style(ops: int, target: str | Path = ":memory:") -> dict[str, float]:
    """One aiosqlite await per statement, as the reference did; no audit row, no checks, the
    events array read, extended in Python and written back. ``target``: ``:memory:`` or a file
    (opened through the driver: the spec's PRAGMAs, WAL, synchronous=NORMAL)."""
    if str(target) != ":memory:":
        migrations.migrate(Path(target))
    conn = await driver.connect_async(target)
    try:
        if str(target) == ":memory:":
            for migration in migrations.load_migrations():
                for statement in migrations.split_statements(migration.sql):
                    await conn.execute(statement)

        async def write_memory(i: int) -> None:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO memory_entries (namespace, key, value, memory_type, version) "
                               "VALUES (?, ?, ?, 'semantic', 1)", (f"user:w{i % 100}", f"k{i}", json.dumps({"i": i})))
            await conn.execute("COMMIT")

        await conn.executemany("INSERT INTO sessions (id, app_name, user_id) VALUES (?, 'app', 'u')",
                               [(f"s{i}",) for i in range(1000)])
        await conn.commit()

        async def append(i: int) -> None:
            await conn.execute("BEGIN")
            cursor = await conn.execute("SELECT events FROM sessions WHERE id = ?", (f"s{i % 1000}",))
            events = json.loads((await cursor.fetchone())[0])
            events.append({"type": "m", "i": i})
            await conn.execute("UPDATE sessions SET events = ? WHERE id = ?", (json.dumps(events), f"s{i % 1000}"))
            await conn.execute("COMMIT")

        return {"reference_style_inmem_memory_writes_per_s": await throughput(write_memory, ops),
                "reference_style_inmem_event_appends_per_s": await throughput(append, ops)}
    finally:
        await conn.close()


async def ours_on(ops: int, target: str | Path) -> dict[str, float]:
    """Our services on a fresh ``target`` (a file or ``:memory:``), the same writes as
    :func:`reference_style`: memory creates, and appends spread over 1,000 sessions."""
    async with Database(target) as db:
        mem, ses = MemoryService(db), SessionService(db)
        created = await throughput(lambda i: mem.create_memory(f"user:w{i % 100}", f"k{i}", {"i": i}, "semantic"), ops)
        ids = [(await ses.create_session("app", f"u{i}")).id for i in range(1000)]
        appended = await throughput(lambda i: ses.append_event(ids[i % 1000], {"type": "m", "i": i}), ops)
    return {"memory_writes_per_s": created, "event_appends_per_s": appended}


async def like_for_like(tmp: Path, ops: int, round_no: int) -> dict[str, float]:
    """Ours and the reference style on the same kind of target in the same round: each on a
    fresh file with the spec's PRAGMAs, and each in memory. Ratios: ours / reference."""
    figures: dict[str, float] = {}
    for where, ours_target, ref_target in (("file", tmp / f"ours-{round_no}.db", tmp / f"ref-{round_no}.db"),
                                           ("inmem", ":memory:", ":memory:")):
        ours = await ours_on(ops, ours_target)
        ref = await reference_style(ops, ref_target)
        for kind, ref_key in (("memory_writes", "reference_style_inmem_memory_writes_per_s"),
                              ("event_appends", "reference_style_inmem_event_appends_per_s")):
            figures[f"like_{where}_ours_{kind}_per_s"] = ours[f"{kind}_per_s"]
            figures[f"like_{where}_reference_{kind}_per_s"] = ref[ref_key]
            figures[f"like_{where}_ratio_{kind}"] = ours[f"{kind}_per_s"] / ref[ref_key]
    return figures


async def concurrent_writers(tmp: Path, ops: int, round_no: int) -> dict[str, float]:
    """Memory creates per second with 1, 4 and 8 writers at once on a fresh file: asyncio tasks
    sharing one Database (one connection, one commit per write), and beside it what grouping
    the same transactions N to a commit would allow at most (the SQL floor with one SAVEPOINT
    per write inside a shared BEGIN IMMEDIATE: group commit's ceiling, not a product path)."""
    from indexer.agent import memory
    from indexer.timeutil import now_ts

    figures: dict[str, float] = {}
    for writers in (1, 4, 8):
        path = tmp / f"group-{round_no}-{writers}.db"
        async with Database(path) as db:
            mem = MemoryService(db)
            per = ops // writers

            async def writer(w: int) -> None:
                for i in range(per):
                    await mem.create_memory(f"user:g{w}", f"k{i}", {"i": i}, "semantic")

            start = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(writers)))
            figures[f"writers_{writers}_create_memory_per_s"] = per * writers / (time.perf_counter() - start)
        conn = driver.connect(path)
        try:
            start = time.perf_counter()
            for batch in range(0, ops, writers):
                conn.execute("BEGIN IMMEDIATE")
                for i in range(batch, min(batch + writers, ops)):
                    conn.execute("SAVEPOINT one")
                    memory._create(conn, f"user:grouped{i % 100}", f"k{i}", '{"i":1}', "semantic", "{}", "bench",
                                   now_ts())
                    conn.execute("RELEASE one")
                conn.execute("COMMIT")
            figures[f"grouped_{writers}_per_commit_sql_create_memory_per_s"] = ops / (time.perf_counter() - start)
        finally:
            conn.close()
    return figures


async def bench_writes(path: Path, sessions: int, ops: int, repeat: int) -> dict[str, Any]:
    """Each figure ``repeat`` times, the kinds interleaved so that they share the machine's
    noise; the median is reported (and every round, in the JSON)."""
    open_ids = [f"s{i:06d}" for i in range(sessions) if i % 5 in (0, 1, 2)][:1000]
    rounds: list[dict[str, float]] = []
    for round_no in range(repeat):
        figures: dict[str, float] = {}
        figures.update(await file_writes(path, ops, round_no, open_ids))
        figures.update(sql_floor(path, ops, round_no, open_ids))
        figures.update(write_ceilings(path, ops, round_no))
        figures.update(await in_memory_writes(ops))
        figures.update(await reference_style(ops))
        figures.update(await like_for_like(path.parent, ops, round_no))
        figures.update(await concurrent_writers(path.parent, ops, round_no))
        rounds.append(figures)
    result: dict[str, Any] = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    result["write_rounds"] = rounds
    return result


async def bench_compare(tmp: Path, ops: int, repeat: int) -> dict[str, Any]:
    """Only the like-for-like comparison and the concurrent writers (``--only-compare``)."""
    rounds: list[dict[str, float]] = []
    for round_no in range(repeat):
        figures = await like_for_like(tmp, ops, round_no)
        figures.update(await concurrent_writers(tmp, ops, round_no))
        rounds.append(figures)
    result: dict[str, Any] = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    result["write_rounds"] = rounds
    return result


def event_of(i: int) -> dict[str, Any]:
    """A ~200-byte event once given its id and timestamp (as the issue measured)."""
    return {"type": "message", "author": "agent", "text": f"step {i:06d} " + "lorem ipsum " * 6}


async def bench_big_session(path: Path, events: int, window: int, sessions: int) -> dict[str, Any]:
    """``sessions`` sessions grown to ``events`` events each through ``append_event``, in turn
    (one append to each, then the next round: they share the machine's noise), every append
    timed; the latency of the ``window`` appends of each session that bring it to 100, 1,000
    and ``events`` events, pooled. Flat is the goal: the p95 at 10k within 2x of the p95 at
    100 (``append_p95_ratio_*``)."""
    migrations.migrate(path)
    levels = sorted({lvl for lvl in (100, 1000, events) if window <= lvl <= events})
    result: dict[str, Any] = {"big_session_events": events, "append_window": window, "big_sessions": sessions}
    async with Database(path) as db:
        ses = SessionService(db)
        ids = ["big"] + [f"big-{n}" for n in range(1, sessions)]
        for sid in ids:
            await ses.create_session("app", "alice", session_id=sid)
        samples: list[list[float]] = [[] for _ in ids]
        start = time.perf_counter()
        for i in range(events):
            for sid, timings in zip(ids, samples):
                t0 = time.perf_counter()
                await ses.append_event(sid, event_of(i))
                timings.append(time.perf_counter() - t0)
        result["big_session_grow_s"] = time.perf_counter() - start
        for level in levels:
            result.update(summary(f"append_event_at_{level}", [t for s in samples for t in s[level - window:level]]))
        first, last = levels[0], levels[-1]
        result[f"append_p95_ratio_{last}_vs_{first}"] = (
            result[f"append_event_at_{last}_p95_ms"] / result[f"append_event_at_{first}_p95_ms"])
        got = await ses.get_session("big")
        result["big_session_events_bytes"] = len(json.dumps(got.events))
        result.update(summary("get_session_big_session", await timed_calls(lambda i: ses.get_session("big"), 20)))
        result.update(summary("get_session_big_session_no_events", await timed_calls(
            lambda i: ses.get_session("big", events=False), 200)))
        result.update(summary("list_events_page_100_big_session", await timed_calls(
            lambda i: ses.list_events("big", after=(i * 97) % max(events - 100, 1), limit=100), 200)))
        result.update(summary("last_events_20_big_session", await timed_calls(lambda i: ses.last_events("big", 20), 200)))
    result.update(json_column_baseline(path, levels, window))
    return result


def json_column_baseline(path: Path, levels: list[int], window: int) -> dict[str, Any]:
    """Same run, the statement appends ran before schema/0004: ``json_insert`` into the
    ``sessions.events`` array (which rewrites and re-validates the whole array), in a plain
    loop on one connection (no asyncio, no thread hop: a floor of the old service's cost),
    ``window`` appends timed once the array holds each level's events."""
    result: dict[str, Any] = {}
    conn = driver.connect(path)
    try:
        conn.execute("INSERT INTO sessions (id, app_name, user_id, status) VALUES ('old', 'app', 'u', 'active')")
        for level in levels:
            stored = [{**event_of(i), "id": f"e{i}", "timestamp": TS} for i in range(level - window)]
            conn.execute("UPDATE sessions SET events = ? WHERE id = 'old'", (json.dumps(stored),))
            samples = []
            for i in range(window):
                event = json.dumps({**event_of(i), "id": f"x{i}", "timestamp": TS})
                t0 = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE sessions SET events = json_insert(events, '$[#]', json(?)), last_update_time = ? "
                             "WHERE id = 'old' AND status IN ('created', 'active', 'paused')", (event, TS))
                conn.execute("COMMIT")
                samples.append(time.perf_counter() - t0)
            result.update(summary(f"json_column_sql_append_at_{level}", samples))
        conn.execute("DELETE FROM sessions WHERE id = 'old'")
    finally:
        conn.close()
    return result


async def bench_listing(path: Path, memories: int, samples: int) -> dict[str, Any]:
    migrations.migrate(path)
    users = max(1, memories // 1000)
    result: dict[str, Any] = {"list_memories_rows": memories, "list_load_s": load_memories(path, memories, users)}
    rng = random.Random(11)
    async with Database(path) as db:
        mem = MemoryService(db)
        await mem.list_memories("user:u1", limit=50)
        first = await timed_calls(lambda i: mem.list_memories(f"user:u{rng.randrange(users)}", limit=50), samples)
        result.update(summary("list_memories_first_page", first))
        cursors = []
        for _ in range(min(samples, 200)):
            prefix = f"user:u{rng.randrange(users)}"
            page = await mem.list_memories(prefix, limit=50)
            for _ in range(5):  # walk a few pages in
                if page.next_cursor is None:
                    break
                page = await mem.list_memories(prefix, limit=50, cursor=page.next_cursor)
            if page.next_cursor:
                cursors.append((prefix, page.next_cursor))
        deep = await timed_calls(lambda i: mem.list_memories(cursors[i % len(cursors)][0], limit=50,
                                                              cursor=cursors[i % len(cursors)][1]), samples)
        result.update(summary("list_memories_deep_page", deep))
        typed = await timed_calls(lambda i: mem.list_memories(f"user:u{rng.randrange(users)}", memory_type="episodic",
                                                               limit=50), samples)
        result.update(summary("list_memories_by_type", typed))
        whole = await timed_calls(lambda i: mem.list_memories("user", limit=50), min(samples, 200))
        result.update(summary("list_memories_scope_user", whole))
        pages, cursor = 0, None
        start = time.perf_counter()
        while pages < 200:
            page = await mem.list_memories("user", limit=1000, cursor=cursor)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        result["list_memories_walk_rows_per_s"] = pages * 1000 / (time.perf_counter() - start)
    return result


async def bench_session_listing(path: Path, samples: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    async with Database(path) as db:
        ses = SessionService(db)
        for label, filters in (("user", {"user_id": "u7"}), ("status", {"status": "active"}),
                               ("project", {"project_id": "p3"}), ("app_user", {"app_name": "app1", "user_id": "u9"}),
                               ("app", {"app_name": "app2"}), ("none", {})):
            result.update(summary(f"list_sessions_{label}", await timed_calls(
                lambda i: ses.list_sessions(limit=50, **filters), min(samples, 200))))
    conn = driver.connect(path)
    try:
        for ddl in PROPOSED_INDEXES:
            conn.execute(ddl)
    finally:
        conn.close()
    async with Database(path) as db:
        ses = SessionService(db)
        for label, filters in (("app", {"app_name": "app2"}), ("none", {})):
            result.update(summary(f"list_sessions_{label}_with_proposed_index", await timed_calls(
                lambda i: ses.list_sessions(limit=50, **filters), min(samples, 200))))
    return result


# --- the task queue: claims/s with 1 and 4 claimers (TaskService) -------------------------------------

CLAIMER = r"""
import asyncio, sys, time
sys.path.insert(0, sys.argv[2])
from indexer.agent.tasks import TaskService
from indexer.storage.sqlite.database import Database

async def main(path):
    async with Database(path) as db:
        svc = TaskService(db)
        print("ready", flush=True)
        sys.stdin.readline()
        done = 0
        while (got := await svc.claim("bench", lease_seconds=300)) is not None:
            await svc.complete(got.task.id, {"ok": True}, got.agent_id)
            done += 1
        print(done, time.monotonic(), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def load_tasks(path: Path, count: int) -> None:
    """``count`` pending tasks, random priorities, no dependencies (plain SQL, one transaction)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    migrations.migrate(path, backup=False)
    rng = random.Random(7)
    conn = driver.connect(path)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO tasks (id, prompt, agent_type, priority, status, input_data, submitted_at, last_updated_at, "
                "dependencies) VALUES (?, 'p', 'general', ?, 'pending', '{}', ?, ?, '[]')",
                [(f"t{i:07d}", rng.randrange(11), TS, TS) for i in range(count)])
    finally:
        conn.close()


def claim_run(path: Path, count: int, claimers: int) -> float:
    """Claims/s (each claim followed by its complete, as a worker does) of ``claimers``
    processes emptying a queue of ``count`` tasks; timed from the go signal to the last exit."""
    import subprocess

    load_tasks(path, count)
    root = str(Path(__file__).resolve().parents[1])
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(path), root], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(claimers)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start = time.monotonic()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    done, ends = 0, []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        n, end = out.split()
        done, ends = done + int(n), ends + [float(end)]
    if done != count:
        raise SystemExit(f"claim bench: {done} of {count} tasks claimed")
    return count / (max(ends) - start)


async def claim_latency(path: Path, count: int, samples: int) -> dict[str, float]:
    """p50/p99 of one claim in this process, on a queue of ``count`` pending tasks."""
    from indexer.agent.tasks import TaskService

    load_tasks(path, count)
    async with Database(path) as db:
        svc = TaskService(db)
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            got = await svc.claim("bench", lease_seconds=300)
            times.append(time.perf_counter() - start)
            assert got is not None
            await svc.complete(got.task.id, None, got.agent_id)
    return summary(f"task_claim_queue_{count}", times)


async def bench_task_claims(path: Path, count: int, repeat: int) -> dict[str, Any]:
    """claims/s with 1 and 4 claimers, rounds interleaved, median of ``repeat``; then one
    claim's latency on a queue of ``count`` and of 50x as many tasks."""
    rounds: dict[int, list[float]] = {1: [], 4: []}
    for _ in range(repeat):
        for claimers in rounds:
            rounds[claimers].append(await asyncio.to_thread(claim_run, path, count, claimers))
    one, four = statistics.median(rounds[1]), statistics.median(rounds[4])
    result: dict[str, Any] = {"task_claims_per_s_1_claimer": one, "task_claims_per_s_4_claimers": four,
                              "task_claims_4_vs_1": four / one, "task_queue_size": count}
    for size in (count, count * 50):
        result.update(await claim_latency(path, size, min(count, 500)))
    return result


async def bench_both_engines(path: Path, dsn: str, ops: int, samples: int) -> dict[str, Any]:
    """bench/bench_team_store.py's memory figures on an SQLite file and on the PostgreSQL at ``dsn``."""
    import bench_team_store  # beside this script (sys.path[0])

    options = argparse.Namespace(ops=ops, procs=8, samples=samples, keys=1000)
    out: dict[str, Any] = {}
    for engine, location in (("sqlite", str(path)), ("postgresql", dsn)):
        out.update({f"team_{engine}_{k}": v for k, v in (await bench_team_store.measure(location, options)).items()})
    return out


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"binding": driver.BINDING_NAME, "sqlite": driver.sqlite.sqlite_version,
                              "cpus": os.cpu_count()}
    stages = (
        ("reads", lambda: bench_reads(tmp / "services.db", args.memories, args.sessions, args.samples)),
        ("writes", lambda: bench_writes(tmp / "services.db", args.sessions, args.ops, args.repeat)),
        ("session listing", lambda: bench_session_listing(tmp / "services.db", args.samples)),
        ("big session", lambda: bench_big_session(tmp / "big.db", args.big_events, args.appends, args.repeat)),
        ("listing", lambda: bench_listing(tmp / "list.db", args.list_memories, args.samples)),
        ("tasks", lambda: bench_task_claims(tmp / "tasks.db", args.tasks, args.repeat)),
    )
    if args.db:
        stages += (("team store", lambda: bench_both_engines(tmp / "team.db", args.db, args.ops, args.samples)),)
    if args.only_compare:
        stages = (("compare", lambda: bench_compare(tmp, args.ops, args.repeat)),)
    for name, stage in stages:
        if args.only and name.replace(" ", "-") not in args.only:
            continue
        start = time.perf_counter()
        result.update(await stage())
        print(f"[{name}: {time.perf_counter() - start:.1f} s]", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--list-memories", type=int, default=1_000_000)
    parser.add_argument("--big-events", type=int, default=10_000, help="Events already in the big session.")
    parser.add_argument("--appends", type=int, default=100,
                        help="Appends per latency window on the big sessions (at 100, 1k and --big-events events; "
                             "--repeat sessions grown in turn, their windows pooled).")
    parser.add_argument("--ops", type=int, default=2000, help="Operations per write-throughput figure.")
    parser.add_argument("--samples", type=int, default=2000, help="Calls per latency figure.")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds of the write-throughput figures (median).")
    parser.add_argument("--tasks", type=int, default=2000, help="Tasks in the queue each claim round empties.")
    parser.add_argument("--only-compare", action="store_true",
                        help="Only the like-for-like comparison with the reference style and the concurrent writers.")
    parser.add_argument("--dir", type=Path, help="Where the databases go (default: a temporary directory).")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--db", help="A PostgreSQL DSN (a database you can write to): adds the memory figures on "
                                     "both engines (stage team-store).")
    parser.add_argument("--only", action="append",
                        choices=("reads", "writes", "session-listing", "big-session", "listing", "tasks", "team-store"),
                        help="Run only this stage (repeatable); session-listing and writes need reads' database.")
    args = parser.parse_args()
    if args.db and not args.db.startswith(("postgresql://", "postgres://")):
        parser.error(f"--db takes a postgresql:// URL, not {args.db!r}")
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        for name in ("services.db", "big.db", "list.db", "tasks.db", "team.db"):
            for suffix in ("", "-wal", "-shm"):
                (args.dir / (name + suffix)).unlink(missing_ok=True)
        result = asyncio.run(run(args, args.dir))
    else:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            result = asyncio.run(run(args, Path(tmp)))
    for key, value in result.items():
        if key == "write_rounds":
            continue
        if isinstance(value, bool):
            print(f"{key:48} {value}")
            continue
        print(f"{key:48} {value:,.3f}" if isinstance(value, float) else f"{key:48} {value:,}" if isinstance(value, int)
              else f"{key:48} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
