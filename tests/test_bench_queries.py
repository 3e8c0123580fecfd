"""The labelled queries of the benchmarks: the "paraphrase-howto" set shares no content word
with the page each query was written from (bench/check_queries.py), and both sets are split
once into tune and held-out halves."""

from __future__ import annotations

import importlib.util
import json
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
