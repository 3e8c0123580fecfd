"""Front matter, title and document type of a markdown file (pure: text and path in, record out).

- **Front matter**: YAML between a first line ``---`` and a closing ``---`` (or ``...``), or
  TOML between ``+++`` lines. Broken front matter is recorded as an error and skipped (the
  body starts after it); an opening fence that is never closed is no front matter at all
  (the line is a thematic break). Values are made JSON-serialisable: dates and times become
  ISO 8601 strings, keys strings, anything else unknown ``str()``. Its cost is bounded:
  a block over the caps of :mod:`indexer.documents.front_matter` (size, depth, aliases,
  expansion) is skipped the same way, with the cap it broke as the error.
- **Title**: front matter ``title``, else the first level-1 heading (ATX ``# T`` or setext
  ``T`` over ``===``, outside code fences), else the file's stem.
- **Document type**: front matter ``type`` (lower-cased, trimmed), else a guess from the
  words of the file name, then the two nearest directory names, then the title (nearest
  first), against :data:`TYPE_WORDS`: ``design`` (design, architecture, ADRs, decisions),
  ``specification`` (spec, specification, RFC, proposal, requirements: an RFC asks for a
  change in a precise, reviewable form, so it counts as a specification), ``plan``
  (plan, roadmap, milestones) and ``report`` (report, postmortem, retrospective). Whole
  words only (``netplan.md`` is no plan, ``terraform-plan.md`` is: the guess is a guess).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from indexer.documents import front_matter
from indexer.documents import markdown_scan as scan

FRONT_MATTER_MAX_LINES = 1000

TYPES = ("design", "specification", "plan", "report")
TYPE_WORDS: dict[str, frozenset[str]] = {
    "design": frozenset({"design", "designs", "architecture", "adr", "adrs", "decision", "decisions"}),
    "specification": frozenset({"spec", "specs", "specification", "specifications", "rfc", "rfcs",
                                "proposal", "proposals", "requirements"}),
    "plan": frozenset({"plan", "plans", "planning", "roadmap", "roadmaps", "milestone", "milestones"}),
    "report": frozenset({"report", "reports", "postmortem", "postmortems", "retro", "retrospective",
                         "retrospectives"}),
}
_WORD_SPLIT = re.compile(r"[^a-z]+")


@dataclass(frozen=True)
class DocMeta:
    title: str
    document_type: str | None
    front_matter: dict[str, Any] = field(default_factory=dict)
    front_matter_error: str | None = None
    body_start_line: int = 1  # 1-based line where the body starts (after any front matter)


def split_front_matter(text: str) -> tuple[dict[str, Any], str | None, int]:
    """(front matter, error or None, 1-based first body line). YAML ``---`` or TOML ``+++``."""
    first_end = text.find("\n")
    first = (text if first_end < 0 else text[:first_end]).lstrip("\ufeff").rstrip()
    if first not in ("---", "+++"):
        return {}, None, 1
    lines = text.split("\n", FRONT_MATTER_MAX_LINES + 1)
    closers = ("---", "...") if first == "---" else ("+++",)
    for i in range(1, min(len(lines), FRONT_MATTER_MAX_LINES + 1)):
        if lines[i].rstrip() in closers:
            try:
                return front_matter.parse_block(first, "\n".join(lines[1:i])), None, i + 2
            except front_matter.NotFrontMatter:
                return {}, None, 1
            except front_matter.FrontMatterRefused as exc:  # over a cap: skipped, the body indexed
                return {}, f"{exc}; it was skipped", i + 2
            except Exception as exc:  # broken front matter (RecursionError included): keep going, say why
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                return {}, f"front matter is not valid {'YAML' if first == '---' else 'TOML'}: {message}", i + 2
    return {}, None, 1  # no closing fence: not front matter


def _starts_paragraph(line: str) -> bool:
    """A line that opens a paragraph a setext underline can turn into a heading (not a list
    item, a quote or an indented code line)."""
    return scan.can_open_setext(line) and not line.startswith(("    ", "\t"))


def first_h1(lines: list[str]) -> str | None:
    """The first level-1 heading outside code fences (ATX, or setext over ``===``)."""
    fence: scan.Fence | None = None
    para: list[str] = []
    for line in lines:
        if fence is not None:
            if scan.closes_fence(line, fence.marker):
                fence = None
            continue
        if not scan.is_plain(line):
            opened = scan.fence_opening(line)
            if opened is not None:
                fence, para = opened, []
                continue
            atx = scan.atx_heading(line)
            if atx is not None:
                if atx[0] == 1 and atx[1]:
                    return atx[1]
                para = []
                continue
            level = scan.setext_level(line)
            if level is not None:  # a setext underline, or a thematic break when no paragraph is open
                if para and level == 1:
                    return " ".join(p.strip() for p in para)
                para = []
                continue
        if not line.strip():
            para = []
        elif para or _starts_paragraph(line):
            para.append(line)
    return None


def _words(name: str) -> list[str]:
    return [w for w in _WORD_SPLIT.split(name.lower()) if w]


def guess_type(path: PurePath, title: str) -> str | None:
    """The file name's words first, then the parent's and grandparent's, then the title's."""
    pools = [_words(path.stem)] + [_words(part) for part in reversed(path.parts[-3:-1])] + [_words(title)]
    for pool in pools:
        for word in pool:
            for kind in TYPES:
                if word in TYPE_WORDS[kind]:
                    return kind
    return None


def parse_document(text: str, path: PurePath) -> DocMeta:
    front, error, body_start = split_front_matter(text)
    lines = text.split("\n")[body_start - 1:]
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    raw_title = front.get("title")
    usable = isinstance(raw_title, (str, int, float)) and not isinstance(raw_title, bool)
    title = str(raw_title).strip() if usable else ""
    title = title or first_h1(lines) or path.stem
    raw_type = front.get("type")
    if isinstance(raw_type, str) and raw_type.strip():
        document_type: str | None = raw_type.strip().lower()
    else:
        document_type = guess_type(path, title)
    return DocMeta(title, document_type, front, error, body_start)


_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s")
_LIST_ITEM = re.compile(r"^\s*(?:[-+*]|\d{1,9}[.)])\s")


def document_summary(text: str, title: str, max_words: int = 80, *, body_start: int | None = None) -> str:
    """What a document is about in a few lines: its title (hyphens and underscores as spaces)
    and its first prose paragraph (quoted lines count; headings, lists, code, tables, link
    definitions and "More information" lines do not), cut to ``max_words`` words.
    ``body_start``: :attr:`DocMeta.body_start_line`, when known (the front matter is not
    parsed again)."""
    if body_start is None:
        body_start = split_front_matter(text)[2]
    para: list[str] = []
    fence: scan.Fence | None = None
    for line in text.split("\n")[body_start - 1:]:
        stripped = line.strip()
        if fence is not None:
            if scan.closes_fence(line, fence.marker):
                fence = None
            continue
        fence = scan.fence_opening(line)
        if fence is not None:
            if para:
                break
            continue
        if stripped.startswith(">"):
            stripped = stripped.lstrip("> ").strip()
            if stripped.lower().startswith("more information"):
                continue
        elif (not stripped or stripped.startswith(("#", "|", "<")) or _LIST_ITEM.match(line)
              or _LINK_DEFINITION.match(line)):
            if para:
                break
            continue
        if stripped:
            para.append(stripped)
    words = " ".join(para).split()[:max_words]
    name = re.sub(r"[-_]+", " ", title).strip()
    return f"{name}\n{' '.join(words)}" if words else name
