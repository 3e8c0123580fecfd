"""Search quality and latency.

    .venv/bin/python bench/bench_search.py --db INDEX.db [--backend onnx] [--json out.json]
    .venv/bin/python bench/bench_search.py --workdir DIR   # builds DIR/index.db first (minutes)

Quality: bench/queries.json, labelled queries over all of ../shared/corpora (7,013 tldr pages,
650 Rust RFCs), split once into a ``tune`` and a ``heldout`` half. The index is the full
corpora indexed in place: pass ``--db`` to reuse one (built once with
``indexer reindex --root .../tldr/pages --root .../rust-rfcs/text``), or ``--workdir`` to
build it there. Searches go through ``indexer.documents.search.run_search`` (what the CLI and daemon
use). Prints MRR@10 and recall@5 per mode (keyword, semantic, hybrid) and per query kind for
each half, held-out first: quote the held-out figures; tune ranking only on ``tune``. A
query's answers are its set's labels plus the pages judged to answer it by pooling
(bench/judgments_pooled.json, bench/pool_judgments.py); the tables with the sets' own labels
only follow. Hybrid's difference from semantic is given per kind with a 95 % paired bootstrap
interval and a sign test.

Latency: synthetic indexes of N chunks (corpus chunk texts, random unit vectors): in-process
search p50/p95 (query embedding included) next to the raw query embedding and a numpy
brute-force KNN over the same vectors, in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from indexer.config import load_config  # noqa: E402
from indexer.documents.embedding import make_embedder  # noqa: E402
from indexer.documents.search import Fusion, SearchOptions, run_search  # noqa: E402
from indexer.documents.sync import DocumentSync  # noqa: E402
from indexer.documents.vector_matrix import SearchVectors  # noqa: E402
from indexer.storage.sqlite import driver  # noqa: E402
from indexer.storage.sqlite.search_store import Filters  # noqa: E402
from indexer.storage.sqlite.vectors import to_blob  # noqa: E402

CORPORA = Path(os.environ.get("INDEXER_TEST_CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora")
QUERIES = Path(__file__).with_name("queries.json")
PARAPHRASES = Path(__file__).with_name("queries_paraphrase.json")  # second style: no word of the answer's page
# A third set, written blind (by someone given only the corpora): judged, never tuned on.
FRESH = Path(__file__).with_name("queries_fresh.json")
QUERY_SETS = {"queries": QUERIES, "paraphrase": PARAPHRASES, "fresh": FRESH}
# Pages judged blind to answer a query beside its set's own labels (bench/pool_judgments.py).
POOLED = Path(__file__).with_name("judgments_pooled.json")
ROOTS = (CORPORA / "tldr" / "pages", CORPORA / "rust-rfcs" / "text")
MODES = ("keyword", "semantic", "hybrid")
SPLITS = ("heldout", "tune", "judge")


def load_queries(paths: tuple[Path, ...] = (QUERIES, PARAPHRASES, FRESH), pooled: Path | None = POOLED) -> list[dict]:
    """The labelled queries of every set, each with ``pooled``: the pages judged to answer it
    by pooling (empty without ``pooled``). Every labelled file must exist (a typo would count
    as a miss)."""
    extra = json.loads(pooled.read_text())["pooled"] if pooled is not None and pooled.is_file() else {}
    queries = [{**q, "set": path.name, "pooled": sorted(set(extra.get(q["q"], [])) - set(q["relevant"]))}
               for path in paths for q in json.loads(path.read_text())["queries"]]
    missing = sorted({r for q in queries for r in q["relevant"] + q["pooled"] if not (CORPORA / r).is_file()})
    if missing:
        raise SystemExit(f"error: {len(missing)} labelled files do not exist under {CORPORA}: {missing[:5]}")
    bad = [q["q"] for q in queries if q.get("split") not in SPLITS]
    if bad:
        raise SystemExit(f"error: queries without a tune/heldout/judge split: {bad[:5]}")
    return queries


MISSING = 11  # the rank given to an answer outside the top 10, when counting harm


def answers(q: dict, labels: str = "pooled") -> set[str]:
    """The files that answer ``q``: its set's labels, plus the pooled judgments unless
    ``labels`` is "original"."""
    return {str(CORPORA / r) for r in q["relevant"] + (q.get("pooled", []) if labels == "pooled" else [])}


def scored(paths: list[str], relevant: set[str]) -> tuple[int, float]:
    """The rank of the first relevant path (MISSING when not in the top 10) and recall@5."""
    rank = next((i for i, p in enumerate(paths[:10], 1) if p in relevant), MISSING)
    return rank, len(relevant & set(paths[:5])) / min(len(relevant), 5)


def top_paths(conn, embed, queries, mode: str, matrix: SearchVectors | None = None,
              filters: Filters | None = None) -> dict[str, list[str]]:
    """Per query: the paths of its top 10 results."""
    options = SearchOptions(mode=mode, k=10, filters=filters or Filters())
    return {q["q"]: [hit["path"] for hit in run_search(conn, q["q"], options, embed, matrix)["results"]]
            for q in queries}


def ranks(conn, embed, queries, mode: str, matrix: SearchVectors | None = None,
          filters: Filters | None = None, labels: str = "pooled") -> dict[str, tuple[int, float]]:
    """Per query: the rank of its first relevant document (MISSING when not in the top 10) and recall@5."""
    paths = top_paths(conn, embed, queries, mode, matrix, filters)
    return {q["q"]: scored(paths[q["q"]], answers(q, labels)) for q in queries}


def paired(ours: list[float], theirs: list[float], resamples: int = 4000, seed: int = 22) -> dict[str, float]:
    """The mean of ``ours - theirs`` (per query reciprocal ranks) with a 95 % paired bootstrap
    interval, and the two-sided sign test's p-value over the queries that differ: whether a
    difference between two rankers on this many queries is more than chance."""
    diffs = np.array(ours) - np.array(theirs)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (resamples, len(diffs)))].mean(axis=1) if len(diffs) else np.zeros(1)
    up, down = int((diffs > 0).sum()), int((diffs < 0).sum())
    n, k = up + down, min(up, down)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return {"delta": round(float(diffs.mean()) if len(diffs) else 0.0, 4),
            "low": round(float(np.percentile(means, 2.5)), 4), "high": round(float(np.percentile(means, 97.5)), 4),
            "up": up, "down": down, "p": round(p, 4)}


def evaluate(queries: list[dict], by_mode: dict[str, dict[str, tuple[int, float]]], mode: str) -> dict[str, object]:
    """MRR@10 and recall@5, overall and per kind and set, and (for hybrid) how many queries it
    ranks more than one position lower than semantic and than keyword do (``worse_than_*``),
    and its paired difference from semantic (``vs_semantic``: :func:`paired`)."""
    def rr(q: dict, of: str = mode) -> float:
        rank = by_mode[of][q["q"]][0]
        return 1.0 / rank if rank < MISSING else 0.0

    def summary(subset: list[dict], suffix: str = "") -> dict[str, object]:
        row: dict[str, object] = {f"mrr@10{suffix}": round(statistics.mean(rr(q) for q in subset), 4),
                                  f"recall@5{suffix}": round(statistics.mean(by_mode[mode][q["q"]][1] for q in subset), 4),
                                  f"n{suffix}": len(subset)}
        for other in ("semantic", "keyword"):
            if other != mode and other in by_mode:
                row[f"worse_than_{other}{suffix}"] = sum(
                    by_mode[mode][q["q"]][0] - by_mode[other][q["q"]][0] > 1 for q in subset)
        if mode != "semantic" and "semantic" in by_mode:
            row[f"vs_semantic{suffix}"] = paired([rr(q) for q in subset], [rr(q, "semantic") for q in subset])
        return row

    result = summary(queries)
    result["queries"] = len(queries)
    for kind in sorted({q["kind"] for q in queries}):
        result.update(summary([q for q in queries if q["kind"] == kind], f"[{kind}]"))
    for name in sorted({q.get("set", "") for q in queries} - {""}):
        result.update(summary([q for q in queries if q.get("set") == name], f"[{name}]"))
    return result


def build_index(workdir: Path, backend: str) -> tuple[Path, dict[str, object]]:
    """Index the full corpora in place into workdir/index.db (unchanged files are skipped)."""
    db = workdir / "index.db"
    config = load_config({"db": str(db), "roots": [str(r) for r in ROOTS], "backend": backend,
                          "embed_threads": os.cpu_count() or 1})
    start = time.perf_counter()
    with DocumentSync(config) as sync:
        report = sync.run()
    return db, {"files": report.scanned, "chunks_embedded": report.chunks_embedded,
                "index_s": round(time.perf_counter() - start, 1)}


def bench_quality(db: Path, backend: str, queries: list[dict], filters: Filters | None = None) -> dict[str, object]:
    embedder = make_embedder(load_config({}).model, threads=1, backend=backend, cache_dir=db.parent / "models")
    cache: dict[str, np.ndarray] = {}

    def embed(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = embedder.embed_query(text)
        return cache[text]

    conn = driver.connect(db, readonly=True)
    matrix = SearchVectors()  # in memory, as the daemon searches
    try:
        counts = conn.execute("SELECT (SELECT count(*) FROM document_index), (SELECT count(*) FROM document_chunks)").fetchone()
        result: dict[str, object] = {"db": str(db), "db_mb": round(db.stat().st_size / 2**20, 1),
                                     "documents": counts[0], "chunks": counts[1]}
        paths = {mode: top_paths(conn, embed, queries, mode, matrix, filters) for mode in MODES}
        pooled = sum(len(q.get("pooled", [])) for q in queries)
        result["labels"] = "pooled" if pooled else "original"
        result["pooled_pages"] = pooled
        for labels in (("pooled", "original") if pooled else ("original",)):
            by_mode = {mode: {q["q"]: scored(paths[mode][q["q"]], answers(q, labels)) for q in queries}
                       for mode in MODES}
            into = result if labels == result["labels"] else result.setdefault("original_labels", {})
            for split in SPLITS:
                subset = [q for q in queries if q["split"] == split]
                if subset:
                    into[split] = {mode: evaluate(subset, by_mode, mode) for mode in MODES}
    finally:
        conn.close()
    return result


def print_quality(result: dict[str, object]) -> None:
    print(f"index {result['db']}: {result['documents']} documents, {result['chunks']} chunks, {result['db_mb']} MB")
    if result.get("labels") == "pooled":
        print(f"labels: each set's own plus {result['pooled_pages']} pages judged by pooling ({POOLED.name}); "
              "the same with the sets' own labels only follows")
    print_tables(result)
    if "original_labels" in result:
        print("\n=== the sets' own labels only (before pooling) ===")
        print_tables(result["original_labels"])


def print_tables(result: dict) -> None:
    for split in (s for s in SPLITS if s in result):
        table = result[split]
        kinds = sorted({k[7:-1] for k in table["hybrid"] if k.startswith("mrr@10[")}, key=lambda k: (k.endswith(".json"), k))
        sizes = ", ".join(f"{k} {table['hybrid'][f'n[{k}]']}" for k in kinds)
        print(f"\n{split} half ({table['hybrid']['queries']} queries: {sizes})")
        print(f"{'mode':10} {'MRR@10':>7} {'R@5':>6} " + " ".join(f"{k:>10}" for k in kinds) + "   (MRR@10 per kind)")
        for mode in MODES:
            row = table[mode]
            print(f"{mode:10} {row['mrr@10']:7.3f} {row['recall@5']:6.3f} "
                  + " ".join(f"{row[f'mrr@10[{k}]']:10.3f}" for k in kinds))
        hybrid = table["hybrid"]
        print("hybrid ranks the answer more than one position lower than semantic / than keyword, "
              "and recall@5, per kind:")
        for k in ["all", *kinds]:
            suffix = "" if k == "all" else f"[{k}]"
            print(f"  {k:18} n {hybrid[f'n{suffix}']:4}  worse than semantic {hybrid[f'worse_than_semantic{suffix}']:3} "
                  f"({100 * hybrid[f'worse_than_semantic{suffix}'] / hybrid[f'n{suffix}']:4.1f} %)  "
                  f"worse than keyword {hybrid[f'worse_than_keyword{suffix}']:3}  "
                  f"R@5 keyword {table['keyword'][f'recall@5{suffix}']:.3f} "
                  f"semantic {table['semantic'][f'recall@5{suffix}']:.3f} "
                  f"hybrid {hybrid[f'recall@5{suffix}']:.3f}")
        print("hybrid minus semantic, MRR@10 per query: mean [95 % paired bootstrap], queries up / down, sign test p:")
        for k in ["all", *kinds]:
            d = hybrid[f"vs_semantic{'' if k == 'all' else f'[{k}]'}"]
            print(f"  {k:18} {d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]  up {d['up']:3} down {d['down']:3}  "
                  f"p {d['p']:.3f}")


def bench_latency(tmp: Path, size: int, embedder, texts: list[str], queries: list[str]) -> dict[str, float]:
    db = tmp / f"latency-{size}.db"
    config = load_config({"db": str(db)})
    with DocumentSync(config, embedder=embedder) as sync:
        sync.prepare()
    conn = driver.connect(db)
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((size, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    conn.execute("BEGIN")
    per_doc = 20
    for d in range(0, size, per_doc):
        cur = conn.execute("INSERT INTO document_index (file_path, title, content_hash, sync_status) VALUES (?, ?, ?, 'synced')",
                           (f"/bench/doc-{d}.md", f"doc {d}", "h"))
        doc_id = cur.lastrowid
        summary = rng.standard_normal(384).astype(np.float32)
        conn.execute("INSERT INTO document_summaries (document_id, summary_hash, text, embedding) VALUES (?, ?, ?, ?)",
                     (doc_id, str(d), texts[d % len(texts)][:200], to_blob(summary / np.linalg.norm(summary))))
        for i in range(d, min(d + per_doc, size)):
            text = texts[i % len(texts)]
            cid = conn.execute(
                "INSERT INTO document_chunks (document_id, chunk_index, chunk_hash, start_line, end_line, token_count, "
                "text, embed_text, embedded_at) VALUES (?, ?, ?, 1, 1, 1, ?, ?, 'x')",
                (doc_id, i - d, str(i), text, text)).lastrowid
            conn.execute("INSERT INTO chunk_vectors (rowid, embedding) VALUES (?, ?)", (cid, to_blob(vectors[i])))
    conn.execute("COMMIT")
    conn.close()
    conn = driver.connect(db, readonly=True)
    search_ms, cached_ms, embed_ms, numpy_ms, plain_ms, ungated_ms = [], [], [], [], [], []
    plain = SearchOptions(mode="hybrid", k=10, fusion=Fusion(summary_weight=0.0))  # chunks only
    ungated = SearchOptions(mode="hybrid", k=10, fusion=Fusion(gate=None))  # BM25 weight by shape alone
    matrix = SearchVectors()
    try:
        run_search(conn, "warm", SearchOptions(mode="hybrid", k=10), embedder.embed_query, matrix)
        for q in queries:
            start = time.perf_counter()
            run_search(conn, q, SearchOptions(mode="hybrid", k=10), embedder.embed_query)
            search_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            run_search(conn, q, SearchOptions(mode="hybrid", k=10), embedder.embed_query, matrix)
            cached_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            run_search(conn, q, plain, embedder.embed_query, matrix)
            plain_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            run_search(conn, q, ungated, embedder.embed_query, matrix)
            ungated_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            qv = embedder.embed_query(q)
            embed_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            np.argpartition(-(vectors @ qv), 10)[:10]
            numpy_ms.append((time.perf_counter() - start) * 1e3)
    finally:
        conn.close()
    q95 = lambda xs: sorted(xs)[int(0.95 * (len(xs) - 1))]  # noqa: E731
    return {f"search_p50_ms@{size}": statistics.median(search_ms), f"search_p95_ms@{size}": q95(search_ms),
            f"search_in_memory_vectors_p50_ms@{size}": statistics.median(cached_ms),
            f"search_in_memory_vectors_p95_ms@{size}": q95(cached_ms),
            f"search_in_memory_no_summaries_p50_ms@{size}": statistics.median(plain_ms),
            f"search_in_memory_no_evidence_gate_p50_ms@{size}": statistics.median(ungated_ms),
            f"query_embed_p50_ms@{size}": statistics.median(embed_ms),
            f"numpy_bruteforce_p50_ms@{size}": statistics.median(numpy_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="An existing index of the full corpora (reused; opened read-only).")
    parser.add_argument("--workdir", type=Path, help="Build (or bring up to date) WORKDIR/index.db and use it.")
    parser.add_argument("--latency-sizes", default="10000,100000")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--backend", choices=("torch", "onnx", "onnx-int8"), default="onnx",
                        help="The embedding backend (the index's vectors should come from the same model).")
    parser.add_argument("--corpus", choices=("all", "tldr"), default="all",
                        help="tldr: only the queries answered by tldr pages, searched with --path on the tldr pages.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CORPORA.is_dir():  # the benches measure the whole corpora, beside the checkout
        sys.exit(f"bench_search needs the corpora at {CORPORA} (absent); nothing measured")
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if not args.skip_quality:
            queries = load_queries()
            if args.db is None:
                workdir = args.workdir or Path(scratch)
                workdir.mkdir(parents=True, exist_ok=True)
                args.db, result["build"] = build_index(workdir, args.backend)
                print(json.dumps(result["build"]), flush=True)
            elif not args.db.is_file():
                raise SystemExit(f"error: no index at {args.db}")
            filters = None
            if args.corpus == "tldr":
                queries = [q for q in queries if all(r.startswith("tldr/") for r in q["relevant"])]
                filters = Filters(path_prefix=str(CORPORA / "tldr" / "pages"))
            result["quality"] = bench_quality(args.db, args.backend, queries, filters)
            print_quality(result["quality"])
        models = (args.db.parent if args.db else Path(scratch)) / "models"  # the exported ONNX model, reused
        embedder = make_embedder(load_config({}).model, threads=1, backend=args.backend, cache_dir=models)
        texts = [p.read_text()[:600] for p in sorted((CORPORA / "tldr" / "pages" / "common").glob("*.md"))[:3000]]
        queries_text = [q["q"] for q in json.loads(QUERIES.read_text())["queries"]][:120]
        embedder.embed_query("warm up")
        latency: dict[str, float] = {}
        for size in (int(s) for s in args.latency_sizes.split(",") if s):
            latency.update(bench_latency(Path(scratch), size, embedder, texts, queries_text))
        result["latency"] = latency
        for key, value in latency.items():
            print(f"{key:40} {value:8.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
