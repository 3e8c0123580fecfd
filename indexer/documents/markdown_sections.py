"""Markdown as sections of blocks, for the chunker (pure).

A section per heading (its heading path kept), holding blocks: the heading itself, fenced code
(opaque, CommonMark fence rules), and text runs (paragraphs, lists, tables: a run ends at a
blank line). Setext headings are recognised; a heading with no body of its own joins its first
subsection, so no chunk is only a heading. Line indexes are into the body lines given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from indexer.documents.markdown_meta import ATX_HEADING, FENCE, SETEXT_UNDERLINE

_NOT_SETEXT = re.compile(r"^ {0,3}(?:[-+*>]|\d{1,9}[.)])(?:[ \t]|$)")
_MARKUP_LEADS = frozenset("`~#=-")  # first characters of fences, ATX headings, setext underlines


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


def _fence_end(lines: Sequence[str], i: int, marker: str, indent: int) -> int | None:
    for j in range(i + 1, len(lines)):
        stripped = lines[j].strip()
        leading = len(lines[j]) - len(lines[j].lstrip(" "))
        if leading <= 3 and stripped.startswith(marker) and not stripped.strip(marker[0]):
            return j  # CommonMark: a closing fence is indented 3 spaces at most
    return None if indent > 3 else len(lines) - 1  # CommonMark: unclosed runs to the end


def parse_sections(lines: Sequence[str]) -> list[Section]:
    """Sections of blocks; line indexes are into ``lines`` (the body, ``\\r`` stripped)."""
    sections = [Section(())]
    stack: list[str] = []
    para_start: int | None = None

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
        lead = line.lstrip()[:1]
        if lead not in _MARKUP_LEADS:  # fast path: plain text or blank
            if not lead:
                flush(i - 1)
            elif para_start is None:
                para_start = i
            i += 1
            continue
        opened = FENCE.match(line) or (FENCE.match(line.lstrip()) if line[:1] in " \t" else None)
        if opened and not (opened.group(2)[0] == "`" and "`" in opened.group(3)):
            indent = len(line) - len(line.lstrip())
            end = _fence_end(lines, i, opened.group(2), indent)
            if end is not None:
                flush(i - 1)
                sections[-1].blocks.append(Block("code", i, end))
                i = end + 1
                continue
        atx = ATX_HEADING.match(line)
        if atx:
            flush(i - 1)
            heading((len(atx.group(1)), (atx.group(2) or "").strip() or "#"), i, i)
            i += 1
            continue
        underline = SETEXT_UNDERLINE.match(line)
        if underline and para_start is not None and not _NOT_SETEXT.match(lines[para_start]):
            title = " ".join(lines[k].strip() for k in range(para_start, i))
            first, para_start = para_start, None
            heading((1 if underline.group(1)[0] == "=" else 2, title), first, i)
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
        blocks = carry + section.blocks
        carry = []
        nxt = sections[index + 1] if index + 1 < len(sections) else None
        bare = all(b.kind == "heading" for b in section.blocks)
        if bare and section.path and nxt is not None and nxt.path[: len(section.path)] == section.path:
            carry = blocks
            continue
        merged.append(Section(section.path, blocks))
    return merged
