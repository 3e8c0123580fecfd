"""Search while agents write: the daemon's search latency under other writers, and the cost of
keeping the in-memory vectors current. Each figure is printed beside its same-run baseline.

    .venv/bin/python bench/bench_search_load.py [--files 0] [--searches 150] [--model hash:384]
        [--before 7044471] [--chunks 100000] [--json out.json]

1. A daemon over the tldr pages (--files, 0: all) with --model (default ``hash:384``: the query
   embedding costs nothing, so the figures isolate what the index and the vectors cost; pass the
   real model's name to include it). Searches through the socket, one every 50 ms, timed round
   trip: quiet; while another process writes 5 memories/s; while it appends 5 session events/s;
   during an edit storm (10 one-file edits/s); the conditions take turns in --rounds rounds.
   The same for the code of git revision --before (the matrix reloaded on every commit) unless
   --before none. BENCH_CORPORA=DIR: the corpora elsewhere than beside the checkout.
2. The matrix at --chunks chunks (synthetic notes, hash:384), in process: a full load (what every
   search paid before after any commit), a refresh after a memory write (nothing changed), a
   refresh after a one-file edit (its rows only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_daemon import CORPORA, source_tree, summary  # noqa: E402

CORPORA = Path(os.environ.get("BENCH_CORPORA", CORPORA))  # a checkout elsewhere than beside shared/

from indexer.daemon.control import call, socket_path  # noqa: E402

QUERIES = ["compress a folder", "copy files to a remote machine", "find files by name", "change permissions",
           "search text in files", "list running processes", "download a file", "git undo last commit"]

WRITER = r"""
import asyncio, os, sys, time
from indexer import Database, MemoryService, SessionService
async def main(db, what, rate):
    async with Database(db) as d:
        mem, ses = MemoryService(d), SessionService(d)
        session = await ses.create_session("bench", "writer") if what == "events" else None
        n = 0
        print("ready", flush=True)
        while True:
            t0 = time.perf_counter()
            if what == "memories":
                await mem.create_memory("user:bench", f"key{os.getpid()}-{n}", {"n": n, "text": "a note " * 20}, "semantic")
            else:
                await ses.append_event(session.id, {"type": "message", "content": "an event " * 20})
            n += 1
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - t0)))
asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


def searches(sock: Path, count: int, gap: float = 0.05) -> list[float]:
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        call(sock, {"op": "search", "query": QUERIES[i % len(QUERIES)], "k": 5}, timeout=60)
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, gap - (time.perf_counter() - t0)))
    return times


def wait_idle(daemon: subprocess.Popen, sock: Path, timeout: float = 1200) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError("the daemon exited")
        try:
            state = call(sock, {"op": "status"}, timeout=30)
            d, docs = state["daemon"], state["documents"]
            if d["state"] == "idle" and d["chunks_to_embed"] == 0 and docs["total"] and docs["pending"] == docs["stale"] == 0:
                return state
        except Exception:
            pass
        time.sleep(0.5)
    raise TimeoutError("the daemon did not become idle")


def storm(files: list[Path], stop: threading.Event, rate: float) -> None:
    n = 0
    while not stop.is_set():
        target = files[n % len(files)]
        target.write_text(target.read_text(encoding="utf-8") + f"\n- storm edit {n}\n", encoding="utf-8")
        n += 1
        stop.wait(1 / rate)


CONDITIONS = ("quiet", "5 memory writes/s", "5 session events/s", "edit storm 10/s")


@contextmanager
def load(name: str, db: Path, env: dict[str, str], files: list[Path]) -> Iterator[None]:
    """Another process writing memories or session events at 5/s, or files edited at 10/s."""
    if name == "quiet":
        yield
        return
    if name.startswith("edit storm"):
        stop = threading.Event()
        thread = threading.Thread(target=storm, args=(files, stop, 10.0), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        return
    what = "memories" if "memory" in name else "events"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), what, "5"], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        yield
    finally:
        writer.terminate()
        writer.wait(10)


def daemon_run(args: argparse.Namespace, source: Path | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    root = tmp / "notes"
    root.mkdir()
    pages = sorted(p for p in (CORPORA / "tldr" / "pages" / "common").glob("*.md"))
    pages += sorted(p for p in (CORPORA / "tldr" / "pages" / "linux").glob("*.md"))
    for page in pages[: args.files or None]:
        shutil.copy(page, root / page.name)
    home = tmp / "home"
    env = {**os.environ, "INDEXER_HOME": str(home), "INDEXER_MODEL": args.model}
    env.pop("NOTIFY_SOCKET", None)
    code = source or Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(code) + os.pathsep + env.get("PYTHONPATH", "")
    db, sock = home / "indexer.db", socket_path(home / "run", home / "indexer.db")
    log = (tmp / "daemon.log").open("wb")
    daemon = subprocess.Popen([sys.executable, "-m", "indexer", "daemon", "--root", str(root)], env=env, stdout=log,
                              stderr=subprocess.STDOUT, cwd=str(tmp))
    result: dict = {"code": args.before if source else "this tree"}
    try:
        state = wait_idle(daemon, sock)
        result["chunks"] = state["chunks"]["chunks"]
        searches(sock, 20)  # warm
        # the conditions take turns, a block of searches each per round, so that the machine's
        # other load falls on all of them alike
        times: dict[str, list[float]] = {name: [] for name in CONDITIONS}
        files = sorted(root.glob("*.md"))[::7][:200]
        per_block = max(1, args.searches // args.rounds)
        for _ in range(args.rounds):
            for name in CONDITIONS:
                with load(name, db, env, files):
                    times[name] += searches(sock, per_block)
        quiet = summary(times["quiet"])
        for name in CONDITIONS:
            result[name] = summary(times[name])
            result[name]["x_quiet"] = [round(result[name]["p50"] / quiet["p50"], 2),
                                       round(result[name]["p95"] / quiet["p95"], 2)]
    except BaseException:
        log.flush()
        print((tmp / "daemon.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def matrix_run(args: argparse.Namespace) -> dict:
    """The vectors at --chunks chunks: full load vs refresh after a memory write vs after an edit."""
    import asyncio

    from indexer import Database, MemoryService
    from indexer.config import load_config
    from indexer.documents.sync import DocumentSync
    from indexer.documents.vector_matrix import VectorMatrix
    from indexer.storage.sqlite import driver, vector_log
    from indexer.testing import HashEmbedder, WhitespaceTokenCounter

    tmp = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    root = tmp / "notes"
    root.mkdir()
    per_file = 20
    for f in range(args.chunks // per_file):
        sections = "\n\n".join(f"## Part {s}\n\n" + " ".join(f"w{(f * 31 + s * 7 + k) % 5000}" for k in range(60))
                               for s in range(per_file))
        (root / f"note{f:06d}.md").write_text(f"# Note {f}\n\n{sections}\n")
    db = tmp / "i.db"
    config = load_config({"db": str(db), "roots": [str(root)], "chunk_tokens": 100})
    embedder = HashEmbedder(dim=384)
    t0 = time.perf_counter()
    with DocumentSync(config, embedder=embedder, counter=WhitespaceTokenCounter()) as sync:
        sync.run()
    result: dict = {"build_s": round(time.perf_counter() - t0, 1)}
    conn = driver.connect(db, readonly=True)

    def timed_refresh(matrix: VectorMatrix) -> float:
        t = time.perf_counter()
        with vector_log.snapshot(conn):
            matrix.refresh(conn)
        return (time.perf_counter() - t) * 1000

    loads = [timed_refresh(VectorMatrix()) for _ in range(3)]
    matrix = VectorMatrix()
    timed_refresh(matrix)
    result["chunks"] = len(matrix)
    result["full_load_ms"] = summary(loads)

    async def memory_write(n: int) -> None:
        async with Database(db) as d:
            await MemoryService(d).create_memory("user:bench", f"k{n}", {"n": n}, "semantic")

    after_memory, after_edit = [], []
    for n in range(5):
        asyncio.run(memory_write(n))
        after_memory.append(timed_refresh(matrix))
        target = root / f"note{n * 17:06d}.md"
        target.write_text(target.read_text().replace("## Part 3", f"## Part 3 edited {n}\n\nnew words {n}"))
        with DocumentSync(config, embedder=embedder, counter=WhitespaceTokenCounter()) as sync:
            sync.run(paths=[target])
        after_edit.append(timed_refresh(matrix))
    result["refresh_after_memory_write_ms"] = summary(after_memory)
    result["refresh_after_one_file_edit_ms"] = summary(after_edit)
    result["reloads_after_first"] = matrix.reloads - 1
    conn.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=0, help="tldr pages to index (0: common and linux, all)")
    parser.add_argument("--searches", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5, help="turns of the conditions (searches split among them)")
    parser.add_argument("--model", default="hash:384")
    parser.add_argument("--before", default="7044471", help="git revision of the 'before' run ('none': skip it)")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks of part 2 (0: skip it)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CORPORA.is_dir():
        sys.exit(f"bench_search_load needs the corpora at {CORPORA} (absent); nothing measured")
    results: dict = {"model": args.model, "this_tree": daemon_run(args, None)}
    if args.before != "none":
        tmp = Path(tempfile.mkdtemp(prefix="bench-before-"))
        try:
            results["before"] = daemon_run(args, source_tree(args.before, tmp / "src"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.chunks:
        results["matrix"] = matrix_run(args)
    for run in ("this_tree", "before"):
        if run in results:
            print(f"{run} ({results[run]['code']}, {results[run]['chunks']} chunks): search through the socket, ms")
            for name in CONDITIONS:
                r = results[run][name]
                print(f"  {name:22} p50 {r['p50']:8.1f}  p95 {r['p95']:8.1f}   x quiet {r['x_quiet']}")
    if "matrix" in results:
        m = results["matrix"]
        print(f"matrix at {m['chunks']} chunks, ms (p50/p95): full load {m['full_load_ms']['p50']}/"
              f"{m['full_load_ms']['p95']}; after a memory write {m['refresh_after_memory_write_ms']['p50']}/"
              f"{m['refresh_after_memory_write_ms']['p95']}; after a one-file edit "
              f"{m['refresh_after_one_file_edit_ms']['p50']}/{m['refresh_after_one_file_edit_ms']['p95']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
