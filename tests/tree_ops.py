"""Random markdown trees and random edits to them, for the differential tests.

An operation is drawn as plain numbers and interpreted against the tree as it is when it is
applied (the i-th existing file, the j-th directory...), so every drawn sequence is valid
and Hypothesis can shrink it freely."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import strategies as st

FILE_NAMES = ["a.md", "b c.md", "ünïcode.md", "日本語.md", "x.markdown", "notes.txt", ".hidden.md", "Z.md",
              "guide.md", "sp ace.md"]
DIR_NAMES = ["d", "sub dir", "é", "deep", "node_modules", ".git"]
IGNORES = ["", "*.markdown\n", "d/\n", "b c.md\n", "deep/\n!deep/a.md\n", "/a.md\n", "*\n!*/\n!*.md\n"]
LINK_NAMES = ["link.md", "linkdir", "out.md", "outdir"]
TEXTS = [
    "# Tar\n\nArchive files.\n\n## Create\n\n`tar cf out.tar files`\n\n## Extract\n\n`tar xf out.tar`\n",
    "# Tar\n\nArchive files.\n\n## Create\n\n`tar czf out.tgz files`\n\n## Extract\n\n`tar xf out.tar`\n",
    "No heading here: the title comes from the file name.\n\n## Section\n\nBody of the section.\n",
    "---\ntitle: Front matter\n---\n\nText under front matter.\n",
    "# Grep\n\nFind patterns.\n",
    "",
]
KINDS = ["create", "edit", "save", "delete", "move", "movedir", "touch", "chmod", "gitignore", "symlink", "mkdir"]
AS_ROOT = os.geteuid() == 0

# the moves and edits a sync gets wrong most easily are drawn most often
WEIGHTED = KINDS + ["move", "move", "movedir", "movedir", "save", "edit", "delete", "create"]
_n = st.integers(0, 50)
op = st.tuples(st.sampled_from(WEIGHTED), _n, _n, _n)
ops = st.lists(op, min_size=1, max_size=10)
SCAFFOLD = ["a.md", "guide.md", "d/b c.md", "d/deep/Z.md", "sub dir/ünïcode.md", "é/日本語.md"]
scaffold = st.lists(st.integers(0, len(TEXTS) - 1), min_size=len(SCAFFOLD), max_size=len(SCAFFOLD))
initial = st.lists(st.tuples(st.sampled_from(["create"] * 4 + ["mkdir"] * 2 + ["gitignore", "symlink"]), _n, _n, _n),
                   min_size=3, max_size=14)


def _files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow symlinks
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name != ".gitignore" and not path.is_symlink():
                out.append(path)
    return out


def _dirs(root: Path) -> list[Path]:
    out = [root]
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        out.extend(Path(dirpath) / d for d in dirnames if not (Path(dirpath) / d).is_symlink())
    return out


def _taken(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def apply(root: Path, outside: Path, operation: tuple[str, int, int, int]) -> str:
    """Apply one operation; returns what it did (for failure reports)."""
    kind, i, j, t = operation
    files, dirs = _files(root), _dirs(root)
    text = TEXTS[t % len(TEXTS)]
    if kind == "create" or (kind in ("edit", "save", "delete", "move", "touch") and not files):
        where = dirs[i % len(dirs)]
        free = [where / n for k in range(len(FILE_NAMES)) if not _taken(where / (n := FILE_NAMES[(j + k) % len(FILE_NAMES)]))]
        if not free:
            return f"skip create in {where}"
        free[0].write_text(TEXTS[(t + len(files)) % len(TEXTS)])  # varied contents even for small draws
        return f"create {free[0]}"
    if kind == "edit":
        target = files[i % len(files)]
        target.write_text(text)
        return f"edit {target}"
    if kind == "save":  # an editor's save: write a temporary file, rename it over the original
        target = files[i % len(files)]
        tmp = target.with_name(f".{target.name}.swp")
        tmp.write_text(text)
        os.replace(tmp, target)
        return f"save {target}"
    if kind == "delete":
        target = files[i % len(files)]
        target.unlink()
        return f"delete {target}"
    if kind == "move":
        source = files[i % len(files)]
        target = dirs[j % len(dirs)] / FILE_NAMES[t % len(FILE_NAMES)]
        if target.is_dir() or target.is_symlink():
            return f"skip move {source}"
        os.replace(source, target)
        return f"move {source} -> {target}"
    if kind == "movedir":
        movable = dirs[1:]
        if not movable:
            return "skip movedir"
        source = movable[i % len(movable)]
        target = dirs[j % len(dirs)] / DIR_NAMES[t % len(DIR_NAMES)]
        if target.exists() or target.is_symlink() or target == source or source in target.parents:
            return f"skip movedir {source}"
        os.rename(source, target)
        return f"movedir {source} -> {target}"
    if kind == "touch":
        target = files[i % len(files)]
        os.utime(target, ns=(time.time_ns(), time.time_ns()))
        return f"touch {target}"
    if kind == "chmod":
        # As root the kernel lets every read through, so chmod 000 is a change of mode (and
        # ctime) only, which must change nothing; a real refusal is tested elsewhere
        # (test_deletion_invariant: rows kept, a warning). Not as root it would make the file
        # unreadable, which a fresh index and the invariant legitimately see differently.
        if not AS_ROOT:
            return "skip chmod (not root: see test_deletion_invariant)"
        pool = files + dirs[1:]
        target = pool[i % len(pool)] if pool else root
        os.chmod(target, 0)
        return f"chmod 000 {target}"
    if kind == "gitignore":
        target = dirs[i % len(dirs)] / ".gitignore"
        content = IGNORES[j % len(IGNORES)]
        if content:
            target.write_text(content)
        elif target.exists():
            target.unlink()
        return f"gitignore {target}: {content!r}"
    if kind == "symlink":
        place = dirs[i % len(dirs)] / LINK_NAMES[j % len(LINK_NAMES)]
        if place.exists() or place.is_symlink():
            return f"skip symlink {place}"
        name = place.name
        inside = files[t % len(files)] if files and name == "link.md" else dirs[t % len(dirs)]
        target = {"link.md": inside, "linkdir": dirs[t % len(dirs)], "out.md": outside / "o.md", "outdir": outside}[name]
        place.symlink_to(target)
        return f"symlink {place} -> {target}"
    if kind == "mkdir":
        target = dirs[i % len(dirs)] / DIR_NAMES[j % len(DIR_NAMES)]
        if target.exists() or target.is_symlink():
            return f"skip mkdir {target}"
        target.mkdir()
        return f"mkdir {target}"
    raise AssertionError(kind)


def make_scaffold(root: Path, texts: list[int]) -> None:
    """Six files in four directories (contents drawn): every example starts with documents."""
    for rel, t in zip(SCAFFOLD, texts):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(TEXTS[t])


def make_outside(base: Path) -> Path:
    outside = base / "outside"
    (outside / "in").mkdir(parents=True)
    (outside / "o.md").write_text("# Outside\n\nNever indexed through a symlink.\n")
    (outside / "in" / "p.md").write_text("# Outside too\n")
    return outside


def every_file(root: Path) -> list[Path]:
    """Every regular file under ``root`` (symlinks not followed): what `reindex FILE...` names."""
    return _files(root)


def restore_modes(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
