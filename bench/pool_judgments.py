"""Pooled relevance judgments (TREC-style pooling) for the labelled query sets.

The query sets list the files that answer each question as their writers found them. A page
that also answers but was not listed counts against whichever ranker finds it, so a ranker
that surfaces unlisted answers looks worse than it is. Pooling mends that without favouring
any ranker: the top ``--depth`` documents of every mode (keyword, semantic, hybrid) for
every query are put in one pool, the pages not labelled yet are judged blind (the judge sees
the question and the page, never which ranker found it or how high), and the pages judged to
answer are added as ``pooled`` labels. A share of already-labelled pages is mixed in as
controls, unmarked, to measure how far the judges agree with the original labels. The judges'
instructions are bench/judging_rules.md; their judgments, each with its note, are kept in
bench/judgments/ (``merge bench/judgments`` rebuilds bench/judgments_pooled.json from them).

    .venv/bin/python bench/pool_judgments.py tasks --db INDEX.db --out DIR   # DIR/batch-NN.jsonl to judge
    .venv/bin/python bench/pool_judgments.py merge DIR                        # DIR/judged-*.jsonl -> bench/judgments_pooled.json

``bench_search.py`` and ``bench_fusion.py`` count a ``pooled`` page as relevant beside the
set's own labels (``--labels original`` to leave them out); the file records which pages were
judged and the controls' agreement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POOLED = Path(__file__).with_name("judgments_pooled.json")
SETS = [Path(__file__).with_name(n) for n in ("queries.json", "queries_paraphrase.json", "queries_fresh.json")]
CONTROL_EVERY = 3  # one query in three gets one of its labelled pages as an unmarked control
BATCHES = 6


def qid(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def excerpt(path: Path, limit: int = 1200) -> str:
    """What the judge reads: a tldr page whole (cut at ``limit``); an RFC's title, first prose
    paragraph and section headings (the judge may open the file for more)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if "/tldr/" in str(path):
        return text[:limit]
    from indexer.documents.markdown_meta import document_summary
    title = path.stem
    headings = [line.strip() for line in text.splitlines() if line.startswith("#")][:14]
    return (document_summary(text, title, max_words=120) + "\nSections: " + " | ".join(headings))[:limit]


def tasks(args: argparse.Namespace) -> None:
    import bench_fusion as bf
    from indexer.config import load_config
    from indexer.documents import ranking
    from indexer.documents.embedding import make_embedder

    embedder = make_embedder(load_config({}).model, threads=2, backend="onnx", cache_dir=args.db.parent / "models")
    queries = [q for path in SETS for q in json.loads(path.read_text())["queries"]]
    vectors = bf.query_vectors(sorted({t for q in queries for t in (q["q"], ranking.question_core(q["q"]))}),
                               embedder, args.db.parent)
    corpus = bf.Corpus(args.db, embedder)
    bf.CORPUS, bf.DOC_OF = corpus, corpus.doc_of
    root = bf.CORPORA
    rng = random.Random(2026)
    out: list[dict] = []
    for n, q in enumerate(queries):
        e = corpus.evidence(q, lambda t: vectors[t])
        pool: set[str] = set()
        for order in (bf.docs(bf.keyword(e)), bf.docs(bf.with_summary(e, 0.2, combine="sum")),
                      bf.gated(e, bf.G())):  # hybrid as it ranked when the pool was judged
            pool |= {str(Path(corpus.path_of[d]).relative_to(root)) for d in order[:args.depth]}
        pages = sorted(pool - set(q["relevant"]))
        controls = [rng.choice(sorted(q["relevant"]))] if n % CONTROL_EVERY == 0 and q["relevant"] else []
        shown = pages + controls
        rng.shuffle(shown)
        if not shown:
            continue
        out.append({"qid": qid(q["q"]), "query": q["q"],
                    "candidates": [{"page": p, "text": excerpt(root / p)} for p in shown]})
    args.out.mkdir(parents=True, exist_ok=True)
    rng.shuffle(out)
    for b in range(BATCHES):
        part = out[b::BATCHES]
        (args.out / f"batch-{b:02d}.jsonl").write_text("".join(json.dumps(t) + "\n" for t in part))
        print(f"batch-{b:02d}.jsonl: {len(part)} queries, {sum(len(t['candidates']) for t in part)} pages")


def merge(args: argparse.Namespace) -> None:
    """The judgments in DIR/judged-*.jsonl into ``args.out``; refused (exit 1, nothing
    written) while a pooled page has no judgment or a judgment names an unknown question."""
    queries = {qid(q["q"]): q for path in SETS for q in json.loads(path.read_text())["queries"]}
    judged: dict[str, dict[str, bool]] = {}
    for path in sorted(args.dir.glob("judged-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if not isinstance(row.get("answers"), bool):
                    sys.exit(f"pool_judgments: {path.name}: 'answers' must be true or false: {line[:120]}")
                judged.setdefault(row["qid"], {})[row["page"]] = row["answers"]
    unknown = sorted(set(judged) - set(queries))
    if unknown:
        sys.exit(f"pool_judgments: judgments for {len(unknown)} questions in no query set (qid {unknown[0]})")
    pooled_tasks = [json.loads(line) for path in sorted(args.dir.glob("batch-*.jsonl")) for line in path.read_text().splitlines()]
    unjudged = sum(1 for t in pooled_tasks for c in t["candidates"] if c["page"] not in judged.get(t["qid"], {}))
    if unjudged:
        sys.exit(f"pool_judgments: {unjudged} pooled pages have no judgment; judge them before merging")
    pooled: dict[str, list[str]] = {}
    agree = controls = 0
    for key, pages in sorted(judged.items()):
        q = queries[key]
        for page, answers in sorted(pages.items()):
            if page in q["relevant"]:
                controls += 1
                agree += answers
            elif answers:
                pooled.setdefault(q["q"], []).append(page)
    doc = {"about": __doc__.split("\n\n")[1].replace("\n", " "),
           "depth": args.depth, "judged_pages": sum(len(p) for p in judged.values()),
           "controls": controls, "controls_agreeing": agree,
           "pooled": pooled}
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"{doc['judged_pages']} judgments; {sum(len(p) for p in pooled.values())} pages added to "
          f"{len(pooled)} queries; controls: {agree} of {controls} judged to answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tasks")
    t.add_argument("--db", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--depth", type=int, default=3)
    m = sub.add_parser("merge")
    m.add_argument("dir", type=Path)
    m.add_argument("--depth", type=int, default=3)
    m.add_argument("--out", type=Path, default=POOLED)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    tasks(args) if args.cmd == "tasks" else merge(args)


if __name__ == "__main__":
    main()
