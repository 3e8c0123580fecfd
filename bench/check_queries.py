"""Mechanical check of the "paraphrase-howto" queries (bench/queries_paraphrase.json): each
shares no content word with its answer page's title, description and headings (the page
it was written from, listed first, and its copies for other platforms).

    .venv/bin/python bench/check_queries.py [FILE]   # exit 1 and one line per offending query

Words are lowercased runs of letters and digits, stop words dropped, then reduced by a crude
stemmer (plural, -ing, -ed, -er, -ion, -ly ... endings removed, then cut to 6 letters) so that
"compress" / "compression" / "compressed" or "directory" / "directories" count as one word:
deliberately stricter than a real stemmer. The page side is everything a keyword ranker would
see first: the title (or file name), the summary the index embeds (title and first prose
paragraph: a tldr page's description, an RFC's Summary), every ``>`` description line and
every heading outside code fences.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.documents.markdown_meta import document_summary, parse_document  # noqa: E402

CORPORA = Path(os.environ.get("INDEXER_TEST_CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora")
QUERIES = Path(__file__).with_name("queries_paraphrase.json")
KIND = "paraphrase-howto"

STOP = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers him his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours out over own same she should so some such than that the their theirs them
then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself one way there get got make want need let
""".split())

_SUFFIXES = ("ations", "ation", "ings", "ing", "ions", "ion", "ies", "ied", "ers", "er", "ed", "es", "ly", "s")


def stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:6]


def content_words(text: str) -> set[str]:
    return {stem(w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP and len(w) > 1}


def page_text(path: Path) -> str:
    """Title, summary, description lines and headings (outside ``` / ~~~ fences)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    title = parse_document(text, path).title
    parts = [title, path.stem, document_summary(text, title)]
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (line.startswith("#") or line.startswith(">")) and "More information" not in line:
            parts.append(line.lstrip("#> "))
    return "\n".join(parts)


def answer_pages(query: dict) -> list[str]:
    """The page the query was written from (the first relevant one) and its copies for other
    platforms (a tldr page of the same name); other relevant pages are further answers."""
    name = Path(query["relevant"][0]).name
    first = query["relevant"][0]
    return [r for r in query["relevant"] if r == first or (r.startswith("tldr/") and Path(r).name == name)]


def shared_words(query: dict, root: Path = CORPORA) -> set[str]:
    words = content_words(query["q"])
    return set().union(*(words & content_words(page_text(root / r)) for r in answer_pages(query)))


def problems(queries: list[dict], root: Path = CORPORA) -> list[str]:
    out = []
    for q in queries:
        if q["kind"] != KIND:
            continue
        missing = [r for r in q["relevant"] if not (root / r).is_file()]
        if missing:
            out.append(f"{q['q']!r}: no such file {missing[0]}")
            continue
        shared = shared_words(q, root)
        if shared:
            out.append(f"{q['q']!r} shares {sorted(shared)} with {q['relevant'][0]}")
    return out


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else QUERIES
    queries = json.loads(path.read_text())["queries"]
    found = problems(queries)
    for line in found:
        print(line)
    print(f"{sum(q['kind'] == KIND for q in queries)} {KIND} queries, {len(found)} sharing a word", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
