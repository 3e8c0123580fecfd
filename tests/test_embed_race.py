"""A vector lands only on the chunk it was computed for: ``embed_pending`` reads chunks, embeds
them, then writes by compare-and-set on (id, chunk hash). Another process (``reindex`` beside
the daemon, the MCP fallback) may re-chunk a document in between: its old rows go (a vector
written to them would be an orphan) and SQLite may give their ids to new chunks of other
text (a vector written to them would be another text's)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from conftest import run_processes
from indexer.config import load_config
from indexer.documents.sync import DocumentSync
from indexer.storage.sqlite import driver
from indexer.storage.sqlite.vectors import from_blob
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

MODEL = "hash:16"


def misplaced(db: Path) -> dict[str, list[int]]:
    """Chunks whose stored vector is not their own text's, vectors of no chunk, and chunks
    marked embedded without a vector."""
    reference = HashEmbedder(dim=16, name=MODEL)
    conn = driver.connect(db)
    try:
        wrong = []
        for chunk_id, text, blob in conn.execute(
                "SELECT c.id, c.embed_text, v.embedding FROM document_chunks AS c "
                "JOIN chunk_vectors AS v ON v.rowid = c.id"):
            if not np.allclose(from_blob(blob), reference.embed_documents([text])[0], atol=1e-6):
                wrong.append(chunk_id)
        orphans = [r[0] for r in conn.execute(
            "SELECT rowid FROM chunk_vectors WHERE rowid NOT IN (SELECT id FROM document_chunks)")]
        hollow = [r[0] for r in conn.execute(
            "SELECT id FROM document_chunks WHERE embedded_at IS NOT NULL "
            "AND id NOT IN (SELECT rowid FROM chunk_vectors)")]
    finally:
        conn.close()
    return {"wrong": wrong, "orphans": orphans, "hollow": hollow}


class Interleaved(HashEmbedder):
    """Runs ``meanwhile`` (another process's reindex) once, while its first batch is embedded."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        super().__init__(dim=16, name=MODEL)
        self.meanwhile: Callable[[], None] | None = meanwhile

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = super().embed_documents(texts)
        if self.meanwhile is not None:
            hook, self.meanwhile = self.meanwhile, None
            hook()
        return vectors


def doc(word: str, n: int = 3) -> str:
    return f"# {word.title()}\n\n" + "\n\n".join(f"## Part {i}\n\n{word} {i} " + f"{word}{i} " * 40 for i in range(n))


def edit_b(root: Path, other: DocumentSync) -> None:
    """b.md re-chunked: new rows for its new text, its old rows deleted."""
    (root / "b.md").write_text(doc("bravo-edited"))
    other.reconcile()


def replace_b_by_c(root: Path, other: DocumentSync) -> None:
    """b.md (the highest chunk ids) deleted, then c.md added: c's chunks get b's old ids."""
    (root / "b.md").unlink()
    other.reconcile()
    (root / "c.md").write_text(doc("charlie"))
    other.reconcile()


@pytest.mark.parametrize("meanwhile", [edit_b, replace_b_by_c])
def test_a_vector_of_a_row_changed_meanwhile_is_dropped(tmp_path: Path, meanwhile: Callable[..., None]) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "a.md").write_text(doc("alpha"))
    (root / "b.md").write_text(doc("bravo"))
    config = load_config({"db": str(tmp_path / "index.db"), "roots": [str(root)], "model": MODEL, "chunk_tokens": 60})
    other = DocumentSync(config, embedder=HashEmbedder(dim=16, name=MODEL), counter=WhitespaceTokenCounter())
    embedder = Interleaved(lambda: meanwhile(root, other))
    with DocumentSync(config, embedder=embedder, counter=WhitespaceTokenCounter()) as sync:
        sync.reconcile()
        sync.embed_pending(fetch=1000)  # one batch: every chunk, read before the reindex
        assert embedder.meanwhile is None  # the other reindex ran in between
        assert embedder.calls >= 2 and sync.pending_chunks() == 0  # the new rows: embedded in the next round
    other.close()
    assert misplaced(tmp_path / "index.db") == {"wrong": [], "orphans": [], "hollow": []}


RACER = r"""
import json, sys, time
from indexer.config import load_config
from indexer.documents.sync import DocumentSync
db, root, role, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
config = load_config({"db": db, "roots": [root], "model": sys.argv[5], "chunk_tokens": 60})
print("ready", flush=True)
sys.stdin.readline()
deadline = time.monotonic() + seconds
rounds = 0
with DocumentSync(config) as sync:
    if role == "embedder":
        while time.monotonic() < deadline:
            sync.embed_pending(fetch=64)
            rounds += 1
    else:
        from pathlib import Path
        names = [Path(root) / f"n{i}.md" for i in range(6)]
        while time.monotonic() < deadline:
            rounds += 1
            for i, path in enumerate(names):
                if (rounds + i) % 3 == 0 and path.exists():
                    path.unlink()
                else:
                    path.write_text(f"# N{i}\n\n" + "\n\n".join(f"## S{k}\n\nround {rounds} note {i} part {k} " * 20
                                                              for k in range(3)))
            sync.reconcile()
print(json.dumps({"role": role, "rounds": rounds}))
"""


@pytest.mark.process
@pytest.mark.timeout(180)
def test_an_embedder_beside_a_reindexing_process_misplaces_no_vector(tmp_path: Path) -> None:
    """Two processes on one database: one embeds what is pending in a loop (with a slow
    model, so its reads and writes are far apart), the other rewrites, deletes and recreates
    notes and reindexes them without embedding. Then every vector is its own chunk's."""
    root = tmp_path / "notes"
    root.mkdir()
    db = tmp_path / "index.db"
    model = "hash:16:3"  # 3 ms a text
    config = load_config({"db": str(db), "roots": [str(root)], "model": model, "chunk_tokens": 60})
    (root / "seed.md").write_text(doc("seed"))
    with DocumentSync(config) as sync:
        sync.run()
    results = run_processes(RACER, [[str(db), str(root), "embedder", "6", model],
                                    [str(db), str(root), "reindexer", "6", model]])
    assert {r["role"]: r["rounds"] > 2 for r in results} == {"embedder": True, "reindexer": True}, results
    with DocumentSync(config) as sync:
        sync.run()  # what is left
        assert sync.pending_chunks() == 0
    found = misplaced(db)
    assert found == {"wrong": [], "orphans": [], "hollow": []}, json.dumps(found) + sys.version
