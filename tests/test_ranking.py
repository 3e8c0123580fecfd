"""The pure ranking functions, on hand-made score lists."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.documents import ranking

DOC_OF = {1: 10, 2: 10, 3: 20, 4: 30, 5: 30, 6: 30}


def test_document_max_keeps_each_documents_best_chunk_and_ignores_unknown_chunks():
    hits = [(1, 0.4), (2, 0.9), (3, 0.5), (99, 1.0)]
    assert ranking.document_max(hits, DOC_OF) == {10: 0.9, 20: 0.5}


def test_document_top_mean_averages_the_n_best_and_fewer_when_a_document_has_fewer():
    hits = [(4, 0.9), (5, 0.5), (6, 0.7), (3, 0.8)]
    scores = ranking.document_top_mean(hits, DOC_OF, n=2)
    assert scores[30] == pytest.approx((0.9 + 0.7) / 2)
    assert scores[20] == pytest.approx(0.8)


def test_document_softmax_lies_between_the_max_and_the_max_plus_t_log_n():
    hits = [(4, 0.9), (5, 0.85), (6, 0.2)]
    t = 0.05
    score = ranking.document_softmax(hits, DOC_OF, t)[30]
    assert 0.9 < score < 0.9 + t * math.log(3)
    # a lone chunk scores exactly its own score
    assert ranking.document_softmax([(3, 0.6)], DOC_OF, t)[20] == pytest.approx(0.6)


def test_ranked_orders_best_first_with_ties_broken_by_id():
    assert ranking.ranked({7: 0.5, 3: 0.9, 5: 0.5}) == [(3, 0.9), (5, 0.5), (7, 0.5)]


def test_rrf_sums_weighted_reciprocal_ranks():
    fused = ranking.rrf({"a": [(1, 9.0), (2, 8.0)], "b": [(2, 0.3)]}, {"a": 1.0, "b": 0.5}, k=10)
    assert fused[1] == pytest.approx(1 / 11)
    assert fused[2] == pytest.approx(1 / 12 + 0.5 / 11)


def test_max_normalised_puts_the_best_at_one_and_keeps_proportions():
    scores = ranking.max_normalised({1: 8.0, 2: 2.0, 3: -1.0})
    assert scores == {1: 1.0, 2: 0.25, 3: 0.0}
    assert ranking.max_normalised({}) == {}
    assert ranking.max_normalised({1: -3.0}) == {1: 0.0}


def test_weighted_sum_counts_a_missing_item_as_zero_in_that_part():
    fused = ranking.weighted_sum({"s": {1: 0.6, 2: 0.5}, "k": {2: 1.0, 3: 0.4}}, {"s": 1.0, "k": 0.2})
    assert fused == pytest.approx({1: 0.6, 2: 0.7, 3: 0.08})


@pytest.mark.parametrize("query, keywordish", [
    ("how do I see which process listens on a port", False),
    ("why does Rust have the question mark operator", False),
    ("utility that reports the disk space used by each directory", False),
    ("tar -xzvf", True),
    ("#[non_exhaustive]", True),
    ("std::thread::scope", True),
    ("RefCell::replace", True),
    ('find "connection refused"', True),
    ("MaybeUninit", True),
    ("hyperfine", True),
    ("type_alias_impl_trait", True),
])
def test_query_shape_tells_questions_from_identifiers(query, keywordish):
    assert ranking.query_shape(query).keywordish is keywordish


def test_query_shape_counts_words_and_questions():
    shape = ranking.query_shape("What is pointer provenance?")
    assert shape.words == 4 and shape.question and not shape.quoted and shape.code_tokens == 0


@pytest.mark.parametrize("query, core", [
    ("how do I list open ports", "list open ports"),
    ("How can I compress a file?", "compress a file"),
    ("how to undo a commit", "undo a commit"),
    ("what is the best way to resize images", "resize images"),
    ("tar -xzvf", "tar -xzvf"),
    ("how do I", "how do I"),
])
def test_question_core_strips_only_the_lead_in(query, core):
    assert ranking.question_core(query) == core


# --- evidence-gated fusion ---------------------------------------------------------------


def test_idf_is_higher_for_rarer_terms_and_always_positive():
    assert ranking.idf(1, 1000) > ranking.idf(100, 1000) > ranking.idf(1000, 1000) > 0


def test_idf_coverage_is_each_items_share_of_the_querys_idf_mass():
    term_idf = {"lock": 3.0, "screen": 1.0}
    coverage = ranking.idf_coverage({"lock": [1, 2], "screen": [2, 3]}, term_idf)
    assert coverage == pytest.approx({1: 0.75, 2: 1.0, 3: 0.25})
    assert ranking.idf_coverage({"x": [1]}, {}) == {}


def test_keyword_evidence_reads_the_best_documents_coverage_margin_and_semantic_agreement():
    keyword = {10: 8.0, 20: 6.0, 30: 1.0}
    semantic = {20: 0.9, 10: 0.5, 40: 0.8}
    e = ranking.keyword_evidence(keyword, semantic, {10: 0.4, 20: 1.0}, agree_k=2)
    assert (e.top, e.coverage, e.margin, e.agrees) == (10, 0.4, pytest.approx(0.25), False)  # 10 is third
    assert ranking.keyword_evidence(keyword, semantic, {10: 0.4}, agree_k=3).agrees
    empty = ranking.keyword_evidence({}, semantic, {})
    assert empty.top is None and ranking.EvidenceGate().factor(empty, keyword_shaped=True) == 0.0


def test_the_gate_is_shut_below_the_coverage_bar_and_opens_linearly_to_full():
    gate = ranking.EvidenceGate(min_coverage=0.6, full_coverage=0.9, agreement_min_coverage=0.3)
    e = ranking.KeywordEvidence

    def factor(evidence: ranking.KeywordEvidence) -> float:
        return gate.factor(evidence, keyword_shaped=True)

    assert factor(e(0.5, 0.9, False, 1)) == 0.0  # one incidental word: semantic alone
    assert factor(e(0.75, 0.1, False, 1)) == pytest.approx(0.5)
    assert factor(e(1.0, 0.0, False, 1)) == 1.0
    # semantic ranks BM25's best among its own: the lower bar applies
    assert factor(e(0.5, 0.1, True, 1)) == pytest.approx((0.5 - 0.3) / (0.9 - 0.3))
    assert factor(e(0.2, 0.1, True, 1)) == 0.0
    assert ranking.EvidenceGate(min_margin=0.2).factor(e(1.0, 0.1, False, 1), keyword_shaped=True) == 0.0


def test_a_question_needs_semantic_to_agree_with_bm25s_best_and_a_keyword_query_does_not():
    """BM25's best holds every rare word of the query (coverage 1.0). For a keyword-shaped
    query that opens the gate; for a natural question it opens only when semantic ranks that
    document among its own top k, since a page holding a question's words that semantic does
    not rank is the incidental match of issue 22. Each answer says why."""
    gate = ranking.EvidenceGate()
    alone, agreed = ranking.KeywordEvidence(1.0, 0.5, False, 7), ranking.KeywordEvidence(1.0, 0.5, True, 7)
    assert gate.factor(alone, keyword_shaped=True) == 1.0
    assert gate.factor(alone, keyword_shaped=False) == 0.0
    assert "semantic does not rank" in gate.reason(alone, keyword_shaped=False)
    assert gate.factor(agreed, keyword_shaped=False) == 1.0 and gate.reason(agreed, keyword_shaped=False) == "open"
    assert ranking.EvidenceGate(questions_need_agreement=False).factor(alone, keyword_shaped=False) == 1.0
    low = ranking.KeywordEvidence(0.5, 0.5, True, 7)
    assert gate.factor(low, keyword_shaped=False) == 0.0 and "50.0%" in gate.reason(low, keyword_shaped=False)
    # both tests fail: the coverage, the primary one, is the reason given
    assert "IDF mass" in gate.reason(ranking.KeywordEvidence(0.5, 0.5, False, 7), keyword_shaped=False)
    partly = ranking.KeywordEvidence(0.8, 0.5, True, 7)
    assert gate.factor(partly, keyword_shaped=True) == pytest.approx(0.5)
    assert gate.reason(partly, keyword_shaped=True).startswith("partly open")
    assert gate.reason(ranking.KeywordEvidence(0.0, 0.0, False, None), keyword_shaped=True) == "no BM25 match"


def test_agreement_from_hand_made_score_lists_decides_a_questions_gate():
    """End to end on score lists: the same BM25 evidence opens the gate for a question when
    semantic ranks BM25's best in its top 10 and shuts it when eleven pages rank above."""
    keyword = {1: 9.0, 2: 3.0}
    coverage = {1: 1.0, 2: 0.4}
    close = {1: 0.50, **{d: 0.49 - d / 1000 for d in range(10, 20)}}
    far = {1: 0.40, **{d: 0.60 - d / 1000 for d in range(10, 21)}}
    gate = ranking.EvidenceGate()
    assert gate.factor(ranking.keyword_evidence(keyword, close, coverage), keyword_shaped=False) == 1.0
    assert gate.factor(ranking.keyword_evidence(keyword, far, coverage), keyword_shaped=False) == 0.0
    assert gate.factor(ranking.keyword_evidence(keyword, far, coverage), keyword_shaped=True) == 1.0


def test_gated_keyword_scores_shrink_documents_matching_less_of_the_query():
    keyword = {1: 10.0, 2: 10.0, 3: 5.0}
    coverage = {1: 1.0, 2: 0.5, 3: 1.0}
    assert ranking.gated_keyword_scores(keyword, coverage, 1.0) == pytest.approx({1: 1.0, 2: 0.5, 3: 0.5})
    assert ranking.gated_keyword_scores(keyword, coverage, 2.0)[2] == pytest.approx(0.25)
    assert ranking.gated_keyword_scores(keyword, coverage, 0.0) == ranking.max_normalised(keyword)


_evidence = st.builds(ranking.KeywordEvidence, st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.booleans(),
                      st.one_of(st.none(), st.integers(1, 50)))


@settings(max_examples=300, deadline=None)
@given(_evidence, st.floats(0.0, 1.0), st.booleans())
def test_the_gate_is_bounded_monotone_in_coverage_and_never_more_open_for_a_question(
        evidence: ranking.KeywordEvidence, more: float, keyword_shaped: bool) -> None:
    """Invariants of the gate over any evidence: its factor is in [0, 1]; more coverage never
    shuts it; a question's gate is never more open than a keyword query's on the same evidence,
    and equal to it when semantic agrees; no BM25 match, no say."""
    gate = ranking.EvidenceGate()
    factor = gate.factor(evidence, keyword_shaped=keyword_shaped)
    assert 0.0 <= factor <= 1.0 and gate.reason(evidence, keyword_shaped=keyword_shaped)
    richer = ranking.KeywordEvidence(max(evidence.coverage, more), evidence.margin, evidence.agrees, evidence.top)
    assert gate.factor(richer, keyword_shaped=keyword_shaped) >= factor
    question, keyword = gate.factor(evidence, keyword_shaped=False), gate.factor(evidence, keyword_shaped=True)
    assert question <= keyword and (question == keyword or not evidence.agrees)
    if evidence.top is None:
        assert factor == 0.0
