"""What a user means by the paths given to ``reindex PATH...``, ``DocumentIndexService.sync(paths=)``
and the daemon's reindex request: normalised paths, and which of them are extra roots.
Pure apart from resolving symlinks and asking whether a path exists."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from indexer.errors import ConfigError


def place(path: Path | str) -> str:
    """An absolute path with its directories resolved (symlinks, ``..``, a trailing slash) but
    not its last part: a deleted file, or a symlink the scan must not follow, keeps its name."""
    absolute = os.path.abspath(os.path.expanduser(path))
    parent, name = os.path.split(absolute)
    return os.path.join(os.path.realpath(parent), name) if name else absolute


def normal_path(raw: Path | str) -> Path:
    """What a user means by a path: absolute, symlinks resolved when it exists (the target's
    own path), else its directory resolved and its name kept (a deleted file)."""
    path = Path(raw).expanduser().absolute()
    return path.resolve() if path.exists() else Path(place(path))


def split_targets(paths: Sequence[Path | str], roots: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """``reindex PATH...`` semantics: (extra roots for this run, paths to restrict it to).
    A path at or below a root is looked at with that root's rules; an existing directory
    outside every root becomes a root for this run; anything else is a :class:`ConfigError`."""
    under_roots = within(roots)
    extra_roots: list[Path] = []
    targets: list[Path] = []
    for raw in paths:
        path = normal_path(raw)
        exists = path.exists() or path.is_symlink()
        if not under_roots(str(path)):
            if not exists:
                raise ConfigError(f"no such file or directory: {raw}")
            if not path.is_dir():
                raise ConfigError(f"{raw} is outside the configured roots; give its directory to index it as a root")
            if path not in extra_roots:
                extra_roots.append(path)
        targets.append(path)
    return extra_roots, targets


def partition(paths: Sequence[Path | str], bases: Sequence[Path | str]) -> tuple[list[Path], list[Path | str]]:
    """(the paths at or below one of ``bases``, normalised; the others, as given): which
    PATHs a running daemon takes (its roots) and which are left for this process."""
    inside = within(bases)
    mine: list[Path] = []
    rest: list[Path | str] = []
    for raw in paths:
        path = normal_path(raw)
        if inside(str(path)):
            mine.append(path)
        else:
            rest.append(raw)
    return mine, rest


def within(bases: Sequence[Path | str]) -> Callable[[str], bool]:
    """A test for "this path is one of ``bases`` or below one of them" (absolute paths)."""
    prefixes = [str(b) for b in bases]

    def inside(candidate: str) -> bool:
        return any(candidate == b or candidate.startswith(b.rstrip("/") + "/") for b in prefixes)

    return inside
