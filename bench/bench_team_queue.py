"""Sessions and the task queue on both engines in one run: an SQLite file and a PostgreSQL server.

    .venv/bin/python bench/bench_team_queue.py [--db postgresql://…] [--appends 300] [--tasks 400]
        [--procs 4] [--json out.json]

Without --db, a PostgreSQL is started for the run (tests/pg_server.py) with its durable
defaults, on a Unix socket on this machine (no network in the figures). Through
SessionService and TaskService, one ``await`` at a time, a commit per operation:

* ``append_event`` appends/s into one session from 1 process, and from --procs processes at
  once into that same session (each append locks the session: the figure is that lock's cost;
  the run checks seq is exactly 1..N afterwards);
* tasks worked/s (claim then complete, two transactions per task) from 1 process and from
  --procs processes at once over one queue (the run checks each task was completed once).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from indexer import SessionService, TaskService  # noqa: E402
from indexer.storage.engines import open_agent_database  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from bench_team_store import run_both_engines  # noqa: E402

WORKER = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[4])
from indexer import SessionService, TaskService
from indexer.storage.engines import open_agent_database

async def main(location, op, arg):
    async with open_agent_database(location) as db:
        print("ready", flush=True)
        sys.stdin.readline()
        done = 0
        if op == "append":
            svc = SessionService(db)
            session_id, n = arg.split(",")
            for i in range(int(n)):
                await svc.append_event(session_id, {"type": "msg", "i": i})
                done += 1
        else:
            tasks = TaskService(db)
            while (got := await tasks.claim("bench")) is not None:
                await tasks.complete(got.task.id, None, got.agent_id)
                done += 1
        print(json.dumps(done), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


def in_processes(location: str, op: str, args: list[str]) -> tuple[float, int]:
    """(seconds, operations done) of len(args) processes started together."""
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, location, op, arg, str(REPO)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for arg in args]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    done = 0
    for p in procs:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0
        done += int(out.strip().splitlines()[-1])
    return time.perf_counter() - start, done


async def measure(location: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with open_agent_database(location) as db:
        sessions, tasks = SessionService(db), TaskService(db)
        one = await sessions.create_session("bench", "alice")
        start = time.perf_counter()
        for i in range(args.appends):
            await sessions.append_event(one.id, {"type": "msg", "i": i})
        out["appends_per_s_1_process"] = args.appends / (time.perf_counter() - start)
        shared = await sessions.create_session("bench", "team")
        for i in range(args.tasks):
            await tasks.submit(f"task {i}", priority=i % 10)
        start = time.perf_counter()
        worked = 0
        while worked < args.tasks // 2 and (got := await tasks.claim("bench")) is not None:
            await tasks.complete(got.task.id, None, got.agent_id)
            worked += 1
        out["tasks_per_s_1_process"] = worked / (time.perf_counter() - start)
    per = max(1, args.appends // args.procs)
    seconds, done = in_processes(location, "append", [f"{shared.id},{per}"] * args.procs)
    out[f"appends_per_s_{args.procs}_processes_one_session"] = done / seconds
    seconds, done = in_processes(location, "work", ["-"] * args.procs)
    out[f"tasks_per_s_{args.procs}_processes"] = done / seconds
    async with open_agent_database(location) as db:
        page = await SessionService(db).list_events(shared.id, limit=1000)
        out["seq_1_to_n_ok"] = [e.seq for e in page] == list(range(1, args.procs * per + 1))
        counts = await TaskService(db).counts()
        out["each_task_once_ok"] = counts == {"completed": args.tasks} and worked + done == args.tasks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="A PostgreSQL DSN (a database you can write to); default: a server started here.")
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    run_both_engines(measure, args, prefix="bench-queue-", digits=1)


if __name__ == "__main__":
    main()
