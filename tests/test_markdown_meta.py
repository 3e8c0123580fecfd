"""Front matter, title and type of markdown files."""

from __future__ import annotations

import json
from pathlib import PurePath

import pytest

from conftest import Corpora
from indexer.documents.markdown_meta import DocMeta, first_h1, guess_type, parse_document, split_front_matter


def meta(text: str, path: str = "/notes/some-file.md") -> DocMeta:
    return parse_document(text, PurePath(path))


def test_yaml_front_matter() -> None:
    text = ("---\ntitle: My Note\ntype: Design\ndate: 2024-03-01\nwhen: 2024-03-01 10:30:00\n"
            "tags: [a, b]\nnested: {k: 1, on: true}\n---\n# Heading\n\nBody\n")
    m = meta(text)
    assert m.title == "My Note"
    assert m.document_type == "design"
    assert m.front_matter == {"title": "My Note", "type": "Design", "date": "2024-03-01",
                              "when": "2024-03-01T10:30:00", "tags": ["a", "b"], "nested": {"k": 1, "True": True}}
    json.dumps(m.front_matter)  # JSON-serialisable
    assert m.front_matter_error is None
    assert m.body_start_line == 9
    assert text.split("\n")[m.body_start_line - 1] == "# Heading"


def test_broken_yaml_is_recorded_and_skipped() -> None:
    text = "---\ntitle: [unclosed\n  bad: : :\n---\n# Real Title\n"
    m = meta(text)
    assert m.front_matter == {}
    assert m.front_matter_error and m.front_matter_error.startswith("front matter is not valid YAML")
    assert m.title == "Real Title"
    assert m.body_start_line == 5


def test_front_matter_that_is_not_a_mapping() -> None:
    m = meta("---\n- a\n- b\n---\n# T\n")
    assert m.front_matter == {} and "not a mapping" in (m.front_matter_error or "")
    assert m.body_start_line == 5


def test_plain_prose_between_rules_is_not_front_matter() -> None:
    assert split_front_matter("---\nJust a sentence.\n---\nmore\n") == ({}, None, 1)


def test_unclosed_front_matter_is_body() -> None:
    assert split_front_matter("---\ntitle: x\n\n# Heading\n") == ({}, None, 1)
    assert meta("---\ntitle: x\n\n# Heading\n").title == "Heading"


def test_empty_front_matter_and_dots_closer() -> None:
    assert split_front_matter("---\n---\nbody") == ({}, None, 3)
    assert split_front_matter("---\na: 1\n...\nbody") == ({"a": 1}, None, 4)


def test_toml_front_matter() -> None:
    m = meta('+++\ntitle = "Toml Title"\ndate = 2024-01-02\ntype = "PLAN"\n+++\n# H\n')
    assert (m.title, m.document_type, m.body_start_line) == ("Toml Title", "plan", 6)
    assert m.front_matter["date"] == "2024-01-02"
    broken = meta("+++\ntitle = \n+++\n# H\n")
    assert broken.front_matter_error and "TOML" in broken.front_matter_error and broken.title == "H"


def test_non_string_title_and_blank_type() -> None:
    m = meta("---\ntitle: 2024\ntype: '  '\n---\nx\n", "/n/report-q1.md")
    assert m.title == "2024"
    assert m.document_type == "report"  # a blank type falls back to the heuristics


def test_title_from_atx_h1() -> None:
    assert meta("intro\n\n## Not this\n# The Title ##\n# Second\n").title == "The Title"
    assert meta("# C#\n").title == "C#"
    assert meta("#NoSpace\n").title == "some-file"


def test_title_from_setext_h1() -> None:
    assert meta("Setext Title\n============\n\ntext\n").title == "Setext Title"
    assert meta("A title over\ntwo lines\n===\n").title == "A title over two lines"
    assert meta("Sub\n---\n\nbody\n").title == "some-file"  # level 2 is no title
    assert meta("- item\n===\n").title == "some-file"


def test_headings_inside_code_fences_are_ignored() -> None:
    text = "```sh\n# a shell comment\n```\n~~~~\n# not either\n~~~\nstill code\n~~~~\n# Real\n"
    assert meta(text).title == "Real"
    assert first_h1(["```", "# inside", "```"]) is None


def test_stem_fallback() -> None:
    assert meta("no headings here\n", "/notes/My Note.md").title == "My Note"
    assert meta("", "/x/empty.markdown").title == "empty"


def test_crlf_text() -> None:
    m = meta("---\r\ntitle: CR\r\n---\r\n# H\r\n")
    assert (m.title, m.body_start_line) == ("CR", 4)
    assert meta("Setext\r\n======\r\n").title == "Setext"


@pytest.mark.parametrize("path,title,expected", [
    ("/proj/docs/design/cache.md", "Cache", "design"),
    ("/proj/docs/adr/0001-use-sqlite.md", "Use SQLite", "design"),
    ("/proj/docs/api-spec.md", "API", "specification"),
    ("/proj/specs/storage.md", "Storage", "specification"),
    ("/src/rust-rfcs/text/0001-private-fields.md", "0001-private-fields", "specification"),
    ("/proj/RFC-12.md", "x", "specification"),
    ("/proj/plans/q3.md", "Q3", "plan"),
    ("/proj/roadmap.md", "x", "plan"),
    ("/proj/weekly-report.md", "Weekly", "report"),
    ("/proj/incidents/2024-01-outage.md", "Postmortem: outage", "report"),
    ("/proj/notes/todo.md", "System architecture", "design"),
    ("/proj/docs/design/test-plan.md", "x", "plan"),  # the file name is nearer than the folder
    ("/proj/netplan.md", "netplan", None),
    ("/proj/notes/groceries.md", "Groceries", None),
])
def test_type_heuristics(path: str, title: str, expected: str | None) -> None:
    assert guess_type(PurePath(path), title) == expected


def test_front_matter_type_wins_over_heuristics() -> None:
    assert meta("---\ntype: ' Meeting Notes '\n---\n", "/docs/design/x.md").document_type == "meeting notes"
    assert meta("# Design of X\n", "/n/x.md").document_type == "design"


def test_real_rfcs_parse_as_specifications(each_corpus: Corpora) -> None:
    files = each_corpus.rfc_files()
    assert len(files) > (600 if each_corpus.full else 20)
    kinds: dict[str | None, list[str]] = {}
    for path in files:
        m = parse_document(path.read_text(encoding="utf-8"), path)
        kinds.setdefault(m.document_type, []).append(path.stem)
        assert m.title and "\n" not in m.title
        json.dumps(m.front_matter)
    assert set(kinds) <= {"specification", "plan", "design", "report"}
    assert len(kinds["specification"]) > (0.95 if each_corpus.full else 0.7) * len(files)  # the sample has 5 others
    assert len(kinds) > 1
    for kind, stems in kinds.items():  # the others say so in their file name (1774-roadmap-2017)
        assert kind == "specification" or all(guess_type(PurePath(s), "") == kind for s in stems)


def test_yaml_dates_and_times_become_iso_strings() -> None:
    text = ("---\ntitle: Dated\ncreated: 2024-03-01T10:30:00+02:00\ndays: [2024-01-01, 2024-01-02]\n"
            "meta: {due: 2025-12-31}\n---\nbody\n")
    m = meta(text)
    assert m.front_matter["created"] == "2024-03-01T10:30:00+02:00"
    assert m.front_matter["days"] == ["2024-01-01", "2024-01-02"]
    assert m.front_matter["meta"] == {"due": "2025-12-31"}
    assert json.loads(json.dumps(m.front_matter)) == m.front_matter  # survives a JSON round trip
    assert m.body_start_line == 7 and text.split("\n")[6] == "body"


def test_body_start_line_without_and_with_front_matter() -> None:
    assert meta("# Title\n\ntext\n").body_start_line == 1
    assert meta("").body_start_line == 1
    assert meta("\ufeff---\ntitle: BOM\n---\n# H\n").body_start_line == 4
    assert meta("\ufeff---\ntitle: BOM\n---\n# H\n").title == "BOM"
    fm = "---\n" + "".join(f"k{i}: {i}\n" for i in range(10)) + "---\n"
    m = meta(fm + "# After\n")
    assert m.body_start_line == 13 and len(m.front_matter) == 10


def test_broken_yaml_does_not_stop_the_title_or_the_type() -> None:
    m = meta("---\ntype: [design\ntitle: x: y: z\n---\n\n# Recovered Title\n", "/proj/plans/q4.md")
    assert m.front_matter == {} and m.front_matter_error
    assert m.title == "Recovered Title"
    assert m.document_type == "plan"  # from the folder, since the front matter is lost
    assert m.body_start_line == 5


def test_toml_front_matter_dates_and_unclosed_toml() -> None:
    m = meta('+++\ntitle = "T"\nwhen = 1979-05-27T07:32:00Z\n[extra]\nday = 2020-02-29\n+++\n')
    assert m.front_matter["when"] == "1979-05-27T07:32:00+00:00"
    assert m.front_matter["extra"] == {"day": "2020-02-29"}
    json.dumps(m.front_matter)
    unclosed = meta('+++\ntitle = "T"\n\n# Body Title\n')
    assert (unclosed.front_matter, unclosed.title, unclosed.body_start_line) == ({}, "Body Title", 1)


def test_h1_in_fenced_code_before_the_real_setext_title() -> None:
    text = "Intro.\n\n```bash\n# install it\nmake\n```\n\nReal Title\n==========\n\n# Later H1\n"
    assert meta(text).title == "Real Title"
    assert meta("```\n# only in code\n```\n", "/a/fallback-name.md").title == "fallback-name"
    assert meta("    # indented code, not a heading\n", "/a/x.md").title == "x"


def test_closing_fence_indented_four_spaces_does_not_close() -> None:
    text = "~~~\n    ~~~\n# shell comment\n~~~\n\nReal Title\n==========\n"
    assert meta(text).title == "Real Title"


@pytest.mark.parametrize("path,expected", [
    ("/repo/design/storage.md", "design"),
    ("/repo/docs/storage-spec.md", "specification"),
    ("/repo/plans/2025/q1.md", "plan"),
    ("/repo/status-report.md", "report"),
    ("/repo/reports/2024/jan.md", "report"),
    ("/repo/notes/shopping.md", None),
    ("/a/b/c/design/d/e/deep.md", None),  # only the two nearest folders count
])
def test_type_from_path_through_parse_document(path: str, expected: str | None) -> None:
    assert meta("plain text\n", path).document_type == expected


def test_front_matter_type_is_lower_cased_and_trimmed() -> None:
    assert meta("---\ntype: REPORT\n---\n", "/repo/design/x.md").document_type == "report"
    assert meta("+++\ntype = \"  Plan \"\n+++\n", "/x.md").document_type == "plan"
    assert meta("---\ntype: 42\n---\n", "/repo/design/x.md").document_type == "design"  # not a string


def test_tldr_pages_take_their_title_from_the_first_line(each_corpus: Corpora) -> None:
    files = each_corpus.tldr_pages()[::100 if each_corpus.full else 1]
    assert len(files) > 30
    for path in files:
        text = path.read_text(encoding="utf-8")
        m = parse_document(text, path)
        first = text.split("\n", 1)[0]
        assert first.startswith("# ")
        assert m.title == first[2:].strip(), path
        assert (m.front_matter, m.front_matter_error, m.body_start_line) == ({}, None, 1)
