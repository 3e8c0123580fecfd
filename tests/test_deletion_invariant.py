"""The invariant of issue 12: a run deletes a row only for a file it looked for and found
missing (its directory walked completely, or the file stat'ed and gone). What it could not
read, or a path it did not look at, is kept and reported.

Tested as properties: of the pure planner (deletions ⊆ what the coverage proves missing), of
the scanners (what the coverage proves missing is really missing or not indexable), and end to
end (an unreadable directory, a path outside the run's roots)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES_SCALE
from index_state import index_state
from indexer.cli import cli
from indexer.config import load_config
from indexer.documents import discovery
from indexer.documents.discovery import Coverage, DiskFile
from indexer.documents.planning import DbDoc, plan_changes
from indexer.documents.sync import DocumentSync
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

# -- the planner --------------------------------------------------------------------------

NAMES = ["/r/a.md", "/r/b.md", "/r/s/c.md", "/r/s/d.md", "/r/s/t/e.md", "/r/u/f.md", "/q/g.md"]
SCOPES = ["/r", "/r/s", "/r/s/t", "/r/u", "/r/a.md", "/r/s/c.md", "/q", "/q/g.md", "/elsewhere"]
CONTENTS = ["A", "B", "C"]


@st.composite
def planner_inputs(draw: st.DrawFn) -> tuple[list[DiskFile], list[DbDoc], Coverage, dict[str, str]]:
    on_disk = draw(st.lists(st.sampled_from(NAMES), unique=True))
    in_db = draw(st.lists(st.sampled_from(NAMES), unique=True))
    content = {p: draw(st.sampled_from(CONTENTS)) for p in NAMES}
    disk = [DiskFile(Path(p), draw(st.integers(1, 3)), 10) for p in on_disk]
    db = [DbDoc(Path(p), draw(st.one_of(st.none(), st.integers(1, 3))), 10,
                draw(st.sampled_from(["", f"h:{content[p]}", "h:old"]))) for p in in_db]
    coverage = Coverage(tuple(draw(st.lists(st.sampled_from(SCOPES), max_size=4))),
                        tuple(draw(st.lists(st.sampled_from(SCOPES), max_size=2))))
    return disk, db, coverage, content


@settings(max_examples=300 * EXAMPLES_SCALE)
@given(planner_inputs(), st.booleans())
def test_planner_deletes_only_what_the_coverage_proves_missing(inputs, full: bool) -> None:
    disk, db, coverage, content = inputs
    changes = plan_changes(disk, db, lambda p: f"h:{content[str(p)]}", full=full, coverage=coverage)
    gone = {str(d.path) for d in db} - {str(f.path) for f in disk}
    proven = {p for p in gone if coverage.proves_missing(p)}
    deleted = {str(d.path) for d in changes.deleted}
    moved_from = {str(m.old.path) for m in changes.moved}
    kept = {str(d.path) for d in changes.kept}
    assert deleted | moved_from <= proven  # the invariant
    assert deleted | moved_from | kept == gone and not (deleted | moved_from) & kept  # a partition
    assert kept == gone - proven


@given(st.lists(st.sampled_from(SCOPES), max_size=4), st.lists(st.sampled_from(SCOPES), max_size=3),
       st.sampled_from(NAMES + SCOPES))
def test_nothing_at_or_below_an_unreadable_place_is_proven_missing(covered, unreadable, path) -> None:
    coverage = Coverage(tuple(covered), tuple(unreadable))
    blind = any(path == u or path.startswith(u + "/") for u in unreadable)
    seen = any(path == c or path.startswith(c + "/") for c in covered)
    assert coverage.proves_missing(path) == (seen and not blind)
    assert not Coverage((), tuple(unreadable)).proves_missing(path)  # nothing covered: nothing proven


# -- the scanners: what the coverage proves missing is really not indexable -----------------

TREE_PATHS = ["a.md", "b.markdown", "s/c.md", "s/t/d.md", "s/t/e.txt", "u/f.md", "u/v/g.md",
              ".hidden/h.md", "node_modules/i.md", "sp ace/j.md", "ünï/k.md"]


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[str], str | None, list[str]]:
    files = draw(st.lists(st.sampled_from(TREE_PATHS), min_size=1, unique=True))
    gitignore = draw(st.sampled_from([None, "t/\n", "*.md\n!u/**\n", "s/\n", "u/v/\n"]))
    probes = draw(st.lists(st.sampled_from(["", "s", "s/t", "u", "u/v", "a.md", "s/c.md", "missing",
                                            "missing/x.md", "s/nothing.md", ".hidden", "../outside",
                                            "sp ace", "ünï/"]), min_size=1, max_size=3))
    return files, gitignore, probes


@settings(max_examples=60 * EXAMPLES_SCALE, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trees())
def test_scan_paths_proves_missing_only_what_the_full_scan_does_not_find(tmp_path_factory, tree) -> None:
    files, gitignore, probes = tree
    base = tmp_path_factory.mktemp("t")
    root = base / "root"
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("# x\n")
    root.mkdir(exist_ok=True)
    if gitignore:
        (root / ".gitignore").write_text(gitignore)
    full = discovery.scan([root])
    assert full.coverage.proves_missing(str(root / "anything.md"))
    indexable = {str(f.path) for f in full.files}
    part = discovery.scan_paths([str(root / p) if p else str(root) + "/" for p in probes], [root])
    found = {str(f.path) for f in part.files}
    assert found <= indexable
    for path in indexable - found:
        assert not part.coverage.proves_missing(path), (path, part.coverage)
    for path in found:  # what it found it looked at, so a sibling that is gone is proven
        assert part.coverage.proves_missing(path)


# -- end to end: unreadable places and path mistakes delete nothing -------------------------

def make_sync(db: Path, roots: list[Path]) -> DocumentSync:
    config = load_config({"db": str(db), "roots": [str(r) for r in roots]})
    return DocumentSync(config, embedder=HashEmbedder(dim=32), counter=WhitespaceTokenCounter())


def notes(base: Path) -> Path:
    for rel in ("a.md", "sub/b.md", "sub/c.md", "sub/deeper/d.md", "other/e.md"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(f"# {rel}\n\nSome text about {rel}.\n")
    return base


@contextlib.contextmanager
def unreadable(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``directory`` cannot be listed. As root, permissions are not checked by the kernel, so
    the refusal is emulated where the scanner lists a directory (os.scandir), with the error
    the kernel would give; otherwise it is a real chmod 000."""
    if os.geteuid() != 0:
        directory.chmod(0)
        try:
            yield "chmod 000"
        finally:
            directory.chmod(0o755)
        return
    real = os.scandir
    target = os.path.realpath(directory)

    def scandir(path: str = ".") -> object:
        if os.path.realpath(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", scandir)
        yield "emulated (running as root)"


@pytest.mark.parametrize("scope", ["whole root", "the directory", "its parent"])
def test_an_unreadable_directory_keeps_its_rows_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            scope: str) -> None:
    root = notes(tmp_path / "notes")
    db = tmp_path / "x.db"
    with make_sync(db, [root]) as sync:
        sync.run()
    before = index_state(db)
    assert len(before) == 5
    (root / "a.md").unlink()  # really gone: that one must go
    paths = {"whole root": None, "the directory": [root / "sub"], "its parent": [root]}[scope]
    with unreadable(root / "sub", monkeypatch), make_sync(db, [root]) as sync:
        report = sync.run(paths=paths)
    after = index_state(db)
    a_in_scope = scope != "the directory"
    assert report.deleted == int(a_in_scope) and (str(root / "a.md") in after) != a_in_scope
    assert {p: v for p, v in after.items() if "/sub/" in p} == {p: v for p, v in before.items() if "/sub/" in p}
    assert report.kept == 3
    assert [w for w in report.warnings if w["path"] == str(root / "sub")], report.warnings
    assert "cannot list directory" in report.warnings[0]["reason"] and "3 stored documents kept" in report.warnings[0]["reason"]
    with make_sync(db, [root]) as sync:  # readable again: back in line with the disk
        assert sync.run(paths=paths).deleted == 0
    assert index_state(db) == {p: v for p, v in before.items() if not (a_in_scope and p.endswith("/a.md"))}


def test_the_cli_prints_the_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = notes(tmp_path / "notes")
    monkeypatch.setenv("INDEXER_MODEL", "hash:64")
    runner = CliRunner()
    assert runner.invoke(cli, ["reindex", "--root", str(root)]).exit_code == 0
    with unreadable(root / "sub", monkeypatch):
        result = runner.invoke(cli, ["reindex", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "0 deleted" in result.output and "3 kept unverified" in result.output
    assert f"warning: {root / 'sub'}: cannot list directory" in result.output


def test_a_path_outside_the_runs_roots_deletes_nothing(tmp_path: Path) -> None:
    """A path mistake: rows exist under a path the run's scan cannot reach (not under any of
    its roots). On c4e58b8 every one of them was deleted."""
    first, second = notes(tmp_path / "first"), notes(tmp_path / "second")
    db = tmp_path / "x.db"
    with make_sync(db, [first, second]) as sync:
        sync.run()
    before = index_state(db)
    with make_sync(db, [first]) as sync:
        report = sync.reconcile([first], paths=[second, second / "sub" / "b.md"])
    assert report.deleted == 0 and report.kept == 5
    assert index_state(db) == before
    assert {w["path"] for w in report.warnings} == {str(second), str(second / "sub" / "b.md")}
    assert all("not under any root" in w["reason"] for w in report.warnings)


def test_a_root_that_is_gone_keeps_its_rows_with_a_warning(tmp_path: Path) -> None:
    root = notes(tmp_path / "notes")
    db = tmp_path / "x.db"
    with make_sync(db, [root]) as sync:
        sync.run()
    before = index_state(db)
    root.rename(tmp_path / "unmounted")
    for paths in (None, [root], [root / "sub"]):
        with make_sync(db, [root]) as sync:
            report = sync.run(paths=paths)
        assert report.deleted == 0 and index_state(db) == before
        assert any("root is not a readable directory" in w["reason"] for w in report.warnings)
