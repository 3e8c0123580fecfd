"""SQL of the document tables: rows, chunks, vectors (sqlite-vec) and the embedding settings.

Functions take a connection from :func:`indexer.storage.sqlite.driver.connect`; the caller owns
transactions (see :func:`write`). Vectors live in the ``chunk_vectors`` vec0 table keyed by
chunk id; a trigger deletes a chunk's vector with the chunk, and chunks go with their
document (ON DELETE CASCADE), so no orphan vector or FTS row can remain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from indexer.storage.sqlite import driver, transactions
from indexer.storage.sqlite.driver import Connection
from indexer.storage.sqlite.summary_store import replace_summary
from indexer.storage.sqlite.vectors import Fingerprint, from_blob, mean_vector, to_blob
from indexer.timeutil import now_ts

VEC_TABLE = "chunk_vectors"


@dataclass(frozen=True)
class StoredDoc:
    id: int
    path: str
    mtime_ns: int | None
    size: int | None
    content_hash: str
    sync_status: str
    read_ns: int | None = None  # when the content behind content_hash was read (metadata $.read_ns)


@dataclass(frozen=True)
class ChunkRow:
    chunk_index: int
    chunk_hash: str
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    token_count: int
    text: str
    embed_text: str


def write(conn: Connection) -> AbstractContextManager[Connection]:
    """One write transaction (``BEGIN IMMEDIATE``, retried while another process writes),
    rolled back on any error: :func:`indexer.storage.sqlite.transactions.transaction`."""
    return transactions.transaction(conn)


# --- embedding settings and the vector table -------------------------------------------

def get_fingerprint(conn: Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM embedding_settings WHERE key = 'fingerprint'").fetchone()
    return json.loads(row[0]) if row else None


def vector_table_exists(conn: Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (VEC_TABLE,)).fetchone() is not None


def install_fingerprint(conn: Connection, fp: Fingerprint, rehash: Callable[[str], str] | None = None) -> bool:
    """Make the stored vectors match ``fp``. Returns True when every document must be
    re-chunked (a full reconcile); call inside :func:`write`.

    When only the chunker version changed and ``rehash`` (embed_text -> chunk hash) is given,
    the vectors stay: every stored chunk's hash is recomputed from its ``embed_text`` and the
    re-chunking keeps the vector of every chunk whose text the new chunker did not change.
    Any other difference (model, dimension, prefixes) drops and recreates the vector table,
    clears every chunk's embedded mark and marks every synced document stale.
    """
    current = get_fingerprint(conn)
    wanted = fp.as_dict()
    has_vectors = vector_table_exists(conn)
    if current == wanted and has_vectors:
        return False
    only_chunker = current is not None and {**current, "chunker": None} == {**wanted, "chunker": None}
    if only_chunker and has_vectors and rehash is not None:
        conn.create_function("indexer_rehash", 1, rehash, deterministic=True)
        conn.execute("UPDATE document_chunks SET chunk_hash = indexer_rehash(embed_text)")
        # every document must be re-chunked, even if this run is stopped or limited to some
        # paths: a hash and mtime that match nothing make the planner list each as modified
        conn.execute("UPDATE document_index SET content_hash = '', "
                     "metadata = json_remove(metadata, '$.mtime_ns') WHERE sync_status != 'failed'")
        _store_fingerprint(conn, wanted)
        return True
    conn.execute(f"DROP TRIGGER IF EXISTS {VEC_TABLE}_delete")
    conn.execute(f"DROP TABLE IF EXISTS {VEC_TABLE}")
    conn.execute(
        f"CREATE VIRTUAL TABLE {VEC_TABLE} USING vec0(embedding float[{int(fp.dim)}] distance_metric=cosine)"
    )
    conn.execute(
        f"CREATE TRIGGER {VEC_TABLE}_delete AFTER DELETE ON document_chunks BEGIN "
        f"DELETE FROM {VEC_TABLE} WHERE rowid = old.id; END"
    )
    conn.execute("UPDATE document_chunks SET embedded_at = NULL WHERE embedded_at IS NOT NULL")
    conn.execute("UPDATE document_summaries SET embedding = NULL, embedded_at = NULL WHERE embedding IS NOT NULL")
    # every vector went: in-memory copies reload everything (schema 0006; kind 2 is a reset)
    conn.execute("DELETE FROM vector_changes")
    conn.execute("INSERT INTO vector_changes (kind, item_id) VALUES (2, 0)")
    conn.execute(
        "UPDATE document_index SET sync_status = 'stale', embedding_blob = NULL, updated_at = ? "
        "WHERE sync_status = 'synced'",
        (now_ts(),),
    )
    _store_fingerprint(conn, wanted)
    return current is not None


def _store_fingerprint(conn: Connection, fingerprint: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO embedding_settings (key, value) VALUES ('fingerprint', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (json.dumps(fingerprint, sort_keys=True),),
    )


# --- document rows ---------------------------------------------------------------------

_DOC_COLUMNS = ("id, file_path, json_extract(metadata, '$.mtime_ns'), json_extract(metadata, '$.size'), "
                "content_hash, sync_status, json_extract(metadata, '$.read_ns')")


def load_docs(conn: Connection) -> list[StoredDoc]:
    rows = conn.execute(f"SELECT {_DOC_COLUMNS} FROM document_index").fetchall()
    return [StoredDoc(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def get_doc(conn: Connection, path: str) -> StoredDoc | None:
    row = conn.execute(f"SELECT {_DOC_COLUMNS} FROM document_index WHERE file_path = ?", (path,)).fetchone()
    return StoredDoc(row[0], row[1], row[2], row[3], row[4], row[5], row[6]) if row else None


def _metadata(conn: Connection, doc_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT metadata FROM document_index WHERE id = ?", (doc_id,)).fetchone()
    return json.loads(row[0] or "{}") if row else {}


def upsert_document(
    conn: Connection,
    *,
    path: str,
    title: str,
    document_type: str | None,
    content_hash: str,
    metadata: dict[str, Any],
    chunks: Sequence[ChunkRow],
    model: str,
    summary: str | None = None,
) -> tuple[int, str]:
    """Insert or update a document and its chunks; returns (id, sync_status).

    Chunks whose hash the document already had keep their row and vector; a chunk whose
    hash is embedded elsewhere gets a copy of that vector; only the rest wait for the
    embedder. A changed document that was synced becomes ``stale``, a new one ``pending``.
    """
    now = now_ts()
    existing = get_doc(conn, path)
    meta_json = json.dumps(metadata, ensure_ascii=False, sort_keys=True)
    if existing is None:
        cur = conn.execute(
            "INSERT INTO document_index (file_path, title, document_type, content_hash, chunk_count, "
            "embedding_model, metadata, sync_status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (path, title, document_type, content_hash, len(chunks), model, meta_json, now, now),
        )
        doc_id, status = driver.inserted_rowid(cur), "pending"
    else:
        doc_id = existing.id
        status = "stale" if existing.sync_status in ("synced", "stale") else "pending"
        previous = _metadata(conn, doc_id)
        for key in ("title_override", "type_override"):  # labels a caller set win over the file's
            if key in previous:
                metadata = {**metadata, key: previous[key]}
        title = previous.get("title_override", title)
        document_type = previous.get("type_override", document_type)
        meta_json = json.dumps(metadata, ensure_ascii=False, sort_keys=True)
        conn.execute(
            "UPDATE document_index SET title = ?, document_type = ?, content_hash = ?, chunk_count = ?, "
            "embedding_model = ?, metadata = ?, sync_status = ?, updated_at = ? WHERE id = ?",
            (title, document_type, content_hash, len(chunks), model, meta_json, status, now, doc_id),
        )
    _replace_chunks(conn, doc_id, chunks, now)
    if summary is not None:
        replace_summary(conn, doc_id, summary)
    if finish_documents(conn, [doc_id], model):
        status = "synced"
    return doc_id, status


def _replace_chunks(conn: Connection, doc_id: int, chunks: Sequence[ChunkRow], now: str) -> None:
    old = conn.execute(
        "SELECT id, chunk_hash FROM document_chunks WHERE document_id = ? ORDER BY chunk_index", (doc_id,)
    ).fetchall()
    reusable: dict[str, list[int]] = {}
    for chunk_id, chunk_hash in old:
        reusable.setdefault(chunk_hash, []).append(chunk_id)
    # move old rows out of the way of UNIQUE(document_id, chunk_index)
    conn.execute("UPDATE document_chunks SET chunk_index = -1 - chunk_index WHERE document_id = ?", (doc_id,))
    kept: set[int] = set()
    has_vectors = vector_table_exists(conn)
    for chunk in chunks:
        values = (chunk.chunk_index, json.dumps(list(chunk.heading_path), ensure_ascii=False),
                  chunk.start_line, chunk.end_line, chunk.token_count, chunk.text)
        ids = reusable.get(chunk.chunk_hash)
        if ids:
            chunk_id = ids.pop(0)
            kept.add(chunk_id)
            conn.execute(
                "UPDATE document_chunks SET chunk_index = ?, heading_path = ?, start_line = ?, end_line = ?, "
                "token_count = ?, text = ? WHERE id = ?",
                (*values, chunk_id),
            )
            continue
        cur = conn.execute(
            "INSERT INTO document_chunks (document_id, chunk_index, chunk_hash, heading_path, start_line, "
            "end_line, token_count, text, embed_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (doc_id, values[0], chunk.chunk_hash, *values[1:], chunk.embed_text),
        )
        if has_vectors:
            _copy_vector_by_hash(conn, driver.inserted_rowid(cur), chunk.chunk_hash, now)
    stale = [chunk_id for chunk_id, _ in old if chunk_id not in kept]
    for start in range(0, len(stale), 500):
        part = stale[start:start + 500]
        conn.execute(f"DELETE FROM document_chunks WHERE id IN ({','.join('?' * len(part))})", part)


def _copy_vector_by_hash(conn: Connection, chunk_id: int, chunk_hash: str, now: str) -> None:
    source = conn.execute(
        "SELECT id FROM document_chunks WHERE chunk_hash = ? AND embedded_at IS NOT NULL AND id != ? LIMIT 1",
        (chunk_hash, chunk_id),
    ).fetchone()
    if source is None:
        return
    conn.execute(
        f"INSERT INTO {VEC_TABLE} (rowid, embedding) SELECT ?, embedding FROM {VEC_TABLE} WHERE rowid = ?",
        (chunk_id, source[0]),
    )
    conn.execute("UPDATE document_chunks SET embedded_at = ? WHERE id = ?", (now, chunk_id))


def record_failure(conn: Connection, *, path: str, reason: str, metadata: dict[str, Any], retry_after: str,
                   content_hash: str = "") -> None:
    """Mark a document ``failed`` with the reason, attempts and next retry time in metadata."""
    now = now_ts()
    existing = get_doc(conn, path)
    attempts = 1
    if existing is not None:
        attempts = int(_metadata(conn, existing.id).get("attempts", 0)) + 1
    meta = {**metadata, "last_error": reason, "attempts": attempts, "retry_after": retry_after}
    meta_json = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    title = path.rsplit("/", 1)[-1]
    if existing is None:
        conn.execute(
            "INSERT INTO document_index (file_path, title, content_hash, chunk_count, metadata, sync_status, "
            "created_at, updated_at) VALUES (?, ?, ?, 0, ?, 'failed', ?, ?)",
            (path, title, content_hash, meta_json, now, now),
        )
    else:
        conn.execute(
            "UPDATE document_index SET content_hash = ?, metadata = ?, sync_status = 'failed', updated_at = ? "
            "WHERE id = ?",
            (content_hash, meta_json, now, existing.id),
        )
        conn.execute("DELETE FROM document_chunks WHERE document_id = ?", (existing.id,))


def failure_attempts(conn: Connection, path: str) -> int:
    doc = get_doc(conn, path)
    return int(_metadata(conn, doc.id).get("attempts", 0)) if doc else 0


def touch_document(conn: Connection, path: str, mtime_ns: int, size: int, read_ns: int | None = None) -> None:
    """A new stat for unchanged content; ``read_ns``: when that content was last hashed."""
    conn.execute(
        "UPDATE document_index SET metadata = json_set(coalesce(metadata, '{}'), '$.mtime_ns', ?, '$.size', ?"
        + (", '$.read_ns', ?" if read_ns is not None else "") + ") WHERE file_path = ?",
        (mtime_ns, size, *((read_ns,) if read_ns is not None else ()), path),
    )


def move_document(conn: Connection, old_path: str, new_path: str, mtime_ns: int, size: int) -> None:
    """A rename: the row, its chunks and vectors move; nothing is re-embedded."""
    conn.execute("DELETE FROM document_index WHERE file_path = ?", (new_path,))
    conn.execute(
        "UPDATE document_index SET file_path = ?, updated_at = ?, metadata = json_set(json_set("
        "coalesce(metadata, '{}'), '$.mtime_ns', ?), '$.size', ?) WHERE file_path = ?",
        (new_path, now_ts(), mtime_ns, size, old_path),
    )


def delete_documents(conn: Connection, paths: Iterable[str]) -> int:
    count = 0
    for path in paths:
        count += conn.execute("DELETE FROM document_index WHERE file_path = ?", (path,)).rowcount
    return count


# --- the embedding queue ---------------------------------------------------------------

class PendingChunk(NamedTuple):
    """A chunk waiting for a vector, as read: the vector is written back only to a row that
    still has this id and hash (:func:`store_vectors`)."""

    id: int
    document_id: int
    chunk_hash: str
    embed_text: str


def unembedded_chunks(conn: Connection, limit: int) -> list[PendingChunk]:
    """Chunks waiting for a vector, document by document, the most recently changed
    documents first: an edit made during a long backlog (the first index of a large tree) is
    searchable by meaning after one round, not after the backlog."""
    return [
        PendingChunk(r[0], r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT c.id, c.document_id, c.chunk_hash, c.embed_text FROM document_chunks AS c "
            "JOIN document_index AS d ON d.id = c.document_id WHERE c.embedded_at IS NULL "
            "ORDER BY d.updated_at DESC, c.document_id, c.chunk_index LIMIT ?",
            (limit,),
        ).fetchall()
    ]


def count_unembedded(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM document_chunks WHERE embedded_at IS NULL").fetchone()[0])


def store_vectors(conn: Connection, chunks: Sequence[tuple[int, str]], vectors: np.ndarray) -> list[int]:
    """Write each vector to its chunk, given as (id, chunk hash) as it was read, by
    compare-and-set: only where a row with that id still has that hash. Call inside
    :func:`write`. Between the read and this write another process (``reindex`` beside the
    daemon) may have re-chunked the document: the row is gone (its vector would be an
    orphan) or its id was reused by a chunk of other text (the vector would be another's).
    Those vectors are dropped; the rows that replaced them wait for the next round.
    Returns the ids written."""
    now = now_ts()
    current: dict[int, str] = {}
    ids = [c for c, _ in chunks]
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        current.update((int(r[0]), str(r[1])) for r in conn.execute(
            f"SELECT id, chunk_hash FROM document_chunks WHERE id IN ({','.join('?' * len(part))})", part))
    kept = [(c, v) for (c, h), v in zip(chunks, vectors) if current.get(c) == h]
    conn.executemany(f"DELETE FROM {VEC_TABLE} WHERE rowid = ?", [(c,) for c, _ in kept])
    conn.executemany(
        f"INSERT INTO {VEC_TABLE} (rowid, embedding) VALUES (?, ?)",
        [(c, to_blob(v)) for c, v in kept],
    )
    conn.executemany("UPDATE document_chunks SET embedded_at = ? WHERE id = ?", [(now, c) for c, _ in kept])
    return [c for c, _ in kept]


def finish_documents(conn: Connection, doc_ids: Iterable[int], model: str) -> list[int]:
    """Mark ``synced`` each document whose chunks all have vectors; store its mean vector."""
    done = []
    now = now_ts()
    for doc_id in doc_ids:
        waiting = conn.execute(
            "SELECT 1 FROM document_chunks WHERE document_id = ? AND embedded_at IS NULL LIMIT 1", (doc_id,)
        ).fetchone()
        if waiting:
            continue
        blob = None
        if vector_table_exists(conn):
            rows = conn.execute(
                f"SELECT v.embedding FROM {VEC_TABLE} AS v JOIN document_chunks AS c ON c.id = v.rowid "
                "WHERE c.document_id = ?",
                (doc_id,),
            ).fetchall()
            if rows:
                blob = to_blob(mean_vector(np.stack([from_blob(r[0]) for r in rows])))
        conn.execute(
            "UPDATE document_index SET sync_status = 'synced', last_synced_at = ?, embedding_blob = ?, "
            "embedding_model = ?, chunk_count = (SELECT count(*) FROM document_chunks WHERE document_id = ?), "
            "metadata = json_remove(coalesce(metadata, '{}'), '$.last_error', '$.attempts', '$.retry_after'), "
            "updated_at = ? WHERE id = ? AND sync_status != 'failed'",
            (now, blob, model, doc_id, now, doc_id),
        )
        done.append(doc_id)
    return done


# --- status ----------------------------------------------------------------------------

def status_counts(conn: Connection) -> dict[str, int]:
    counts = {s: 0 for s in ("pending", "synced", "stale", "failed")}
    for status, count in conn.execute("SELECT sync_status, count(*) FROM document_index GROUP BY sync_status"):
        counts[str(status)] = int(count)
    return counts


def failed_documents(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Failed documents with reason, attempts and retry time; ``limit=-1`` for all of them."""
    rows = conn.execute(
        "SELECT file_path, json_extract(metadata, '$.last_error'), json_extract(metadata, '$.attempts'), "
        "json_extract(metadata, '$.retry_after') FROM document_index WHERE sync_status = 'failed' "
        "ORDER BY file_path LIMIT ?",
        (limit,),
    ).fetchall()
    return [{"path": r[0], "reason": r[1], "attempts": r[2], "retry_after": r[3]} for r in rows]


def next_retry_after(conn: Connection) -> str | None:
    """The earliest ``retry_after`` among failed documents (the daemon's next retry)."""
    row = conn.execute(
        "SELECT min(json_extract(metadata, '$.retry_after')) FROM document_index WHERE sync_status = 'failed'"
    ).fetchone()
    return row[0] if row else None


def chunk_totals(conn: Connection) -> dict[str, int]:
    row = conn.execute(
        "SELECT count(*), count(embedded_at) FROM document_chunks"
    ).fetchone()
    return {"chunks": int(row[0]), "embedded": int(row[1])}


# --- the report's API helpers ----------------------------------------------------------

def document_row(conn: Connection, path: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, file_path, title, document_type, content_hash, chunk_count, embedding_model, "
        "embedding_blob IS NOT NULL, metadata, last_synced_at, sync_status, created_at, updated_at "
        "FROM document_index WHERE file_path = ?",
        (path,),
    ).fetchone()
    if row is None:
        return None
    keys = ("id", "file_path", "title", "document_type", "content_hash", "chunk_count", "embedding_model",
            "has_embedding", "metadata", "last_synced_at", "sync_status", "created_at", "updated_at")
    result = dict(zip(keys, row))
    result["has_embedding"] = bool(result["has_embedding"])
    result["metadata"] = json.loads(result["metadata"] or "{}")
    return result


def override_labels(conn: Connection, path: str, title: str | None, document_type: str | None) -> None:
    """Caller-given title/type win over the file's own (kept in metadata so a resync keeps them)."""
    if title is not None:
        conn.execute(
            "UPDATE document_index SET title = ?, metadata = json_set(coalesce(metadata, '{}'), '$.title_override', ?) "
            "WHERE file_path = ?", (title, title, path))
    if document_type is not None:
        conn.execute(
            "UPDATE document_index SET document_type = ?, metadata = json_set(coalesce(metadata, '{}'), "
            "'$.type_override', ?) WHERE file_path = ?", (document_type, document_type, path))


def set_document_vector(conn: Connection, path: str, blob: bytes) -> None:
    conn.execute(
        "UPDATE document_index SET embedding_blob = ?, updated_at = ? WHERE file_path = ?", (blob, now_ts(), path)
    )
