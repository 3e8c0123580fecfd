"""Learned fusion, measured against the hand-set evidence gate: a linear ranker over the
evidence of each candidate document (semantic, summary and chunk cosines, BM25, IDF coverage,
the gate's factor, the query's shape, rank features), trained with a pairwise logistic loss.

    .venv/bin/python bench/bench_learned_fusion.py --db INDEX.db

Tune half only (with the pooled labels, as bench_fusion.py), by 5-fold cross-validation
(folds by the SHA-1 of the question): each question is ranked by a model that never saw it,
so the figures say what the model would do on new questions of the same sets. Printed beside
semantic and the product's gated hybrid, with how many questions it ranks more than one
position below semantic. The evidence is bench_fusion.py's (same index, same caches).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_fusion as bf  # noqa: E402
from indexer.config import load_config  # noqa: E402
from indexer.documents import ranking  # noqa: E402
from indexer.documents.embedding import make_embedder  # noqa: E402

FEATURES = ("semantic - best", "chunk - best", "summary - best", "bm25 / best", "coverage", "bm25 x coverage",
            "gated term", "bm25 x coverage if keyword-shaped", "gated term x shape weight", "in semantic's top 10",
            "1/(60 + semantic rank)", "1/(60 + bm25 rank)", "gated term if question-shaped")
SETS = {"semantic + gated term": [0, 8], "semantic + gated term by shape": [0, 7, 12],
        "chunk + summary + gated term": [1, 2, 8], "chunk + summary + bm25 parts": [1, 2, 3, 5, 6, 8],
        "every feature": list(range(len(FEATURES)))}
CANDIDATES = 30  # per ranker


def features(e: bf.Evidence) -> tuple[list[int], np.ndarray]:
    gate = ranking.EvidenceGate(questions_need_agreement=False)  # the gated term as measured
    sem, chunk, summ = bf.with_summary(e, 0.2, combine="sum"), bf.semantic(e), e.summary
    kw = bf.keyword(e)
    kwn = ranking.max_normalised(kw)
    shaped = ranking.query_shape(e.query["q"]).keywordish
    factor = gate.factor(ranking.keyword_evidence(kw, sem, e.coverage, 10), keyword_shaped=shaped)
    keywordish = float(shaped)
    weight = 0.3 if keywordish else 0.1
    sd, kd = bf.docs(sem), bf.docs(kw)
    cands = list(dict.fromkeys(sd[:CANDIDATES] + kd[:CANDIDATES]))
    srank = {d: i for i, d in enumerate(sd, 1)}
    krank = {d: i for i, d in enumerate(kd, 1)}
    rows = []
    for d in cands:
        b, c = kwn.get(d, 0.0), e.coverage.get(d, 0.0)
        rows.append([sem.get(d, min(sem.values())) - max(sem.values()),
                     chunk.get(d, min(chunk.values())) - max(chunk.values()),
                     summ.get(d, min(summ.values())) - max(summ.values()),
                     b, c, b * c, b * c * factor, b * c * keywordish, b * c * factor * weight,
                     float(srank.get(d, 999) <= 10), 1 / (60 + srank.get(d, 999)), 1 / (60 + krank.get(d, 999)),
                     b * c * factor * (1 - keywordish)])
    return cands, np.array(rows)


def train(rows: list[tuple[bf.Evidence, list[int], np.ndarray, np.ndarray]], cols: list[int], l2: float) -> np.ndarray:
    """Pairwise logistic regression (each answer against every non-answer among the
    candidates: training only on the hardest ones teaches the model nothing about the rest,
    and it then lifts them), features standardised, L2 penalty, minimised by L-BFGS."""
    from scipy.optimize import minimize

    pairs = []
    for _e, _cands, x, y in rows:
        pos, neg = np.where(y)[0], np.where(~y)[0]
        if len(pos) and len(neg):
            pairs.extend(x[p, cols] - x[neg][:, cols] for p in pos)
    diffs = np.vstack(pairs)
    scale = diffs.std(axis=0) + 1e-9
    d = diffs / scale

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = d @ w
        value = np.logaddexp(0.0, -z).mean() + l2 * (w @ w) / 2
        grad = -(d * (0.5 * (1 - np.tanh(z / 2)))[:, None]).mean(axis=0) + l2 * w
        return float(value), grad

    start = np.zeros(len(cols))
    start[0] = 1.0
    return minimize(loss, start, jac=True, method="L-BFGS-B").x / scale


def answer_rank(order: list[int], relevant: set[str]) -> int:
    return next((i for i, d in enumerate(order[:10], 1) if bf.CORPUS.path_of[d] in relevant), bf.MISSING)


def report(name: str, got: dict[str, int], reference: dict[str, int], queries: list[dict]) -> None:
    def mrr(qs: list[dict], ranks: dict[str, int]) -> float:
        return statistics.mean(1 / ranks[q["q"]] if ranks[q["q"]] < bf.MISSING else 0.0 for q in qs)
    kinds = sorted({q["kind"] for q in queries})
    worse = sum(got[q["q"]] - reference[q["q"]] > 1 for q in queries)
    print(f"{name:52} {mrr(queries, got):.3f} worse {worse:3} | "
          + " ".join(f"{bf.SHORT.get(k, k)} {mrr([q for q in queries if q['kind'] == k], got):.3f}" for k in kinds),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    embedder = make_embedder(load_config({}).model, threads=os.cpu_count() or 1, backend="onnx",
                             cache_dir=args.db.parent / "models")
    queries = bf.load_queries("pooled")
    vectors = bf.query_vectors(sorted({t for q in queries for t in (q["q"], ranking.question_core(q["q"]))}),
                               embedder, args.db.parent)
    tune = [q for q in queries if q["split"] == "tune"]
    bf.CORPUS = bf.Corpus(args.db, embedder)
    bf.DOC_OF = bf.CORPUS.doc_of
    rows = []
    for q in tune:
        e = bf.CORPUS.evidence(q, lambda t: vectors[t])
        relevant = {str(bf.CORPORA / r) for r in q["relevant"]}
        cands, x = features(e)
        rows.append((e, cands, x, np.array([bf.CORPUS.path_of[d] in relevant for d in cands]), relevant))
    reference = {e.query["q"]: answer_rank(bf.docs(bf.with_summary(e, 0.2, combine="sum")), rel)
                 for e, *_rest, rel in rows}
    print(f"{len(tune)} tune questions (labels: own + pooled), 5-fold cross-validation; MRR@10, "
          "'worse': more than one position below semantic")
    report("semantic (chunk + summary 0.2)", reference, reference, tune)
    report("hybrid, the evidence gate without the question rule",
           {e.query["q"]: answer_rank(bf.gated(e, bf.G()), rel) for e, *_rest, rel in rows}, reference, tune)
    report("hybrid, the default gate",
           {e.query["q"]: answer_rank(bf.gated(e, ranking.EvidenceGate()), rel) for e, *_rest, rel in rows},
           reference, tune)
    fold = {e.query["q"]: int(hashlib.sha1(e.query["q"].encode()).hexdigest(), 16) % 5 for e, *_ in rows}
    for name, cols in SETS.items():
        for l2 in (0.0, 0.01, 0.1):
            got: dict[str, int] = {}
            for f in range(5):
                w = train([r[:4] for r in rows if fold[r[0].query["q"]] != f], cols, l2)
                for e, cands, x, _y, rel in (r for r in rows if fold[r[0].query["q"]] == f):
                    got[e.query["q"]] = answer_rank([cands[i] for i in np.argsort(-(x[:, cols] @ w), kind="stable")], rel)
            report(f"learned: {name}, L2 {l2}", got, reference, tune)


if __name__ == "__main__":
    main()
