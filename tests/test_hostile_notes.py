"""Issue 19 item 1: whatever one note holds, it ends ``synced`` or ``failed`` with a readable
reason, nothing escapes from it, the notes beside it are indexed, and its cost is bounded and
linear in its size. In-process here (the prepare path and a whole reconcile); the CLI and the
daemon on the same notes: tests/test_hostile_notes_e2e.py."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES_SCALE
from indexer.config import load_config
from indexer.documents import chunking, front_matter, markdown_meta, planning
from indexer.documents.sync import DocumentSync, Prepared, PrepareFailed
from indexer.documents.tokenizer import default_token_counter
from indexer.storage.sqlite import driver
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

pytestmark = pytest.mark.timeout(300)

RECURSIVE = "---\na: &x [*x]\n---\n# Recursive\n\nbody of the recursive note\n"
LAUGHS = ("---\nl0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
          + "".join(f"l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
          + "---\n# Laughs\n\nbody\n")
GOOD = "# Good note {i}\n\nA plain note about topic{i} and gardening.\n"


def good_notes(root: Path, count: int = 20) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = root / f"good{i:02d}.md"
        path.write_text(GOOD.format(i=i), encoding="utf-8")
        paths.append(path)
    return paths


def make_sync(tmp: Path, root: Path, counter=None) -> DocumentSync:
    config = load_config({"db": str(tmp / "index.db"), "roots": [str(root)]})
    return DocumentSync(config, embedder=HashEmbedder(dim=16), counter=counter or WhitespaceTokenCounter())


def rows(db: Path) -> dict[str, tuple[str, dict]]:
    conn = driver.connect(db)
    try:
        return {Path(r[0]).name: (r[1], json.loads(r[2])) for r in
                conn.execute("SELECT file_path, sync_status, metadata FROM document_index")}
    finally:
        conn.close()


def prepare(sync: DocumentSync, path: Path) -> Prepared | PrepareFailed:
    stat = path.stat()
    return sync._prepare_file(planning.DiskFile(path, stat.st_mtime_ns, stat.st_size))


# -- the reported notes ---------------------------------------------------------------------

def test_a_recursive_alias_is_skipped_and_the_other_notes_are_indexed(tmp_path: Path) -> None:
    """Before: RecursionError out of _jsonable, and none of the 20 good notes indexed."""
    root = tmp_path / "notes"
    good_notes(root)
    (root / "bad.md").write_text(RECURSIVE, encoding="utf-8")
    with make_sync(tmp_path, root) as sync:
        report = sync.run()
    got = rows(tmp_path / "index.db")
    assert len(got) == 21 and all(status == "synced" for status, _ in got.values()), got
    assert report.added == 21 and report.failed == 0
    error = got["bad.md"][1]["front_matter_error"]
    assert error == "front matter has a recursive alias *x (a value that contains itself); it was skipped"


@pytest.mark.timeout(60)
def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    """Before: nine aliases deep expanded 9^9 values in _jsonable (minutes)."""
    started = time.process_time()
    meta = markdown_meta.parse_document(LAUGHS, Path("laughs.md"))
    assert time.process_time() - started < 2.0
    assert meta.front_matter == {} and meta.title == "Laughs" and meta.body_start_line == 13
    assert meta.front_matter_error == (f"front matter expands to more than {front_matter.MAX_EXPANDED:,} "
                                       "characters through its aliases; it was skipped")


@pytest.mark.parametrize(("block", "error"), [
    ("a: " + "[" * 40 + "]" * 40, f"front matter nests deeper than {front_matter.MAX_DEPTH} levels; it was skipped"),
    ("a: &n [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]\nb: [[[[[[[[[[[[[[[[*n]]]]]]]]]]]]]]]]",
     f"front matter nests deeper than {front_matter.MAX_DEPTH} levels through its aliases; it was skipped"),
    ("a: &s x\n" + "".join(f"k{i}: *s\n" for i in range(front_matter.MAX_ALIASES + 1)),
     f"front matter uses more than {front_matter.MAX_ALIASES} aliases; it was skipped"),
    ("a: " + "x" * front_matter.MAX_BYTES,
     f"front matter is {front_matter.MAX_BYTES + 3:,} bytes, over the limit of {front_matter.MAX_BYTES:,}; it was skipped"),
    ("a: !!python/object/apply:os.system [echo hi]",
     "front matter is not valid YAML: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'"),
])
def test_front_matter_over_a_cap_is_skipped_with_the_cap_it_broke(block: str, error: str) -> None:
    meta = markdown_meta.parse_document(f"---\n{block}\n---\n# Title\n\nbody\n", Path("n.md"))
    assert (meta.front_matter, meta.front_matter_error, meta.title) == ({}, error, "Title")


def test_deep_toml_tables_are_refused_not_a_recursion_error() -> None:
    """tomllib builds ``[k0.k1…]`` without recursing; making it JSON-ready did recurse."""
    text = "+++\n[" + ".".join(f"k{i}" for i in range(3000)) + "]\nx = 1\n+++\nbody\n"
    meta = markdown_meta.parse_document(text, Path("deep.md"))
    assert meta.front_matter_error == f"front matter nests deeper than {front_matter.MAX_DEPTH} levels; it was skipped"


def test_values_json_cannot_hold_are_kept_as_text(tmp_path: Path) -> None:
    """Before: ``.inf`` reached the database as ``Infinity`` and the CHECK json_valid(metadata)
    failed the whole batch (no note of it indexed); a lone surrogate failed the note."""
    root = tmp_path / "notes"
    good_notes(root, 3)
    (root / "odd.md").write_text("---\nup: .inf\ndown: -.inf\nnan: .nan\nbig: 0x" + "f" * 40
                                 + "\nhuge: 0x" + "f" * 4000 + '\ntitle: "odd \\uD800 title"\n"k\\uDC00": 1'
                                 + "\n---\n# Odd\n", encoding="utf-8")
    with make_sync(tmp_path, root) as sync:
        sync.run()
    got = rows(tmp_path / "index.db")
    assert all(status == "synced" for status, _ in got.values()) and len(got) == 4
    fm = got["odd.md"][1]["front_matter"]
    assert (fm["up"], fm["down"], fm["nan"], fm["big"]) == ("inf", "-inf", None, str(int("f" * 40, 16)))
    assert fm["huge"] == "0x" + "f" * 4000
    assert fm["title"] == "odd \ufffd title" and fm["k\ufffd"] == 1  # a lone surrogate cannot be stored


def test_an_unexpected_exception_fails_that_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last resort in _prepare_file: a bug in parsing or chunking one file (here made to
    happen for one file) fails that file with the exception's type and message on one line."""
    root = tmp_path / "notes"
    good_notes(root, 5)
    (root / "trigger.md").write_text("# Trigger\n\nthe word that breaks the chunker\n", encoding="utf-8")
    real = chunking.chunk_markdown

    def chunk(text: str, *args, **kwargs):
        if "breaks the chunker" in text:
            raise ZeroDivisionError("boom\nsecond line")
        return real(text, *args, **kwargs)

    monkeypatch.setattr(chunking, "chunk_markdown", chunk)
    with make_sync(tmp_path, root) as sync:
        report = sync.run()
    got = rows(tmp_path / "index.db")
    assert got["trigger.md"][0] == "failed"
    assert got["trigger.md"][1]["last_error"] == "could not be indexed: ZeroDivisionError: boom second line"
    assert sorted(n for n, (s, _) in got.items() if s == "synced") == [f"good{i:02d}.md" for i in range(5)]
    assert report.failures == [{"path": str(root / "trigger.md"),
                                "reason": "could not be indexed: ZeroDivisionError: boom second line"}]


def test_a_file_name_that_is_not_utf8_is_skipped_not_fatal(tmp_path: Path) -> None:
    """Before: its path (surrogates from the OS's bytes) failed to encode in the first SQL
    statement that named it, a traceback, and no note indexed."""
    root = tmp_path / "notes"
    good_notes(root, 3)
    bad = Path(os.fsdecode(bytes(root) + b"/bad\xff.md"))
    bad.write_text("# Bad name\n\nbody\n", encoding="utf-8")
    (root / "sub\udcfe").mkdir()  # a directory too
    (root / "sub\udcfe" / "inside.md").write_text("# Inside\n", encoding="utf-8")
    with make_sync(tmp_path, root) as sync:
        report = sync.run()
        assert report.added == 3 and report.skipped == 2
        sync.reconcile(paths=[bad])  # as the watcher asks for one path
    assert sorted(rows(tmp_path / "index.db")) == ["good00.md", "good01.md", "good02.md"]


# -- cost linear in the size ----------------------------------------------------------------

def _cpu_seconds(text: str, counter) -> float:
    best = float("inf")
    for _ in range(2):
        started = time.process_time()
        meta = markdown_meta.parse_document(text, Path("x.md"))
        chunking.chunk_markdown(text, counter, title=meta.title, body_start=meta.body_start_line)
        markdown_meta.document_summary(text, meta.title, body_start=meta.body_start_line)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("line", ["# h\n", "    ```\n", "# a\n## b\n"], ids=["headings", "indented-fences", "nested"])
def test_cost_grows_linearly_with_the_lines(line: str) -> None:
    """Before: a file of ``# h`` lines cost O(n²) (the glued lead summed over all units before,
    bare headings carried by copying), a file of indented unclosed fences O(n²) (each one
    searched to the end). Eight times the lines must cost well under 64 times as much."""
    counter = default_token_counter()
    small, large = 1500, 12000
    ratio = _cpu_seconds(line * large, counter) / max(_cpu_seconds(line * small, counter), 1e-3)
    assert ratio < 24, f"{large} lines cost {ratio:.1f}x {small} lines"


# -- fuzzing --------------------------------------------------------------------------------

_WORDS = st.sampled_from(["alpha", "beta", "x", "lol", "über", "日本", "a:b", "'q'", '"d"', "#", "-", "*", "&", "!",
                          "\u200b", "\ufeff", "\t", "\x0c", "\u2028", "\\", "{", "}", "[", "]", "|", ">", "%"])
_SCALAR = st.one_of(
    st.lists(_WORDS, min_size=1, max_size=6).map(" ".join),
    st.sampled_from([".inf", "-.inf", ".nan", "~", "null", "yes", "2024-02-30", "2024-01-01T10:00:00Z", "0x" + "f" * 70,
                     "9" * 30, "1e400", "!!binary aGVsbG8=", "!!binary ###", "!!python/object:os.system x",
                     "!!python/name:os.system", "!custom tag", "!!set {a, b}", "!!omap [a: 1]", "!!timestamp nope",
                     "|\n  block\n  text", ">-\n  folded", "'unclosed", '"esc \\x00 \\uD800"', "*undefined"]),
    st.integers(min_value=1, max_value=200_000).map(lambda n: "y" * n),  # a huge scalar
)


@st.composite
def yaml_block(draw: st.DrawFn) -> str:
    """Front matter as a hostile author writes it: anchors, aliases (backwards, forwards,
    recursive, nested "laughs"), deep nesting in flow and block style, tags, huge scalars."""
    lines: list[str] = []
    anchors: list[str] = []
    for k in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["scalar", "anchor", "alias", "recursive", "laughs", "flow", "block", "merge", "junk"]))
        key = f"k{k}"
        if kind == "scalar":
            lines.append(f"{key}: {draw(_SCALAR)}")
        elif kind == "anchor":
            anchors.append(f"a{k}")
            lines.append(f"{key}: &a{k} [{', '.join(draw(st.lists(_SCALAR.filter(lambda s: chr(10) not in s), max_size=4)))}]")
        elif kind == "alias":
            name = draw(st.sampled_from(anchors)) if anchors else "nowhere"
            lines.append(f"{key}: [{', '.join([f'*{name}'] * draw(st.integers(1, 40)))}]")
        elif kind == "recursive":
            lines.append(f"{key}: &r{k} {draw(st.sampled_from(['[*r%d]', '{x: *r%d}', '[a, [b, *r%d]]'])) % k}")
        elif kind == "laughs":
            width, depth = draw(st.integers(2, 10)), draw(st.integers(2, 12))
            lines.append(f"l{k}_0: &l{k}_0 [{', '.join(['lol'] * width)}]")
            lines += [f"l{k}_{i}: &l{k}_{i} [{', '.join([f'*l{k}_{i - 1}'] * width)}]" for i in range(1, depth)]
        elif kind == "flow":
            n = draw(st.integers(1, 3000))
            opener = draw(st.sampled_from(["[", "{a: "]))
            lines.append(f"{key}: {opener * n}1{(']' if opener == '[' else '}') * n}")
        elif kind == "block":
            n = draw(st.integers(1, 200))
            lines += [" " * i + f"n{i}:" for i in range(n)] + [" " * n + "leaf"]
        elif kind == "merge":
            name = draw(st.sampled_from(anchors)) if anchors else "nowhere"
            lines.append(f"{key}: {{<<: *{name}, y: 1}}")
        else:
            lines.append(draw(st.sampled_from(["\t- bad indent", ": :", "? [a]\n: b", "%YAML 9.9", "---", "...",
                                               "{", "key: [unclosed", "&a &b x"])))
    return "\n".join(lines)


_BODY_LINE = st.one_of(
    st.builds(lambda n, w: "#" * n + " " + w, st.integers(1, 8), _WORDS),
    st.sampled_from(["", "", "text with words", "===", "---", "- item", "1. item", "> quote", "|a|b|", "    code",
                     "```", "~~~", "```py", "````", "    ```", "        ~~~", "\t```", "#", "# ", "######",
                     "text ending with:", "***", "[ref]: http://x", "<div>"]),
    st.lists(_WORDS, min_size=1, max_size=30).map(" ".join),
    st.integers(1, 20_000).map(lambda n: "w" * n),  # one huge word
)


@st.composite
def hostile_note(draw: st.DrawFn) -> bytes:
    """A note's bytes: maybe front matter (YAML or TOML), a body of hostile lines (thousands of
    headings, unclosed fences), mixed line endings, and maybe NUL or invalid UTF-8."""
    parts: list[str] = []
    fm = draw(st.sampled_from(["none", "yaml", "yaml", "toml", "unclosed"]))
    if fm == "yaml":
        parts += ["---", draw(yaml_block()), draw(st.sampled_from(["---", "..."]))]
    elif fm == "toml":
        parts += ["+++", draw(st.sampled_from(["a = 1", "a = [" * 600 + "]" * 600, "[" + ".".join("k" * 2000) + "]",
                                               "a = 'x", "t = 1979-05-27T07:32:00Z", "x = inf", "n = nan"])), "+++"]
    elif fm == "unclosed":
        parts += ["---", "title: never closed"]
    parts += draw(st.lists(_BODY_LINE, max_size=60))
    run = draw(st.sampled_from(["", "", "# h", "    ```", "```", "# a\n## b", "- item", "text:", "===", "\u200b\n"]))
    if run:  # thousands of headings, fences, list items…
        parts += [run] * draw(st.integers(100, 6000))
        parts += draw(st.lists(_BODY_LINE, max_size=5))
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r", "\n\n"]), min_size=1, max_size=4))
    text = "".join(line + endings[i % len(endings)] for i, line in enumerate(parts))
    data = text.encode("utf-8", errors="surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "none", "nul", "invalid", "bom", "surrogate"]))
    at = draw(st.integers(0, len(data)))
    if damage == "nul":
        data = data[:at] + b"\x00" + data[at:]
    elif damage == "invalid":
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + data[at:]
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "surrogate":
        data = data[:at] + b"\xed\xb2\x80" + data[at:]
    return data


def check_prepared(result: Prepared | PrepareFailed, lines: int) -> None:
    """The invariant of one file: an answer, a one-line reason, what the write will store."""
    if isinstance(result, PrepareFailed):
        assert result.reason and "\n" not in result.reason and "\r" not in result.reason
        return
    json.dumps(result.metadata, allow_nan=False)
    error = result.metadata.get("front_matter_error")
    assert error is None or (error and "\n" not in error)
    assert result.meta.title
    for row in result.rows:
        assert 1 <= row.start_line <= row.end_line <= lines + 1


_COUNTER = default_token_counter()
TIME_BUDGET_S = 4.0  # CPU seconds for one file of the sizes drawn here (under 1 MB)


@settings(max_examples=60 * EXAMPLES_SCALE, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=hostile_note())
def test_fuzz_any_note_is_prepared_or_failed_within_a_budget(data: bytes) -> None:
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        root = Path(tmp) / "notes"
        root.mkdir()
        path = root / "hostile.md"
        path.write_bytes(data)
        sync = make_sync(Path(tmp), root, counter=_COUNTER)
        started = time.process_time()
        result = prepare(sync, path)
        spent = time.process_time() - started
        check_prepared(result, data.count(b"\n") + data.count(b"\r"))
        assert spent < TIME_BUDGET_S, f"{spent:.1f} s for {len(data)} bytes"


@settings(max_examples=8 * EXAMPLES_SCALE, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(notes=st.lists(hostile_note(), min_size=1, max_size=3))
def test_fuzz_hostile_notes_beside_good_ones_all_end_synced_or_failed(notes: list[bytes]) -> None:
    """A whole run (scan, plan, prepare, write, embed): every note has a row, synced or failed
    with a reason; the good notes are synced."""
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        root = Path(tmp) / "notes"
        good = good_notes(root, 3)
        for i, data in enumerate(notes):
            (root / f"hostile{i}.md").write_bytes(data)
        with make_sync(Path(tmp), root, counter=_COUNTER) as sync:
            sync.run()
        got = rows(Path(tmp) / "index.db")
        assert set(got) == {p.name for p in good} | {f"hostile{i}.md" for i in range(len(notes))}
        assert all(got[p.name][0] == "synced" for p in good)
        for name, (status, metadata) in got.items():
            assert status in ("synced", "failed"), (name, status)
            assert status == "synced" or metadata["last_error"]
