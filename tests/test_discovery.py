"""Discovery: which files under the roots are indexed, by scan and by the single-path check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Corpora
from indexer.documents import discovery
from indexer.documents.discovery import DiskFile, Rules, is_indexable, scan


def write(root: Path, *names: str, text: str = "# x\n") -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def found(result: discovery.ScanResult, root: Path) -> list[str]:
    base = root.resolve()
    return [f.path.relative_to(base).as_posix() for f in result.files]


def every_file(root: Path) -> list[Path]:
    """Every path under root that is a file or a link, without following links."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.append(Path(dirpath) / name)
    return out


def assert_watcher_agrees(root: Path, roots: list[Path], **rules) -> None:
    """is_indexable says yes for exactly the files scan finds."""
    listed = {f.path for f in scan(roots, **rules).files}
    for path in every_file(root):
        assert is_indexable(path, roots, **rules) == (path in listed), path


def test_default_include_and_records(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "b.markdown", "c.txt", "d.MD.bak", "sub/e.md")
    (tmp_path / "sub" / "f.md").mkdir()  # a directory named like markdown
    result = scan([tmp_path])
    assert found(result, tmp_path) == ["a.md", "b.markdown", "sub/e.md"]
    for record in result.files:
        st = os.stat(record.path)
        assert record.path.is_absolute() and record.path == record.path.resolve()
        assert (record.mtime_ns, record.size) == (st.st_mtime_ns, st.st_size)
    assert result.skipped == ()
    assert_watcher_agrees(tmp_path, [tmp_path])


def test_results_sorted_and_frozen(tmp_path: Path) -> None:
    write(tmp_path, "z.md", "a/b.md", "a-b.md", "m/n/o.md", "B.md")
    files = scan([tmp_path]).files
    assert [str(f.path) for f in files] == sorted(str(f.path) for f in files)
    with pytest.raises(AttributeError):
        files[0].size = 3  # type: ignore[misc]


def test_include_globs(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "b.mdx", "docs/c.md", "docs/deep/d.md", "other/e.md")
    assert found(scan([tmp_path], include=["*.mdx"]), tmp_path) == ["b.mdx"]
    assert found(scan([tmp_path], include=["docs/**/*.md"]), tmp_path) == ["docs/c.md", "docs/deep/d.md"]
    assert_watcher_agrees(tmp_path, [tmp_path], include=["docs/**/*.md", "*.mdx"])


def test_exclude_globs_are_gitignore_style_relative_to_root(tmp_path: Path) -> None:
    write(tmp_path, "top.md", "keep.md", "x.tmp.md", "drafts/a.md", "notes/drafts/b.md",
          "notes/top.md", "archive/2020/old.md", "archive/new.md")
    rules = {"exclude": ["drafts/", "*.tmp.md", "/top.md", "archive/2020"]}
    assert found(scan([tmp_path], **rules), tmp_path) == ["archive/new.md", "keep.md", "notes/top.md"]
    assert_watcher_agrees(tmp_path, [tmp_path], **rules)


def test_gitignore_nested_and_negation(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "b.md", "build/out.md", "docs/c.md", "docs/secret.md", "docs/keep-secret.md",
          "docs/sub/d.md", "docs/sub/b.md", "logs/x.md")
    (tmp_path / ".gitignore").write_text("# comment\nb.md\nbuild/\nlogs\n*secret.md\n")
    (tmp_path / "docs" / ".gitignore").write_text("!keep-secret.md\n")
    (tmp_path / "docs" / "sub" / ".gitignore").write_text("d.md\n!b.md\n")
    assert found(scan([tmp_path]), tmp_path) == ["a.md", "docs/c.md", "docs/keep-secret.md", "docs/sub/b.md"]
    assert_watcher_agrees(tmp_path, [tmp_path])


def test_ignored_directory_cannot_be_reincluded(tmp_path: Path) -> None:
    write(tmp_path, "private/a.md", "drafts/keep.md", "drafts/x.md")
    (tmp_path / ".gitignore").write_text("private/\n!private/a.md\ndrafts/**\n!drafts/keep.md\n")
    assert found(scan([tmp_path]), tmp_path) == ["drafts/keep.md"]  # git's rules exactly
    assert_watcher_agrees(tmp_path, [tmp_path])


def test_exclude_wins_over_gitignore_negation(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "b.md")
    (tmp_path / ".gitignore").write_text("!b.md\n")
    assert found(scan([tmp_path], exclude=["b.md"]), tmp_path) == ["a.md"]
    assert not is_indexable(tmp_path / "b.md", [tmp_path], exclude=["b.md"])


def test_hidden_git_and_node_modules_skipped(tmp_path: Path) -> None:
    write(tmp_path, "a.md", ".hidden.md", ".git/HEAD.md", ".obsidian/x.md", "node_modules/pkg/README.md",
          "sub/.draft.md", "sub/node_modules/y.md", "sub/ok.md")
    assert found(scan([tmp_path]), tmp_path) == ["a.md", "sub/ok.md"]
    assert_watcher_agrees(tmp_path, [tmp_path])


def test_names_with_spaces_and_unicode(tmp_path: Path) -> None:
    names = ["my notes.md", "日本語/ノート.md", "café/crème brûlée.md", "emoji 🎉.md", "a [b] (c).md"]
    write(tmp_path, *names)
    assert sorted(found(scan([tmp_path]), tmp_path)) == sorted(names)
    assert_watcher_agrees(tmp_path, [tmp_path])
    (tmp_path / ".gitignore").write_text("crème*\n")
    assert "café/crème brûlée.md" not in found(scan([tmp_path]), tmp_path)


def test_symlink_loop_terminates(tmp_path: Path) -> None:
    write(tmp_path, "a/b.md")
    os.symlink(tmp_path / "a", tmp_path / "a" / "loop")
    os.symlink(tmp_path, tmp_path / "a" / "up")
    os.symlink("self.md", tmp_path / "self.md")  # a link to itself
    result = scan([tmp_path])
    assert found(result, tmp_path) == ["a/b.md"]
    assert {Path(s.path).name for s in result.skipped} == {"loop", "up", "self.md"}
    assert all("symlink" in s.reason for s in result.skipped)
    assert_watcher_agrees(tmp_path, [tmp_path])


def test_symlinks_outside_the_root_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root, "in.md")
    write(outside, "secret.md", "dir/deep.md")
    os.symlink(outside / "secret.md", root / "link.md")
    os.symlink(outside / "dir", root / "dirlink")
    assert found(scan([root]), root) == ["in.md"]
    assert not is_indexable(root / "link.md", [root])
    assert not is_indexable(root / "dirlink" / "deep.md", [root])
    assert not is_indexable(outside / "secret.md", [root])


def test_symlinks_inside_the_root_give_no_duplicates(tmp_path: Path) -> None:
    write(tmp_path, "docs/a.md", "docs/b.md")
    os.symlink(tmp_path / "docs" / "a.md", tmp_path / "alias.md")
    os.symlink(tmp_path / "docs", tmp_path / "docs-link")
    files = scan([tmp_path]).files
    assert found(scan([tmp_path]), tmp_path) == ["docs/a.md", "docs/b.md"]  # each once, own path
    assert len({os.path.realpath(f.path) for f in files}) == len(files)
    assert_watcher_agrees(tmp_path, [tmp_path])


def test_root_given_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write(real, "a.md")
    os.symlink(real, tmp_path / "alias")
    files = scan([tmp_path / "alias"]).files
    assert [f.path for f in files] == [(real / "a.md").resolve()]
    assert is_indexable(tmp_path / "alias" / "a.md", [tmp_path / "alias"])
    assert is_indexable(real / "a.md", [tmp_path / "alias"])


def test_overlapping_roots_and_missing_root(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "sub/b.md")
    result = scan([tmp_path, tmp_path / "sub", tmp_path / "missing"])
    assert found(result, tmp_path) == ["a.md", "sub/b.md"]
    assert [(Path(s.path).name, "cannot be read" in s.reason) for s in result.skipped] == [("missing", True)]


def test_root_may_be_a_single_file(tmp_path: Path) -> None:
    write(tmp_path, "one.md", "two.txt")
    assert [f.path.name for f in scan([tmp_path / "one.md", tmp_path / "two.txt"]).files] == ["one.md"]


def test_unstattable_files_are_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "ok.md", "gone.md")
    real_scandir = os.scandir

    class Vanishing:
        def __init__(self, entry: os.DirEntry) -> None:
            self._entry = entry

        def __getattr__(self, name: str):
            return getattr(self._entry, name)

        def stat(self, *, follow_symlinks: bool = True):
            if self._entry.name == "gone.md":
                raise FileNotFoundError(2, "No such file or directory")
            return self._entry.stat(follow_symlinks=follow_symlinks)

    class Listing:
        def __init__(self, path: str) -> None:
            self._it = real_scandir(path)

        def __enter__(self):
            return [Vanishing(e) for e in self._it]

        def __exit__(self, *exc: object) -> None:
            self._it.close()

    monkeypatch.setattr(discovery.os, "scandir", Listing)
    result = scan([tmp_path])
    assert found(result, tmp_path) == ["ok.md"]
    reasons = [(Path(s.path).name, s.reason) for s in result.skipped]
    assert reasons == [("gone.md", "cannot stat: No such file or directory")]


def test_unreadable_directory(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "locked/b.md")
    (tmp_path / "locked").chmod(0)
    try:
        result = scan([tmp_path])
    finally:
        (tmp_path / "locked").chmod(0o755)
    if os.geteuid() == 0:  # root bypasses directory permissions: the file is simply listed
        assert found(result, tmp_path) == ["a.md", "locked/b.md"]
        assert result.skipped == ()
    else:
        assert found(result, tmp_path) == ["a.md"]
        assert [(Path(s.path).name, "cannot list directory" in s.reason) for s in result.skipped] == [
            ("locked", True)]


def test_directory_that_cannot_be_listed_is_reported_not_raised(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The permission failure itself, simulated (root is never refused by chmod 000)."""
    write(tmp_path, "a.md", "locked/b.md", "locked/deeper/c.md")
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(discovery.os, "scandir", scandir)
    result = scan([tmp_path])
    assert found(result, tmp_path) == ["a.md"]
    assert [(Path(s.path).name, s.reason) for s in result.skipped] == [
        ("locked", "cannot list directory: Permission denied")]


def test_is_indexable_single_paths(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "dir.md/x.md")
    roots = [tmp_path]
    assert is_indexable(tmp_path / "a.md", roots)
    assert is_indexable(str(tmp_path / "a.md"), roots)
    assert is_indexable(tmp_path / "deleted.md", roots)  # judged by the rules when gone
    assert not is_indexable(tmp_path / "deleted.txt", roots)
    assert not is_indexable(tmp_path / "dir.md", roots)  # a directory
    assert not is_indexable(tmp_path, roots)
    assert not is_indexable(tmp_path.parent / "elsewhere.md", roots)
    assert not is_indexable(tmp_path / ".git" / "x.md", roots)
    rules = Rules(["*.md"], ["a.md"])
    assert not is_indexable(tmp_path / "a.md", roots, rules=rules)
    os.mkfifo(tmp_path / "pipe.md")
    assert not is_indexable(tmp_path / "pipe.md", roots)
    assert "pipe.md" not in found(scan(roots), tmp_path)


def test_diskfile_is_a_plain_record() -> None:
    f = DiskFile(Path("/x/a.md"), 1, 2)
    assert f == DiskFile(Path("/x/a.md"), 1, 2) and hash(f) == hash(DiskFile(Path("/x/a.md"), 1, 2))


def test_scan_of_the_tldr_corpus_lists_every_page(each_corpus: Corpora) -> None:
    root = each_corpus.tldr
    expected = sorted(str(p.resolve()) for p in root.rglob("*.md")
                      if not any(part.startswith(".") for part in p.relative_to(root).parts))
    result = scan([root])
    assert len(expected) > (7000 if each_corpus.full else 400)
    assert [str(f.path) for f in result.files] == expected  # every page, once, sorted
    for sub in ("common", "linux", "osx"):
        # glob also matches dot-files (common/..md), which are hidden and skipped
        on_disk = sum(not p.name.startswith(".") for p in (root / sub).glob("*.md"))
        assert on_disk > (100 if each_corpus.full else 30)
        assert sum(f.path.parent.name == sub for f in result.files) == on_disk


def test_exclude_double_star_keeps_the_directory_name_elsewhere(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "drafts/x.md", "drafts/deep/y.md", "notes/drafts/z.md", "drafts.md")
    rules = {"exclude": ["/drafts/**"]}
    assert found(scan([tmp_path], **rules), tmp_path) == ["a.md", "drafts.md", "notes/drafts/z.md"]
    assert_watcher_agrees(tmp_path, [tmp_path], **rules)
    unanchored = {"exclude": ["drafts/**"]}  # a pattern with a slash is relative to the root
    assert found(scan([tmp_path], **unanchored), tmp_path) == ["a.md", "drafts.md", "notes/drafts/z.md"]
    assert_watcher_agrees(tmp_path, [tmp_path], **unanchored)


def test_custom_include_replaces_the_defaults(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "b.markdown", "c.txt", "notes/d.txt", "e.TXT")
    assert found(scan([tmp_path], include=["*.txt"]), tmp_path) == ["c.txt", "notes/d.txt"]  # case-sensitive
    assert found(scan([tmp_path], include=["*.markdown"]), tmp_path) == ["b.markdown"]
    assert found(scan([tmp_path], include=[]), tmp_path) == ["a.md", "b.markdown"]  # empty: the defaults
    assert_watcher_agrees(tmp_path, [tmp_path], include=["*.txt"])


def test_gitignore_directory_reincluded_by_a_deeper_file(tmp_path: Path) -> None:
    write(tmp_path, "keep.md", "tmp.md", "sub/tmp.md", "sub/other.md", "sub/deep/tmp.md", "sub/deep/x.md")
    (tmp_path / ".gitignore").write_text("*.md\n!keep.md\n")
    (tmp_path / "sub" / "deep" / ".gitignore").write_text("!x.md\n")
    assert found(scan([tmp_path]), tmp_path) == ["keep.md", "sub/deep/x.md"]
    assert_watcher_agrees(tmp_path, [tmp_path])


def test_newline_and_odd_characters_in_names(tmp_path: Path) -> None:
    names = ["line\nbreak.md", "tab\there.md", " leading space.md", "trailing space .md", "quote\"'.md",
             "back\\slash.md"]
    write(tmp_path, *names)
    result = scan([tmp_path])
    assert sorted(found(result, tmp_path)) == sorted(names)
    assert all(f.path.exists() and f.size == 4 for f in result.files)
    assert_watcher_agrees(tmp_path, [tmp_path])


def test_symlinks_never_lead_outside_or_twice(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root, "a.md", "sub/b.md")
    write(outside, "o.md")
    os.symlink(root / "sub", root / "sub" / "again")  # dir -> itself
    os.symlink(root, root / "sub" / "parent")  # dir -> its parent: a loop
    os.symlink(outside, root / "out")
    os.symlink(outside / "o.md", root / "sub" / "o.md")
    os.symlink(root / "a.md", root / "sub" / "a-again.md")
    result = scan([root])
    paths = [str(f.path) for f in result.files]
    assert len(paths) == len(set(paths)) == len({os.path.realpath(p) for p in paths})
    base = str(root.resolve()) + os.sep
    assert all(p.startswith(base) and not os.path.islink(p) for p in paths)
    assert found(result, root) == ["a.md", "sub/b.md"]
    assert_watcher_agrees(root, [root])


def test_several_roots(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, "a.md", "x/b.md")
    write(two, "c.md", "drafts/d.md")
    (two / ".gitignore").write_text("drafts/\n")
    (tmp_path / "between.md").write_text("# not under a root\n")
    result = scan([two, one])
    got = [str(f.path) for f in result.files]
    assert got == sorted(got)
    assert got == sorted(str(p.resolve()) for p in (one / "a.md", one / "x" / "b.md", two / "c.md"))
    roots = [one, two]
    assert not is_indexable(tmp_path / "between.md", roots)
    assert not is_indexable(two / "drafts" / "d.md", roots)  # each root's own .gitignore
    assert_watcher_agrees(one, roots)
    assert_watcher_agrees(two, roots)
