"""Daemon benchmarks, with the real model, on a sample of ../shared/corpora (read in place).

    .venv/bin/python bench/bench_daemon.py [--files 300] [--edits 20] [--searches 20] [--json out.json]

1. Memory while the daemon embeds a fresh sample (peak RSS) and once idle.
2. CPU while idle (10 s window, from /proc/PID/stat).
3. Edit-to-searchable for a one-file edit: from the write to (a) the new words found by a
   keyword search through the socket, (b) the document synced with every chunk embedded.
4. `indexer search` wall time through the daemon, next to `python -c pass` and to
   `indexer search --direct` (no daemon: model load included) in the same run.
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
from indexer.storage import driver  # noqa: E402

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
            keyword_s.append(wait(lambda: bool(call(sock, {"op": "search", "query": word, "mode": "keyword", "k": 1})["results"]), 30))
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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CORPORA.is_dir():  # the benches measure the whole corpora, beside the checkout
        sys.exit(f"bench_daemon needs the corpora at {CORPORA} (absent); nothing measured")
    results = run(args)
    for key, value in results.items():
        print(f"{key:32} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
