"""SQL of the vector change log (schema 0006) and of reading vectors in bulk or by id.

A long-lived searcher keeps the vectors in memory (``indexer.documents.vector_matrix``) and
asks here, inside the search's own read snapshot (:func:`snapshot`), what changed since the
log position it last saw: the triggers of 0006 log every chunk or summary vector written or
dropped, so other commits (a memory write, a session event) cost one index lookup, not a
reload of every vector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from indexer.storage.sqlite import transactions
from indexer.storage.sqlite.document_store import VEC_TABLE, vector_table_exists
from indexer.storage.sqlite.driver import Connection

CHUNKS, SUMMARIES, RESET = 0, 1, 2  # vector_changes.kind

_ALL = {
    CHUNKS: f"SELECT rowid, embedding FROM {VEC_TABLE}",
    SUMMARIES: "SELECT document_id, embedding FROM document_summaries WHERE embedding IS NOT NULL",
}
_ONE = {
    CHUNKS: f"SELECT rowid, embedding FROM {VEC_TABLE} WHERE rowid = ?",
    SUMMARIES: "SELECT document_id, embedding FROM document_summaries WHERE document_id = ? AND embedding IS NOT NULL",
}


@contextmanager
def snapshot(conn: Connection) -> Iterator[Connection]:
    """One read transaction: every query inside sees the same committed state (WAL), whatever
    other connections commit meanwhile. Nested use joins the open transaction."""
    if conn.in_transaction:
        yield conn
        return
    with transactions.transaction(conn, immediate=False):
        yield conn


def log_bounds(conn: Connection) -> tuple[int, int]:
    """(oldest, newest) sequence number in the log; (0, 0) when it is empty."""
    row = conn.execute("SELECT (SELECT min(seq) FROM vector_changes), (SELECT max(seq) FROM vector_changes)").fetchone()
    return int(row[0] or 0), int(row[1] or 0)


def changed_since(conn: Connection, seq: int, kind: int) -> tuple[list[int], bool]:
    """The ids of ``kind`` whose vector changed after ``seq``, and whether a reset was logged."""
    ids: list[int] = []
    reset = False
    for row_kind, item in conn.execute(
        "SELECT DISTINCT kind, item_id FROM vector_changes WHERE seq > ? AND kind IN (?, ?)", (seq, kind, RESET)
    ):
        if row_kind == RESET:
            reset = True
        else:
            ids.append(int(item))
    return ids, reset


def _matrix(rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = (np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
              if rows else np.zeros((0, 0), dtype=np.float32))
    return ids, matrix


def all_vectors(conn: Connection, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 matrix, one row an id) of every stored vector of ``kind``."""
    if kind == CHUNKS and not vector_table_exists(conn):
        return _matrix([])
    return _matrix(conn.execute(_ALL[kind]).fetchall())


def vectors_by_id(conn: Connection, kind: int, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, matrix) of those of ``ids`` that have a vector now (point lookups: vec0 answers
    ``rowid = ?`` from its index, an ``IN`` list by a scan)."""
    if kind == CHUNKS and not vector_table_exists(conn):
        return _matrix([])
    sql = _ONE[kind]
    rows = [row for item in ids for row in conn.execute(sql, (item,))]
    return _matrix(rows)
