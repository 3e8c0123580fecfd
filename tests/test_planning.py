"""Change planning: a pure function of the disk, the database rows and a hash function."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from indexer.documents.discovery import DiskFile, scan
from indexer.documents.planning import RACY_MARGIN_NS, ChangeSet, DbDoc, Move, is_racy, plan_changes, sha256_file


class Hasher:
    """A fake hash function over a dict of contents, counting its calls."""

    def __init__(self, contents: dict[str, str | None]) -> None:
        self.contents = contents
        self.calls: list[str] = []

    def __call__(self, path: Path) -> str | None:
        self.calls.append(str(path))
        content = self.contents.get(str(path))
        return None if content is None else f"h:{content}"


def disk(path: str, mtime: int = 1, size: int = 10) -> DiskFile:
    return DiskFile(Path(path), mtime, size)


def row(path: str, content: str, mtime: int | None = 1, size: int | None = 10) -> DbDoc:
    return DbDoc(Path(path), mtime, size, f"h:{content}" if content else "")


def paths(items) -> list[str]:
    return [str(getattr(i, "path", i)) for i in items]


def test_unchanged_files_are_not_read() -> None:
    hasher = Hasher({"/r/a.md": "A", "/r/b.md": "B"})
    changes = plan_changes([disk("/r/a.md"), disk("/r/b.md")], [row("/r/a.md", "A"), row("/r/b.md", "B")], hasher)
    assert changes == ChangeSet(unchanged_count=2)
    assert changes.is_empty
    assert hasher.calls == []


def test_added_file() -> None:
    hasher = Hasher({"/r/new.md": "N"})
    changes = plan_changes([disk("/r/new.md")], [], hasher)
    assert paths(changes.added) == ["/r/new.md"]
    assert hasher.calls == []  # nothing deleted: no move to look for, no read


def test_modified_file() -> None:
    hasher = Hasher({"/r/a.md": "A2"})
    changes = plan_changes([disk("/r/a.md", mtime=2, size=11)], [row("/r/a.md", "A")], hasher)
    assert paths(changes.modified) == ["/r/a.md"]
    assert (changes.added, changes.touched, changes.unchanged_count) == ((), (), 0)
    assert hasher.calls == ["/r/a.md"]


def test_same_size_new_mtime_is_hashed() -> None:
    hasher = Hasher({"/r/a.md": "B"})
    changes = plan_changes([disk("/r/a.md", mtime=5)], [row("/r/a.md", "A")], hasher)
    assert paths(changes.modified) == ["/r/a.md"]


def test_a_racily_clean_file_is_hashed_by_git_s_rule() -> None:
    """Same stat as stored, but its mtime is not older than the moment its content was read
    (less the margin): an edit saved in the same timestamp tick after the read would keep the
    stat, so only its hash can say it is unchanged."""
    second = 1_000_000_000
    read = 100 * second
    hasher = Hasher({"/r/same.md": "A", "/r/edited.md": "B", "/r/old.md": "A", "/r/legacy.md": "A"})
    stored = [DbDoc(Path("/r/same.md"), read - 1, 10, "h:A", read),  # mtime just before the read: racy
              DbDoc(Path("/r/edited.md"), read, 10, "h:A", read),  # equal to it: racy (and edited)
              DbDoc(Path("/r/old.md"), read - RACY_MARGIN_NS - 1, 10, "h:A", read),  # older: the stat vouches
              DbDoc(Path("/r/legacy.md"), read, 10, "h:A")]  # no read time (a row of an older version)
    on_disk = [disk("/r/same.md", read - 1), disk("/r/edited.md", read), disk("/r/old.md", read - RACY_MARGIN_NS - 1),
               disk("/r/legacy.md", read)]
    changes = plan_changes(on_disk, stored, hasher)
    assert sorted(hasher.calls) == ["/r/edited.md", "/r/same.md"]
    assert paths(changes.modified) == ["/r/edited.md"]
    assert paths(changes.verified) == ["/r/same.md"] and changes.unchanged_count == 3 and not changes.touched
    assert is_racy(read, read) and not is_racy(read - 1, read, margin_ns=0) and not is_racy(read, None)


def test_touch_only_refreshes_the_stat() -> None:
    hasher = Hasher({"/r/a.md": "A"})
    changes = plan_changes([disk("/r/a.md", mtime=99)], [row("/r/a.md", "A")], hasher)
    assert paths(changes.touched) == ["/r/a.md"]
    assert changes.touched[0].mtime_ns == 99
    assert (changes.modified, changes.added, changes.deleted) == ((), (), ())
    assert not changes.is_empty


def test_unknown_stored_stat_is_hashed() -> None:
    hasher = Hasher({"/r/a.md": "A"})
    changes = plan_changes([disk("/r/a.md")], [row("/r/a.md", "A", mtime=None, size=None)], hasher)
    assert paths(changes.touched) == ["/r/a.md"]
    assert hasher.calls == ["/r/a.md"]


def test_failed_document_is_retried_as_modified() -> None:
    # a failed row has no content hash: any readable content is a modification
    hasher = Hasher({"/r/a.md": "A"})
    changes = plan_changes([disk("/r/a.md", mtime=2)], [row("/r/a.md", "")], hasher)
    assert paths(changes.modified) == ["/r/a.md"]


def test_unreadable_changed_file_is_modified() -> None:
    hasher = Hasher({"/r/a.md": None})  # vanished or unreadable since the scan
    changes = plan_changes([disk("/r/a.md", mtime=2)], [row("/r/a.md", "A")], hasher)
    assert paths(changes.modified) == ["/r/a.md"]


def test_deleted_file() -> None:
    hasher = Hasher({})
    changes = plan_changes([], [row("/r/gone.md", "G")], hasher)
    assert paths(changes.deleted) == ["/r/gone.md"]
    assert hasher.calls == []


def test_move() -> None:
    hasher = Hasher({"/r/new/a.md": "A"})
    changes = plan_changes([disk("/r/new/a.md", mtime=7)], [row("/r/old/a.md", "A")], hasher)
    assert changes.moved == (Move(row("/r/old/a.md", "A"), disk("/r/new/a.md", mtime=7)),)
    old, new = changes.moved[0]
    assert (old.path, new.path) == (changes.moved[0].old_path, changes.moved[0].new_path)
    assert (changes.added, changes.deleted) == ((), ())


def test_move_plus_edit_is_add_and_delete() -> None:
    hasher = Hasher({"/r/b.md": "A edited"})
    changes = plan_changes([disk("/r/b.md")], [row("/r/a.md", "A")], hasher)
    assert changes.moved == ()
    assert paths(changes.added) == ["/r/b.md"] and paths(changes.deleted) == ["/r/a.md"]


def test_several_move_candidates_pair_deterministically() -> None:
    contents = {"/r/x/same.md": "S", "/r/y/other.md": "S", "/r/z/same2.md": "S"}
    db = [row("/r/a/same.md", "S"), row("/r/b/zzz.md", "S")]
    new = [disk(p) for p in contents]
    first = plan_changes(new, db, Hasher(contents))
    # the same file name wins; then path order; the third identical file is an add
    assert [(str(m.old.path), str(m.new.path)) for m in first.moved] == [
        ("/r/a/same.md", "/r/x/same.md"), ("/r/b/zzz.md", "/r/y/other.md")]
    assert paths(first.added) == ["/r/z/same2.md"] and first.deleted == ()
    for order in (new[::-1], new[1:] + new[:1]):
        assert plan_changes(order, db[::-1], Hasher(contents)) == first


def test_failed_rows_are_no_move_source() -> None:
    hasher = Hasher({"/r/b.md": ""})
    changes = plan_changes([disk("/r/b.md")], [DbDoc(Path("/r/a.md"), 1, 1, "")], hasher)
    assert changes.moved == () and hasher.calls == []  # nothing to match: added files are not read


def test_mixed_plan_is_sorted() -> None:
    contents = {"/r/c.md": "C2", "/r/b.md": "B", "/r/e.md": "E", "/r/m.md": "MOVED", "/r/a.md": "A"}
    hasher = Hasher(contents)
    db = [row("/r/a.md", "A"), row("/r/b.md", "B"), row("/r/c.md", "C"), row("/r/d.md", "D"), row("/r/old.md", "MOVED")]
    on_disk = [disk("/r/e.md"), disk("/r/c.md", 2), disk("/r/b.md", 3), disk("/r/a.md"), disk("/r/m.md")]
    changes = plan_changes(on_disk, db, hasher)
    assert changes.counts() == {"added": 1, "modified": 1, "deleted": 1, "moved": 1, "touched": 1, "unchanged": 1}
    assert (paths(changes.added), paths(changes.modified), paths(changes.deleted), paths(changes.touched)) == (
        ["/r/e.md"], ["/r/c.md"], ["/r/d.md"], ["/r/b.md"])
    assert "/r/a.md" not in hasher.calls


def test_full_mode_reprocesses_everything_without_hashing_twice() -> None:
    hasher = Hasher({"/r/a.md": "A", "/r/b.md": "B", "/r/n.md": "G"})
    db = [row("/r/a.md", "A"), row("/r/b.md", "B"), row("/r/g.md", "G")]
    changes = plan_changes([disk("/r/a.md"), disk("/r/b.md", 5), disk("/r/n.md")], db, hasher, full=True)
    assert paths(changes.modified) == ["/r/a.md", "/r/b.md"]
    assert changes.unchanged_count == 0 and changes.touched == ()
    assert [(str(m.old.path), str(m.new.path)) for m in changes.moved] == [("/r/g.md", "/r/n.md")]
    assert hasher.calls == ["/r/n.md"]  # the caller re-reads (and re-hashes) the modified ones


def test_verify_mode_hashes_every_file() -> None:
    hasher = Hasher({"/r/a.md": "A", "/r/b.md": "B-edited-same-size", "/r/c.md": "C"})
    db = [row("/r/a.md", "A"), row("/r/b.md", "B"), row("/r/c.md", "C")]
    changes = plan_changes([disk("/r/a.md"), disk("/r/b.md"), disk("/r/c.md", 9)], db, hasher, verify=True)
    assert sorted(hasher.calls) == ["/r/a.md", "/r/b.md", "/r/c.md"]
    assert paths(changes.modified) == ["/r/b.md"] and paths(changes.touched) == ["/r/c.md"]
    assert changes.unchanged_count == 1


def test_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ChangeSet().unchanged_count = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        row("/a", "A").content_hash = "x"  # type: ignore[misc]


def test_sha256_file(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"
    path = tmp_path / "big.md"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path), block=4096) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, max_bytes=len(data)) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, max_bytes=len(data) - 1) is None
    assert sha256_file(tmp_path / "missing.md") is None
    assert sha256_file(tmp_path) is None
    os.mkfifo(tmp_path / "pipe.md")
    assert sha256_file(tmp_path / "pipe.md") is None  # and does not block


def test_real_files_through_scan_and_sha256(tmp_path: Path) -> None:
    """The planner with the real scan and hash: rename, touch, edit, delete on disk."""
    for name in ("keep.md", "touch.md", "edit.md", "rename.md", "delete.md"):
        (tmp_path / name).write_text(f"# {name}\n\ncontent of {name}\n")

    def snapshot() -> list[DbDoc]:
        return [DbDoc(f.path, f.mtime_ns, f.size, sha256_file(f.path) or "") for f in scan([tmp_path]).files]

    db = snapshot()
    root = tmp_path.resolve()
    os.utime(root / "touch.md", ns=(1, 1))
    (root / "edit.md").write_text("# edit.md\n\nnew content\n")
    (root / "rename.md").rename(root / "renamed.md")
    (root / "delete.md").unlink()
    calls: list[Path] = []

    def hash_file(path: Path) -> str | None:
        calls.append(path)
        return sha256_file(path)

    changes = plan_changes(scan([tmp_path]).files, db, hash_file)
    assert [(m.old.path.name, m.new.path.name) for m in changes.moved] == [("rename.md", "renamed.md")]
    assert paths(changes.modified) == [str(root / "edit.md")]
    assert paths(changes.touched) == [str(root / "touch.md")]
    assert paths(changes.deleted) == [str(root / "delete.md")]
    assert changes.added == () and changes.unchanged_count == 1
    assert root / "keep.md" not in calls


def test_two_identical_deleted_files_and_one_new_copy_make_one_move() -> None:
    contents = {"/r/new/copy.md": "SAME"}
    db = [row("/r/b/dup.md", "SAME"), row("/r/a/dup.md", "SAME"), row("/r/keep.md", "K")]
    on_disk = [disk("/r/new/copy.md"), disk("/r/keep.md")]
    results = [plan_changes(d, rows, Hasher(contents))
               for d in (on_disk, on_disk[::-1]) for rows in (db, db[::-1], db[1:] + db[:1])]
    first = results[0]
    assert all(r == first for r in results)  # whatever the input order
    assert len(first.moved) == 1 and first.added == ()
    old, new = first.moved[0]
    assert str(new.path) == "/r/new/copy.md"
    assert str(old.path) == "/r/a/dup.md"  # no name matches: the first in path order
    assert paths(first.deleted) == ["/r/b/dup.md"]  # the other copy is a plain delete
    assert first.unchanged_count == 1


def test_same_name_is_preferred_over_path_order() -> None:
    contents = {"/r/z/dup.md": "SAME"}
    db = [row("/r/a/other.md", "SAME"), row("/r/y/dup.md", "SAME")]
    changes = plan_changes([disk("/r/z/dup.md")], db, Hasher(contents))
    assert [(str(m.old_path), str(m.new_path)) for m in changes.moved] == [("/r/y/dup.md", "/r/z/dup.md")]
    assert paths(changes.deleted) == ["/r/a/other.md"]


def test_unchanged_files_are_never_hashed_in_a_large_mixed_plan() -> None:
    unchanged = [f"/r/u{i:03}.md" for i in range(200)]
    contents = {p: p for p in unchanged} | {"/r/edited.md": "new", "/r/added.md": "moved?"}
    hasher = Hasher(contents)
    db = [row(p, p) for p in unchanged] + [row("/r/edited.md", "old"), row("/r/gone.md", "gone")]
    on_disk = [disk(p) for p in unchanged] + [disk("/r/edited.md", mtime=2), disk("/r/added.md")]
    changes = plan_changes(on_disk, db, hasher)
    assert changes.unchanged_count == 200
    assert not set(hasher.calls) & set(unchanged)
    assert sorted(hasher.calls) == ["/r/added.md", "/r/edited.md"]  # each at most once
    assert (paths(changes.added), paths(changes.modified), paths(changes.deleted)) == (
        ["/r/added.md"], ["/r/edited.md"], ["/r/gone.md"])


def test_vanished_file_is_modified_never_touched_or_moved() -> None:
    hasher = Hasher({})  # every read fails: the files vanished after the scan
    db = [row("/r/a.md", "A"), row("/r/old.md", "X")]
    changes = plan_changes([disk("/r/a.md", mtime=3), disk("/r/new.md")], db, hasher)
    assert paths(changes.modified) == ["/r/a.md"]
    assert paths(changes.added) == ["/r/new.md"] and paths(changes.deleted) == ["/r/old.md"]
    assert changes.moved == () and changes.touched == ()


def test_full_mode_lists_every_existing_file_as_modified() -> None:
    names = [f"/r/{c}.md" for c in "abcde"]
    hasher = Hasher({p: p for p in names})
    changes = plan_changes([disk(p) for p in names], [row(p, p) for p in names], hasher, full=True)
    assert paths(changes.modified) == names
    assert changes.counts() == {"added": 0, "modified": 5, "deleted": 0, "moved": 0, "touched": 0, "unchanged": 0}
    assert hasher.calls == []
    assert plan_changes([disk(p) for p in names], [row(p, p) for p in names], hasher).unchanged_count == 5
