"""The labelled queries of the benchmarks: the "paraphrase-howto" set shares no content word
with the page each query was written from (bench/check_queries.py), and both sets are split
once into tune and held-out halves."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, corpus, full_corpus

BENCH = REPO_ROOT / "bench"


def _checker():
    spec = importlib.util.spec_from_file_location("check_queries", BENCH / "check_queries.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stemmer_folds_endings_so_a_near_copy_counts_as_shared():
    check = _checker()
    assert check.content_words("How do I compress the directories?") == check.content_words("compression directory")
    assert check.content_words("how do I do it") == set()  # stop words only


def test_a_query_reusing_its_pages_words_is_reported_and_a_paraphrase_is_not():
    check = _checker()
    root = corpus().root
    page = "tldr/pages/common/tar.md"
    words = check.content_words(check.page_text(root / page))
    assert "archiv" in words  # tar's description: "Archiving utility."
    copying = {"q": "how do I archive a folder", "kind": check.KIND, "relevant": [page]}
    paraphrase = {"q": "how do I bundle a folder into one blob", "kind": check.KIND, "relevant": [page]}
    assert check.problems([copying, paraphrase], root) == [
        f"'how do I archive a folder' shares ['archiv'] with {page}"]
    assert check.problems([{**copying, "relevant": ["tldr/pages/common/absent.md"]}], root)[0].endswith(
        "no such file tldr/pages/common/absent.md")


def test_every_paraphrase_query_avoids_its_pages_words_and_the_sets_are_split():
    root = full_corpus().root
    check = _checker()
    queries = json.loads((BENCH / "queries_paraphrase.json").read_text())["queries"]
    assert len(queries) >= 150 and {q["kind"] for q in queries} == {check.KIND}
    assert check.problems(queries, root) == []
    for path in (BENCH / "queries.json", BENCH / "queries_paraphrase.json"):
        splits = [q["split"] for q in json.loads(path.read_text())["queries"]]
        assert set(splits) == {"tune", "heldout"} and abs(splits.count("tune") - splits.count("heldout")) <= len(splits) // 20
    assert {Path(r).parts[0] for q in queries for r in q["relevant"]} == {"tldr", "rust-rfcs"}


def test_the_fresh_judge_set_is_whole_and_never_split_for_tuning():
    """bench/queries_fresh.json: an independent set, only ever judged (split 'judge'), every
    labelled file present, no question twice, its source page among its answers."""
    root = full_corpus().root
    queries = json.loads((BENCH / "queries_fresh.json").read_text())["queries"]
    assert len(queries) >= 150 and {q["split"] for q in queries} == {"judge"}
    assert {q["kind"] for q in queries} == {"fresh-howto", "fresh-concept", "fresh-keyword", "fresh-paraphrase"}
    assert len({q["q"].lower() for q in queries}) == len(queries)
    assert all(q["source"] in q["relevant"] for q in queries)
    missing = [r for q in queries for r in q["relevant"] if not (root / r).is_file()]
    assert missing == []


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pooled_judgments_add_only_unlisted_existing_pages_of_known_queries():
    """bench/judgments_pooled.json (bench/pool_judgments.py): each added page is a real file,
    not already one of the query's labels, for a query of one of the sets; and the controls
    (labelled pages judged blind among the pooled ones) were counted."""
    root = full_corpus().root
    pooled = json.loads((BENCH / "judgments_pooled.json").read_text())
    queries = {q["q"]: q for name in ("queries.json", "queries_paraphrase.json", "queries_fresh.json")
               for q in json.loads((BENCH / name).read_text())["queries"]}
    assert set(pooled["pooled"]) <= set(queries)
    for text, pages in pooled["pooled"].items():
        assert pages and len(set(pages)) == len(pages)
        assert not set(pages) & set(queries[text]["relevant"]), text
        assert all((root / p).is_file() for p in pages), text
    assert pooled["controls"] > 100 and 0 <= pooled["controls_agreeing"] <= pooled["controls"]
    assert pooled["judged_pages"] >= sum(len(p) for p in pooled["pooled"].values()) + pooled["controls"]


def test_the_paired_comparison_reports_its_interval_and_sign_test():
    paired = _bench_module("bench_search").paired
    same = paired([1.0, 0.5, 0.0], [1.0, 0.5, 0.0])
    assert same == {"delta": 0.0, "low": 0.0, "high": 0.0, "up": 0, "down": 0, "p": 1.0}
    better = paired([1.0] * 10, [0.5] * 10)  # ten of ten queries up: p = 2 / 2**10
    assert better["delta"] == 0.5 and better["low"] == better["high"] == 0.5
    assert (better["up"], better["down"], better["p"]) == (10, 0, round(2 / 1024, 4))
    mixed = paired([1.0, 0.5, 0.25, 1.0], [0.5, 1.0, 0.25, 0.5])
    assert mixed["low"] < mixed["delta"] < mixed["high"] and (mixed["up"], mixed["down"]) == (2, 1)
    assert mixed["p"] == 1.0  # 2 up, 1 down: no evidence either way


def test_merging_judgments_adds_the_pages_judged_to_answer_and_counts_the_controls(tmp_path: Path):
    """bench/pool_judgments.py merge, as run: a labelled page judged blind is a control (counted,
    never added); an unlabelled page judged to answer is added; one judged not to answer is not.
    A pooled page left without a judgment refuses the merge and writes nothing."""
    pool = _bench_module("pool_judgments")
    q = json.loads((BENCH / "queries.json").read_text())["queries"][0]
    key, labelled = pool.qid(q["q"]), q["relevant"][0]
    pages = [labelled, "tldr/pages/common/added.md", "tldr/pages/common/rejected.md"]
    (tmp_path / "batch-00.jsonl").write_text(json.dumps(
        {"qid": key, "query": q["q"], "candidates": [{"page": p, "text": ""} for p in pages]}) + "\n")
    out = tmp_path / "pooled.json"

    def merge() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(BENCH / "pool_judgments.py"), "merge", str(tmp_path), "--out", str(out)],
                              capture_output=True, text=True, timeout=60)

    judged = tmp_path / "judged-00.jsonl"
    judged.write_text("".join(json.dumps({"qid": key, "page": p, "answers": a}) + "\n"
                              for p, a in zip(pages[:2], (True, True))))
    refused = merge()
    assert refused.returncode == 1 and "1 pooled pages have no judgment" in refused.stderr and not out.exists()
    with judged.open("a") as f:
        f.write(json.dumps({"qid": key, "page": pages[2], "answers": False}) + "\n")
    done = merge()
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["pooled"] == {q["q"]: ["tldr/pages/common/added.md"]}
    assert (result["judged_pages"], result["controls"], result["controls_agreeing"]) == (3, 1, 1)


def test_the_committed_judgments_rebuild_the_pooled_labels_exactly(tmp_path: Path):
    """bench/judgments/ holds every blind judgment (with its note); merging them again gives
    bench/judgments_pooled.json byte for byte, so the labels can be audited and rebuilt."""
    out = tmp_path / "pooled.json"
    done = subprocess.run([sys.executable, str(BENCH / "pool_judgments.py"), "merge", str(BENCH / "judgments"),
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (BENCH / "judgments_pooled.json").read_text()
    rows = [json.loads(line) for path in sorted((BENCH / "judgments").glob("judged-*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
    assert len(rows) == json.loads(out.read_text())["judged_pages"] and all(r["note"] for r in rows)
