"""The markdown line rules, once: fences, ATX and setext headings (pure).

Both readers of a markdown body use these: :mod:`indexer.documents.markdown_meta` (the title,
the summary paragraph) and :mod:`indexer.documents.markdown_sections` (the chunker's blocks).

- **Fences** (CommonMark): three or more backticks or tildes; a backtick fence's info string
  holds no backtick. A closing fence is the same character, at least as long, indented three
  spaces at most, with nothing else on the line. An unclosed fence runs to the end.
- **ATX headings**: one to six ``#`` at most three spaces in, then a space or the end; closing
  ``#`` are dropped.
- **Setext underlines**: a line of ``=`` (level 1) or ``-`` (level 2) under a paragraph; a
  paragraph that starts as a list item or a quote has none (the line is a thematic break).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
NOT_SETEXT = re.compile(r"^ {0,3}(?:[-+*>]|\d{1,9}[.)])(?:[ \t]|$)")  # list items, quotes
MARKUP_LEADS = frozenset("`~#=-")  # first characters of fences, ATX headings, setext underlines


def is_plain(line: str) -> bool:
    """True when the line cannot be a fence, heading or underline (blank or ordinary text):
    the fast path of every scan."""
    return line.lstrip()[:1] not in MARKUP_LEADS


@dataclass(frozen=True)
class Fence:
    marker: str  # the run of backticks or tildes that opened it
    indent: int  # leading whitespace characters


def fence_opening(line: str, *, indented: bool = False) -> Fence | None:
    """The fence this line opens, or None. With ``indented``, a line indented by more than
    three spaces or by tabs counts too (the chunker keeps such a block whole when it is
    closed); without, only CommonMark's three spaces at most."""
    opened = FENCE.match(line)
    if opened is None and indented and line[:1] in " \t":
        opened = FENCE.match(line.lstrip())
    if opened is None or (opened.group(2)[0] == "`" and "`" in opened.group(3)):
        return None
    return Fence(opened.group(2), len(line) - len(line.lstrip()))


def closes_fence(line: str, marker: str) -> bool:
    """True when ``line`` closes a fence opened by ``marker``."""
    stripped = line.strip()
    leading = len(line) - len(line.lstrip(" "))
    return leading <= 3 and stripped.startswith(marker) and not stripped.strip(marker[0])


def fence_end(lines: Sequence[str], start: int, fence: Fence, unclosed: dict[str, int] | None = None) -> int | None:
    """The index of the line closing the fence opened at ``lines[start]``; an unclosed fence
    runs to the last line, unless it was indented past three (then it is no fence: None).

    ``unclosed``, shared by the calls of one scan going down the lines, remembers for each
    fence character the shortest marker found to have no closing line below: a later call
    with a marker at least as long skips the search, so a run of unclosed indented fences
    costs one pass, not one per line."""
    char, length = fence.marker[0], len(fence.marker)
    if unclosed is None or length < unclosed.get(char, length + 1):
        for j in range(start + 1, len(lines)):
            if closes_fence(lines[j], fence.marker):
                return j
        if unclosed is not None:
            unclosed[char] = length
    return None if fence.indent > 3 else len(lines) - 1


def atx_heading(line: str) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line (text stripped, maybe empty), or None."""
    atx = ATX_HEADING.match(line)
    if atx is None:
        return None
    return len(atx.group(1)), (atx.group(2) or "").strip()


def setext_level(line: str) -> int | None:
    """1 or 2 when the line can underline a paragraph (``=`` or ``-`` only), else None.
    Without a paragraph above, a ``-`` line is a thematic break."""
    underline = SETEXT_UNDERLINE.match(line)
    if underline is None:
        return None
    return 1 if underline.group(1)[0] == "=" else 2


def can_open_setext(line: str) -> bool:
    """False for a first paragraph line that is a list item or a quote: no setext heading."""
    return NOT_SETEXT.match(line) is None
