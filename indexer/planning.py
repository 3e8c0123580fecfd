"""Change planning as a pure function: the disk against the database → a change set.

Unchanged mtime and size → the file is not read. Changed stat → hashed: same hash is a
*touch* (refresh the stat, no state change), a different one a *modification*. A new file
whose hash equals a deleted one's is a *move* (row and vectors move, nothing re-embedded).
The hash function is injected, so the planner does no I/O of its own. ``full`` treats every
existing file as modified (``reindex --full``, or a new embedding fingerprint).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from indexer.discovery import DiskFile

HashFn = Callable[[Path], "str | None"]


@dataclass(frozen=True)
class DbDoc:
    path: Path
    mtime_ns: int | None
    size: int | None
    content_hash: str


@dataclass(frozen=True)
class ChangeSet:
    added: tuple[DiskFile, ...] = ()
    modified: tuple[DiskFile, ...] = ()
    deleted: tuple[DbDoc, ...] = ()
    moved: tuple[tuple[DbDoc, DiskFile], ...] = ()
    touched: tuple[DiskFile, ...] = ()
    unchanged_count: int = 0

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.modified or self.deleted or self.moved or self.touched)


def plan_changes(disk: Sequence[DiskFile], db: Sequence[DbDoc], hash_file: HashFn, *, full: bool = False) -> ChangeSet:
    stored = {d.path: d for d in db}
    on_disk = {f.path: f for f in disk}
    added: list[DiskFile] = []
    modified: list[DiskFile] = []
    touched: list[DiskFile] = []
    unchanged = 0
    for path in sorted(on_disk):
        f = on_disk[path]
        doc = stored.get(path)
        if doc is None:
            added.append(f)
            continue
        if full:
            modified.append(f)  # re-read and re-chunk; unchanged chunks keep their vectors
            continue
        if doc.mtime_ns == f.mtime_ns and doc.size == f.size:
            unchanged += 1
            continue
        digest = hash_file(path)
        if digest is None or digest != doc.content_hash:
            modified.append(f)  # unreadable now: the sync step records why
        elif doc.mtime_ns == f.mtime_ns and doc.size == f.size:
            unchanged += 1
        else:
            touched.append(f)
    deleted = [stored[p] for p in sorted(stored) if p not in on_disk]
    moved: list[tuple[DbDoc, DiskFile]] = []
    if deleted and added:
        by_hash: dict[str, list[DbDoc]] = {}
        for doc in deleted:
            if doc.content_hash:
                by_hash.setdefault(doc.content_hash, []).append(doc)
        still_added: list[DiskFile] = []
        for f in added:
            candidates = by_hash.get(hash_file(f.path) or "")
            if candidates:
                moved.append((candidates.pop(0), f))
            else:
                still_added.append(f)
        moved_from = {old.path for old, _ in moved}
        added = still_added
        deleted = [d for d in deleted if d.path not in moved_from]
    return ChangeSet(tuple(added), tuple(modified), tuple(deleted), tuple(moved), tuple(touched), unchanged)


def sha256_file(path: Path, block: int = 1 << 20) -> str | None:
    """SHA-256 of a file's bytes, or None when it vanished or cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(block):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()
