"""Document-sync benchmarks on ../shared/corpora (read in place).

    .venv/bin/python bench/bench_sync.py [--sample-tldr 300] [--sample-rfcs 10] [--json out.json]

1. Cold index with the real model on a sample: pipeline wall time and chunks/s, next to the
   raw model encoding the very same chunk texts in the same run (the baseline).
2. The whole corpora (7,6xx files), with a fast stand-in embedder of the same dimension so
   the run takes minutes, not hours: cold reconcile, then a no-change reindex (median of 5),
   a one-file edit, and database size per 1k chunks.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.config import load_config  # noqa: E402
from indexer.documents.embedding import SentenceTransformerEmbedder  # noqa: E402
from indexer.documents.sync import DocumentSync  # noqa: E402
from indexer.documents.tokenizer import default_token_counter  # noqa: E402
from indexer.storage.sqlite import driver  # noqa: E402
from indexer.testing import HashEmbedder  # noqa: E402

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def sample_corpus(dest: Path, tldr: int, rfcs: int) -> int:
    tldr_files = sorted((CORPORA / "tldr" / "pages" / "common").glob("*.md"))[:tldr]
    rfc_files = sorted((CORPORA / "rust-rfcs" / "text").glob("*.md"))[:rfcs]
    for f in tldr_files + rfc_files:
        shutil.copy(f, dest / f.name)
    return len(tldr_files) + len(rfc_files)


def db_chunks(db: Path) -> list[str]:
    conn = driver.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT embed_text FROM document_chunks ORDER BY id")]
    finally:
        conn.close()


def bench_real_model(tmp: Path, tldr: int, rfcs: int) -> dict[str, float]:
    root = tmp / "sample"
    root.mkdir()
    files = sample_corpus(root, tldr, rfcs)
    db = tmp / "real.db"
    config = load_config({"db": str(db), "roots": [str(root)]})
    embedder = SentenceTransformerEmbedder(config.model, threads=os.cpu_count() or 1)
    load_start = time.perf_counter()
    embedder.load()
    load_s = time.perf_counter() - load_start
    start = time.perf_counter()
    with DocumentSync(config, embedder=embedder) as sync:
        report = sync.run()
    pipeline_s = time.perf_counter() - start
    texts = db_chunks(db)
    start = time.perf_counter()
    embedder.embed_documents(texts)
    model_s = time.perf_counter() - start
    size = db.stat().st_size + (Path(f"{db}-wal").stat().st_size if Path(f"{db}-wal").exists() else 0)
    edit = root / sorted(os.listdir(root))[0]
    edit.write_text(edit.read_text() + "\n- A new example line added by the benchmark:\n\n`echo bench`\n")
    start = time.perf_counter()
    with DocumentSync(config, embedder=embedder) as sync:
        edit_report = sync.run()
    edit_s = time.perf_counter() - start
    return {
        "real_files": files, "real_chunks": len(texts), "model_load_s": load_s,
        "pipeline_s": pipeline_s, "pipeline_chunks_per_s": report.chunks_embedded / pipeline_s,
        "model_alone_s": model_s, "model_alone_chunks_per_s": len(texts) / model_s,
        "pipeline_over_model": pipeline_s / model_s,
        "one_file_edit_s": edit_s, "one_file_edit_chunks_embedded": edit_report.chunks_embedded,
        "db_bytes_per_1k_chunks": size / len(texts) * 1000,
    }


def bench_full_corpus(tmp: Path) -> dict[str, float]:
    db = tmp / "full.db"
    roots = [CORPORA / "tldr" / "pages", CORPORA / "rust-rfcs" / "text"]
    config = load_config({"db": str(db), "roots": [str(r) for r in roots]})
    stand_in = HashEmbedder(dim=384, name="bench-stand-in")
    counter = default_token_counter()
    start = time.perf_counter()
    with DocumentSync(config, embedder=stand_in, counter=counter) as sync:
        report = sync.reconcile()
    reconcile_s = time.perf_counter() - start
    with DocumentSync(config, embedder=stand_in, counter=counter) as sync:
        sync.embed_pending()
        nochange = []
        for _ in range(5):
            start = time.perf_counter()
            again = sync.run()
            nochange.append(time.perf_counter() - start)
            assert again.added == again.modified == again.chunks_embedded == 0
    chunks = len(db_chunks(db))
    size = db.stat().st_size + (Path(f"{db}-wal").stat().st_size if Path(f"{db}-wal").exists() else 0)
    return {
        "full_files": report.scanned, "full_chunks": chunks,
        "full_cold_reconcile_s": reconcile_s,
        "full_nochange_reindex_median_s": statistics.median(nochange),
        "full_db_bytes_per_1k_chunks": size / chunks * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample-tldr", type=int, default=300)
    parser.add_argument("--sample-rfcs", type=int, default=10)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CORPORA.is_dir():  # the benches measure the whole corpora, beside the checkout
        sys.exit(f"bench_sync needs the corpora at {CORPORA} (absent); nothing measured")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        result.update(bench_full_corpus(Path(tmp)))
        if not args.skip_real:
            result.update(bench_real_model(Path(tmp), args.sample_tldr, args.sample_rfcs))
    for key, value in result.items():
        print(f"{key:34} {value:,.3f}" if isinstance(value, float) else f"{key:34} {value:,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
