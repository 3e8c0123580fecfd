"""Daemon benchmarks, with the real model, on a sample of ../shared/corpora (read in place).

    .venv/bin/python bench/bench_daemon.py [--files 300] [--edits 20] [--searches 20] [--json out.json]

1. Memory while the daemon embeds a fresh sample (peak RSS) and once idle.
2. CPU while idle (10 s window, from /proc/PID/stat).
3. Edit-to-searchable for a one-file edit: from the write to (a) the new words found by a
   keyword search through the socket, (b) the document synced with every chunk embedded.
4. `indexer search` wall time through the daemon, next to `python -c pass` and to
   `indexer search --direct` (no daemon: model load included) in the same run.
5. Edits during a backlog: a fresh daemon over --backlog-files pages (several thousand
   chunks): --reconcile-edits edits while its start-up reconcile runs, then, right after
   READY, while it embeds the backlog, --backlog-edits one-file edits, each timed to
   keyword-searchable and to fully embedded. Run twice in the same run: the code of git
   revision --before (default c4e58b8, before time-bounded rounds), then this tree.

    .venv/bin/python bench/bench_daemon.py --only-backlog --backlog-files 3000 --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.daemon.control import call, socket_path  # noqa: E402
from indexer.storage.sqlite import driver  # noqa: E402

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
VENV_BIN = Path(sys.executable).parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 4), "p95": round(pct(values, 0.95), 4),
            "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def doc_synced(db: Path, path: Path, digest: str) -> bool:
    conn = driver.connect(db, readonly=True)
    try:
        row = conn.execute("SELECT sync_status, content_hash FROM document_index WHERE file_path = ?", (str(path),)).fetchone()
        return bool(row) and row[0] == "synced" and row[1] == digest
    finally:
        conn.close()


def wait(predicate, timeout: float, interval: float = 0.005) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter() - start
        time.sleep(interval)
    raise TimeoutError("condition not reached")


def backlog_pages(count: int) -> list[Path]:
    pages = sorted(p for p in (CORPORA / "tldr" / "pages").glob("*/*.md") if not p.name.startswith("."))
    return pages[:count]


def timed_edit(root_file: Path, word: str, sock: Path, db: Path, synced: bool = True) -> tuple[float, float]:
    """Append a unique word to a file; seconds until a keyword search finds it, and (unless
    ``synced`` is False) until the document is synced with every chunk embedded."""
    text = root_file.read_text(encoding="utf-8") + f"\n- A note added by the benchmark: {word}\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    start = time.perf_counter()
    root_file.write_text(text, encoding="utf-8")
    keyword = wait(lambda: bool(call(sock, {"op": "search", "query": word, "mode": "keyword", "k": 1})["results"]), 120)
    if not synced:
        return keyword, float("nan")
    done = (time.perf_counter() - start if doc_synced(db, root_file, digest)
            else keyword + wait(lambda: doc_synced(db, root_file, digest), 300))
    return keyword, done


def source_tree(rev: str, into: Path) -> Path:
    """The indexer package as it was at ``rev`` (git archive), to run the code before a change."""
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], capture_output=True, check=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "indexer" / "schema").symlink_to(into / "schema")  # as the wheel ships it (indexer.schema)
    (into / "indexer" / "systemd").symlink_to(into / "systemd")
    return into


def backlog_run(args: argparse.Namespace, source: Path | None) -> dict:
    """One daemon over a fresh tree of --backlog-files pages: edits while it reconciles at
    start-up, then while it embeds the backlog, each timed. ``source``: run that source tree
    (the code before the change) instead of this one."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    root = tmp / "notes"
    pages = backlog_pages(args.backlog_files)
    for f in pages:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / f.parent.name / f.name)
    home = tmp / "home"
    env = {**os.environ, "INDEXER_HOME": str(home)}
    env.pop("NOTIFY_SOCKET", None)
    code = source or Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(code) + os.pathsep + env.get("PYTHONPATH", "")
    if args.round_ms is not None and source is None:
        env["INDEXER_EMBED_ROUND_MS"] = str(args.round_ms)
    sock = socket_path(home / "run", home / "indexer.db")
    db = home / "indexer.db"
    log = (tmp / "daemon.log").open("wb")
    t0 = time.perf_counter()
    daemon = subprocess.Popen([sys.executable, "-m", "indexer", "daemon", "--root", str(root)], env=env, stdout=log,
                              stderr=subprocess.STDOUT, cwd=str(tmp))
    result: dict = {"code": args.before if source else "this tree", "files": len(pages)}
    files = sorted(root.rglob("*.md"))
    try:
        # 1. while the start-up reconcile reads and chunks the tree (before READY)
        wait_status(daemon, sock, tmp, lambda s: s["documents"]["total"] > 0 or s["daemon"]["state"] not in
                    ("starting", "reconciling"), 600)
        during, keyword_s = 0, []
        for i in range(args.reconcile_edits):
            if call(sock, {"op": "status"}, timeout=30)["daemon"]["state"] != "reconciling":
                break
            indexed = sorted(indexed_paths(db))
            target = Path(indexed[(i * 37) % len(indexed)])
            keyword_s.append(timed_edit(target, f"zqxreconcile{i}marker", sock, db, synced=False)[0])
            during += call(sock, {"op": "status"}, timeout=30)["daemon"]["state"] == "reconciling"
            time.sleep(args.backlog_gap)
        result["start_up_reconcile_edits"] = {"edits": len(keyword_s), "reconcile_still_running_after": during,
                                              "edit_to_keyword_searchable_s": summary(keyword_s) if keyword_s else None}
        # 2. while the backlog is embedded (after READY)
        state = wait_status(daemon, sock, tmp, lambda s: s["daemon"]["state"] in ("ready", "embedding", "idle"), 600)
        result["ready_s"] = round(time.perf_counter() - t0, 1)
        result["chunks"] = state["chunks"]["chunks"]
        result["backlog_at_first_edit"] = state["daemon"]["chunks_to_embed"]
        step = max(1, len(files) // max(args.backlog_edits, 1))
        keyword_s, synced_s = [], []
        edits_started = time.perf_counter()
        for i, target in enumerate(files[::step][: args.backlog_edits]):
            keyword, synced = timed_edit(target, f"zqxbacklog{i}marker", sock, db)
            keyword_s.append(keyword)
            synced_s.append(synced)
            time.sleep(args.backlog_gap)
        status = call(sock, {"op": "status"}, timeout=30)
        result["backlog_after_last_edit"] = status["daemon"]["chunks_to_embed"]
        # the pace of the backlog meanwhile (edits re-embedded included): what shorter rounds cost
        result["backlog_chunks_per_s"] = round((result["backlog_at_first_edit"] - result["backlog_after_last_edit"])
                                               / (time.perf_counter() - edits_started), 2)
        result["edit_to_keyword_searchable_s"] = summary(keyword_s)
        result["edit_to_fully_embedded_s"] = summary(synced_s)
    except BaseException:
        log.flush()
        print((tmp / "daemon.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        daemon.send_signal(signal.SIGTERM)
        t1 = time.perf_counter()
        result["exit_code"] = daemon.wait(120)
        result["stop_s"] = round(time.perf_counter() - t1, 2)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def indexed_paths(db: Path) -> list[str]:
    conn = driver.connect(db, readonly=True)
    try:
        return [r[0] for r in conn.execute("SELECT file_path FROM document_index").fetchall()]
    finally:
        conn.close()


def wait_status(daemon: subprocess.Popen, sock: Path, tmp: Path, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"daemon exited: {(tmp / 'daemon.log').read_text()}")
        try:
            state = call(sock, {"op": "status"}, timeout=30)
            if predicate(state):
                return state
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError("the daemon did not get ready")


def run_backlog(args: argparse.Namespace) -> dict:
    results = {}
    if args.before != "none":
        with tempfile.TemporaryDirectory(prefix="bench-before-") as src:
            results["before"] = backlog_run(args, source_tree(args.before, Path(src) / "tree"))
    results["after"] = backlog_run(args, None)
    return results


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    root = tmp / "notes"
    root.mkdir()
    pages = [f for f in sorted((CORPORA / "tldr" / "pages" / "common").glob("*.md")) if not f.name.startswith(".")][:args.files]
    for f in pages:
        shutil.copy(f, root / f.name)
    home = tmp / "home"
    env = {**os.environ, "INDEXER_HOME": str(home)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what users run: compiled bytecode
    env.pop("NOTIFY_SOCKET", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] / "indexer")],
                   env=env, check=True)
    results: dict = {"files": len(pages)}
    log = (tmp / "daemon.log").open("wb")
    daemon = subprocess.Popen([str(VENV_BIN / "indexer"), "daemon", "--root", str(root)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    sock = socket_path(home / "run", home / "indexer.db")
    db = home / "indexer.db"
    try:
        # 1. memory while embedding the sample, then idle
        started = time.perf_counter()
        peak = 0.0
        while True:
            if daemon.poll() is not None:
                raise RuntimeError(f"daemon exited: {(tmp / 'daemon.log').read_text()}")
            peak = max(peak, rss_mb(daemon.pid))
            try:
                state = call(sock, {"op": "status"}, timeout=30)
                d = state["daemon"]
                docs = state["documents"]
                if (d["state"] == "idle" and d["chunks_to_embed"] == 0 and docs["total"] > 0
                        and docs["pending"] == docs["stale"] == 0):
                    break
            except Exception:
                pass
            time.sleep(0.25)
        results["initial_index_s"] = round(time.perf_counter() - started, 1)
        results["documents"] = state["documents"]["total"]
        results["chunks"] = state["chunks"]["chunks"]
        results["rss_peak_while_embedding_mb"] = round(peak, 1)
        time.sleep(2)
        results["rss_idle_mb"] = round(rss_mb(daemon.pid), 1)

        # 2. CPU while idle
        before = cpu_seconds(daemon.pid)
        time.sleep(args.idle_seconds)
        results["idle_cpu_percent"] = round(100 * (cpu_seconds(daemon.pid) - before) / args.idle_seconds, 3)

        # 3. edit-to-searchable
        keyword_s, synced_s = [], []
        targets = pages[: args.edits]
        for i, original in enumerate(targets):
            target = root / original.name
            word = f"zqxedit{i}marker"
            text = target.read_text(encoding="utf-8") + f"\n- A note added in edit {i}: {word}\n"
            digest = hashlib.sha256(text.encode()).hexdigest()
            t0 = time.perf_counter()
            target.write_text(text, encoding="utf-8")
            request = {"op": "search", "query": word, "mode": "keyword", "k": 1}
            keyword_s.append(wait(lambda: bool(call(sock, request)["results"]), 30))
            synced_s.append(time.perf_counter() - t0 if doc_synced(db, target, digest)
                            else keyword_s[-1] + wait(lambda: doc_synced(db, target, digest), 30))
            time.sleep(0.3)
        results["edit_to_keyword_searchable_s"] = summary(keyword_s)
        results["edit_to_fully_embedded_s"] = summary(synced_s)

        # 4. CLI search wall time: through the daemon vs baselines
        def timed(cmd: list[str]) -> float:
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            return time.perf_counter() - t0

        queries = ["compress a folder", "copy files to a remote machine", "find files by name", "change permissions",
                   "search text in files"]
        search_cmd = [str(VENV_BIN / "indexer"), "search", "-k", "5"]
        results["python_c_pass_s"] = summary([timed([sys.executable, "-c", "pass"]) for _ in range(args.searches)])
        results["cli_search_via_daemon_s"] = summary([timed(search_cmd + [queries[i % len(queries)]])
                                                      for i in range(args.searches)])
        results["cli_search_direct_s"] = summary([timed(search_cmd + ["--direct", queries[i % len(queries)]])
                                                  for i in range(3)])
        served = [call(sock, {"op": "search", "query": queries[i % len(queries)], "k": 5})["served_by"]["ms"]
                  for i in range(args.searches)]
        results["daemon_search_in_process_ms"] = summary(served)
        results["rss_after_searches_mb"] = round(rss_mb(daemon.pid), 1)
    except BaseException:
        log.flush()
        print((tmp / "daemon.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        daemon.send_signal(signal.SIGTERM)
        t0 = time.perf_counter()
        results["exit_code"] = daemon.wait(60)
        results["stop_s"] = round(time.perf_counter() - t0, 2)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--searches", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--backlog-files", type=int, default=3000, help="pages of the backlog (0: skip part 5)")
    parser.add_argument("--backlog-edits", type=int, default=20)
    parser.add_argument("--backlog-gap", type=float, default=0.5, help="seconds between two backlog edits")
    parser.add_argument("--round-ms", type=int, default=None, help="embed_round_ms of the 'after' run (default: the config's)")
    parser.add_argument("--reconcile-edits", type=int, default=5, help="edits while the start-up reconcile runs")
    parser.add_argument("--before", default="c4e58b8", help="git revision of the 'before' run ('none': skip it)")
    parser.add_argument("--only-backlog", action="store_true", help="run part 5 only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CORPORA.is_dir():  # the benches measure the whole corpora, beside the checkout
        sys.exit(f"bench_daemon needs the corpora at {CORPORA} (absent); nothing measured")
    results = {} if args.only_backlog else run(args)
    if args.backlog_files:
        results["edits_during_backlog"] = run_backlog(args)
    for key, value in results.items():
        print(f"{key:32} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
