"""Nearest chunks and documents by vector (sqlite-vec KNN over ``chunk_vectors``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from indexer.embedding import to_blob
from indexer.storage.document_store import VEC_TABLE

MAX_K = 4096


def nearest_chunks(conn: Any, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(chunk id, cosine distance), nearest first."""
    rows = conn.execute(
        f"SELECT rowid, distance FROM {VEC_TABLE} WHERE embedding MATCH ? AND k = ? ORDER BY distance",
        (to_blob(vector), min(k, MAX_K)),
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


def nearest_documents(conn: Any, vector: np.ndarray, limit: int) -> list[dict[str, Any]]:
    """One result per document (its nearest chunk), widening the KNN until ``limit`` documents."""
    k = max(limit * 5, 20)
    while True:
        hits = nearest_chunks(conn, vector, k)
        best: dict[int, tuple[int, float]] = {}
        ids = [c for c, _ in hits]
        owners = _chunk_owners(conn, ids)
        for chunk_id, distance in hits:
            doc_id = owners.get(chunk_id)
            if doc_id is not None and doc_id not in best:
                best[doc_id] = (chunk_id, distance)
        if len(best) >= limit or len(hits) < k or k >= MAX_K:
            break
        k = min(k * 4, MAX_K)
    ranked = sorted(best.items(), key=lambda item: item[1][1])[:limit]
    return [_document_hit(conn, doc_id, chunk_id, distance) for doc_id, (chunk_id, distance) in ranked]


def _chunk_owners(conn: Any, chunk_ids: list[int]) -> dict[int, int]:
    owners: dict[int, int] = {}
    for start in range(0, len(chunk_ids), 500):
        part = chunk_ids[start:start + 500]
        for chunk_id, doc_id in conn.execute(
            f"SELECT id, document_id FROM document_chunks WHERE id IN ({','.join('?' * len(part))})", part
        ):
            owners[int(chunk_id)] = int(doc_id)
    return owners


def _document_hit(conn: Any, doc_id: int, chunk_id: int, distance: float) -> dict[str, Any]:
    doc = conn.execute(
        "SELECT file_path, title, document_type, sync_status FROM document_index WHERE id = ?", (doc_id,)
    ).fetchone()
    chunk = conn.execute(
        "SELECT chunk_index, heading_path, start_line, end_line, text FROM document_chunks WHERE id = ?", (chunk_id,)
    ).fetchone()
    return {
        "file_path": doc[0], "title": doc[1], "document_type": doc[2], "sync_status": doc[3],
        "score": 1.0 - distance, "distance": distance,
        "chunk": {"index": chunk[0], "heading_path": json.loads(chunk[1]), "start_line": chunk[2],
                  "end_line": chunk[3], "text": chunk[4]},
    }
