"""SQL of document summaries: a second, document-level vector per document (schema 0003).

A summary is a document's title and first prose paragraph
(:func:`indexer.documents.markdown_meta.document_summary`). It is written with the document's chunks,
embedded by the embedding worker after them, and searched next to the chunk vectors: hybrid
search fuses the summary's cosine with the best chunk's (``indexer.documents.search``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexer.storage.sqlite.vectors import to_blob
from indexer.timeutil import now_ts


def replace_summary(conn: Any, doc_id: int, text: str) -> None:
    """Store a document's summary text; its vector is kept when the text is unchanged and
    waits for the embedding worker otherwise."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    conn.execute(
        "INSERT INTO document_summaries (document_id, summary_hash, text) VALUES (?, ?, ?) "
        "ON CONFLICT(document_id) DO UPDATE SET summary_hash = excluded.summary_hash, text = excluded.text, "
        "embedding = NULL, embedded_at = NULL WHERE summary_hash != excluded.summary_hash",
        (doc_id, digest, text),
    )


def unembedded_summaries(conn: Any, limit: int) -> list[tuple[int, str]]:
    """(document id, summary text) of summaries waiting for a vector."""
    return [(int(r[0]), r[1]) for r in conn.execute(
        "SELECT document_id, text FROM document_summaries WHERE embedding IS NULL ORDER BY document_id LIMIT ?",
        (limit,))]


def store_summary_vectors(conn: Any, doc_ids: Sequence[int], vectors: np.ndarray) -> None:
    now = now_ts()
    conn.executemany("UPDATE document_summaries SET embedding = ?, embedded_at = ? WHERE document_id = ?",
                     [(to_blob(v), now, d) for d, v in zip(doc_ids, vectors)])
