"""What an index holds, in a form two indexes can be compared by: path -> (content hash,
sync status, chunk hashes in order). Read through a fresh connection (another process's view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.storage.sqlite import driver

State = dict[str, tuple[str, str, tuple[str, ...]]]


def index_state(db: Path) -> State:
    if not Path(db).exists():
        return {}
    conn = driver.connect(db, readonly=True)
    try:
        docs = conn.execute("SELECT id, file_path, content_hash, sync_status FROM document_index").fetchall()
        chunks: dict[int, list[str]] = {}
        for doc_id, chunk_hash in conn.execute(
                "SELECT document_id, chunk_hash FROM document_chunks ORDER BY document_id, chunk_index").fetchall():
            chunks.setdefault(doc_id, []).append(chunk_hash)
        return {path: (digest, status, tuple(chunks.get(doc_id, ()))) for doc_id, path, digest, status in docs}
    finally:
        conn.close()


def state_diff(expected: State, actual: State) -> dict[str, Any]:
    """A short description of how two states differ (for assertion messages)."""
    return {"missing": sorted(set(expected) - set(actual))[:5], "extra": sorted(set(actual) - set(expected))[:5],
            "different": [(p, expected[p][:2], actual[p][:2]) for p in sorted(set(expected) & set(actual))
                          if expected[p] != actual[p]][:5]}
