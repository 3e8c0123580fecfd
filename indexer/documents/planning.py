"""Change planning as a pure function: the disk against the database → a change set.

- same mtime and size as stored → *unchanged*: the file is not read (``hash_file`` is not
  called), unless it is *racily clean* (git's rule): its mtime is not older than the moment
  its stored content was read (``read_ns``), less :data:`RACY_MARGIN_NS` for timestamps
  coarser than the clock. A same-size edit saved in the same timestamp tick after that read
  keeps the stored stat, so only the hash can tell: such a file is hashed; unchanged, it is
  listed in *verified* (record a new ``read_ns``, and it is not hashed again once its mtime is
  older than that);
- a changed stat (or no stored stat) → hashed: the same hash is a *touch* (refresh the
  stored stat, nothing else), a different one (or an unreadable file) a *modification*;
- a path only in the database → *deleted*, but only when the scan's ``coverage`` proves it
  missing (its place was walked completely, or it was stat'ed and is gone); otherwise it is
  *kept* untouched and reported (a directory that could not be read, a path outside the
  scan). Without ``coverage`` the caller vouches that the scan covered every stored row;
- a path only on disk → *added*;
- an added file whose hash equals a deleted document's stored hash → a *move* (the row and
  its vectors move, nothing is re-embedded), taken out of added and deleted. With several
  candidates of one hash, the pairs are made deterministically: same file name first, then
  in path order. A move plus an edit is an add and a delete.

``full=True`` (``reindex --full``, or a new embedding fingerprint) lists every file that is
both on disk and in the database as *modified*, without hashing it here: the caller re-reads
and re-hashes each one anyway. ``verify=True`` hashes every such file instead, whatever its
stat says, and classifies it by content (an edit that kept mtime and size is found; the
unchanged ones stay untouched).

The hash function is injected (:func:`sha256_file` in production), so the planner does no
I/O of its own and tests can count its calls.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from indexer.documents.discovery import Coverage, DiskFile

__all__ = ["RACY_MARGIN_NS", "ChangeSet", "Coverage", "DbDoc", "DiskFile", "HashFn", "Move", "is_racy", "plan_changes",
           "sha256_file"]

HashFn = Callable[[Path], "str | None"]
# File timestamps lag the clock: Linux stamps them from a coarse clock (a tick of 1-10 ms),
# FAT keeps 2 s, ext3 and HFS+ 1 s. A file whose mtime is within this of the moment its
# content was read may be edited again without a visible stat change.
RACY_MARGIN_NS = 2_000_000_000


@dataclass(frozen=True)
class DbDoc:
    path: Path
    mtime_ns: int | None  # None: unknown (or a retry is due): the file is hashed
    size: int | None
    content_hash: str  # "" when there is none (a failed document): never a move source
    read_ns: int | None = None  # when the content behind content_hash was read (clock ns); None: long ago


def is_racy(mtime_ns: int, read_ns: int | None, margin_ns: int | None = None) -> bool:
    """Git's "racily clean": a stored stat cannot vouch for a file modified so close to the
    moment its content was read (``read_ns``) that a later edit could share its timestamp."""
    margin = RACY_MARGIN_NS if margin_ns is None else margin_ns
    return read_ns is not None and mtime_ns >= read_ns - margin


class Move(NamedTuple):
    """A document whose content now lives at another path (unpacks as ``old, new``)."""

    old: DbDoc
    new: DiskFile

    @property
    def old_path(self) -> Path:
        return self.old.path

    @property
    def new_path(self) -> Path:
        return self.new.path


@dataclass(frozen=True)
class ChangeSet:
    added: tuple[DiskFile, ...] = ()
    modified: tuple[DiskFile, ...] = ()
    deleted: tuple[DbDoc, ...] = ()
    moved: tuple[Move, ...] = ()
    touched: tuple[DiskFile, ...] = ()  # same content, new stat: refresh the stat only
    unchanged_count: int = 0
    kept: tuple[DbDoc, ...] = ()  # not found, but not proven missing: left as they are
    verified: tuple[DiskFile, ...] = ()  # racily clean, hashed, unchanged (and counted so): record the new read time

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.modified or self.deleted or self.moved or self.touched)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "modified": len(self.modified), "deleted": len(self.deleted),
                "moved": len(self.moved), "touched": len(self.touched), "unchanged": self.unchanged_count}


def _pair_moves(deleted: list[DbDoc], added: list[tuple[DiskFile, str | None]]) -> list[Move]:
    """Added files matched to deleted documents of the same hash: same name first, then in
    path order (both lists are sorted by path)."""
    by_hash: dict[str, list[DbDoc]] = {}
    for doc in deleted:
        if doc.content_hash:
            by_hash.setdefault(doc.content_hash, []).append(doc)
    moves: list[Move] = []
    taken: set[Path] = set()
    paired: set[Path] = set()
    for same_name in (True, False):
        for f, digest in added:
            candidates = by_hash.get(digest or "")
            if not candidates or f.path in paired:
                continue
            for doc in candidates:
                if doc.path not in taken and (not same_name or doc.path.name == f.path.name):
                    moves.append(Move(doc, f))
                    taken.add(doc.path)
                    paired.add(f.path)
                    break
    moves.sort(key=lambda m: str(m.new.path))
    return moves


def plan_changes(disk: Iterable[DiskFile], db: Iterable[DbDoc], hash_file: HashFn, *,
                 full: bool = False, verify: bool = False, coverage: Coverage | None = None) -> ChangeSet:
    """What to do to bring the database (``db``) in line with the disk (``disk``). Deleted
    (and moved-from) rows are always among those ``coverage`` proves missing."""
    stored = {str(d.path): d for d in db}  # keyed by str: a Path's hash is recomputed on every call
    on_disk = {str(f.path): f for f in disk}
    added: list[DiskFile] = []
    modified: list[DiskFile] = []
    touched: list[DiskFile] = []
    verified: list[DiskFile] = []
    unchanged = 0
    for key in sorted(on_disk):
        f = on_disk[key]
        doc = stored.get(key)
        if doc is None:
            added.append(f)
            continue
        if full:
            modified.append(f)  # re-read and re-chunked; chunks with unchanged hashes keep their vectors
            continue
        same_stat = doc.mtime_ns == f.mtime_ns and doc.size == f.size
        racy = same_stat and is_racy(f.mtime_ns, doc.read_ns)
        if same_stat and not verify and not racy:
            unchanged += 1
            continue
        digest = hash_file(f.path)
        if digest is None or digest != doc.content_hash:
            modified.append(f)  # unreadable now: the sync step reads it and records why
        elif same_stat:
            unchanged += 1
            if racy:
                verified.append(f)
        else:
            touched.append(f)
    gone = [stored[key] for key in sorted(stored) if key not in on_disk]
    deleted = [d for d in gone if coverage is None or coverage.proves_missing(str(d.path))]
    kept = tuple(d for d in gone if coverage is not None and not coverage.proves_missing(str(d.path)))
    moved: list[Move] = []
    if deleted and added and any(d.content_hash for d in deleted):
        moved = _pair_moves(deleted, [(f, hash_file(f.path)) for f in added])
        moved_from = {m.old.path for m in moved}
        moved_to = {m.new.path for m in moved}
        added = [f for f in added if f.path not in moved_to]
        deleted = [d for d in deleted if d.path not in moved_from]
    return ChangeSet(tuple(added), tuple(modified), tuple(deleted), tuple(moved), tuple(touched), unchanged, kept,
                     tuple(verified))


def sha256_file(path: Path | str, max_bytes: int | None = None, *, block: int = 1 << 20) -> str | None:
    """SHA-256 (hex) of a file's bytes, streamed; None when it vanished, cannot be read, is
    not a regular file, or is larger than ``max_bytes``."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block
    except OSError:  # vanished, permission...
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (max_bytes is not None and st.st_size > max_bytes):
            return None
        while chunk := os.read(fd, block):
            digest.update(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()
