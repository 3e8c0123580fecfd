"""Hybrid search: BM25 and vector rankings fused by weighted reciprocal rank, one result per
document. Fusion and grouping are pure functions; the SQL is in ``storage.search_store``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from indexer.errors import ValidationError
from indexer.storage import search_store
from indexer.storage.search_store import Filters

MODES = ("hybrid", "semantic", "keyword")
# Weighted RRF, tuned on bench/queries.json (see README): BM25 is weak on intent-style
# queries: with document-level RRF (k=60) a weight of 0.05-0.1 lifted MRR@10 and recall@5
# above semantic-only; 0.25 and more lowered recall@5 (README has the sweep).
SEMANTIC_WEIGHT = 1.0
KEYWORD_WEIGHT = 0.075
RRF_K = 60
SNIPPET_CHARS = 200


@dataclass(frozen=True)
class SearchOptions:
    mode: str = "hybrid"
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    semantic_weight: float = SEMANTIC_WEIGHT
    keyword_weight: float = KEYWORD_WEIGHT
    rrf_k: int = RRF_K

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValidationError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.k < 1:
            raise ValidationError("k must be at least 1")


Ranking = list[tuple[int, float]]  # (chunk id, score), best first


def fuse(rankings: dict[str, Ranking], weights: dict[str, float], rrf_k: int) -> list[tuple[int, float, dict[str, Any]]]:
    """Weighted reciprocal-rank fusion: sum of weight / (rrf_k + rank) over the rankers."""
    fused: dict[int, float] = {}
    explain: dict[int, dict[str, Any]] = {}
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        for rank, (chunk_id, score) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (rrf_k + rank)
            explain.setdefault(chunk_id, {})[name] = {"rank": rank, "score": score}
    ordered = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return [(chunk_id, score, explain[chunk_id]) for chunk_id, score in ordered]


def group_by_document(fused: list[tuple[int, float, dict[str, Any]]], doc_of: dict[int, int],
                      k: int) -> list[tuple[int, list[tuple[int, float, dict[str, Any]]]]]:
    """Documents in order of their best chunk; each with all its matching chunks, best first."""
    groups: dict[int, list[tuple[int, float, dict[str, Any]]]] = {}
    for item in fused:
        doc = doc_of.get(item[0])
        if doc is not None:
            groups.setdefault(doc, []).append(item)
    return list(groups.items())[:k]


def document_ranking(ranking: Ranking, doc_of: dict[int, int]) -> Ranking:
    """A chunk ranking as a document ranking: each document at the rank of its best chunk."""
    seen: dict[int, float] = {}
    for chunk_id, score in ranking:
        doc = doc_of.get(chunk_id)
        if doc is not None and doc not in seen:
            seen[doc] = score
    return list(seen.items())


def order_groups(groups: list[tuple[int, list[tuple[int, float, dict[str, Any]]]]],
                 doc_fused: list[tuple[int, float, dict[str, Any]]], k: int) -> list[tuple[int, float, dict[str, Any], list[tuple[int, float, dict[str, Any]]]]]:
    """Documents in the order of the document-level fusion, each with its chunks (best first).

    Fusing document ranks (a document ranked by its best chunk, per ranker) keeps one
    document's many chunks from crowding the others out of a ranker's list.
    """
    chunks_of = dict(groups)
    return [(doc, score, explain, chunks_of[doc]) for doc, score, explain in doc_fused if doc in chunks_of][:k]


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 2]
    lower = flat.lower()
    positions = [lower.find(w) for w in words if lower.find(w) >= 0]
    start = max(min(positions) - width // 4, 0) if positions else 0
    piece = flat[start:start + width]
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(flat) else "")


def run_search(conn: Any, query: str, options: SearchOptions,
               embed_query: Callable[[str], np.ndarray] | None,
               matrix: search_store.VectorMatrix | None = None) -> dict[str, Any]:
    """Search the index behind ``conn``. ``embed_query`` is only called in semantic/hybrid mode;
    a long-lived caller passes a :class:`VectorMatrix` to keep the vectors in memory."""
    options.validate()
    if not query.strip():
        raise ValidationError("the query is empty")
    progress = search_store.index_progress(conn)
    response: dict[str, Any] = {"query": query, "mode": options.mode, "k": options.k, "results": [], "index": progress}
    if progress["documents"] == 0:
        response["notice"] = "the index is empty: run `indexer reindex --root DIR` first"
        return response
    if progress["embedded"] < progress["chunks"] and options.mode != "keyword":
        response["notice"] = (f"the index is still syncing: {progress['embedded']} of {progress['chunks']} chunks "
                              f"embedded ({progress['synced']} of {progress['documents']} documents synced)")
    vector = embed_query(query) if options.mode != "keyword" and embed_query is not None else None
    depth = max(options.k * 20, 200)
    while True:
        rankings: dict[str, Ranking] = {}
        if options.mode in ("hybrid", "keyword"):
            rankings["keyword"] = search_store.keyword_hits(conn, query, depth, options.filters)
        if options.mode in ("hybrid", "semantic") and vector is not None:
            rankings["semantic"] = search_store.vector_hits(conn, vector, depth, options.filters, matrix)
        doc_of = search_store.chunk_documents(conn, sorted({c for r in rankings.values() for c, _ in r}))
        fused = fuse(rankings, {"semantic": options.semantic_weight, "keyword": options.keyword_weight}, options.rrf_k)
        doc_fused = fuse({name: document_ranking(r, doc_of) for name, r in rankings.items()},
                         {"semantic": options.semantic_weight, "keyword": options.keyword_weight}, options.rrf_k)
        groups = order_groups(group_by_document(fused, doc_of, len(doc_fused)), doc_fused, options.k)
        exhausted = all(len(r) < depth for r in rankings.values())
        if len(groups) >= options.k or exhausted or depth >= search_store.MAX_K:
            break
        depth = min(depth * 4, search_store.MAX_K)
    details = search_store.chunk_details(conn, sorted({c for *_, chunks in groups for c, _, _ in chunks[:6]}))
    for doc_id, doc_score, doc_explain, chunks in groups:
        best_id = chunks[0][0]
        best = details[best_id]
        response["results"].append({
            "path": best["path"], "title": best["title"], "document_type": best["document_type"],
            "heading_path": best["heading_path"], "start_line": best["start_line"], "end_line": best["end_line"],
            "snippet": snippet(best["text"], query), "score": round(doc_score, 6),
            "explain": {name: {"rank": v["rank"], "score": round(v["score"], 6)} for name, v in doc_explain.items()},
            "other_chunks": [
                {"heading_path": details[c]["heading_path"], "start_line": details[c]["start_line"],
                 "end_line": details[c]["end_line"], "score": round(s, 6)}
                for c, s, _ in chunks[1:6]
            ],
        })
    return response


def search_database(config: Any, query: str, options: SearchOptions,
                    embedder: Any = None) -> dict[str, Any]:
    """Open the configured database read-only and search it (the model loads only if needed)."""
    from indexer.errors import IndexerError
    from indexer.storage import driver, migrations

    if not config.db.exists():
        raise IndexerError(f"no database at {config.db}: run `indexer reindex --root DIR` first")
    state = migrations.read_state(config.db)
    if migrations.pending_migrations(state, migrations.load_migrations()):
        raise IndexerError(f"the database {config.db} needs migrating: run `indexer migrate`")
    conn = driver.connect(config.db, readonly=True)
    try:
        def embed(text: str) -> np.ndarray:
            nonlocal embedder
            if embedder is None:
                from indexer.documents.embedding import embedder_for

                embedder = embedder_for(config)
            return embedder.embed_query(text)

        return run_search(conn, query, options, embed)
    finally:
        conn.close()
