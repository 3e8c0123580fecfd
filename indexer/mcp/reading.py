"""``read_document``'s rules, without the SDK: which paths may be read (indexed files under a
configured root, symlinks resolved first, so no escape) and how a file is cut into pages of
lines under the output budget."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.errors import NotFoundError, ValidationError


@dataclass(frozen=True)
class Page:
    start_line: int
    end_line: int  # 0 for an empty file
    total_lines: int
    text: str
    truncated: bool
    next_start_line: int | None


def candidates(raw: str, roots: Sequence[Path]) -> list[Path]:
    """The absolute paths ``raw`` may mean: itself, or (relative) under each root."""
    path = Path(raw).expanduser()
    if path.is_absolute():
        return [path]
    return [root / path for root in roots]


def resolve_indexed(raw: str, roots: Sequence[Path], is_indexed: Callable[[str], bool]) -> Path:
    """The real path of an indexed file that ``raw`` names under one of ``roots``.

    The path is resolved (symlinks, ``..``) before it is checked, so a link that points
    outside the roots is refused like any outside path; then it must be a row of the index."""
    if not raw or "\x00" in raw:
        raise ValidationError("path must be a non-empty path without NUL characters")
    if not roots:
        raise ValidationError("no roots are configured or indexed yet (run `indexer reindex --root DIR`, set `roots` "
                              "in the config, or give `indexer mcp --root DIR`)")
    from indexer.documents.targets import within

    inside = within([str(r) for r in roots])
    outside: Path | None = None
    for candidate in candidates(raw, roots):
        real = Path(os.path.realpath(candidate))
        if not inside(str(real)):
            outside = outside or candidate
            continue
        if is_indexed(str(real)):
            return real
        if real.exists():
            raise NotFoundError(f"{raw} is not in the index (only indexed markdown files can be read; "
                                "`search` lists them)")
    if outside is not None:
        raise ValidationError(f"{raw} is outside the indexed roots ({', '.join(map(str, roots))}); "
                              "only files indexed under them can be read")
    raise NotFoundError(f"no indexed file {raw} under {', '.join(map(str, roots))}")


def read_text(path: Path, max_bytes: int) -> str:
    """The file's text, opened without following a last-moment symlink; at most ``max_bytes``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if os.fstat(fh.fileno()).st_size > max_bytes:
            raise ValidationError(f"{path} is larger than max_file_bytes ({max_bytes} bytes)")
        return fh.read().decode("utf-8", errors="replace")


def page(text: str, start_line: int, max_lines: int, budget: int) -> Page:
    """Lines ``start_line``… (1-based), at most ``max_lines`` and ``budget`` characters (a
    single longer line is cut); ``next_start_line`` continues when more remain."""
    lines = text.splitlines()
    total = len(lines)
    if total == 0:
        return Page(1, 0, 0, "", False, None)
    if start_line > total:
        raise ValidationError(f"start_line {start_line} is past the end of the file ({total} lines)")
    taken: list[str] = []
    used = 0
    index = start_line - 1
    cut = False
    while index < total and len(taken) < max_lines:
        line = lines[index]
        if used + len(line) + 1 > budget:
            if not taken:  # one enormous line: send its beginning rather than nothing
                taken.append(line[: max(budget - 1, 0)] + "…")
                index += 1
                cut = True
            break
        taken.append(line)
        used += len(line) + 1
        index += 1
    end = start_line + len(taken) - 1
    more = index < total
    return Page(start_line, end, total, "\n".join(taken), more or cut, index + 1 if more else None)


def numbered(p: Page, path: str, title: Any) -> str:
    """The text the model reads: a header, then the lines as they are."""
    head = f"{path} — {title or '(untitled)'} — lines {p.start_line}-{p.end_line} of {p.total_lines}"
    tail = f"\n[more: read_document start_line={p.next_start_line}]" if p.next_start_line else ""
    return f"{head}\n{p.text}{tail}"
