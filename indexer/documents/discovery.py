"""Which files are indexed: markdown under the roots, minus what is ignored.

One set of rules, shared by the one-shot :func:`scan` and the watcher's single-path
:func:`is_indexable`:

- **include** globs (default ``*.md``, ``*.markdown``): a pattern without ``/`` is matched
  against the file name (case-sensitively, like a shell), one with ``/`` gitignore-style
  against the path relative to the root;
- **exclude** globs, gitignore-style, relative to the root (``drafts/``, ``*.tmp.md``,
  ``/README.md``). They are final: no ``.gitignore`` negation brings an excluded file back;
- ``.gitignore`` files anywhere inside a root, nested ones included, with git's semantics
  (pathspec's gitwildmatch): a deeper file's patterns win, the last matching pattern wins,
  ``!`` re-includes, and nothing inside an ignored directory can be re-included;
- hidden files and directories (a name starting with ``.``, so ``.git`` too) and
  ``node_modules`` are skipped;
- **symlinks are never followed**: nothing outside a root is ever indexed, no loop can
  occur and no file is seen twice (a link whose target is inside a root is indexed once,
  under the target's own path). Links that would have been candidates are listed in
  ``skipped``.

Paths in the result are absolute, under the resolved root, without symlinks; files that
cannot be listed or stat'ed (permissions, vanished mid-scan) are listed in ``skipped`` with
the reason, never raised.

A scan also says what it *proved*: ``coverage`` holds the scopes it looked at completely
(a directory walked to the end, a path stat'ed) and the places it could not read (a
directory it could not list, an entry it could not stat, a root that is not readable).
A stored document not found by the scan may be deleted only when the coverage proves it
missing (:meth:`Coverage.proves_missing`); a path outside every root is not covered at all.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat as _stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pathspec

DEFAULT_INCLUDE = ("*.md", "*.markdown")
SKIP_DIRS = frozenset({"node_modules"})
GITIGNORE = ".gitignore"


@dataclass(frozen=True)
class DiskFile:
    path: Path
    mtime_ns: int
    size: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def _inside(path: str, scopes: frozenset[str]) -> bool:
    """``path`` is one of ``scopes`` or below one (one set look-up per ancestor)."""
    while True:
        if path in scopes:
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


@dataclass(frozen=True)
class Coverage:
    """What a scan proved: ``covered`` scopes (a path and everything below it) were looked
    at completely, except what lies at or below an ``unreadable`` path."""

    covered: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()

    @cached_property
    def _sets(self) -> tuple[frozenset[str], frozenset[str]]:
        norm = lambda paths: frozenset(os.path.normpath(p) for p in paths)  # noqa: E731
        return norm(self.covered), norm(self.unreadable)

    def proves_missing(self, path: str) -> bool:
        """True when a file at ``path`` that the scan did not return is really not there (or
        not indexable): its place was covered and nothing on the way failed to read."""
        covered, unreadable = self._sets
        path = os.path.normpath(path)
        return _inside(path, covered) and not _inside(path, unreadable)


@dataclass(frozen=True)
class ScanResult:
    files: tuple[DiskFile, ...]
    skipped: tuple[Skipped, ...] = ()
    coverage: Coverage = Coverage()


def _spec(lines: Iterable[str]) -> pathspec.GitIgnoreSpec | None:
    """A gitignore spec; a line pathspec cannot parse is dropped (git ignores it too)."""
    kept = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    if not kept:
        return None
    try:
        return pathspec.GitIgnoreSpec.from_lines(kept)
    except Exception:
        good = []
        for line in kept:
            try:
                pathspec.GitIgnoreSpec.from_lines([line])
                good.append(line)
            except Exception:
                continue
        return pathspec.GitIgnoreSpec.from_lines(good) if good else None


def _read_gitignore(directory: str) -> pathspec.GitIgnoreSpec | None:
    try:
        with open(os.path.join(directory, GITIGNORE), encoding="utf-8", errors="replace") as fh:
            return _spec(fh.read().splitlines())
    except OSError:
        return None


# (prefix of the .gitignore's directory relative to the root, with a trailing "/" or "", spec)
Ignores = tuple[tuple[str, pathspec.GitIgnoreSpec], ...]


def _dir_verdict(spec: pathspec.GitIgnoreSpec, rel: str) -> bool | None:
    """The last matching pattern's verdict for a directory (``rel`` ends with "/"). Unlike
    pathspec, a pattern ``d/**`` does not match ``d`` itself in git (only what is inside),
    so ``d/**`` followed by ``!d/keep.md`` keeps ``d/keep.md``."""
    for pattern in reversed(spec.patterns):
        if pattern.include is None:
            continue
        result = pattern.match_file(rel)
        if result is None:
            continue
        match = getattr(result, "match", None)
        whole_dir = match is not None and match.end() == len(rel)
        if whole_dir and str(getattr(pattern, "pattern", "")).rstrip().endswith("/**"):
            continue
        return bool(pattern.include)
    return None


def _ignored(ignores: Ignores, rel: str) -> bool:
    """git's verdict for ``rel`` (a directory ends with "/"): the deepest deciding file wins."""
    is_dir = rel.endswith("/")
    for prefix, spec in reversed(ignores):
        sub = rel[len(prefix):]
        verdict = _dir_verdict(spec, sub) if is_dir else spec.check_file(sub).include
        if verdict is not None:
            return bool(verdict)
    return False


class Rules:
    """Compiled include and exclude patterns (compile once, match many)."""

    def __init__(self, include: Sequence[str] = DEFAULT_INCLUDE, exclude: Sequence[str] = ()) -> None:
        include = tuple(include) or DEFAULT_INCLUDE
        self._name_re = re.compile("|".join(fnmatch.translate(p) for p in include if "/" not in p) or r"(?!)")
        path_patterns = [p for p in include if "/" in p]
        self._include_spec = _spec(path_patterns) if path_patterns else None
        self._exclude = _spec(exclude)

    def included(self, name: str, rel: str) -> bool:
        if self._name_re.match(name):
            return True
        return self._include_spec is not None and self._include_spec.match_file(rel)

    def excluded(self, rel: str) -> bool:
        """``rel`` is relative to the root; a directory's ends with "/"."""
        if self._exclude is None:
            return False
        if rel.endswith("/"):
            return bool(_dir_verdict(self._exclude, rel))
        return self._exclude.match_file(rel)


def _skip_name(name: str) -> bool:
    return name.startswith(".") or name in SKIP_DIRS


_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_UTF8_NAME = "name is not valid UTF-8 (not indexed: the database stores paths as UTF-8)"


def _not_utf8(name: str) -> bool:
    """A name the OS gave with undecodable bytes (held as surrogates): it cannot be stored."""
    return not name.isascii() and _SURROGATE.search(name) is not None


def scan(roots: Sequence[Path], *, include: Sequence[str] = DEFAULT_INCLUDE,
         exclude: Sequence[str] = ()) -> ScanResult:
    """Every indexable file under ``roots``, sorted by path."""
    rules = Rules(include, exclude)
    acc = _Acc()
    for root in roots:
        root_s = os.path.realpath(root)
        try:
            st = os.stat(root_s)
        except OSError as exc:
            acc.unreadable(root_s, Skipped(str(root), f"root cannot be read: {exc.strerror or exc}"))
            continue
        acc.covered.append(root_s)
        if not _stat.S_ISDIR(st.st_mode):
            name = os.path.basename(root_s)
            if _stat.S_ISREG(st.st_mode) and rules.included(name, name) and root_s not in acc.seen:
                acc.seen.add(root_s)
                acc.files.append(DiskFile(Path(root_s), st.st_mtime_ns, st.st_size))
            continue
        _walk(root_s, rules, acc)
    return acc.result()


class _Acc:
    """What a scan gathers: files, skipped entries, and what it proved (coverage)."""

    def __init__(self) -> None:
        self.files: list[DiskFile] = []
        self.skipped: list[Skipped] = []
        self.seen: set[str] = set()
        self.covered: list[str] = []
        self.blind: list[str] = []

    def unreadable(self, path: str, why: Skipped, exc: OSError | None = None) -> None:
        """Record ``path`` as not looked at; one that vanished mid-scan is simply gone."""
        self.skipped.append(why)
        if not isinstance(exc, FileNotFoundError):
            self.blind.append(path)

    def result(self) -> ScanResult:
        self.files.sort(key=lambda f: str(f.path))
        return ScanResult(tuple(self.files), tuple(self.skipped), Coverage(tuple(self.covered), tuple(self.blind)))


def _child(parent: Path, name: str) -> Path:
    """``parent / name`` without re-parsing the whole path (half the scan's time otherwise)."""
    make = getattr(parent, "_make_child_relpath", None)
    return make(name) if make is not None and os.sep not in name else parent / name


def _walk(root: str, rules: Rules, acc: _Acc, *, rel_dir: str = "", ignores: Ignores | None = None) -> None:
    """Walk ``root`` (the root itself, or a directory ``rel_dir`` below it whose ``ignores``
    are already known, own .gitignore included). A directory that cannot be listed and an
    entry that cannot be stat'ed are recorded as unreadable (nothing below them is proven)."""
    files, seen = acc.files, acc.seen
    stack: list[tuple[str, str, Ignores, bool]] = [(root, rel_dir, ignores or (), ignores is not None)]
    while stack:
        directory, rel_dir, ignores, known = stack.pop()
        dir_path: Path | None = None
        own = None if known else _read_gitignore(directory)
        if own is not None:
            ignores = (*ignores, (rel_dir, own))
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            # a subdirectory gone mid-walk is gone; the walk's own start proves nothing
            acc.unreadable(directory, Skipped(directory, f"cannot list directory: {exc.strerror or exc}"),
                           exc if directory != root else None)
            continue
        for entry in entries:
            name = entry.name
            if _skip_name(name):
                continue
            if _not_utf8(name):
                acc.skipped.append(Skipped(entry.path, NOT_UTF8_NAME))
                continue
            rel = rel_dir + name
            try:
                if entry.is_symlink():
                    if rules.included(name, rel) or entry.is_dir():
                        acc.skipped.append(Skipped(entry.path, "symlink (not followed)"))
                    continue
                if entry.is_dir(follow_symlinks=False):
                    rel += "/"
                    if not rules.excluded(rel) and not _ignored(ignores, rel):
                        stack.append((entry.path, rel, ignores, False))
                    continue
                if not rules.included(name, rel) or rules.excluded(rel) or _ignored(ignores, rel):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                acc.unreadable(entry.path, Skipped(entry.path, f"cannot stat: {exc.strerror or exc}"), exc)
                continue
            if not _stat.S_ISREG(st.st_mode) or entry.path in seen:
                continue  # a FIFO or socket named *.md; or a file of an enclosing root
            seen.add(entry.path)
            if dir_path is None:
                dir_path = Path(directory)
            files.append(DiskFile(_child(dir_path, name), st.st_mtime_ns, st.st_size))


def _roots_of(path: str, roots: Sequence[Path]) -> list[tuple[str, str]]:
    """(resolved root, path relative to it: "" for the root itself) for every root that is
    ``path`` or holds it (nested roots: each one); a root may be given as configured (a
    symlink) or resolved, ``path`` absolute, with or without a trailing separator."""
    path = path.rstrip(os.sep) or os.sep
    found: list[tuple[str, str]] = []
    for root in roots:
        for form in dict.fromkeys((os.path.abspath(root), os.path.realpath(root))):
            base = form.rstrip(os.sep) + os.sep
            if path == form or path + os.sep == base:
                found.append((os.path.realpath(root), ""))
                break
            if path.startswith(base):
                found.append((os.path.realpath(root), path[len(base):]))
                break
    return found


def _chain(root: str, parts: Sequence[str], rules: Rules) -> Ignores | None:
    """The ignore files that apply inside ``root/parts...`` (a directory), or None when a
    directory on the way is a symlink, hidden, excluded or ignored."""
    ignores: Ignores = ()
    current, rel_dir = root, ""
    for part in parts:
        own = _read_gitignore(current)
        if own is not None:
            ignores = (*ignores, (rel_dir, own))
        current = os.path.join(current, part)
        rel_dir += part + "/"
        if _skip_name(part) or os.path.islink(current) or rules.excluded(rel_dir) or _ignored(ignores, rel_dir):
            return None
    own = _read_gitignore(current)
    if own is not None:
        ignores = (*ignores, (rel_dir, own))
    return ignores


def is_indexable(path: Path | str, roots: Sequence[Path], *, include: Sequence[str] = DEFAULT_INCLUDE,
                 exclude: Sequence[str] = (), rules: Rules | None = None) -> bool:
    """The scan's rules for one path (the watcher asks this for every event).

    A path that does not exist (a deleted file) is judged by its name, place and the ignore
    files; one that exists must be a regular file reached without a symlink. Pass ``rules``
    (a :class:`Rules`) to skip compiling the patterns on every call."""
    rules = rules or Rules(include, exclude)
    return any(_indexable_in(root, rel, rules) for root, rel in _roots_of(os.path.abspath(path), roots))


def _indexable_in(root: str, rel: str, rules: Rules) -> bool:
    parts = rel.split(os.sep)
    if not rel or any(_skip_name(p) for p in parts):
        return False
    rel_posix = "/".join(parts)
    if not rules.included(parts[-1], rel_posix) or rules.excluded(rel_posix):
        return False
    ignores = _chain(root, parts[:-1], rules)
    if ignores is None or _ignored(ignores, rel_posix):
        return False
    full = os.path.join(root, *parts)
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return _stat.S_ISREG(st.st_mode)


def scan_paths(paths: Sequence[Path | str], roots: Sequence[Path], *, include: Sequence[str] = DEFAULT_INCLUDE,
               exclude: Sequence[str] = ()) -> ScanResult:
    """:func:`scan` restricted to ``paths`` (files or directories at or under the roots, a
    root itself included): what the watcher's worker reads after a burst of events, and what
    ``reindex PATH`` reads, without walking whole roots. The rules are the scan's.

    Coverage: a path that does not exist proves everything at or below it missing; a
    directory walked proves what it holds (minus what could not be read); a path whose
    place is hidden, excluded or ignored proves nothing below it indexable. A path outside
    every root is listed in ``skipped`` and covers nothing (its stored rows are kept)."""
    rules = Rules(include, exclude)
    acc = _Acc()
    for raw in paths:
        located = _roots_of(os.path.abspath(raw), roots)
        if not located:
            acc.skipped.append(Skipped(str(raw), "not under any root of this run"))
        for root, rel in located:
            _scan_one(root, [p for p in rel.split(os.sep) if p], rules, acc)
    return acc.result()


def _scan_one(root: str, parts: list[str], rules: Rules, acc: _Acc) -> None:
    full = os.path.join(root, *parts)
    if _not_utf8(full):
        acc.skipped.append(Skipped(full, NOT_UTF8_NAME))
        return
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        if not os.path.isdir(root):  # an unmounted or removed root proves nothing
            acc.unreadable(full, Skipped(root, "root is not a readable directory"))
        else:
            acc.covered.append(full)  # gone: so is everything that was below it
        return
    except OSError as exc:
        acc.unreadable(full, Skipped(full, f"cannot stat: {exc.strerror or exc}"))
        return
    acc.covered.append(full)
    if _stat.S_ISDIR(st.st_mode):
        ignores = _chain(root, parts, rules)
        if ignores is not None:
            rel_dir = "".join(p + "/" for p in parts)
            _walk(full, rules, acc, rel_dir=rel_dir, ignores=ignores)
    elif _stat.S_ISREG(st.st_mode) and full not in acc.seen and _indexable_in(root, os.sep.join(parts), rules):
        acc.seen.add(full)
        acc.files.append(DiskFile(Path(full), st.st_mtime_ns, st.st_size))
