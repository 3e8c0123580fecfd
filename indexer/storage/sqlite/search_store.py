"""SQL of search: BM25 over FTS5, vector distances, filters, and result details.

Filters are applied inside the queries (never after a k-limited KNN): the keyword query
joins them, and the vector side either KNNs with a growing k until enough filtered chunks
are found, or scores the filtered chunks exactly when they are few.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.storage.sqlite.document_store import VEC_TABLE
from indexer.storage.sqlite.document_store import vector_table_exists as vector_table_exists  # the searcher asks here
from indexer.storage.sqlite.driver import Connection
from indexer.storage.sqlite.vectors import to_blob

EXACT_LIMIT = 20_000  # filtered candidate sets up to this size are scored exactly
MAX_K = 4096
_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to help BM25; dropping them keeps a question from matching every chunk
# (a query made only of them keeps them).
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in into is it its me my of on or "
    "so that the their then there these this to was what when where which who why will with "
    "you your".split()
)


@dataclass(frozen=True)
class Filters:
    document_type: str | None = None
    path_glob: str | None = None  # GLOB pattern on file_path
    path_prefix: str | None = None
    since: str | None = None  # canonical timestamp; documents updated at or after

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.document_type, self.path_glob, self.path_prefix, self.since))

    def sql(self, doc_alias: str = "d") -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.document_type is not None:
            clauses.append(f"{doc_alias}.document_type = ?")
            params.append(self.document_type)
        if self.path_glob is not None:
            clauses.append(f"{doc_alias}.file_path GLOB ?")
            params.append(self.path_glob)
        if self.path_prefix is not None:
            prefix = self.path_prefix.rstrip("/")
            clauses.append(f"({doc_alias}.file_path = ? OR substr({doc_alias}.file_path, 1, ?) = ?)")
            params.extend([prefix, len(prefix) + 1, prefix + "/"])
        if self.since is not None:
            clauses.append(f"{doc_alias}.updated_at >= ?")
            params.append(self.since)
        return (" AND ".join(clauses) or "1"), params


def fts_terms(text: str) -> list[str]:
    """Any user text as safe FTS5 terms: its words, each quoted; stopwords dropped unless
    nothing else is left."""
    words = _WORD.findall(text.lower())
    unique = list(dict.fromkeys(w for w in words if w not in STOPWORDS)) or list(dict.fromkeys(words))
    return ['"' + w.replace('"', '""') + '"' for w in unique]


def fts_query(text: str) -> str | None:
    """The terms OR-ed (BM25 ranks), or None when the text has no word."""
    return " OR ".join(fts_terms(text)) or None


# An OR query costs one BM25 evaluation per matching chunk: on a large index a common word
# ("file") matches tens of thousands. Terms are kept rarest first while the chunks they match
# stay within this budget (the rarest is always kept); the dropped ones have the lowest IDF,
# so they would have weighed least. On small indexes nothing is dropped.
KEYWORD_ROW_BUDGET = 6000


def bounded_fts_query(conn: Connection, text: str, budget: int = KEYWORD_ROW_BUDGET) -> str | None:
    terms = fts_terms(text)
    if len(terms) <= 1:
        return terms[0] if terms else None
    counts = {t: int(conn.execute("SELECT count(*) FROM chunk_fts WHERE chunk_fts MATCH ?", (t,)).fetchone()[0])
              for t in terms}
    kept: list[str] = []
    total = 0
    for term in sorted(terms, key=lambda t: counts[t]):
        if kept and total + counts[term] > budget:
            break
        kept.append(term)
        total += counts[term]
    return " OR ".join(t for t in terms if t in kept)


def keyword_hits(conn: Connection, text: str, limit: int, filters: Filters) -> list[tuple[int, float]]:
    """(chunk id, bm25 score; higher is better), best first."""
    query = bounded_fts_query(conn, text)
    if query is None:
        return []
    if not filters.active:  # every FTS row is a chunk's (triggers): no join to sort through
        rows = conn.execute(
            "SELECT rowid, -bm25(chunk_fts) FROM chunk_fts WHERE chunk_fts MATCH ? ORDER BY bm25(chunk_fts) LIMIT ?",
            (query, limit),
        ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]
    where, params = filters.sql()
    rows = conn.execute(
        "SELECT f.rowid, -bm25(chunk_fts) AS score FROM chunk_fts AS f "
        "JOIN document_chunks AS c ON c.id = f.rowid JOIN document_index AS d ON d.id = c.document_id "
        f"WHERE chunk_fts MATCH ? AND {where} ORDER BY bm25(chunk_fts) LIMIT ?",
        (query, *params, limit),
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


def term_matches(conn: Connection, text: str, chunk_ids: Sequence[int],
                 total: int | None = None) -> tuple[int, dict[str, int], dict[str, set[int]]]:
    """BM25's evidence per query term (the terms of :func:`fts_terms`, unquoted): the index's
    chunk count (``total`` when the caller has it), how many chunks match each term, and which
    of ``chunk_ids`` do."""
    # One pass over each term's posting list, counted and filtered inside SQLite: the rowids
    # are never materialised in Python (that cost 5x the pass itself on a common word), and
    # "MATCH ? AND rowid IN (...)" is ten times slower in FTS5 than this filtered aggregate.
    if total is None:
        total = int(conn.execute("SELECT count(*) FROM document_chunks").fetchone()[0])
    counts: dict[str, int] = {}
    matches: dict[str, set[int]] = {}
    wanted = ",".join(str(int(c)) for c in sorted(set(chunk_ids)))  # integers only: safe as literals
    sql = (f"SELECT count(*), group_concat(CASE WHEN rowid IN ({wanted}) THEN rowid END) "
           "FROM chunk_fts WHERE chunk_fts MATCH ?")
    for quoted in fts_terms(text):
        term = quoted[1:-1].replace('""', '"')
        count, found = conn.execute(sql, (quoted,)).fetchone()
        counts[term] = int(count)
        matches[term] = {int(c) for c in found.split(",")} if found else set()
    return total, counts, matches


def _filtered_chunk_ids(conn: Connection, filters: Filters, cap: int) -> list[int] | None:
    where, params = filters.sql()
    rows = conn.execute(
        "SELECT c.id FROM document_chunks AS c JOIN document_index AS d ON d.id = c.document_id "
        f"WHERE c.embedded_at IS NOT NULL AND {where} LIMIT ?",
        (*params, cap + 1),
    ).fetchall()
    if len(rows) > cap:
        return None
    return [int(r[0]) for r in rows]


def vector_hits(conn: Connection, vector: np.ndarray, limit: int, filters: Filters) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity), best first, by sqlite-vec; filters honoured exactly."""
    if not vector_table_exists(conn):
        return []
    blob = to_blob(vector)
    if filters.active:
        ids = _filtered_chunk_ids(conn, filters, EXACT_LIMIT)
        if ids is not None:
            scored: list[tuple[int, float]] = []
            for start in range(0, len(ids), 900):
                part = ids[start:start + 900]
                scored.extend(
                    (int(r[0]), 1.0 - float(r[1]))
                    for r in conn.execute(
                        f"SELECT rowid, vec_distance_cosine(embedding, ?) FROM {VEC_TABLE} "
                        f"WHERE rowid IN ({','.join('?' * len(part))})",
                        (blob, *part),
                    )
                )
            scored.sort(key=lambda item: -item[1])
            return scored[:limit]
    where, params = filters.sql()
    k = max(limit * 2, 50)
    while True:
        rows = conn.execute(
            f"WITH knn AS (SELECT rowid, distance FROM {VEC_TABLE} WHERE embedding MATCH ? AND k = ?) "
            "SELECT knn.rowid, knn.distance FROM knn JOIN document_chunks AS c ON c.id = knn.rowid "
            f"JOIN document_index AS d ON d.id = c.document_id WHERE {where} ORDER BY knn.distance",
            (blob, k, *params),
        ).fetchall()
        total = conn.execute(f"SELECT count(*) FROM {VEC_TABLE}").fetchone()[0] if len(rows) < limit else 0
        if len(rows) >= limit or k >= min(total, MAX_K) or k >= MAX_K:
            return [(int(r[0]), 1.0 - float(r[1])) for r in rows[:limit]]
        k = min(k * 4, MAX_K)


def first_chunks(conn: Connection, doc_ids: Sequence[int]) -> dict[int, int]:
    """document id -> id of its first chunk."""
    out: dict[int, int] = {}
    for doc_id in doc_ids:
        row = conn.execute("SELECT id FROM document_chunks WHERE document_id = ? ORDER BY chunk_index LIMIT 1",
                           (doc_id,)).fetchone()
        if row is not None:
            out[doc_id] = int(row[0])
    return out


def summary_hits(conn: Connection, vector: np.ndarray, limit: int, filters: Filters) -> list[tuple[int, float]]:
    """(document id, cosine of its summary vector), best first; filters honoured exactly."""
    where, params = filters.sql()
    rows = conn.execute(
        "SELECT s.document_id, s.embedding FROM document_summaries AS s JOIN document_index AS d "
        f"ON d.id = s.document_id WHERE s.embedding IS NOT NULL AND {where}", params).fetchall()
    if not rows:
        return []
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1) @ vector
    limit = min(limit, len(ids))
    top = np.argpartition(-scores, limit - 1)[:limit]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in top]


def chunk_documents(conn: Connection, chunk_ids: Sequence[int]) -> dict[int, int]:
    """chunk id -> document id (what fusion needs for every candidate; details come later,
    for the chunks shown)."""
    owners: dict[int, int] = {}
    for start in range(0, len(chunk_ids), 900):
        part = list(chunk_ids[start:start + 900])
        owners.update((int(r[0]), int(r[1])) for r in conn.execute(
            f"SELECT id, document_id FROM document_chunks WHERE id IN ({','.join('?' * len(part))})", part))
    return owners


def chunk_details(conn: Connection, chunk_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    details: dict[int, dict[str, Any]] = {}
    for start in range(0, len(chunk_ids), 900):
        part = list(chunk_ids[start:start + 900])
        for row in conn.execute(
            "SELECT c.id, c.document_id, c.chunk_index, c.heading_path, c.start_line, c.end_line, c.text, "
            "d.file_path, d.title, d.document_type, d.updated_at, d.sync_status FROM document_chunks AS c "
            f"JOIN document_index AS d ON d.id = c.document_id WHERE c.id IN ({','.join('?' * len(part))})",
            part,
        ):
            details[int(row[0])] = {
                "document_id": row[1], "chunk_index": row[2], "heading_path": json.loads(row[3]),
                "start_line": row[4], "end_line": row[5], "text": row[6], "path": row[7], "title": row[8],
                "document_type": row[9], "updated_at": row[10], "sync_status": row[11],
            }
    return details


def index_progress(conn: Connection) -> dict[str, int]:
    # every count is answered from an index (no scan of the wide rows: searches call this)
    documents = int(conn.execute("SELECT count(*) FROM document_index").fetchone()[0])
    synced = int(conn.execute("SELECT count(*) FROM document_index WHERE sync_status = 'synced'").fetchone()[0])
    chunks = int(conn.execute("SELECT count(*) FROM document_chunks").fetchone()[0])
    waiting = int(conn.execute("SELECT count(*) FROM document_chunks WHERE embedded_at IS NULL").fetchone()[0])
    return {"documents": documents, "synced": synced, "chunks": chunks, "embedded": chunks - waiting}


def nearest_documents(conn: Connection, vector: np.ndarray, limit: int) -> list[dict[str, Any]]:
    """One hit per document (its nearest chunk), widening the KNN until ``limit`` documents."""
    depth = max(limit * 5, 50)
    while True:
        hits = vector_hits(conn, vector, depth, Filters())
        details = chunk_details(conn, [c for c, _ in hits])
        best: dict[int, tuple[int, float]] = {}
        for chunk_id, score in hits:
            if chunk_id in details:
                best.setdefault(details[chunk_id]["document_id"], (chunk_id, score))
        if len(best) >= limit or len(hits) < depth or depth >= MAX_K:
            break
        depth = min(depth * 4, MAX_K)
    results = []
    for chunk_id, score in list(best.values())[:limit]:
        d = details[chunk_id]
        results.append({
            "file_path": d["path"], "title": d["title"], "document_type": d["document_type"],
            "sync_status": d["sync_status"], "score": score, "distance": 1.0 - score,
            "chunk": {"index": d["chunk_index"], "heading_path": d["heading_path"], "start_line": d["start_line"],
                      "end_line": d["end_line"], "text": d["text"]},
        })
    return results
