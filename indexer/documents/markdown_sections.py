"""Markdown as sections of blocks, for the chunker (pure).

A section per heading (its heading path kept), holding blocks: the heading itself, fenced code
(opaque, CommonMark fence rules), and text runs (paragraphs, lists, tables: a run ends at a
blank line). Setext headings are recognised; a heading with no body of its own joins its first
subsection, so no chunk is only a heading. Line indexes are into the body lines given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from indexer.documents import markdown_scan as scan


@dataclass(frozen=True)
class Block:
    kind: str  # heading | code | text
    first: int  # body line index
    last: int  # inclusive
    depth: int = 0  # headings: length of the heading path they open


@dataclass
class Section:
    path: tuple[str, ...]
    blocks: list[Block] = field(default_factory=list)


def parse_sections(lines: Sequence[str]) -> list[Section]:
    """Sections of blocks; line indexes are into ``lines`` (the body, ``\\r`` stripped)."""
    sections = [Section(())]
    stack: list[str] = []
    para_start: int | None = None
    unclosed: dict[str, int] = {}  # fence_end's memory of markers no line below closes

    def flush(end: int) -> None:
        nonlocal para_start
        if para_start is not None:
            sections[-1].blocks.append(Block("text", para_start, end))
            para_start = None

    def heading(level_title: tuple[int, str], first: int, last: int) -> None:
        level, title = level_title
        del stack[level - 1:]
        stack.extend([""] * (level - 1 - len(stack)))  # a skipped level keeps no empty name
        stack.append(title)
        path = tuple(t for t in stack if t)
        sections.append(Section(path, [Block("heading", first, last, len(path))]))

    i = 0
    while i < len(lines):
        line = lines[i]
        if scan.is_plain(line):  # fast path: plain text or blank
            if not line.strip():
                flush(i - 1)
            elif para_start is None:
                para_start = i
            i += 1
            continue
        fence = scan.fence_opening(line, indented=True)
        if fence is not None:
            end = scan.fence_end(lines, i, fence, unclosed)
            if end is not None:
                flush(i - 1)
                sections[-1].blocks.append(Block("code", i, end))
                i = end + 1
                continue
        atx = scan.atx_heading(line)
        if atx is not None:
            flush(i - 1)
            heading((atx[0], atx[1] or "#"), i, i)
            i += 1
            continue
        level = scan.setext_level(line)
        if level is not None and para_start is not None and scan.can_open_setext(lines[para_start]):
            title = " ".join(lines[k].strip() for k in range(para_start, i))
            first, para_start = para_start, None
            heading((level, title), first, i)
            i += 1
            continue
        if not line.strip():
            flush(i - 1)
        elif para_start is None:
            para_start = i
        i += 1
    flush(len(lines) - 1)
    return _merge_bare_headings([s for s in sections if s.blocks])


def _merge_bare_headings(sections: list[Section]) -> list[Section]:
    """A heading with no body of its own goes with its first subsection (no heading-only chunk)."""
    merged: list[Section] = []
    carry: list[Block] = []
    for index, section in enumerate(sections):
        carry.extend(section.blocks)  # extended in place: a run of bare headings stays linear
        blocks, carry = carry, []
        nxt = sections[index + 1] if index + 1 < len(sections) else None
        bare = all(b.kind == "heading" for b in section.blocks)
        if bare and section.path and nxt is not None and nxt.path[: len(section.path)] == section.path:
            carry = blocks
            continue
        merged.append(Section(section.path, blocks))
    return merged
