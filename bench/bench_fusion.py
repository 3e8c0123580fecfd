"""Ranking experiments on an existing full-corpora index: every variant on the tune and the
held-out half of bench/queries.json (MRR@10, recall@5, per kind).

    .venv/bin/python bench/bench_fusion.py --db /path/to/index.db [--json out.json]

The index must hold all of ../shared/corpora (build it once, see bench_search.py --help).
Per query the script computes, once: the query vector (and the vector of its "how do I"
core), the cosine of every chunk, BM25 hits (the product's keyword query), and the cosine
of each document's summary vector (title + first paragraph, embedded here and cached beside
the database) and mean chunk vector. Each variant is then a pure function of those, built
from indexer.documents.ranking, so the variants differ only in how they combine the evidence.
Choose on the tune half; the held-out half is printed to confirm.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from indexer.config import load_config  # noqa: E402
from indexer.documents import ranking  # noqa: E402
from indexer.documents.embedding import make_embedder  # noqa: E402
from indexer.documents.markdown_meta import document_summary  # noqa: E402
from indexer.documents.search import chunk_coverage  # noqa: E402
from indexer.documents.vector_matrix import VectorMatrix  # noqa: E402
from indexer.storage.sqlite import driver  # noqa: E402
from indexer.storage.sqlite.search_store import Filters, fts_terms, keyword_hits, term_matches  # noqa: E402
from indexer.storage.sqlite.vectors import from_blob  # noqa: E402

CORPORA = Path(os.environ.get("INDEXER_TEST_CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora")
QUERIES = Path(__file__).with_name("queries.json")
PARAPHRASES = Path(__file__).with_name("queries_paraphrase.json")  # the second style: no shared word
FRESH = Path(__file__).with_name("queries_fresh.json")  # written blind; judged (--show-heldout), never tuned on
POOLED = Path(__file__).with_name("judgments_pooled.json")  # pages judged blind by pooling (pool_judgments.py)
DEPTH = 200  # chunks per ranker, as the product fetches for k=10


@dataclass
class Evidence:
    query: dict
    sem: dict[int, float]  # chunk -> cosine (top DEPTH)
    sem_core: dict[int, float]  # same, for the query's "how do I" core
    bm25: dict[int, float]  # chunk -> bm25 (top DEPTH)
    summary: dict[int, float]  # doc -> cosine of the summary vector (top DEPTH docs)
    summary_core: dict[int, float]
    mean: dict[int, float]  # doc -> cosine of the mean chunk vector (top DEPTH docs)
    qvec: np.ndarray
    coverage: dict[int, float]  # doc -> IDF coverage of its best BM25 chunk (ranking.idf_coverage)
    items: dict[int, float]  # doc -> cosine of its best list item ("- what it does:" line), with --items
    sem_coverage: dict[int, float] | None = None  # doc -> IDF coverage of its best chunk, for semantic's top docs
    window_coverage: dict[int, float] | None = None  # window size -> IDF coverage within it, BM25's best chunk
    summary_bm25: dict[int, float] | None = None  # doc -> BM25 of its summary (title + first paragraph)
    summary_coverage: dict[int, float] | None = None  # doc -> IDF coverage of its summary


class Corpus:
    def __init__(self, db: Path, embedder, only: str | None = None) -> None:
        """``only``: a path prefix; every ranker then sees only the documents under it."""
        conn = driver.connect(db, readonly=True)
        self.conn = conn
        self.filters = Filters(path_prefix=only) if only else Filters()
        matrix = VectorMatrix()
        matrix.refresh(conn)
        self.doc_of = {int(c): int(d) for c, d in conn.execute("SELECT id, document_id FROM document_chunks")}
        self.chunks_of: dict[int, list[int]] = {}
        for chunk, doc in self.doc_of.items():
            self.chunks_of.setdefault(doc, []).append(chunk)
        rows = conn.execute("SELECT id, file_path, title, embedding_blob FROM document_index ORDER BY id").fetchall()
        if only:
            rows = [r for r in rows if r[1].startswith(only.rstrip("/") + "/")]
        allowed = {int(r[0]) for r in rows}
        keep = np.array([self.doc_of.get(int(c)) in allowed for c in matrix.ids], dtype=bool)
        self.chunk_ids, self.chunk_matrix = matrix.ids[keep], matrix.matrix[keep]
        self.row_of = {int(c): i for i, c in enumerate(self.chunk_ids)}
        self.item_matrix: np.ndarray | None = None
        self.item_owner = np.zeros(0, dtype=np.int64)
        self.doc_ids = np.array([r[0] for r in rows])
        self.path_of = {int(r[0]): r[1] for r in rows}
        self.mean_matrix = np.stack([from_blob(r[3]) if r[3] else np.zeros(self.chunk_matrix.shape[1], "<f4")
                                     for r in rows])
        summaries = [document_summary(Path(r[1]).read_text(encoding="utf-8", errors="replace"), r[2]) for r in rows]
        self.summary_fts = sqlite3.connect(":memory:")
        self.summary_fts.execute("CREATE VIRTUAL TABLE s USING fts5(x, tokenize='porter unicode61 remove_diacritics 2')")
        self.summary_fts.executemany("INSERT INTO s(rowid, x) VALUES (?, ?)", zip((int(r[0]) for r in rows), summaries))
        key = hashlib.sha1("\0".join(summaries).encode()).hexdigest()[:12]
        cache = db.parent / f"summaries-{key}.npy"
        if cache.exists():
            self.summary_matrix = np.load(cache)
        else:
            start = time.perf_counter()
            self.summary_matrix = embedder.embed_documents(summaries).astype(np.float32)
            np.save(cache, self.summary_matrix)
            print(f"embedded {len(summaries)} summaries in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    def load_items(self, embedder, db: Path) -> None:
        """Per-item vectors of list-shaped pages: each "- what it does:" line of a tldr-style
        page (markers like [c] unwrapped), embedded alone; cached beside the database."""
        texts, owners = [], []
        for doc_id in self.doc_ids:
            for line in Path(self.path_of[int(doc_id)]).read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("- ") and line.rstrip().endswith(":"):
                    texts.append(re.sub(r"[\[\]]", "", line[2:].rstrip().rstrip(":")))
                    owners.append(int(doc_id))
        key = hashlib.sha1("\0".join(texts).encode()).hexdigest()[:12]
        cache = db.parent / f"items-{key}.npy"
        if cache.exists():
            self.item_matrix = np.load(cache)
        else:
            start = time.perf_counter()
            self.item_matrix = embedder.embed_documents(texts).astype(np.float32)
            np.save(cache, self.item_matrix)
            print(f"embedded {len(texts)} items in {time.perf_counter() - start:.1f} s "
                  f"({self.item_matrix.nbytes / 2**20:.1f} MB of float32 vectors)", file=sys.stderr)
        self.item_owner = np.array(owners)

    def top_items(self, vector: np.ndarray, n: int = DEPTH * 3) -> dict[int, float]:
        if self.item_matrix is None:
            return {}
        best: dict[int, float] = {}
        for owner, score in zip(*self._top_rows(self.item_matrix, self.item_owner, vector, n)):
            best[owner] = max(best.get(owner, -1.0), score)
        return best

    @staticmethod
    def _top_rows(matrix: np.ndarray, ids: np.ndarray, vector: np.ndarray, n: int) -> tuple[list[int], list[float]]:
        scores = matrix @ vector
        n = min(n, len(scores))
        rows = np.argpartition(-scores, n - 1)[:n]
        return [int(ids[i]) for i in rows], [float(scores[i]) for i in rows]

    def top(self, matrix: np.ndarray, ids: np.ndarray, vector: np.ndarray, n: int = DEPTH) -> dict[int, float]:
        scores = matrix @ vector
        n = min(n, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        return {int(ids[i]): float(scores[i]) for i in best}

    def evidence(self, q: dict, embed: Callable[[str], np.ndarray]) -> Evidence:
        text = q["q"]
        qv, cv = embed(text), embed(ranking.question_core(text))
        bm25 = dict(keyword_hits(self.conn, text, DEPTH, self.filters))
        return Evidence(
            query=q, qvec=qv,
            sem=self.top(self.chunk_matrix, self.chunk_ids, qv), sem_core=self.top(self.chunk_matrix, self.chunk_ids, cv),
            bm25=bm25,
            summary=self.top(self.summary_matrix, self.doc_ids, qv), summary_core=self.top(self.summary_matrix, self.doc_ids, cv),
            mean=self.top(self.mean_matrix, self.doc_ids, qv), coverage=self.coverage(text, bm25),
            items=self.top_items(qv))

    def summary_keyword(self, text: str) -> tuple[dict[int, float], dict[int, float]]:
        """BM25 over the documents' summaries (title + first paragraph: what a page is for),
        and each hit's IDF coverage there."""
        terms = fts_terms(text)
        if not terms:
            return {}, {}
        rows = self.summary_fts.execute("SELECT rowid, -bm25(s) FROM s WHERE s MATCH ? ORDER BY bm25(s) LIMIT ?",
                                        (" OR ".join(terms), DEPTH)).fetchall()
        hits = {int(r[0]): float(r[1]) for r in rows}
        total = int(self.summary_fts.execute("SELECT count(*) FROM s").fetchone()[0])
        counts, matches = {}, {}
        wanted = ",".join(str(d) for d in hits) or "0"
        for quoted in terms:
            n, found = self.summary_fts.execute(
                f"SELECT count(*), group_concat(CASE WHEN rowid IN ({wanted}) THEN rowid END) FROM s WHERE s MATCH ?",
                (quoted,)).fetchone()
            term = quoted[1:-1]
            counts[term], matches[term] = int(n), {int(c) for c in found.split(",")} if found else set()
        return hits, ranking.idf_coverage(matches, {t: ranking.idf(n, total) for t, n in counts.items()})

    def doc_coverage(self, text: str, doc_ids: list[int]) -> dict[int, float]:
        """Each document's IDF coverage: its best chunk's, over all of its chunks (the whole
        document, whether or not BM25's top chunks hold it)."""
        per_chunk = chunk_coverage(self.conn, text, [c for d in doc_ids for c in self.chunks_of.get(d, [])])
        return {d: max((per_chunk.get(c, 0.0) for c in self.chunks_of.get(d, [])), default=0.0) for d in doc_ids}

    def coverage(self, text: str, bm25: dict[int, float]) -> dict[int, float]:
        """Each BM25 document's IDF coverage (its best chunk's), as the product computes it."""
        best: dict[int, int] = {}
        for chunk_id, _ in sorted(bm25.items(), key=lambda i: -i[1]):
            best.setdefault(self.doc_of[chunk_id], chunk_id)
        per_chunk = chunk_coverage(self.conn, text, list(best.values()))
        return {d: per_chunk.get(c, 0.0) for d, c in best.items()}


    def window_coverage(self, text: str, bm25: dict[int, float], windows: tuple[int, ...]) -> dict[int, float]:
        """For BM25's best chunk: the largest share of the query's IDF mass found within any
        ``w`` consecutive words, per window size (proximity: do the query's words occur together?)."""
        if not bm25:
            return {w: 0.0 for w in windows}
        best = max(bm25, key=lambda c: bm25[c])
        total, counts, _matches = term_matches(self.conn, text, [best])  # the IDF the product's coverage uses
        idf, where = {}, {}
        for quoted in fts_terms(text):
            term = quoted[1:-1].replace('""', '"')
            idf[term] = ranking.idf(counts[term], total)
            row = self.conn.execute("SELECT highlight(chunk_fts, 0, char(1), char(2)) FROM chunk_fts "
                                    "WHERE chunk_fts MATCH ? AND rowid = ?", (quoted, best)).fetchone()
            words = re.findall(r"\x01[^\x02]*\x02|\w+", row[0]) if row else []
            where[term] = [i for i, word in enumerate(words) if word.startswith("\x01")]
        mass = sum(idf.values())
        starts = sorted({i for found in where.values() for i in found})
        return {w: max((sum(idf[t] for t, found in where.items() if any(s <= i < s + w for i in found))
                        for s in starts), default=0.0) / mass if mass else 0.0 for w in windows}


# --- variants: Evidence -> document ranking (ids, best first) -------------------------------

def docs(scores: dict[int, float]) -> list[int]:
    return [d for d, _ in ranking.ranked(scores)]


def semantic(e: Evidence, core: bool = False) -> dict[int, float]:
    return ranking.document_max((e.sem_core if core else e.sem).items(), DOC_OF)


def keyword(e: Evidence) -> dict[int, float]:
    return ranking.document_max(e.bm25.items(), DOC_OF)


def rrf(e: Evidence, weight: float, sem: dict[int, float] | None = None, k: int = 60) -> list[int]:
    sem = semantic(e) if sem is None else sem
    return docs(ranking.rrf({"semantic": ranking.ranked(sem), "keyword": ranking.ranked(keyword(e))},
                            {"semantic": 1.0, "keyword": weight}, k))


def shape_weight(e: Evidence, question: float, other: float) -> float:
    return other if ranking.query_shape(e.query["q"]).keywordish else question


def score_fusion(e: Evidence, weight: float, sem: dict[int, float] | None = None) -> list[int]:
    sem = semantic(e) if sem is None else sem
    return docs(ranking.weighted_sum({"semantic": sem, "keyword": ranking.max_normalised(keyword(e))},
                                     {"semantic": 1.0, "keyword": weight}))


def with_summary(e: Evidence, beta: float, core: bool = False, combine: str = "max") -> dict[int, float]:
    """Chunk evidence (max) fused with the summary vector: (1 - beta) * chunk + beta * summary;
    a document missing from one list takes that list's lowest score."""
    chunk = semantic(e, core)
    summ = e.summary_core if core else e.summary
    floor_c, floor_s = min(chunk.values()), min(summ.values())
    if combine == "max":
        return {d: max(chunk.get(d, floor_c), summ.get(d, floor_s) * beta + (1 - beta) * chunk.get(d, floor_c))
                for d in set(chunk) | set(summ)}
    return {d: (1 - beta) * chunk.get(d, floor_c) + beta * summ.get(d, floor_s) for d in set(chunk) | set(summ)}


def with_mean(e: Evidence, beta: float) -> dict[int, float]:
    chunk = semantic(e)
    floor_c, floor_m = min(chunk.values()), min(e.mean.values())
    return {d: (1 - beta) * chunk.get(d, floor_c) + beta * e.mean.get(d, floor_m) for d in set(chunk) | set(e.mean)}


def prf(e: Evidence, gamma: float, n: int = 3) -> dict[int, float]:
    """Rocchio on vectors: the query moved towards its n best chunks, chunks re-scored."""
    best = [c for c, _ in sorted(e.sem.items(), key=lambda i: -i[1])[:n]]
    rows = CORPUS.chunk_matrix[[CORPUS.row_of[c] for c in best]]
    moved = e.qvec + gamma * rows.mean(axis=0)
    moved /= np.linalg.norm(moved)
    return ranking.document_max(CORPUS.top(CORPUS.chunk_matrix, CORPUS.chunk_ids, moved).items(), DOC_OF)


def G(*args: float, **kwargs: float | bool) -> ranking.EvidenceGate:
    """A gate as measured before questions needed semantic's agreement (the variants below
    keep their published figures); ``ranking.EvidenceGate()`` is the product's default."""
    return ranking.EvidenceGate(*args, **{"questions_need_agreement": False, **kwargs})  # type: ignore[arg-type]


SEMANTIC = "semantic + summary b=0.2"  # the product's semantic mode: the reference for harm


def gated(e: Evidence, gate: ranking.EvidenceGate, question: float = 0.1, other: float = 0.3,
          agree_k: int = 10, scale: Callable[[Evidence, dict[int, float], ranking.KeywordEvidence], float] | None = None,
          source: str = "chunks", extra: float = 0.0, doc_bar: tuple[float, float] | None = None) -> list[int]:
    """The product's hybrid: score fusion by shape, BM25's weight scaled by its evidence (and by
    ``scale``, a variant's further factor). ``source``: BM25 over the chunks (the product) or
    over the documents' summaries; ``extra``: the summaries' BM25 added beside the chunks',
    with this share of the weight, under its own gate."""
    sem = with_summary(e, 0.2, combine="sum")
    parts: dict[str, dict[int, float]] = {}
    weights: dict[str, float] = {"semantic": 1.0}
    sources = [(source, 1.0)] + ([("summaries", extra)] if extra > 0 else [])
    for name, share in sources:
        kw, cov = (keyword(e), e.coverage) if name == "chunks" else (e.summary_bm25 or {}, e.summary_coverage or {})
        evidence = ranking.keyword_evidence(kw, sem, cov, agree_k)
        weight = share * shape_weight(e, question, other) * gate.factor(
            evidence, keyword_shaped=ranking.query_shape(e.query["q"]).keywordish)
        if weight > 0 and scale is not None:
            weight *= scale(e, sem, evidence)
        if weight > 0 and kw:
            parts[name], weights[name] = ranking.gated_keyword_scores(kw, cov, gate.doc_power), weight
            if doc_bar is not None:  # each document's own coverage must pass the bar too
                parts[name] = {d: v * ramp(cov.get(d, 0.0), *doc_bar) for d, v in parts[name].items()}
    if not parts:
        return docs(sem)
    floor = min(sem.values())
    every = set(sem).union(*parts.values())
    return docs(ranking.weighted_sum({"semantic": {d: sem.get(d, floor) for d in every}, **parts}, weights))


def ramp(value: float, low: float, full: float) -> float:
    """0 below ``low``, 1 from ``full``, linear between (a step at ``low`` when full <= low)."""
    if full <= low:
        return float(value >= low)
    return min(1.0, max(0.0, (value - low) / (full - low)))


def with_items(e: Evidence, c: float, b: float = 0.2, mode: str = "sum") -> dict[int, float]:
    """The product's semantic score with the best list item's cosine: added with weight c
    ("sum"), or the best chunk replaced by max(chunk, item) ("max")."""
    chunk = semantic(e)
    summ, items = e.summary, e.items
    floor_c, floor_s = min(chunk.values()), min(summ.values())
    floor_i = min(items.values()) if items else 0.0
    out = {}
    for d in set(chunk) | set(summ) | set(items):
        ch, su, it = chunk.get(d, floor_c), summ.get(d, floor_s), items.get(d, floor_i)
        if mode == "max":
            out[d] = (1 - b) * max(ch, it) + b * su
        else:
            out[d] = (1 - b - c) * ch + b * su + c * it
    return out


def item_variants() -> dict[str, Callable[[Evidence], list[int]]]:
    v: dict[str, Callable[[Evidence], list[int]]] = {}
    for c in (0.1, 0.2, 0.3, 0.4):
        v[f"items: semantic + summary 0.2 + best item {c}"] = lambda e, c=c: docs(with_items(e, c))
    v["items: semantic max(chunk, item) + summary 0.2"] = lambda e: docs(with_items(e, 0.0, mode="max"))
    v["items: best item alone"] = lambda e: docs(e.items)
    return v


def contrast(width: float, floor: float = 0.0) -> Callable[[Evidence, dict[int, float], ranking.KeywordEvidence], float]:
    """A further factor on BM25's weight: how much more of the query's IDF mass BM25's best
    document holds than semantic's best, min(1, max(floor, gap / width)). BM25 then speaks when
    it knows words that semantic's choice lacks, not when both hold them."""
    def scale(e: Evidence, sem: dict[int, float], evidence: ranking.KeywordEvidence) -> float:
        top_sem = docs(sem)[0]
        gap = evidence.coverage - (e.sem_coverage or {}).get(top_sem, e.coverage.get(top_sem, 0.0))
        return 1.0 if width <= 0 else min(1.0, max(floor, gap / width))
    return scale


def summary_keyword_variants() -> dict[str, Callable[[Evidence], list[int]]]:
    v: dict[str, Callable[[Evidence], list[int]]] = {}
    for lo in (0.5, 0.7):
        v[f"summary-bm25: instead of chunks, gate>={lo}"] = lambda e, lo=lo: gated(e, G(lo, 0.9, lo, 0.0, 1.0),
                                                                                  source="summaries")
        for extra in (0.5, 1.0, 2.0):
            v[f"summary-bm25: beside chunks x{extra}, gate>={lo}"] = (
                lambda e, lo=lo, extra=extra: gated(e, G(lo, 0.9, lo, 0.0, 1.0), extra=extra))
    return v


WINDOWS = (4, 8, 16, 32)


def proximity(window: int, blend: float) -> Callable[[Evidence, dict[int, float], ranking.KeywordEvidence], float]:
    """A further factor on BM25's weight: the gate as opened by BM25's best chunk's IDF
    coverage within ``window`` consecutive words (``blend`` 1) or by the mean of that and the
    whole chunk's coverage (0.5), over the gate as opened by the whole chunk's. The windowed
    coverage is never larger, so this only ever shuts the gate further."""
    def scale(e: Evidence, sem: dict[int, float], evidence: ranking.KeywordEvidence) -> float:
        near = (e.window_coverage or {}).get(window, 0.0)
        moved = ranking.KeywordEvidence(blend * near + (1 - blend) * evidence.coverage, evidence.margin,
                                        evidence.agrees, evidence.top)
        shaped = ranking.query_shape(e.query["q"]).keywordish
        return G().factor(moved, keyword_shaped=shaped) / G().factor(evidence, keyword_shaped=shaped)
    return scale


def proximity_variants() -> dict[str, Callable[[Evidence], list[int]]]:
    return {f"proximity: gate on coverage within {w} words{' (mean with whole chunk)' if b < 1 else ''}":
            (lambda e, w=w, b=b: gated(e, G(), scale=proximity(w, b))) for w in WINDOWS for b in (1.0, 0.5)}


def keep_agreed_top(e: Evidence, gate: ranking.EvidenceGate, k: int) -> list[int]:
    """The gated hybrid, except that semantic's best document stays first when BM25 also ranks
    it among its own top ``k``: both rankers accept it, so BM25 reorders only below it."""
    fused = gated(e, gate)
    top = docs(with_summary(e, 0.2, combine="sum"))[0]
    if top in docs(keyword(e))[:k]:
        return [top] + [d for d in fused if d != top]
    return fused


def contrast_variants() -> dict[str, Callable[[Evidence], list[int]]]:
    v: dict[str, Callable[[Evidence], list[int]]] = {}
    for k in (3, 10, 30):
        v[f"contrast: keep semantic's best first when BM25 has it in its top {k}"] = (
            lambda e, k=k: keep_agreed_top(e, G(), k))
    for lo in (0.5, 0.7):
        for width in (0.05, 0.1, 0.2, 0.3):
            for floor in (0.0, 0.5):
                v[f"contrast: gate>={lo} x gap/{width} (floor {floor})"] = (
                    lambda e, lo=lo, width=width, floor=floor: gated(e, G(lo, 0.9, lo, 0.0, 1.0),
                                                                     scale=contrast(width, floor)))
    return v


def gated_variants() -> dict[str, Callable[[Evidence], list[int]]]:
    v: dict[str, Callable[[Evidence], list[int]]] = {}
    v["gate: none (always on, coverage-scaled docs)"] = lambda e: gated(e, G(0.0, 0.0, 0.0, 0.0, 1.0))
    for lo in (0.4, 0.5, 0.6, 0.7, 0.8):
        for agree in (lo, 0.3, 0.0):
            if agree > lo:
                continue
            for power in (0.0, 1.0, 2.0):
                v[f"gate: coverage>={lo} (agree>={agree}) full 0.9 doc^{power}"] = (
                    lambda e, lo=lo, agree=agree, power=power: gated(e, G(lo, 0.9, agree, 0.0, power)))
    for lo, agree in ((0.5, 0.3), (0.6, 0.3)):
        for full in (0.7, 1.0):
            v[f"gate: coverage>={lo} (agree>={agree}) full {full} doc^1.0"] = (
                lambda e, lo=lo, agree=agree, full=full: gated(e, G(lo, full, agree, 0.0, 1.0)))
        for q, o in ((0.2, 0.3), (0.1, 0.5), (0.2, 0.5)):
            v[f"gate: coverage>={lo} (agree>={agree}) full 0.9 doc^1.0, weights {q}/{o}"] = (
                lambda e, lo=lo, agree=agree, q=q, o=o: gated(e, G(lo, 0.9, agree, 0.0, 1.0), q, o))
        v[f"gate: coverage>={lo} (agree>={agree}) margin>=0.1"] = (
            lambda e, lo=lo, agree=agree: gated(e, G(lo, 0.9, agree, 0.1, 1.0)))
        v[f"gate: coverage>={lo} (agree>={agree}) agree_k 5"] = (
            lambda e, lo=lo, agree=agree: gated(e, G(lo, 0.9, agree, 0.0, 1.0), agree_k=5))
    for low, full in ((0.3, 0.9), (0.5, 0.5), (0.5, 0.9), (0.6, 0.6), (0.7, 0.7), (0.7, 0.9)):
        v[f"gate: coverage>=0.7 full 0.9, and each document's coverage ramped {low}-{full}"] = (
            lambda e, low=low, full=full: gated(e, G(), doc_bar=(low, full)))
    for q in (0.0, 0.03, 0.05):
        v[f"gate: coverage>=0.7 full 0.9, weights {q}/0.3"] = lambda e, q=q: gated(e, G(), q, 0.3)
    for k in (5, 10, 20, 30):  # the product's question rule (top 10 is the default) at other depths
        v[f"gate: coverage>=0.7 full 0.9, questions only when semantic has BM25's best in its top {k}"] = (
            lambda e, k=k: gated(e, ranking.EvidenceGate(), agree_k=k))
    for agree in (0.0, 0.3, 0.5):
        for k in (5, 10, 20):
            v[f"gate: only when semantic agrees (top {k}), coverage>={agree} full 0.9 doc^1.0"] = (
                lambda e, agree=agree, k=k: gated(e, G(2.0, 0.9, agree, 0.0, 1.0), agree_k=k))
    return v


def variants() -> dict[str, Callable[[Evidence], list[int]]]:
    v: dict[str, Callable[[Evidence], list[int]]] = {
        "keyword": lambda e: docs(keyword(e)),
        "semantic (chunk max)": lambda e: docs(semantic(e)),
        "semantic top-2 mean": lambda e: docs(ranking.document_top_mean(e.sem.items(), DOC_OF, 2)),
        "semantic soft-max t=0.02": lambda e: docs(ranking.document_softmax(e.sem.items(), DOC_OF, 0.02)),
        "semantic soft-max t=0.05": lambda e: docs(ranking.document_softmax(e.sem.items(), DOC_OF, 0.05)),
        "semantic, query core": lambda e: docs(semantic(e, core=True)),
        "semantic + mean vector b=0.3": lambda e: docs(with_mean(e, 0.3)),
        "summary vector only": lambda e: docs(e.summary),
        "semantic PRF g=0.3": lambda e: docs(prf(e, 0.3)),
        "semantic PRF g=0.6": lambda e: docs(prf(e, 0.6)),
    }
    for beta in (0.2, 0.35, 0.5):
        v[f"semantic + summary b={beta}"] = lambda e, b=beta: docs(with_summary(e, b, combine="sum"))
    v["semantic + summary b=0.35 (core)"] = lambda e: docs(with_summary(e, 0.35, core=True, combine="sum"))
    for w in (0.075, 0.15, 0.3, 0.6, 1.0):
        v[f"RRF w={w} (current: 0.075)"] = lambda e, w=w: rrf(e, w)
    for q, o in ((0.0, 0.5), (0.05, 0.5), (0.05, 1.0), (0.1, 1.0), (0.0, 1.0)):
        v[f"RRF by shape q={q} other={o}"] = lambda e, q=q, o=o: rrf(e, shape_weight(e, q, o))
    for w in (0.05, 0.1, 0.2, 0.3):
        v[f"score fusion w={w}"] = lambda e, w=w: score_fusion(e, w)
    for q, o in ((0.02, 0.2), (0.05, 0.2), (0.05, 0.3), (0.0, 0.2)):
        v[f"score fusion by shape q={q} other={o}"] = lambda e, q=q, o=o: score_fusion(e, shape_weight(e, q, o))
        v[f"score fusion by shape q={q} other={o} + summary 0.35"] = (
            lambda e, q=q, o=o: score_fusion(e, shape_weight(e, q, o), with_summary(e, 0.35, combine="sum")))
        v[f"RRF by shape q={q} other={o * 5} + summary 0.35"] = (
            lambda e, q=q, o=o: rrf(e, shape_weight(e, q, o * 5), with_summary(e, 0.35, combine="sum")))
    for b in (0.2, 0.25):
        for q, o in ((0.05, 1.0), (0.05, 1.5), (0.1, 1.5)):
            v[f"RRF by shape q={q} other={o} + summary {b}"] = (
                lambda e, q=q, o=o, b=b: rrf(e, shape_weight(e, q, o), with_summary(e, b, combine="sum")))
        for q, o in ((0.05, 0.3), (0.1, 0.3)):
            v[f"score fusion by shape q={q} other={o} + summary {b}"] = (
                lambda e, q=q, o=o, b=b: score_fusion(e, shape_weight(e, q, o), with_summary(e, b, combine="sum")))
    v.update(gated_variants())
    v.update(contrast_variants())
    v.update(summary_keyword_variants())
    v.update(proximity_variants())
    return v


def load_queries(labels: str = "pooled") -> list[dict]:
    """Every set's questions; with ``labels`` "pooled", each one's ``relevant`` also holds the
    pages judged to answer it by pooling (POOLED)."""
    queries = [q for path in (QUERIES, PARAPHRASES, FRESH) for q in json.loads(path.read_text())["queries"]]
    if labels == "pooled" and POOLED.is_file():
        pooled = json.loads(POOLED.read_text())["pooled"]
        queries = [{**q, "relevant": sorted(set(q["relevant"]) | set(pooled.get(q["q"], [])))} for q in queries]
    return queries


def query_vectors(texts: list[str], embedder, directory: Path) -> dict[str, np.ndarray]:
    """Query vectors, cached beside the database (keyed by the texts)."""
    path = directory / f"queries-{hashlib.sha1(chr(0).join(texts).encode()).hexdigest()[:12]}.npy"
    if path.exists():
        vectors = np.load(path)
    else:
        vectors = np.stack([embedder.embed_query(t) for t in texts])
        np.save(path, vectors)
    return dict(zip(texts, vectors))


SHORT = {"concept": "conc", "howto": "howto", "keyword": "kw", "paraphrase": "para", "paraphrase-howto": "p-howto",
         "fresh-concept": "f-conc", "fresh-howto": "f-howto", "fresh-keyword": "f-kw", "fresh-paraphrase": "f-para"}
MISSING = 11  # the rank of an answer not in the top 10, for counting harm


def metrics(ranked_docs: list[int], relevant: set[str]) -> tuple[float, float, int]:
    """Reciprocal rank, recall@5, and the answer's rank (MISSING when not in the top 10)."""
    paths = [CORPUS.path_of[d] for d in ranked_docs[:10]]
    rank = next((i for i, p in enumerate(paths, 1) if p in relevant), None)
    return (1.0 / rank if rank else 0.0), len(relevant & set(paths[:5])) / min(len(relevant), 5), rank or MISSING


def summarise(rows: list[tuple[dict, float, float, int]], reference: dict[str, int]) -> dict[str, float]:
    """MRR@10, recall@5, per-kind MRR, and how many queries rank their answer more than one
    position lower than ``reference`` (the product's semantic ranking) does."""
    out = {"mrr@10": statistics.mean(r[1] for r in rows), "recall@5": statistics.mean(r[2] for r in rows),
           "worse": sum(r[3] - reference[r[0]["q"]] > 1 for r in rows),
           "better": sum(reference[r[0]["q"]] - r[3] > 1 for r in rows)}
    for kind in sorted({r[0]["kind"] for r in rows}):
        out[f"mrr[{kind}]"] = statistics.mean(r[1] for r in rows if r[0]["kind"] == kind)
    return {k: round(v, 4) for k, v in out.items()}


CORPUS: Corpus
DOC_OF: dict[int, int]


def main() -> None:
    global CORPUS, DOC_OF
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--backend", choices=("torch", "onnx", "onnx-int8"), default="onnx")
    parser.add_argument("--only", help="Run only variants whose name contains this text.")
    parser.add_argument("--show-heldout", action="store_true", help="Also print held-out MRR (after choosing).")
    parser.add_argument("--queries-only", action="store_true", help="Only embed (and cache) the query vectors.")
    parser.add_argument("--corpus", choices=("all", "tldr"), default="all",
                        help="tldr: only the queries answered by tldr pages, every ranker restricted to the tldr pages.")
    parser.add_argument("--items", action="store_true",
                        help="Also embed each tldr-style list item alone (cached) and try it as a finer semantic signal.")
    parser.add_argument("--labels", choices=("pooled", "original"), default="pooled",
                        help="pooled: each set's labels plus the pages judged by pooling (the default); original: the sets' own.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    embedder = make_embedder(load_config({}).model, threads=os.cpu_count() or 1, backend=args.backend,
                             cache_dir=args.db.parent / "models")
    queries = load_queries(args.labels)
    cache = query_vectors(sorted({t for q in queries for t in (q["q"], ranking.question_core(q["q"]))}),
                          embedder, args.db.parent)
    if args.corpus == "tldr":
        queries = [q for q in queries if all(r.startswith("tldr/") for r in q["relevant"])]
    if args.queries_only:
        return
    CORPUS = Corpus(args.db, embedder, str(CORPORA / "tldr" / "pages") if args.corpus == "tldr" else None)
    DOC_OF = CORPUS.doc_of
    if args.items:
        CORPUS.load_items(embedder, args.db)

    def embed(text: str) -> np.ndarray:
        return cache[text]

    evidence = [CORPUS.evidence(q, embed) for q in queries]
    results: dict[str, dict[str, dict[str, float]]] = {}
    every = variants()
    if args.items:
        every.update(item_variants())
    chosen = [name for name in every if not args.only or args.only in name]
    need_contrast = any(name.startswith("contrast") for name in chosen)
    need_summary_bm25 = any(name.startswith("summary-bm25") for name in chosen)
    need_proximity = any(name.startswith("proximity") for name in chosen)
    for e in evidence:  # read only when a chosen variant uses them
        if need_contrast:  # the coverage of semantic's own best documents
            e.sem_coverage = CORPUS.doc_coverage(e.query["q"], docs(with_summary(e, 0.2, combine="sum"))[:3])
        if need_proximity:
            e.window_coverage = CORPUS.window_coverage(e.query["q"], e.bm25, WINDOWS)
        if need_summary_bm25:
            e.summary_bm25, e.summary_coverage = CORPUS.summary_keyword(e.query["q"])
    reference = {e.query["q"]: metrics(every[SEMANTIC](e), {str(CORPORA / r) for r in e.query["relevant"]})[2]
                 for e in evidence}
    print(f"{len(evidence)} queries; 'worse'/'better': answer ranked more than one position lower/higher than by "
          f"{SEMANTIC!r}; kinds: " + ", ".join(sorted({e.query['kind'] for e in evidence})))
    for name, variant in every.items():
        if args.only and args.only not in name and name != SEMANTIC:
            continue
        rows: dict[str, list] = {"tune": [], "heldout": [], "judge": []}
        for e in evidence:
            relevant = {str(CORPORA / r) for r in e.query["relevant"]}
            rows[e.query["split"]].append((e.query, *metrics(variant(e), relevant)))
        results[name] = {split: summarise(r, reference) for split, r in rows.items() if r}
        t, h = results[name]["tune"], results[name]["heldout"]
        j = results[name].get("judge")
        print(f"{name:66} tune {t['mrr@10']:.3f} worse {t['worse']:2.0f} better {t['better']:2.0f} | "
              + " ".join(f"{SHORT.get(k[4:-1], k[4:-1])} {v:.3f}" for k, v in t.items() if k.startswith("mrr["))
              + (f" || heldout {h['mrr@10']:.3f} worse {h['worse']:.0f} | "
                 + " ".join(f"{SHORT.get(k[4:-1], k[4:-1])} {v:.3f}" for k, v in h.items() if k.startswith("mrr["))
                 if args.show_heldout else "")
              + (f" || judge {j['mrr@10']:.3f} worse {j['worse']:.0f} | "
                 + " ".join(f"{SHORT.get(k[4:-1], k[4:-1])} {v:.3f}" for k, v in j.items() if k.startswith("mrr["))
                 if args.show_heldout and j else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
