"""A new user's first search, without a daemon: what the README's quick start promises.

    .venv/bin/python bench/bench_first_search.py [--files 300] [--searches 10] [--backend onnx] [--json out.json]

In a fresh INDEXER_HOME with nothing configured (the default backend unless --backend):
1. the first `indexer reindex --root DIR` of --files tldr pages (../shared/corpora, read in
   place): wall time, and whether the one-time ONNX export ran inside it;
2. the first `indexer search --direct QUERY` after it, then --searches more (each a new
   process, as a user runs it; different queries): wall time first, p50, p95;
3. `python -c pass` and `python -c "import indexer.cli"` in the same run, for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
VENV_BIN = Path(sys.executable).parent
QUERIES = ["pack files into an archive", "copy files to a remote host", "search text in files", "change file permissions",
           "check whether a host is reachable", "download a file over http", "show disk usage", "list running processes",
           "compress a directory", "find files by name", "commit staged changes", "show network interfaces"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed: {out.stderr.strip()}")
    return elapsed, out


def run(args: argparse.Namespace) -> dict:
    pages = sorted(p for p in (CORPORA / "tldr" / "pages" / "common").glob("*.md") if not p.name.startswith("."))
    tmp = Path(tempfile.mkdtemp(prefix="bench-first-search-"))
    try:
        root = tmp / "notes"
        root.mkdir()
        for page in pages[:args.files]:
            shutil.copy(page, root / page.name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXER_")}
        env["INDEXER_HOME"] = str(tmp / "home")
        if args.backend:
            env["INDEXER_BACKEND"] = args.backend
        indexer = str(VENV_BIN / "indexer")
        reindex_s, first = timed([indexer, "reindex", "--root", str(root), "--json"], env)
        report = json.loads(first.stdout)
        searches = []
        for i in range(args.searches + 1):
            seconds, out = timed([indexer, "search", "--direct", "--json", QUERIES[i % len(QUERIES)]], env)
            assert json.loads(out.stdout)["results"], out.stdout
            searches.append(seconds)
        python = [timed([sys.executable, "-c", "pass"], env)[0] for _ in range(5)]
        import_cli = [timed([sys.executable, "-c", "import indexer.cli"], env)[0] for _ in range(5)]
        status = json.loads(timed([indexer, "status", "--direct", "--json"], env)[1].stdout)
        rest = searches[1:]
        return {
            "backend": status.get("backend"), "files": report["added"], "chunks": report["chunks_embedded"],
            "first_reindex_s": round(reindex_s, 2), "export_in_reindex": "exporting" in first.stderr,
            "first_search_s": round(searches[0], 3),
            "search_direct_p50_s": round(statistics.median(rest), 3),
            "search_direct_p95_s": round(sorted(rest)[min(len(rest) - 1, round(0.95 * (len(rest) - 1)))], 3),
            "python_pass_p50_s": round(statistics.median(python), 3),
            "import_indexer_cli_p50_s": round(statistics.median(import_cli), 3),
            "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--searches", type=int, default=10, help="searches after the first")
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], help="default: none set (the default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not (CORPORA / "tldr" / "pages" / "common").is_dir():
        sys.exit(f"bench_first_search needs the tldr corpus at {CORPORA / 'tldr'} (absent); nothing measured")
    result = run(args)
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
