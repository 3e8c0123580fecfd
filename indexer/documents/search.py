"""Hybrid search: BM25 and vector evidence fused per document, one result per document.

A document's semantic score is its best chunk's cosine fused with the cosine of its summary
vector (title and first paragraph, schema 0003); its keyword score is its best chunk's BM25.
The two are fused by weighted reciprocal rank or by a weighted sum of normalised scores, with
BM25's weight chosen by the query's shape (a natural-language question gets little of it,
quoted text, code, flags and identifiers get much more) and gated by BM25's evidence for the
query: the share of the query's IDF mass its best document holds (:func:`gate_keyword`).
Without that evidence hybrid ranks exactly as semantic does. The ranking itself is pure
(:mod:`indexer.documents.ranking`); the SQL is in ``storage.search_store``. The choices and the
alternatives they beat on held-out queries: docs/search.md, "Search quality".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from indexer.documents import ranking
from indexer.documents.vector_matrix import SearchVectors
from indexer.errors import ValidationError
from indexer.storage.sqlite import search_store, vector_log
from indexer.storage.sqlite.search_store import Filters

MODES = ("hybrid", "semantic", "keyword")
FUSIONS = ("score", "rrf")
SNIPPET_CHARS = 200


@dataclass(frozen=True)
class Fusion:
    """How evidence combines. Defaults chosen on the tune half of bench/queries.json
    (bench/bench_fusion.py), confirmed on the held-out half (docs/search.md, "Search quality")."""

    method: str = "score"  # "score": semantic + w * BM25/max(BM25); "rrf": weighted reciprocal rank
    keyword_weight_question: float = 0.1  # BM25's weight for natural-language queries
    keyword_weight_keyword: float = 0.3  # ... for quoted, code-like or short non-question queries
    summary_weight: float = 0.2  # semantic = (1 - b) * best chunk + b * summary cosine
    rrf_k: int = 60
    # BM25's weight is further scaled by its evidence for the query (None: by shape alone)
    gate: ranking.EvidenceGate | None = field(default_factory=ranking.EvidenceGate)
    agree_k: int = 10  # "semantic agrees": BM25's best document is in semantic's top agree_k

    def keyword_weight(self, query: str) -> float:
        keywordish = ranking.query_shape(query).keywordish
        return self.keyword_weight_keyword if keywordish else self.keyword_weight_question


@dataclass(frozen=True)
class SearchOptions:
    mode: str = "hybrid"
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    fusion: Fusion = field(default_factory=Fusion)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValidationError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.k < 1:
            raise ValidationError("k must be at least 1")
        if self.fusion.method not in FUSIONS:
            raise ValidationError(f"unknown fusion {self.fusion.method!r}; use one of {', '.join(FUSIONS)}")


Ranking = list[tuple[int, float]]  # (chunk id, score), best first
Explain = dict[str, dict[str, Any]]  # ranker name -> {"rank": n, "score": x}


class ChunkHit(NamedTuple):
    """One chunk after fusion: its fused score and its rank and score per ranker."""

    chunk_id: int
    score: float
    explain: Explain


class DocumentHit(NamedTuple):
    """One document of the result: its score, its evidence per ranker, its chunks best first."""

    doc_id: int
    score: float
    explain: Explain
    chunks: list[ChunkHit]


def fuse(rankings: dict[str, Ranking], weights: dict[str, float], rrf_k: int, explain_ranks: bool = True) -> list[ChunkHit]:
    """Weighted reciprocal-rank fusion of chunk rankings, with each chunk's rank and score per
    ranker (orders a document's chunks: the first is the one shown); ``explain_ranks=False``
    leaves those out (the search's response explains documents, not chunks)."""
    fused = ranking.rrf(rankings, weights, rrf_k)
    if not explain_ranks:
        return [ChunkHit(chunk_id, score, {}) for chunk_id, score in ranking.ranked(fused)]
    explain: dict[int, Explain] = {}
    for name, items in rankings.items():
        for rank, (chunk_id, score) in enumerate(items, start=1):
            explain.setdefault(chunk_id, {})[name] = {"rank": rank, "score": score}
    return [ChunkHit(chunk_id, score, explain[chunk_id]) for chunk_id, score in ranking.ranked(fused)]


def group_by_document(fused: list[ChunkHit], doc_of: dict[int, int], k: int) -> list[tuple[int, list[ChunkHit]]]:
    """Documents in order of their best chunk; each with all its matching chunks, best first."""
    groups: dict[int, list[ChunkHit]] = {}
    for item in fused:
        doc = doc_of.get(item.chunk_id)
        if doc is not None:
            groups.setdefault(doc, []).append(item)
    return list(groups.items())[:k]


def semantic_documents(chunk_hits: Ranking, summary_hits: Ranking, doc_of: dict[int, int],
                       summary_weight: float) -> dict[int, float]:
    """Each document's semantic score: ``(1 - b) * best chunk + b * summary``; a document
    missing from one list takes that list's lowest score (it ranked below all of them)."""
    chunk = ranking.document_max(chunk_hits, doc_of)
    summary = dict(summary_hits)
    if not summary or summary_weight <= 0:
        return chunk
    if not chunk:
        return summary
    floor_c, floor_s = min(chunk.values()), min(summary.values())
    b = summary_weight
    return {d: (1 - b) * chunk.get(d, floor_c) + b * summary.get(d, floor_s) for d in chunk.keys() | summary.keys()}


def fuse_documents(semantic: dict[int, float], keyword: dict[int, float], fusion: Fusion,
                   keyword_weight: float, keyword_normalised: dict[int, float] | None = None) -> dict[int, float]:
    """Document scores of hybrid search from the two document-level score maps (for score
    fusion, ``keyword_normalised`` replaces BM25/max(BM25), e.g. scaled by coverage). With no
    keyword weight, exactly the semantic scores."""
    if not keyword:
        return dict(semantic)
    if not semantic:
        return dict(keyword)
    if keyword_weight <= 0:
        return dict(semantic)
    if fusion.method == "rrf":
        return ranking.rrf({"semantic": ranking.ranked(semantic), "keyword": ranking.ranked(keyword)},
                           {"semantic": 1.0, "keyword": keyword_weight}, fusion.rrf_k)
    floor = min(semantic.values())
    normalised = ranking.max_normalised(keyword) if keyword_normalised is None else keyword_normalised
    return ranking.weighted_sum({"semantic": {d: semantic.get(d, floor) for d in semantic.keys() | keyword.keys()},
                                 "keyword": normalised},
                                {"semantic": 1.0, "keyword": keyword_weight})


class Gated(NamedTuple):
    """BM25's part of one hybrid query: its weight and the evidence it came from."""

    weight: float  # the weight used: shape weight x gate factor
    shape_weight: float
    factor: float
    reason: str  # why the gate's factor is what it is (ranking.EvidenceGate.reason)
    evidence: ranking.KeywordEvidence | None
    coverage: dict[int, float]  # document -> IDF coverage of its best BM25 chunk
    normalised: dict[int, float] | None  # BM25/max(BM25), scaled by coverage


def chunk_coverage(conn: Any, query: str, chunk_ids: list[int], total: int | None = None) -> dict[int, float]:
    """Each of ``chunk_ids``' share of the query's IDF mass (:func:`ranking.idf_coverage`), from
    BM25's term counts over the whole index."""
    total, counts, matches = search_store.term_matches(conn, query, chunk_ids, total)
    return ranking.idf_coverage(matches, {t: ranking.idf(n, total) for t, n in counts.items()})


def gate_keyword(conn: Any, query: str, keyword_hits: Ranking, doc_of: dict[int, int], keyword: dict[int, float],
                 semantic: dict[int, float], fusion: Fusion, total: int | None = None) -> Gated:
    """BM25's weight for this query from its evidence (:class:`ranking.EvidenceGate`)."""
    shape = fusion.keyword_weight(query)
    if fusion.gate is None or not keyword or not semantic:
        reason = "no gate" if fusion.gate is None else "not gated: one ranker found nothing, the other ranks alone"
        return Gated(shape, shape, 1.0, reason, None, {}, None)
    best_chunk: dict[int, int] = {}
    for chunk_id, _score in keyword_hits:  # best first: the first chunk seen is the document's best
        doc = doc_of.get(chunk_id)
        if doc is not None:
            best_chunk.setdefault(doc, chunk_id)
    per_chunk = chunk_coverage(conn, query, list(best_chunk.values()), total)
    coverage = {doc: per_chunk.get(chunk, 0.0) for doc, chunk in best_chunk.items()}
    evidence = ranking.keyword_evidence(keyword, semantic, coverage, fusion.agree_k)
    factor, reason = fusion.gate.decide(evidence, keyword_shaped=ranking.query_shape(query).keywordish)
    return Gated(shape * factor, shape, factor, reason, evidence, coverage,
                 ranking.gated_keyword_scores(keyword, coverage, fusion.gate.doc_power))


def _explain(scores: dict[int, float]) -> dict[int, dict[str, float]]:
    return {doc: {"rank": rank, "score": score} for rank, (doc, score) in enumerate(ranking.ranked(scores), start=1)}


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 2]
    lower = flat.lower()
    positions = [lower.find(w) for w in words if lower.find(w) >= 0]
    start = max(min(positions) - width // 4, 0) if positions else 0
    piece = flat[start:start + width]
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(flat) else "")


def _vector_hits(conn: Any, vector: np.ndarray, limit: int, filters: Filters,
                 vectors: SearchVectors | None) -> Ranking:
    if vectors is None:  # one-shot, filtered, or no vector table: sqlite-vec
        return search_store.vector_hits(conn, vector, limit, filters)
    vectors.chunks.refresh(conn)
    return vectors.chunks.nearest(vector, limit)


def _chunk_owners(conn: Any, chunk_ids: list[int], vectors: SearchVectors | None) -> dict[int, int]:
    """chunk id -> document id of every candidate: from the vectors in memory (refreshed in
    this snapshot) when there are, the rest (chunks not embedded yet) from SQL."""
    if vectors is None:
        return search_store.chunk_documents(conn, chunk_ids)
    owners, missing = vectors.chunks.owners(chunk_ids)
    if missing:
        owners.update(search_store.chunk_documents(conn, missing))
    return owners


def _summary_hits(conn: Any, vector: np.ndarray, limit: int, filters: Filters,
                  vectors: SearchVectors | None) -> Ranking:
    if vectors is None or filters.active:
        return search_store.summary_hits(conn, vector, limit, filters)
    vectors.summaries.refresh(conn)
    return vectors.summaries.nearest(vector, limit)


def run_search(conn: Any, query: str, options: SearchOptions,
               embed_query: Callable[[str], np.ndarray] | None,
               matrix: SearchVectors | None = None) -> dict[str, Any]:
    """Search the index behind ``conn``. ``embed_query`` is only called in semantic/hybrid mode;
    a long-lived caller passes :class:`SearchVectors` to keep the vectors in memory. Every read
    is made in one read snapshot, so a commit between them (a re-chunk) cannot mix two states."""
    options.validate()
    if not query.strip():
        raise ValidationError("the query is empty")
    with vector_log.snapshot(conn):
        return _search(conn, query, options, embed_query, matrix)


def _search(conn: Any, query: str, options: SearchOptions, embed_query: Callable[[str], np.ndarray] | None,
            matrix: SearchVectors | None) -> dict[str, Any]:
    progress = search_store.index_progress(conn)
    response: dict[str, Any] = {"query": query, "mode": options.mode, "k": options.k, "results": [], "index": progress}
    if progress["documents"] == 0:
        response["notice"] = "the index is empty: run `indexer reindex --root DIR` first"
        return response
    if progress["embedded"] < progress["chunks"] and options.mode != "keyword":
        response["notice"] = (f"the index is still syncing: {progress['embedded']} of {progress['chunks']} chunks "
                              f"embedded ({progress['synced']} of {progress['documents']} documents synced)")
    vector = embed_query(query) if options.mode != "keyword" and embed_query is not None else None
    fusion = options.fusion
    # the chunk vectors in memory serve unfiltered searches that embed the query
    in_memory = (matrix if matrix is not None and vector is not None and not options.filters.active
                 and search_store.vector_table_exists(conn) else None)
    summaries: Ranking = []
    if vector is not None and fusion.summary_weight > 0:
        summaries = _summary_hits(conn, vector, max(options.k * 20, 200), options.filters, matrix)
    depth = max(options.k * 20, 200)
    while True:
        rankings: dict[str, Ranking] = {}
        if options.mode in ("hybrid", "keyword"):
            rankings["keyword"] = search_store.keyword_hits(conn, query, depth, options.filters)
        if options.mode in ("hybrid", "semantic") and vector is not None:
            rankings["semantic"] = _vector_hits(conn, vector, depth, options.filters, in_memory)
        doc_of = _chunk_owners(conn, sorted({c for r in rankings.values() for c, _ in r}), in_memory)
        semantic = (semantic_documents(rankings["semantic"], summaries, doc_of, fusion.summary_weight)
                    if "semantic" in rankings else {})
        keyword = ranking.document_max(rankings.get("keyword", []), doc_of)
        gated = gate_keyword(conn, query, rankings.get("keyword", []), doc_of, keyword, semantic, fusion,
                             progress["chunks"])
        fused = fuse(rankings, {"semantic": 1.0, "keyword": gated.weight}, fusion.rrf_k,
                     explain_ranks=False)  # orders each document's chunks
        scores = fuse_documents(semantic, keyword, fusion, gated.weight, gated.normalised)
        groups_of = dict(group_by_document(fused, doc_of, len(doc_of)))
        explains = {"semantic": _explain(semantic), "keyword": _explain(keyword), "summary": _explain(dict(summaries))}
        order = ranking.ranked(scores)
        best = [doc for doc, _ in order[:options.k]]
        for doc, chunk_id in search_store.first_chunks(conn, [d for d in best if d not in groups_of]).items():
            groups_of[doc] = [ChunkHit(chunk_id, 0.0, {})]  # found by its summary alone: show its opening
        groups: list[DocumentHit] = []
        for doc, score in order:
            if len(groups) == options.k:
                break
            if doc in groups_of:
                groups.append(DocumentHit(doc, score, {name: e[doc] for name, e in explains.items() if doc in e},
                                          groups_of[doc]))
        exhausted = all(len(r) < depth for r in rankings.values())
        if len(groups) >= options.k or exhausted or depth >= search_store.MAX_K:
            break
        depth = min(depth * 4, search_store.MAX_K)
    if options.mode == "hybrid":
        response["fusion"] = {"keyword_weight": round(gated.weight, 4), "shape_weight": gated.shape_weight,
                              "gate": round(gated.factor, 4), "gate_reason": gated.reason,
                              "evidence": gated.evidence.as_dict() if gated.evidence is not None else None}
    details = search_store.chunk_details(conn, sorted({hit.chunk_id for group in groups for hit in group.chunks[:6]}))
    for group in groups:
        top = details.get(group.chunks[0].chunk_id)
        if top is None:  # gone since it was ranked (a caller's own transaction spanning commits)
            continue
        response["results"].append({
            "path": top["path"], "title": top["title"], "document_type": top["document_type"],
            "heading_path": top["heading_path"], "start_line": top["start_line"], "end_line": top["end_line"],
            "snippet": snippet(top["text"], query), "score": round(group.score, 6),
            "explain": {name: {"rank": v["rank"], "score": round(v["score"], 6),
                               **({"coverage": round(gated.coverage[group.doc_id], 4)}
                                  if name == "keyword" and group.doc_id in gated.coverage else {})}
                        for name, v in group.explain.items()},
            "other_chunks": [
                {"heading_path": details[hit.chunk_id]["heading_path"], "start_line": details[hit.chunk_id]["start_line"],
                 "end_line": details[hit.chunk_id]["end_line"], "score": round(hit.score, 6)}
                for hit in group.chunks[1:6] if hit.chunk_id in details
            ],
        })
    return response


def search_database(config: Any, query: str, options: SearchOptions,
                    embedder: Any = None) -> dict[str, Any]:
    """Open the configured database read-only and search it (the model loads only if needed)."""
    from indexer.errors import IndexerError
    from indexer.storage.sqlite import driver, migrations

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
