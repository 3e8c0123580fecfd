"""`indexer reindex DIR` whatever DIR is (a configured root, a directory below one, a directory
outside every root) and however it is written (absolute, relative, trailing slash, through a
symlink): in process, through the daemon, and through DocumentIndexService. Issue 12: on
c4e58b8 a DIR that *is* a root scanned nothing and deleted every row under it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from index_state import index_state, state_diff
from indexer.cli import cli
from indexer.config import load_config
from indexer.documents.service import DocumentIndexService
from indexer.documents.sync import DocumentSync
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

PAGES = {
    "tar.md": "# tar\n\n> Archiving utility.\n\n- Create an archive from files:\n\n`tar cf target.tar file1 file2`\n",
    "grep.md": ("# grep\n\n> Find patterns in files using regular expressions.\n\n"
                "- Search for a pattern:\n\n`grep pattern file`\n"),
    "sub/ssh.md": "# ssh\n\n> Secure Shell is a protocol used to log in to remote systems.\n",
    "sub/deeper/scp.md": "# scp\n\n> Secure copy.\n\n- Copy a local file to a remote host:\n\n`scp file host:path`\n",
    "drafts/wip.md": "# wip\n\nIgnored by the root's .gitignore.\n",
}


def make_tree(base: Path) -> Path:
    for rel, text in PAGES.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    (base / ".gitignore").write_text("drafts/\n")
    return base


def fresh_index(tmp_path: Path, root: Path, name: str) -> dict:
    """The oracle: a full index of ``root`` as a root, in a database of its own."""
    db = tmp_path / f"oracle-{name}.db"
    config = load_config({"db": str(db), "roots": [str(root)]})
    with DocumentSync(config, embedder=HashEmbedder(dim=64, name="hash:64"), counter=WhitespaceTokenCounter()) as sync:
        sync.run()
    return index_state(db)


def under(state: dict, base: Path) -> dict:
    prefix = str(base.resolve()) + os.sep
    return {p: v for p, v in state.items() if p.startswith(prefix)}


@pytest.fixture
def env(tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INDEXER_MODEL", "hash:64")
    monkeypatch.chdir(tmp_path)
    return isolated_home / "indexer.db"


def reindex(*args: str) -> Result:
    result = CliRunner().invoke(cli, ["reindex", *args])
    assert result.exit_code == 0, result.output
    return result


def spell(path: Path, how: str, tmp_path: Path) -> str:
    """``path`` written the way a user might type it."""
    if how == "absolute":
        return str(path)
    if how == "relative":
        return os.path.relpath(path, tmp_path)  # the test runs in tmp_path
    if how == "trailing slash":
        return str(path) + "/"
    link = tmp_path / f"link-to-{path.name}"
    link.symlink_to(path, target_is_directory=True)
    return str(link)


HOWS = ["absolute", "relative", "trailing slash", "symlink"]


def test_the_issue_sequence(env: Path, tmp_path: Path) -> None:
    """Exactly the commands of issue 12: a directory outside the roots, then as --root, then
    again as a PATH: each leaves the full index of the directory."""
    notes = make_tree(tmp_path / "notes")
    expected = fresh_index(tmp_path, notes, "notes")
    assert len(expected) == 4  # drafts/ ignored
    first = reindex("notes")
    assert "4 added" in first.output
    assert index_state(env) == expected
    assert "4 unchanged" in reindex("--root", "notes").output
    again = reindex("notes")
    assert "0 deleted" in again.output and "4 unchanged" in again.output
    assert index_state(env) == expected


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("where", ["a configured root", "below a configured root", "outside every root"])
def test_reindex_dir_indexes_it_and_deletes_nothing(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      where: str, how: str) -> None:
    top = make_tree(tmp_path / "top")
    other = make_tree(tmp_path / "other")
    target = {"a configured root": top, "below a configured root": top / "sub",
              "outside every root": tmp_path / "outside"}[where]
    if where == "outside every root":
        make_tree(target)
    monkeypatch.setenv("INDEXER_ROOTS", os.pathsep.join([str(top), str(other)]))
    reindex()  # the configured roots
    assert where == "outside every root" or under(index_state(env), target)
    before = index_state(env)
    first = reindex(spell(target, how, tmp_path))
    assert " 0 deleted" in first.output, first.output
    root_of_target = target if where != "below a configured root" else top
    expected = under(fresh_index(tmp_path, root_of_target, "t"), target)
    assert expected and under(index_state(env), target) == expected, state_diff(expected, under(index_state(env), target))
    # nothing else moved, and a second run changes nothing
    assert {p: v for p, v in index_state(env).items() if p not in expected} == \
        {p: v for p, v in before.items() if p not in expected}
    second = reindex(spell(target, how, tmp_path) if how != "symlink" else str(tmp_path / f"link-to-{target.name}"))
    assert "0 added" in second.output and " 0 deleted" in second.output and f"{len(expected)} unchanged" in second.output


def test_reindex_of_a_root_after_changes_equals_a_fresh_index(env: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`reindex R` finds the edits, adds, deletes and moves under R, like `reindex --root R`."""
    notes = make_tree(tmp_path / "notes")
    monkeypatch.setenv("INDEXER_ROOTS", str(notes))
    reindex()
    (notes / "tar.md").write_text("# tar\n\nRewritten.\n")
    (notes / "grep.md").unlink()
    (notes / "sub" / "ssh.md").rename(notes / "ssh.md")
    (notes / "new.md").write_text("# new\n\nA new page.\n")
    out = reindex(str(notes)).output
    assert "1 added, 1 modified, 1 moved, 1 deleted" in out, out
    assert index_state(env) == fresh_index(tmp_path, notes, "after")


async def test_document_index_service_sync_paths(tmp_path: Path) -> None:
    top = make_tree(tmp_path / "top")
    outside = make_tree(tmp_path / "outside")
    db = tmp_path / "svc.db"
    config = load_config({"db": str(db), "roots": [str(top)]})
    async with DocumentIndexService(config, embedder=HashEmbedder(dim=64, name="hash:64"),
                                    counter=WhitespaceTokenCounter()) as service:
        await service.sync()
        full = index_state(db)
        assert len(full) == 4
        for target in (top, top / "sub", str(top) + "/"):
            report = await service.sync(paths=[target])
            assert (report.deleted, report.added) == (0, 0) and index_state(db) == full
        link = tmp_path / "link"
        link.symlink_to(top)
        report = await service.sync(paths=[link])
        assert (report.deleted, report.unchanged) == (0, 4)
        report = await service.sync(paths=[outside])  # outside every root: a root for this call
        assert report.added == 4
        assert under(index_state(db), outside) == fresh_index(tmp_path, outside, "outside")
        assert under(index_state(db), top) == full


@pytest.mark.process
def test_reindex_dir_through_the_daemon(env: Path, tmp_path: Path, isolated_home: Path) -> None:
    """With the daemon running, `reindex R` (R its root, however written), `reindex R/sub` and
    the daemon's reindex request with a root path delete nothing; a directory outside the
    daemon's roots is indexed by the CLI itself, as a root for this run."""
    from daemon_harness import DaemonProcess, wait_until

    top = make_tree(tmp_path / "top")
    outside = make_tree(tmp_path / "outside")
    expected = fresh_index(tmp_path, top, "top")
    daemon = DaemonProcess(isolated_home, [top])
    try:
        daemon.ready(60)
        wait_until(lambda: index_state(env) == expected and daemon.idle(), 30, what="first index")
        for how in HOWS:
            result = reindex(spell(top, how, tmp_path))
            assert "reindexed by the running daemon" in result.output and " 0 deleted" in result.output, result.output
            assert index_state(env) == expected
        assert " 0 deleted" in reindex(str(top / "sub")).output
        answer = daemon.call({"op": "reindex", "paths": [str(top) + "/"], "wait": True})
        assert answer["report"]["deleted"] == 0 and answer["report"]["unchanged"] == 4
        assert index_state(env) == expected
        out = reindex(str(outside)).output
        assert "4 added" in out, out
        assert under(index_state(env), outside) == fresh_index(tmp_path, outside, "outside")
        assert under(index_state(env), top) == expected
        assert daemon.stop() == 0
    finally:
        daemon.close()
