"""Search quality and latency.

    .venv/bin/python bench/bench_search.py [--distractors 1200] [--latency-sizes 10000,100000] [--json out.json]

Quality: bench/queries.json (labelled queries over ../shared/corpora). The index holds every
relevant file plus deterministic distractors, embedded with the real model. Reports MRR@10
and recall@5 per mode (hybrid, semantic, keyword), per query kind, and a sweep of the
keyword weight of the fusion.

Latency: synthetic indexes of N chunks (corpus chunk texts, random unit vectors): in-process
search p50/p95 (query embedding included) next to the raw query embedding and a numpy
brute-force KNN over the same vectors, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from indexer.storage.vectors import to_blob  # noqa: E402
from indexer.documents.search import SearchOptions, run_search  # noqa: E402
from indexer.storage.search_store import VectorMatrix  # noqa: E402
from indexer.storage import driver  # noqa: E402
from indexer.documents.sync import DocumentSync  # noqa: E402

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
QUERIES = Path(__file__).with_name("queries.json")


def build_quality_corpus(dest: Path, distractors: int) -> dict[str, Path]:
    """Copy relevant files and distractors; returns corpus-relative name -> copied path."""
    queries = json.loads(QUERIES.read_text())["queries"]
    wanted = sorted({r for q in queries for r in q["relevant"]})
    pool = sorted(str(p.relative_to(CORPORA)) for p in (CORPORA / "tldr" / "pages").glob("*/*.md"))
    step = max(len(pool) // max(distractors, 1), 1)
    extra = [p for p in pool[::step] if p not in wanted][:distractors]
    rfcs = sorted(str(p.relative_to(CORPORA)) for p in (CORPORA / "rust-rfcs" / "text").glob("*.md"))
    extra += [p for p in rfcs[::25] if p not in wanted]
    mapping = {}
    for rel in wanted + extra:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPORA / rel, target)
        mapping[rel] = target.resolve()
    return mapping


def evaluate(conn, embedder, queries, mapping, mode: str, keyword_weight: float = 0.075) -> dict[str, float]:
    rr, recall = [], []
    by_kind: dict[str, list[float]] = {}
    cache: dict[str, np.ndarray] = {}

    def embed(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = embedder.embed_query(text)
        return cache[text]

    for q in queries:
        relevant = {str(mapping[r]) for r in q["relevant"]}
        options = SearchOptions(mode=mode, k=10, keyword_weight=keyword_weight)
        paths = [hit["path"] for hit in run_search(conn, q["q"], options, embed)["results"]]
        rank = next((i for i, p in enumerate(paths, 1) if p in relevant), None)
        rr.append(1.0 / rank if rank else 0.0)
        recall.append(len(relevant & set(paths[:5])) / min(len(relevant), 5))
        by_kind.setdefault(q["kind"], []).append(rr[-1])
    result = {"mrr@10": statistics.mean(rr), "recall@5": statistics.mean(recall)}
    result.update({f"mrr@10[{kind}]": statistics.mean(v) for kind, v in sorted(by_kind.items())})
    return result


def bench_quality(tmp: Path, distractors: int, backend: str) -> dict[str, object]:
    root = tmp / "corpus"
    mapping = build_quality_corpus(root, distractors)  # unchanged files are not re-embedded
    db = tmp / f"quality-{backend}.db"
    config = load_config({"db": str(db), "roots": [str(root)]})
    embedder = make_embedder(config.model, threads=os.cpu_count() or 1, backend=backend, cache_dir=tmp / "models")
    start = time.perf_counter()
    with DocumentSync(config, embedder=embedder) as sync:
        report = sync.run()
    index_s = time.perf_counter() - start
    queries = json.loads(QUERIES.read_text())["queries"]
    conn = driver.connect(db, readonly=True)
    try:
        result: dict[str, object] = {"files": report.scanned, "chunks": report.chunks_embedded,
                                     "index_s": round(index_s, 1), "queries": len(queries)}
        for mode in ("keyword", "semantic", "hybrid"):
            result[mode] = evaluate(conn, embedder, queries, mapping, mode)
        result["hybrid_keyword_weight_sweep"] = {
            str(w): {k: round(v, 4) for k, v in evaluate(conn, embedder, queries, mapping, "hybrid", w).items()
                     if k in ("mrr@10", "recall@5")}
            for w in (0.05, 0.075, 0.1, 0.25, 0.5)
        }
    finally:
        conn.close()
    return result


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
    search_ms, cached_ms, embed_ms, numpy_ms = [], [], [], []
    matrix = VectorMatrix()
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
            f"query_embed_p50_ms@{size}": statistics.median(embed_ms),
            f"numpy_bruteforce_p50_ms@{size}": statistics.median(numpy_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distractors", type=int, default=1200)
    parser.add_argument("--latency-sizes", default="10000,100000")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--backend", choices=("torch", "onnx", "onnx-int8"), default="torch",
                        help="The embedding backend (onnx: the model exported to ONNX, run by onnxruntime).")
    parser.add_argument("--workdir", type=Path, help="Keep the corpus copy and index here (reused by later runs).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CORPORA.is_dir():  # the benches measure the whole corpora, beside the checkout
        sys.exit(f"bench_search needs the corpora at {CORPORA} (absent); nothing measured")
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        if not args.skip_quality:
            result["quality"] = bench_quality(tmp, args.distractors, args.backend)
            print(json.dumps(result["quality"], indent=2), flush=True)
        embedder = make_embedder(load_config({}).model, threads=1, backend=args.backend, cache_dir=tmp / "models")
        texts = [p.read_text()[:600] for p in sorted((CORPORA / "tldr" / "pages" / "common").glob("*.md"))[:3000]]
        queries = [q["q"] for q in json.loads(QUERIES.read_text())["queries"]]
        embedder.embed_query("warm up")
        latency: dict[str, float] = {}
        for size in (int(s) for s in args.latency_sizes.split(",") if s):
            latency.update(bench_latency(Path(scratch), size, embedder, texts, queries))
        result["latency"] = latency
        for key, value in latency.items():
            print(f"{key:32} {value:8.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
