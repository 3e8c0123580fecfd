"""Heading-aware chunking of markdown, sized by the model's own tokenizer (pure).

1. The body (front matter skipped, its lines still counted) is scanned into sections (one
   per heading, heading path kept) of blocks: headings, fenced code (opaque), and text runs
   (paragraphs, lists, tables). A heading with no body joins its first subsection
   (:mod:`indexer.documents.markdown_sections`).
2. A block that fits the section's budget is one unit, kept whole (code fences included).
   A longer code block is cut into lines; a longer text block at list items and table rows,
   then at sentence ends; anything still too long at word starts by the tokenizer.
3. A section that fits the hard limit is one chunk; a longer one is cut into evenly sized
   chunks of about ``target_tokens`` (dynamic programming), preferably at block boundaries
   and not after a heading or a line ending in ``:`` (``- example:`` + its command).
4. Adjacent sections that each fit one chunk are merged while the result stays within
   ``target_tokens``; the merged chunk's heading path is the paths' common part.

``embed_text`` (embedded and keyword-indexed) is one context line (the headings above the
chunk that its text does not show, ``Guide > Install``, after the document title unless an
H1 gives it; at most a quarter of the limit), then the chunk's text. Its word-piece count,
by the same counter, is checked to be at most ``max_tokens`` (a chunk over it is cut again),
so the model never truncates. ``text`` is an exact slice of the file; every non-blank body
line lies in some chunk's line range. ``chunk_hash`` = SHA-256 of ``embed_text``
(:func:`embed_hash`): an edit changes only the hashes of the edited section's chunks (and of
small sections merged with it).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from indexer.documents.markdown_meta import split_front_matter
from indexer.documents.markdown_sections import Block, parse_sections
from indexer.documents.tokenizer import TokenCounter

CHUNKER_VERSION = "md-3"  # md-3: a heading is never cut off from the start of its body
DEFAULT_TARGET_TOKENS = 200  # the config's default chunk_tokens
_SEGMENT_START = re.compile(r"^[ \t]*(?:[-+*][ \t]|\d{1,9}[.)][ \t]|\|)", re.M)
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\bcf)[.!?][\"')\]*_]*\s+")
_NEWLINE = re.compile(r"\n")
PATH_SEPARATOR = " > "


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str  # the exact slice of the file
    embed_text: str  # heading context + text: what is embedded and FTS-indexed
    heading_path: tuple[str, ...]
    start_line: int  # 1-based, in the whole file
    end_line: int
    token_count: int  # of embed_text, specials excluded
    chunk_hash: str


@dataclass(frozen=True)
class _Unit:
    start: int  # character offsets into the document
    end: int
    tokens: int
    block_first: bool  # a block starts here (a good place to cut before)
    glue: bool = False  # keep with the next unit when they fit together
    heading_depth: int = 0  # > 0: this unit starts a heading of that depth


def embed_hash(embed_text: str) -> str:
    """A chunk's hash: SHA-256 of its ``embed_text``, what its vector depends on besides the
    model. The chunker's version is not in it: a new chunker re-embeds only the chunks whose
    text it changed."""
    return hashlib.sha256(embed_text.encode("utf-8")).hexdigest()


# -- 2. units ---------------------------------------------------------------------------
class _Doc:
    """The text with its line offsets, and the helpers that turn lines into units."""

    def __init__(self, text: str, counter: TokenCounter, body_start: int) -> None:
        self.text = text
        self.counter = counter
        raw = text.split("\n")
        self.line_starts: list[int] = [0, *accumulate(len(line) + 1 for line in raw[:-1])]
        self.offset = body_start - 1  # body line index + offset = file line index
        body = raw[self.offset:]
        self.lines = [ln.rstrip("\r") for ln in body] if "\r" in text else body

    def span(self, first: int, last: int) -> tuple[int, int]:
        return self.line_starts[first + self.offset], self.line_starts[last + self.offset] + len(self.lines[last])

    def trimmed(self, start: int, end: int) -> tuple[int, int]:
        text = self.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return start, end

    def counts(self, ranges: Sequence[tuple[int, int]]) -> list[int]:
        return self.counter.count_many([self.text[a:b] for a, b in ranges])

    def line_of(self, offset: int) -> int:
        """1-based file line of a character offset."""
        return bisect_right(self.line_starts, offset)

    def cut(self, start: int, end: int, bounds: Sequence[int]) -> list[tuple[int, int]]:
        """The range cut at the given offsets, each part trimmed, empty parts dropped."""
        edges = [start, *(b for b in bounds if start < b < end), end]
        parts = (self.trimmed(a, b) for a, b in zip(edges, edges[1:]))
        return [(a, b) for a, b in parts if b > a]

    def by_tokens(self, start: int, end: int, budget: int) -> list[tuple[int, int]]:
        """Cut at word starts by the tokenizer (the last resort)."""
        bounds, position = [], start
        for piece in self.counter.split(self.text[start:end], max(budget, 1)):
            position += len(piece)
            bounds.append(position)
        return self.cut(start, end, bounds[:-1])


def _pieces(doc: _Doc, kind: str, start: int, end: int, budget: int) -> list[tuple[int, int, int]]:
    """``[start, end)`` as (start, end, tokens) pieces of at most ``budget`` tokens: text at
    list items and table rows, then at sentence ends; code at lines; then at word starts."""
    if kind == "text":
        bounds = [m.start() for m in _SEGMENT_START.finditer(doc.text, start, end)]
    else:  # code (and over-long setext headings): by lines
        bounds = [m.end() for m in _NEWLINE.finditer(doc.text, start, end)]
    ranges = doc.cut(start, end, bounds)
    fine: list[tuple[int, int, int]] = []
    for (a, b), n in zip(ranges, doc.counts(ranges)):
        if n <= budget:
            fine.append((a, b, n))
            continue
        sentences = [m.end() for m in _SENTENCE_END.finditer(doc.text, a, b)] if kind == "text" else []
        parts = doc.cut(a, b, sentences)
        for (pa, pb), pn in zip(parts, doc.counts(parts)):
            if pn <= budget:
                fine.append((pa, pb, pn))
            else:
                pieces = doc.by_tokens(pa, pb, budget)
                fine.extend((x, y, c) for (x, y), c in zip(pieces, doc.counts(pieces)))
    return fine


def _block_units(doc: _Doc, block: Block, span: tuple[int, int], tokens: int, budget: int,
                 glue: bool, lead: int = 0) -> list[_Unit]:
    """The units of one block. ``lead``: the tokens of the heading (or ``...:`` line) glued
    before it; the block's first unit is made small enough to share a chunk with it, so a
    heading never ends up as a chunk of its own when its body does not fit beside it whole."""
    start, end = span
    depth = block.depth if block.kind == "heading" else 0
    first_budget = budget - lead if 0 < lead <= budget // 2 else budget
    if tokens <= first_budget:
        return [_Unit(start, end, tokens, True, glue, depth)]
    kind = "text" if block.kind == "text" else "code"
    fine = _pieces(doc, kind, start, end, budget) if tokens > budget else [(start, end, tokens)]
    if fine[0][2] > first_budget:
        fine[:1] = _pieces(doc, kind, fine[0][0], fine[0][1], first_budget)
    last = len(fine) - 1
    return [_Unit(a, b, n, k == 0, glue and k == last, depth if k == 0 else 0) for k, (a, b, n) in enumerate(fine)]


# -- 3. packing -------------------------------------------------------------------------
def _cut_penalty(before: _Unit, after: _Unit, goal: float) -> float:
    """The cost of ending a chunk between two units, in the units of :func:`_pack`'s cost."""
    if before.glue:
        return goal  # a heading or an ``...:`` line away from what it introduces
    return 0.0 if after.block_first else goal / 4  # inside a block


_WIDE_WINDOW = 48  # candidate starts past which _pack's step runs in numpy


class _WideWindow:
    """One step of :func:`_pack` over many candidate starts at once, with the same arithmetic
    and the same choice among equal costs (the latest start)."""

    def __init__(self, sums: Sequence[int]) -> None:
        import numpy as np

        self.np = np
        self.sums = np.asarray(sums, dtype=np.float64)
        self.best_np = np.full(len(sums), np.inf)
        self.filled = 0  # best_np[:filled] mirrors best

    def best(self, best: list[float], lo: int, j: int, goal: float, penalty: float) -> tuple[float, int]:
        self.best_np[self.filled:j] = best[self.filled:j]
        self.filled = j
        d = self.sums[j] - self.sums[lo:j] - goal
        costs = self.best_np[lo:j] + d * d / goal + penalty
        k = int(self.np.argmin(costs[::-1]))  # the first minimum from the end: the latest start
        return float(costs[j - lo - 1 - k]), j - 1 - k


def _pack(units: list[_Unit], budget: int, target: int) -> list[list[_Unit]]:
    """Units into chunks of at most ``budget`` tokens, each near the same size (about
    ``target``), cut at block boundaries where that costs little: the cheapest partition
    by dynamic programming (a chunk costs its squared distance to the mean size, and a cut
    inside a block or after a gluing unit costs extra)."""
    total = sum(u.tokens for u in units)
    if total <= budget:
        return [units]
    goal = total / math.ceil(total / max(min(target, budget), 1))
    sums = [0, *accumulate(u.tokens for u in units)]
    n = len(units)
    chain = [0] * (n + 1)  # chain[j]: where the run of gluing units ending at unit j-1 starts
    for j in range(1, n + 1):
        chain[j] = chain[j - 1] if units[j - 1].glue and j > 1 and units[j - 2].glue else j - 1
    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    wide: _WideWindow | None = None
    for j in range(1, n + 1):
        penalty = _cut_penalty(units[j - 1], units[j], goal) if j < n else 0.0
        if j < n and units[j - 1].glue and sums[j + 1] - sums[chain[j]] <= budget:
            penalty = goal * 1e6  # an intro that fits with the start of what it introduces stays with it
        # a chunk ends at unit j-1 and starts at unit i: the last unit alone, or any start within
        # the budget (at most ``budget`` units back, so units of no tokens cannot widen it)
        lo = max(bisect_left(sums, sums[j] - budget, 0, j - 1), j - 1 - budget, 0)
        if j - lo > _WIDE_WINDOW:  # many tiny units (a file of headings): the same sums, vectorised
            wide = wide or _WideWindow(sums)
            best[j], back[j] = wide.best(best, lo, j, goal, penalty)
            continue
        for i in range(j - 1, lo - 1, -1):
            d = sums[j] - sums[i] - goal
            cost = best[i] + d * d / goal + penalty
            if cost < best[j]:
                best[j], back[j] = cost, i
    chunks: list[list[_Unit]] = []
    j = n
    while j > 0:
        chunks.append(units[back[j]:j])
        j = back[j]
    return chunks[::-1]


# -- 4. context, merging, output --------------------------------------------------------
class _Context:
    """The heading context line of a chunk, capped to a quarter of the limit."""

    def __init__(self, counter: TokenCounter, title: str | None, cap: int) -> None:
        self.counter, self.title, self.cap = counter, (title or "").strip() or None, max(cap, 1)
        self._memo: dict[tuple[str, ...], tuple[str, int]] = {}

    def elements(self, path: tuple[str, ...], first_depth: int) -> tuple[str, ...]:
        """What the text does not show: the headings of ``path`` above the one the chunk
        starts with (``first_depth``; 0 when it starts with no heading), and the title unless
        ``path`` starts with it."""
        shown = path[: first_depth - 1] if 0 < first_depth <= len(path) else path
        if self.title and path[:1] != (self.title,):
            shown = (self.title, *shown)
        return shown

    def line(self, elements: tuple[str, ...]) -> tuple[str, int]:
        if elements not in self._memo:
            parts = list(elements)
            text = PATH_SEPARATOR.join(parts)
            tokens = self.counter.count(text) if text else 0
            while tokens > self.cap and len(parts) > 1:  # the nearest headings matter most
                parts.pop(0)
                text = PATH_SEPARATOR.join(parts)
                tokens = self.counter.count(text)
            if tokens > self.cap:
                text = self.counter.split(text, self.cap)[0].strip()
                tokens = self.counter.count(text)
            self._memo[elements] = (text, tokens)
        return self._memo[elements]


@dataclass
class _Group:
    units: list[_Unit]
    paths: list[tuple[str, ...]]
    whole: bool  # one whole section (or merged whole sections)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(os.path.commonprefix(self.paths))  # element-wise on tuples


def _render(doc: _Doc, ctx: _Context, group: _Group) -> tuple[str, str, int]:
    """(text, embed_text, estimated tokens) of a group."""
    text = doc.text[group.units[0].start:group.units[-1].end]
    # the context of where the chunk starts: its first section's path (a merged chunk's
    # later sections show their own headings in the text)
    prefix, prefix_tokens = ctx.line(ctx.elements(group.paths[0], group.units[0].heading_depth))
    embed = f"{prefix}\n{text}" if prefix else text
    return text, embed, prefix_tokens + sum(u.tokens for u in group.units)


def _fit(doc: _Doc, ctx: _Context, group: _Group, max_tokens: int, text: str, embed: str,
         tokens: int) -> list[tuple[_Group, str, str, int]]:
    """The rendered group as chunks, each checked by the counter and cut again when over."""
    if tokens <= max_tokens or (len(group.units) == 1 and group.units[0].end - group.units[0].start <= 1):
        return [(group, text, embed, tokens)]
    if len(group.units) > 1:
        half, acc, total = 1, 0, sum(u.tokens for u in group.units)
        for half, unit in enumerate(group.units[:-1], start=1):  # noqa: B007 (half is used after the loop)
            acc += unit.tokens
            if acc * 2 >= total:
                break
        parts = [group.units[:half], group.units[half:]]
    else:
        unit = group.units[0]
        ranges = doc.by_tokens(unit.start, unit.end, max(unit.tokens - (tokens - max_tokens) - 1, 1))
        if len(ranges) < 2:
            middle = (unit.start + unit.end) // 2
            ranges = doc.cut(unit.start, unit.end, [middle])
        parts = [[_Unit(a, b, doc.counter.count(doc.text[a:b]), k == 0, False, unit.heading_depth if k == 0 else 0)]
                 for k, (a, b) in enumerate(ranges)]
    out: list[tuple[_Group, str, str, int]] = []
    for units in parts:
        sub = _Group(units, group.paths, False)
        body, embed, _ = _render(doc, ctx, sub)
        out.extend(_fit(doc, ctx, sub, max_tokens, body, embed, doc.counter.count(embed)))
    return out


def chunker_id(target_tokens: int) -> str:
    """The chunker's entry in the embedding fingerprint: its version and the chunk size it packs
    to (``chunk_tokens``; the default size keeps the bare version, as databases made before the
    size was part of it store). A changed size is then a changed chunker: the next run re-chunks
    every document and keeps the vectors of the chunks whose text did not change. Pure."""
    if target_tokens == DEFAULT_TARGET_TOKENS:
        return CHUNKER_VERSION
    return f"{CHUNKER_VERSION}/{target_tokens}"


def chunk_markdown(text: str, counter: TokenCounter, *, target_tokens: int = DEFAULT_TARGET_TOKENS, max_tokens: int = 254,
                   title: str | None = None, body_start: int | None = None) -> list[Chunk]:
    """Chunks of a markdown document (front matter skipped, its lines counted).

    ``title`` (the document's title) is put in front of the context of chunks whose heading
    path does not start with it; ``max_tokens`` is the hard limit on ``embed_text``;
    ``body_start``, when the caller has parsed the front matter already, its first body line."""
    if max_tokens < 8:
        raise ValueError("max_tokens must be at least 8")
    if body_start is None:
        body_start = split_front_matter(text)[2]
    doc = _Doc(text, counter, body_start)
    ctx = _Context(counter, title, max_tokens // 4)
    target = max(min(target_tokens, max_tokens), 1)
    groups: list[_Group] = []
    sections = parse_sections(doc.lines)
    spans = [doc.trimmed(*doc.span(b.first, b.last)) for section in sections for b in section.blocks]
    block_tokens = iter(doc.counts(spans))  # one batch for the whole document
    spans_iter = iter(spans)
    for section in sections:
        _, full_tokens = ctx.line(ctx.elements(section.path, 0))
        budget = max_tokens - full_tokens
        units: list[_Unit] = []
        lead = 0  # the tokens of the run of gluing units at the end of ``units`` (kept as it grows: linear)
        for k, block in enumerate(section.blocks):
            glue = k + 1 < len(section.blocks) and (
                block.kind == "heading" or doc.lines[block.last].rstrip().endswith(":"))
            added = _block_units(doc, block, next(spans_iter), next(block_tokens), budget, glue, lead)
            units.extend(added)
            if not added or not added[-1].glue:
                lead = 0 if added else lead
            else:  # only a block's last unit glues: a one-unit block extends the run, else starts it
                lead = lead + added[0].tokens if len(added) == 1 else added[-1].tokens
        packed = _pack(units, budget, target)
        groups.extend(_Group(p, [section.path], len(packed) == 1) for p in packed if p)
    merged: list[_Group] = []
    for group in groups:
        last = merged[-1] if merged else None
        if last is not None and last.whole and group.whole:
            candidate = _Group(last.units + group.units, last.paths + group.paths, True)
            if _render(doc, ctx, candidate)[2] <= target:
                merged[-1] = candidate
                continue
        merged.append(group)
    rendered = [_render(doc, ctx, group)[:2] for group in merged]
    counts = counter.count_many([embed for _, embed in rendered])  # the check: no chunk over the limit
    chunks: list[Chunk] = []
    for group, (group_body, group_embed), n in zip(merged, rendered, counts):
        for part, body, embed, tokens in _fit(doc, ctx, group, max_tokens, group_body, group_embed, n):
            digest = embed_hash(embed)
            chunks.append(Chunk(len(chunks), body, embed, part.path, doc.line_of(part.units[0].start),
                                doc.line_of(part.units[-1].end - 1), tokens, digest))
    return chunks
