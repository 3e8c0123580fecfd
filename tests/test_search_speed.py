"""The daemon's faster search path (issue 23) answers exactly as before: each rewritten piece is
compared with the way it was computed before, on real index files that change between searches."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from indexer.config import load_config
from indexer.daemon.searcher import QUERY_CACHE, WarmSearcher
from indexer.documents.search import SearchOptions, fuse, run_search
from indexer.documents.sync import DocumentSync
from indexer.documents.vector_matrix import SearchVectors
from indexer.storage.sqlite import driver, search_store, vector_log
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

EMBEDDER = HashEmbedder(dim=32)
WORDS = "archive remote shell pattern file files list process port disk image copy the a of zeppelin".split()
QUERIES = ["archive remote", "list files of a process", "zeppelin", "the", "copy image to disk port", "nothing-here",
           'quoted "pattern" shell', "how do I list open ports?", "über ñandú 東京", "file_name --flag"]


def notes(seed: int, count: int = 40) -> dict[str, str]:
    rng = random.Random(seed)
    out = {}
    for i in range(count):
        sections = "\n\n".join(f"## Part {j}\n\n" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
                               for j in range(rng.randint(1, 4)))
        out[f"d{i % 4}/note{i}.md"] = f"# Note {i}\n\n{' '.join(rng.choice(WORDS) for _ in range(8))}\n\n{sections}\n"
    return out


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def sync(db: Path, root: Path, embed: bool = True) -> None:
    config = load_config({"db": str(db), "roots": [str(root)]})
    with DocumentSync(config, embedder=EMBEDDER, counter=WhitespaceTokenCounter()) as s:
        s.reconcile()
        if embed:
            s.embed_pending()


def term_matches_before(conn: driver.Connection, text: str, chunk_ids: list[int]) -> tuple:
    """term_matches as it was: every posting list read into Python and intersected there."""
    total = int(conn.execute("SELECT count(*) FROM document_chunks").fetchone()[0])
    counts, matches, wanted = {}, {}, set(chunk_ids)
    for quoted in search_store.fts_terms(text):
        term = quoted[1:-1].replace('""', '"')
        rows = [int(r[0]) for r in conn.execute("SELECT rowid FROM chunk_fts WHERE chunk_fts MATCH ?", (quoted,))]
        counts[term] = len(rows)
        matches[term] = wanted.intersection(rows)
    return total, counts, matches


def test_term_matches_equals_the_posting_list_intersection(tmp_path: Path) -> None:
    root, db = tmp_path / "root", tmp_path / "i.db"
    write(root, notes(1))
    sync(db, root)
    conn = driver.connect(db, readonly=True)
    try:
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM document_chunks")]
        rng = random.Random(2)
        for query in QUERIES:
            for chosen in ([], ids, rng.sample(ids, 7), rng.sample(ids, len(ids) // 2), [10**9]):
                expected = term_matches_before(conn, query, chosen)
                assert search_store.term_matches(conn, query, chosen) == expected
                assert search_store.term_matches(conn, query, chosen, expected[0]) == expected
        assert any(m for m in search_store.term_matches(conn, "zeppelin archive", ids)[2].values())
    finally:
        conn.close()


def owners_by_sql(conn: driver.Connection) -> dict[int, int]:
    return {int(r[0]): int(r[1]) for r in conn.execute(
        "SELECT id, document_id FROM document_chunks WHERE embedded_at IS NOT NULL")}


def test_chunk_owners_in_memory_follow_edits_deletes_and_new_files(tmp_path: Path) -> None:
    root, db = tmp_path / "root", tmp_path / "i.db"
    write(root, notes(3))
    sync(db, root)
    conn = driver.connect(db, readonly=True)
    vectors = SearchVectors()
    try:
        for step in range(4):
            with vector_log.snapshot(conn):
                vectors.chunks.refresh(conn)
                expected = owners_by_sql(conn)
                every = [int(r[0]) for r in conn.execute("SELECT id FROM document_chunks")]
                found, missing = vectors.chunks.owners(every + [10**9])
            assert found == expected
            assert sorted(missing) == sorted(set(every) - set(expected)) + [10**9]  # not embedded: asked of SQL
            # the next commit: files re-chunked, one deleted, one new; on odd steps left unembedded
            edits = notes(10 + step, count=6)
            write(root, {f"d{step}/note{step + 4}.md": text for text in edits.values()})
            (root / f"d{(step + 1) % 4}/note{step + 9}.md").unlink(missing_ok=True)
            write(root, {f"new/{step}.md": "# New\n\nzeppelin archive " * (step + 1)})
            sync(db, root, embed=step % 2 == 0)
        assert vectors.chunks.updates >= 2  # followed the log, not reloaded each time
    finally:
        conn.close()


def test_searches_through_changing_vectors_answer_as_a_fresh_searcher(tmp_path: Path) -> None:
    """The in-memory owners (kept through the log) give the same responses as the vectors
    loaded afresh, and as chunk owners read from SQL (the one-shot path's owners)."""
    root, db = tmp_path / "root", tmp_path / "i.db"
    write(root, notes(5))
    sync(db, root)
    conn = driver.connect(db, readonly=True)
    kept = SearchVectors()
    try:
        for step in range(3):
            for query in QUERIES:
                for mode in ("hybrid", "semantic", "keyword"):
                    options = SearchOptions(mode=mode, k=5)
                    answer = run_search(conn, query, options, EMBEDDER.embed_query, kept)
                    assert answer == run_search(conn, query, options, EMBEDDER.embed_query, SearchVectors())
            write(root, notes(20 + step, count=8))
            sync(db, root, embed=step != 1)
    finally:
        conn.close()


def test_fuse_without_chunk_explain_orders_the_same() -> None:
    rng = random.Random(4)
    for _ in range(50):
        rankings = {name: [(rng.randint(1, 60), rng.random()) for _ in range(rng.randint(0, 40))]
                    for name in ("semantic", "keyword")}
        rankings = {name: list(dict(items).items()) for name, items in rankings.items()}
        weights = {"semantic": 1.0, "keyword": rng.choice([0.0, 0.1, 0.3])}
        full = fuse(rankings, weights, 60)
        lean = fuse(rankings, weights, 60, explain_ranks=False)
        assert [(h.chunk_id, h.score) for h in lean] == [(h.chunk_id, h.score) for h in full]


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=32)
        self.queries: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return super().embed_query(text)


def test_warm_searcher_embeds_a_repeated_query_once(tmp_path: Path) -> None:
    root, db = tmp_path / "root", tmp_path / "i.db"
    write(root, notes(6))
    sync(db, root)
    embedder = CountingEmbedder()
    searcher = WarmSearcher(load_config({"db": str(db), "roots": [str(root)]}), lambda config: embedder)
    try:
        first = searcher.search("archive remote", SearchOptions(k=5))
        again = searcher.search("archive remote", SearchOptions(k=5))
        assert embedder.queries == ["archive remote"]
        assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
        searcher.search("zeppelin", SearchOptions(k=5, mode="semantic"))
        searcher.search("zeppelin", SearchOptions(k=5, mode="keyword"))  # no embedding at all
        assert embedder.queries == ["archive remote", "zeppelin"]
        for n in range(QUERY_CACHE + 1):  # the oldest drops out
            searcher.search(f"q{n}", SearchOptions(k=1, mode="semantic"))
        searcher.search("archive remote", SearchOptions(k=5))
        assert embedder.queries[-1] == "archive remote" and embedder.queries.count("archive remote") == 2
    finally:
        searcher.close()
