"""The in-memory vectors of a long-lived searcher (documents/vector_matrix.py) follow the vector
change log (schema 0006): commits that touch no vector cost nothing, an edit updates only the
rows it changed, a new model or a pruned log reloads everything; results always equal
sqlite-vec's exact answer on the same snapshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from indexer.cli import cli
from indexer.config import load_config
from indexer.documents.sync import DocumentSync
from indexer.documents.vector_matrix import SearchVectors, VectorMatrix
from indexer.storage.sqlite import driver, search_store, vector_log
from indexer.storage.sqlite.search_store import Filters
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

EMBEDDER = HashEmbedder(dim=32)
NOTES = {f"n{i}.md": f"# Note {i}\n\nword{i} shared text about topic {i % 3}\n\n## More\n\nsecond part {i}\n"
         for i in range(12)}


def sync(db: Path, root: Path, embedder: HashEmbedder = EMBEDDER) -> None:
    config = load_config({"db": str(db), "roots": [str(root)]})
    with DocumentSync(config, embedder=embedder, counter=WhitespaceTokenCounter()) as s:
        s.run()


def build(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    root.mkdir()
    for name, text in NOTES.items():
        (root / name).write_text(text)
    db = tmp_path / "i.db"
    sync(db, root)
    return db, root


def same_as_sqlite_vec(conn: driver.Connection, vectors: SearchVectors, embedder: HashEmbedder = EMBEDDER) -> None:
    for text in ("topic 1", "second part 4", "word7 shared"):
        query = embedder.embed_query(text)
        with vector_log.snapshot(conn):
            vectors.chunks.refresh(conn)
            vectors.summaries.refresh(conn)
            exact = search_store.vector_hits(conn, query, 200, Filters())
            summaries = search_store.summary_hits(conn, query, 200, Filters())
        got = vectors.chunks.nearest(query, 200)
        assert sorted(c for c, _ in got) == sorted(c for c, _ in exact)
        assert all(abs(dict(got)[c] - s) < 1e-5 for c, s in exact)
        got_s = dict(vectors.summaries.nearest(query, 200))
        assert set(got_s) == {d for d, _ in summaries}
        assert all(abs(got_s[d] - s) < 1e-5 for d, s in summaries)


def test_commits_that_touch_no_vector_cost_no_reload(tmp_path: Path) -> None:
    db, root = build(tmp_path)
    conn = driver.connect(db, readonly=True)
    vectors = SearchVectors()
    try:
        same_as_sqlite_vec(conn, vectors)
        assert (vectors.chunks.reloads, vectors.chunks.updates) == (1, 0)
        runner = CliRunner()
        for n in range(3):  # another process's memory writes commit to the same file
            out = runner.invoke(cli, ["--db", str(db), "memory", "add", "user:alice", f"k{n}", '"v"'])
            assert out.exit_code == 0, out.output
        same_as_sqlite_vec(conn, vectors)
        assert (vectors.chunks.reloads, vectors.chunks.updates) == (1, 0)
        assert (vectors.summaries.reloads, vectors.summaries.updates) == (1, 0)
    finally:
        conn.close()


def test_an_edit_updates_only_the_rows_it_changed(tmp_path: Path) -> None:
    db, root = build(tmp_path)
    conn = driver.connect(db, readonly=True)
    vectors = SearchVectors()
    try:
        same_as_sqlite_vec(conn, vectors)
        (root / "n3.md").write_text("# Note 3 rewritten\n\nall new words here\n\n## Other\n\nand more\n\n## Third\n\nx\n")
        (root / "n5.md").unlink()
        (root / "new.md").write_text("# Brand new\n\ntopic 1 again\n")
        sync(db, root)
        same_as_sqlite_vec(conn, vectors)
        assert vectors.chunks.reloads == 1 and vectors.chunks.updates == 1
        assert vectors.summaries.reloads == 1 and vectors.summaries.updates == 1
        live = {int(i) for i in vectors.chunks.ids if i >= 0}
        with vector_log.snapshot(conn):
            assert live == {int(i) for i in vector_log.all_vectors(conn, vector_log.CHUNKS)[0]}
        assert len(live) == len(vectors.chunks) == 12  # one note gone, one new
    finally:
        conn.close()


def test_a_new_model_or_a_pruned_log_reloads_everything(tmp_path: Path) -> None:
    db, root = build(tmp_path)
    conn = driver.connect(db, readonly=True)
    vectors = SearchVectors()
    try:
        same_as_sqlite_vec(conn, vectors)
        other = HashEmbedder(dim=16, name="other-model")
        sync(db, root, other)  # the vector table is rebuilt at another dimension
        same_as_sqlite_vec(conn, vectors, other)
        assert vectors.chunks.reloads == 2 and vectors.chunks.matrix.shape[1] == 16
        (root / "n1.md").write_text("# Note 1\n\nchanged\n")
        sync(db, root, other)
        writer = driver.connect(db)
        with writer:  # what the prune trigger does to old rows
            writer.execute("DELETE FROM vector_changes WHERE seq < (SELECT max(seq) FROM vector_changes)")
        writer.close()
        same_as_sqlite_vec(conn, vectors, other)
        assert vectors.chunks.reloads == 3
    finally:
        conn.close()


@given(st.lists(st.tuples(st.integers(0, 80), st.booleans()), min_size=1, max_size=60),
       st.integers(0, 3))
def test_slots_follow_any_sequence_of_changes(changes: list[tuple[int, bool]], seed: int) -> None:
    """Adds, replacements and removals in batches, with free slots, growth, compaction and the
    sign-bit prefilter: the nearest rows always equal a brute force over the reference."""
    rng = np.random.default_rng(seed)
    matrix = VectorMatrix()
    matrix.PREFILTER_ABOVE = 40  # type: ignore[misc]
    matrix.PREFILTER_FRACTION = 1  # type: ignore[misc]  # re-score every candidate: exact
    reference: dict[int, np.ndarray] = {i: rng.standard_normal(8).astype(np.float32) for i in range(30)}
    matrix.load(np.array(list(reference)), np.stack(list(reference.values())))
    for start in range(0, len(changes), 7):
        batch = dict(changes[start:start + 7])
        present = [i for i, keep in batch.items() if keep]
        rows = rng.standard_normal((len(present), 8)).astype(np.float32)
        for i, row in zip(present, rows):
            reference[i] = row
        for i, keep in batch.items():
            if not keep:
                reference.pop(i, None)
        matrix._apply(list(batch), np.array(present, dtype=np.int64), rows.reshape(len(present), 8))
        assert len(matrix) == len(reference)
        query = rng.standard_normal(8).astype(np.float32)
        want = sorted(reference, key=lambda i: -float(reference[i] @ query))[:5]
        got = matrix.nearest(query, 5)
        assert [i for i, _ in got] == want
        assert all(abs(s - float(reference[i] @ query)) < 1e-4 for i, s in got)


def test_an_empty_load_then_vectors_arriving() -> None:
    """A daemon searching before its first vector is written loads nothing; that once raised
    "cannot reshape array of size 0" (seen as 'internal error' in a search during indexing)."""
    matrix = VectorMatrix()
    matrix.load(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
    assert len(matrix) == 0 and matrix.nearest(np.ones(4, dtype=np.float32), 3) == []
    matrix._apply([7], np.array([7]), np.ones((1, 4), dtype=np.float32))
    assert [item for item, _ in matrix.nearest(np.ones(4, dtype=np.float32), 3)] == [7]
