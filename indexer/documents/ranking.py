"""Pure ranking functions of hybrid search: how a document's chunk scores combine, how
keyword and vector evidence fuse, and how much BM25 is trusted for a given query's shape.

Nothing here touches the database or the model: scores in, scores out. The choices (and the
alternatives measured against them on held-out queries) are in docs/search.md,
section "Search quality"; ``bench/bench_fusion.py`` measures them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Ranking = list[tuple[int, float]]  # (id, score), best first

# --- a document's score from its chunks -------------------------------------------------


def document_max(hits: Iterable[tuple[int, float]], doc_of: Mapping[int, int]) -> dict[int, float]:
    """Each document's best chunk score."""
    best: dict[int, float] = {}
    for chunk_id, score in hits:
        doc = doc_of.get(chunk_id)
        if doc is not None and (doc not in best or score > best[doc]):
            best[doc] = score
    return best


def document_top_mean(hits: Iterable[tuple[int, float]], doc_of: Mapping[int, int], n: int = 2) -> dict[int, float]:
    """Mean of each document's ``n`` best chunk scores (fewer when it has fewer)."""
    per_doc: dict[int, list[float]] = {}
    for chunk_id, score in hits:
        doc = doc_of.get(chunk_id)
        if doc is not None:
            per_doc.setdefault(doc, []).append(score)
    return {doc: sum(sorted(s, reverse=True)[:n]) / min(len(s), n) for doc, s in per_doc.items()}


def document_softmax(hits: Iterable[tuple[int, float]], doc_of: Mapping[int, int],
                     temperature: float = 0.05) -> dict[int, float]:
    """A smooth maximum: ``t * log(sum(exp(score / t)))`` over each document's chunks (the
    best chunk, plus a little for every other close one)."""
    per_doc: dict[int, list[float]] = {}
    for chunk_id, score in hits:
        doc = doc_of.get(chunk_id)
        if doc is not None:
            per_doc.setdefault(doc, []).append(score)
    out = {}
    for doc, scores in per_doc.items():
        top = max(scores)
        out[doc] = top + temperature * math.log(sum(math.exp((s - top) / temperature) for s in scores))
    return out


def ranked(scores: Mapping[int, float]) -> Ranking:
    """Scores as a ranking, best first (ties: lower id first, so results are stable)."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


# --- fusion ----------------------------------------------------------------------------


def rrf(rankings: Mapping[str, Ranking], weights: Mapping[str, float], k: int = 60) -> dict[int, float]:
    """Weighted reciprocal-rank fusion: sum of ``weight / (k + rank)`` over the rankers."""
    fused: dict[int, float] = {}
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        for rank, (item, _score) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def max_normalised(scores: Mapping[int, float]) -> dict[int, float]:
    """Scores divided by the best one (BM25 has no fixed scale; this puts the best match at 1
    and keeps the gaps proportional). Non-positive or empty input gives zeros."""
    top = max(scores.values(), default=0.0)
    if top <= 0:
        return {item: 0.0 for item in scores}
    return {item: max(score, 0.0) / top for item, score in scores.items()}


def weighted_sum(parts: Mapping[str, Mapping[int, float]], weights: Mapping[str, float]) -> dict[int, float]:
    """Score fusion: ``sum(weight * score)``; an item missing from a part scores 0 there."""
    fused: dict[int, float] = {}
    for name, scores in parts.items():
        weight = weights.get(name, 1.0)
        for item, score in scores.items():
            fused[item] = fused.get(item, 0.0) + weight * score
    return fused


# --- the query's shape -----------------------------------------------------------------

_QUESTION_LEAD = re.compile(
    r"^\s*(?:how\s+(?:do|can|could|would|should)\s+(?:i|we|you|one)\s+|how\s+to\s+|"
    r"what(?:'s|\s+is|\s+are)\s+(?:the\s+)?(?:best\s+)?(?:way|command|tool)s?\s+to\s+|"
    r"is\s+there\s+a\s+(?:way|command|tool)\s+to\s+|i\s+(?:want|need)\s+to\s+)",
    re.IGNORECASE)
_QUESTION_WORDS = frozenset("how why what which when where who whose is are can could should does do".split())
# a word with code in it: ::, !, #[, <>, (), --flag, -x, snake_case, CamelCase, dotted.name, a=b
_CODE_TOKEN = re.compile(
    r"(?:::|!|#\[|[<>(){}\[\]=]|^-{1,2}\w|\w_\w|[a-z][A-Z]|^[A-Z][a-z]+[A-Z]|\w\.\w|/)")


@dataclass(frozen=True)
class QueryShape:
    words: int
    question: bool  # starts with a question word or ends with '?'
    quoted: bool  # has "..." or `...`
    code_tokens: int  # words that look like code, flags or identifiers

    @property
    def keywordish(self) -> bool:
        """A query BM25 is good at: quoted text, code, or a short phrase that is not a question."""
        return self.quoted or self.code_tokens > 0 or (not self.question and self.words <= 3)


def query_shape(query: str) -> QueryShape:
    words = query.split()
    lower = [w.lower().strip("?,.") for w in words]
    question = bool(words) and (lower[0] in _QUESTION_WORDS or query.rstrip().endswith("?"))
    quoted = bool(re.search(r'"[^"]+"|`[^`]+`', query))
    code = sum(1 for w in words if _CODE_TOKEN.search(w.strip("\"'`?,")))
    return QueryShape(words=len(words), question=question, quoted=quoted, code_tokens=code)


def question_core(query: str) -> str:
    """The task inside a question ("how do I list open ports" -> "list open ports"); the
    query itself when it has no such lead-in or nothing is left after it."""
    core = _QUESTION_LEAD.sub("", query, count=1).strip().rstrip("?").strip()
    return core or query.strip()


# --- evidence: how much BM25 knows about this query -------------------------------------


def idf(matching: int, total: int) -> float:
    """BM25's inverse document frequency of a term matched by ``matching`` of ``total`` chunks
    (always positive)."""
    return math.log(1.0 + (total - matching + 0.5) / (matching + 0.5))


def idf_coverage(matches: Mapping[str, Iterable[int]], term_idf: Mapping[str, float]) -> dict[int, float]:
    """Each item's share of the query's IDF mass: the summed IDF of the query terms it
    contains over the summed IDF of all of them (1.0: it has every term; 0.5: half the weight)."""
    mass = sum(term_idf.values())
    if mass <= 0:
        return {}
    out: dict[int, float] = {}
    for term, items in matches.items():
        for item in items:
            out[item] = out.get(item, 0.0) + term_idf.get(term, 0.0) / mass
    return out


@dataclass(frozen=True)
class KeywordEvidence:
    """What BM25's own results say about how much to trust it for one query."""

    coverage: float  # share of the query's IDF mass that BM25's best document matches
    margin: float  # (best - second) / best BM25 document score: a clear winner or a crowd
    agrees: bool  # BM25's best document is among semantic's top ``agree_k`` documents
    top: int | None  # BM25's best document

    def as_dict(self) -> dict[str, float | bool | int | None]:
        return {"coverage": round(self.coverage, 4), "margin": round(self.margin, 4), "agrees": self.agrees,
                "top": self.top}


def keyword_evidence(keyword: Mapping[int, float], semantic: Mapping[int, float], coverage: Mapping[int, float],
                     agree_k: int = 10) -> KeywordEvidence:
    """The evidence of BM25's document scores ``keyword`` for one query, beside semantic's
    document scores and each document's IDF coverage (:func:`idf_coverage`)."""
    if not keyword:
        return KeywordEvidence(0.0, 0.0, False, None)
    order = ranked(keyword)
    top, best = order[0]
    second = order[1][1] if len(order) > 1 else 0.0
    margin = (best - second) / best if best > 0 else 0.0
    agrees = top in {d for d, _ in ranked(semantic)[:agree_k]}
    return KeywordEvidence(coverage.get(top, 0.0), margin, agrees, top)


@dataclass(frozen=True)
class EvidenceGate:
    """BM25's weight for one query, as a factor in [0, 1] of the weight its shape allows.

    BM25 is trusted when its best document holds most of the query's rare words (IDF
    coverage at least ``min_coverage``; full trust from ``full_coverage``), or when it holds
    fewer but semantic ranks that document among its own best (``agreement``: the factor
    the coverage test is relaxed to). A query not shaped like keywords (a question or a
    phrase of more than three words) must also have that agreement
    (``questions_need_agreement``): for a natural question, a page that holds its words but
    that semantic does not rank among its best is the incidental match issue 22 is about.
    Each document's BM25 score is further scaled by its own coverage raised to ``doc_power``
    (0: not), so a page that shares one incidental word of a question gains little. When the
    gate is shut the factor is 0 and hybrid ranks exactly as semantic does. Chosen on the
    tune halves (docs/search.md)."""

    min_coverage: float = 0.7
    full_coverage: float = 0.9
    agreement_min_coverage: float = 0.7  # the lower bar when semantic agrees (relaxing it did not win)
    min_margin: float = 0.0  # BM25's best must lead the second by this share
    doc_power: float = 1.0
    questions_need_agreement: bool = True

    def factor(self, evidence: KeywordEvidence, *, keyword_shaped: bool) -> float:
        """The factor for ``evidence``; ``keyword_shaped``: :attr:`QueryShape.keywordish`."""
        return self.decide(evidence, keyword_shaped=keyword_shaped)[0]

    def reason(self, evidence: KeywordEvidence, *, keyword_shaped: bool) -> str:
        """Why the factor is what it is, in a few words (for ``--explain``)."""
        return self.decide(evidence, keyword_shaped=keyword_shaped)[1]

    def decide(self, evidence: KeywordEvidence, *, keyword_shaped: bool) -> tuple[float, str]:
        """The factor and its reason together."""
        if evidence.top is None:
            return 0.0, "no BM25 match"
        bar = min(self.min_coverage, self.agreement_min_coverage) if evidence.agrees else self.min_coverage
        if evidence.coverage < bar:
            return 0.0, f"BM25's best holds {evidence.coverage:.1%} of the query's IDF mass, under {bar:.0%}"
        if self.questions_need_agreement and not keyword_shaped and not evidence.agrees:
            return 0.0, "a natural-language query, and semantic does not rank BM25's best among its own top results"
        if evidence.margin < self.min_margin:
            return 0.0, f"BM25's best leads by {evidence.margin:.1%}, under {self.min_margin:.0%}"
        if self.full_coverage <= bar:
            return 1.0, "open"
        factor = min(1.0, (evidence.coverage - bar) / (self.full_coverage - bar))
        if factor >= 1.0:
            return factor, "open"
        return factor, f"partly open: coverage {evidence.coverage:.1%}, full at {self.full_coverage:.0%}"


def gated_keyword_scores(keyword: Mapping[int, float], coverage: Mapping[int, float],
                         doc_power: float) -> dict[int, float]:
    """BM25 document scores normalised by the best and scaled by each document's own IDF
    coverage to ``doc_power``."""
    normalised = max_normalised(keyword)
    if doc_power <= 0:
        return normalised
    return {d: s * coverage.get(d, 0.0) ** doc_power for d, s in normalised.items()}
