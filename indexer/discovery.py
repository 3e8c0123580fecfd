"""Which files are indexed: markdown under the roots, minus what is ignored.

Rules, shared by the one-shot scan and the watcher's single-path check:
include globs on the file name; exclude globs (gitignore-style, relative to the root);
``.gitignore`` files inside the roots, nested ones included (deeper files win, ``!`` works);
hidden files and directories (``.git`` among them) and ``node_modules`` skipped; symlinks are
never followed, so nothing outside a root is ever indexed and no loop or duplicate can occur
(a target inside a root is indexed under its own path).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pathspec

SKIP_DIRS = frozenset({"node_modules"})


@dataclass(frozen=True)
class DiskFile:
    path: Path
    mtime_ns: int
    size: int


@dataclass(frozen=True)
class ScanResult:
    files: list[DiskFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _spec(lines: Sequence[str]) -> pathspec.GitIgnoreSpec | None:
    lines = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def _read_gitignore(directory: str) -> pathspec.GitIgnoreSpec | None:
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as fh:
            return _spec(fh.read().splitlines())
    except OSError:
        return None


def _ignored(specs: Sequence[tuple[str, pathspec.GitIgnoreSpec]], full: str, is_dir: bool) -> bool:
    """Deeper .gitignore files override shallower ones; the last matching pattern wins."""
    verdict = False
    for base, spec in specs:
        rel = os.path.relpath(full, base).replace(os.sep, "/") + ("/" if is_dir else "")
        result = spec.check_file(rel)
        if result.include is not None:
            verdict = bool(result.include)
    return verdict


def _matcher(include: Sequence[str]) -> "re.Pattern[str]":
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in include) or "(?!)")


def _included(name: str, include: Sequence[str]) -> bool:
    return _matcher(include).match(name) is not None


def scan(roots: Sequence[Path], *, include: Sequence[str], exclude: Sequence[str] = ()) -> ScanResult:
    found: dict[str, tuple[int, int]] = {}
    skipped: list[tuple[str, str]] = []
    included = _matcher(include).match
    for root in roots:
        root_s = str(Path(root).resolve())
        excl = _spec(exclude)
        base_specs: list[tuple[str, pathspec.GitIgnoreSpec]] = [(root_s, excl)] if excl else []
        stack = [(root_s, base_specs)]
        while stack:
            directory, specs = stack.pop()
            own = _read_gitignore(directory)
            if own is not None:
                specs = specs + [(directory, own)]
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:
                skipped.append((directory, f"cannot list directory: {exc.strerror}"))
                continue
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name in SKIP_DIRS:
                    continue
                try:
                    if entry.is_symlink():
                        skipped.append((entry.path, "symlink (not followed)"))
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if not specs or not _ignored(specs, entry.path, True):
                            stack.append((entry.path, specs))
                        continue
                    if not entry.is_file(follow_symlinks=False) or included(name) is None:
                        continue
                    if specs and _ignored(specs, entry.path, False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    skipped.append((entry.path, f"cannot stat: {exc.strerror}"))
                    continue
                found[entry.path] = (st.st_mtime_ns, st.st_size)
    files = [DiskFile(Path(p), *found[p]) for p in sorted(found)]
    return ScanResult(files, skipped)


def root_of(path: Path, roots: Sequence[Path]) -> Path | None:
    for root in roots:
        if path == root or root in path.parents:
            return root
    return None


def is_indexable(path: Path, roots: Sequence[Path], *, include: Sequence[str], exclude: Sequence[str] = ()) -> bool:
    """The scan's rules for one path (the watcher asks this for every event)."""
    path = Path(os.path.abspath(path))
    root = root_of(path, [Path(r) for r in roots])
    if root is None or path == root or not _included(path.name, include):
        return False
    rel_parts = path.relative_to(root).parts
    if any(p.startswith(".") or p in SKIP_DIRS for p in rel_parts):
        return False
    specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []
    excl = _spec(exclude)
    if excl:
        specs.append((str(root), excl))
    current = root
    for part in rel_parts:
        own = _read_gitignore(str(current))
        if own is not None:
            specs.append((str(current), own))
        current = current / part
        if current.is_symlink():
            return False
        if current != path and _ignored(specs, str(current), True):
            return False
    return not _ignored(specs, str(path), False)
