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
