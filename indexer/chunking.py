"""Heading-aware chunking of markdown, sized by the model's own tokenizer (pure).

A document becomes sections (the heading path kept), sections become blocks (paragraphs,
lists, fenced code, headings), blocks are packed into chunks of about ``target_tokens``
word pieces. What is embedded and keyword-indexed is ``embed_text``: the heading path as
context, then the chunk's text, and it never exceeds ``max_tokens`` (no silent truncation).
Code fences stay whole when they fit; longer blocks split by lines, an over-long line by
sentences and then at word boundaries. Every non-blank body line lands in a chunk, with its
1-based line range in the file. Chunk hashes are deterministic, so an edit re-embeds only
the chunks whose text changed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

from indexer.markdown_meta import split_front_matter
from indexer.tokenizer import TokenCounter

CHUNKER_VERSION = "md-1"
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    embed_text: str
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    token_count: int
    chunk_hash: str


@dataclass(frozen=True)
class _Block:
    lines: tuple[str, ...]
    start_line: int
    kind: str  # heading | code | text


@dataclass
class _Section:
    path: tuple[str, ...]
    blocks: list[_Block]


@dataclass(frozen=True)
class _Piece:
    text: str
    start_line: int
    end_line: int
    block: int
    tokens: int


def parse_sections(lines: Sequence[str], first_line: int) -> list[_Section]:
    """Split body lines into sections of blocks; ``first_line`` is the 1-based number of lines[0]."""
    sections = [_Section((), [])]
    stack: list[tuple[int, str]] = []
    para: list[str] = []
    para_start = 0
    i = 0

    def flush() -> None:
        nonlocal para
        if para:
            sections[-1].blocks.append(_Block(tuple(para), para_start, "text"))
            para = []

    def open_section(level: int, title: str, block: _Block) -> None:
        flush()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        sections.append(_Section(tuple(t for _, t in stack), [block]))

    while i < len(lines):
        line, number = lines[i], first_line + i
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence.group(1)
            j = i + 1
            while j < len(lines):
                closing = lines[j].strip()
                if closing.startswith(marker[0] * len(marker)) and not closing.strip(marker[0]):
                    break
                j += 1
            end = min(j, len(lines) - 1)
            sections[-1].blocks.append(_Block(tuple(lines[i:end + 1]), number, "code"))
            i = end + 1
            continue
        atx = _ATX.match(line)
        if atx:
            open_section(len(atx.group(1)), (atx.group(2) or "").strip() or "#", _Block((line,), number, "heading"))
            i += 1
            continue
        if line.strip() and not para and i + 1 < len(lines) and _SETEXT.match(lines[i + 1]):
            level = 1 if lines[i + 1].strip().startswith("=") else 2
            open_section(level, line.strip(), _Block((line, lines[i + 1]), number, "heading"))
            i += 2
            continue
        if not line.strip():
            flush()
        else:
            if not para:
                para_start = number
            para.append(line)
        i += 1
    flush()
    return _merge_bare_headings([s for s in sections if s.blocks])


def _merge_bare_headings(sections: list[_Section]) -> list[_Section]:
    """A heading with no body of its own joins its first subsection (no heading-only chunk)."""
    merged: list[_Section] = []
    carry: list[_Block] = []
    for index, section in enumerate(sections):
        section = _Section(section.path, carry + section.blocks)
        carry = []
        nxt = sections[index + 1] if index + 1 < len(sections) else None
        bare = all(b.kind == "heading" for b in section.blocks)
        if bare and nxt is not None and nxt.path[: len(section.path)] == section.path and section.path:
            carry = section.blocks
            continue
        merged.append(section)
    return merged


def _context(path: tuple[str, ...], title: str | None) -> tuple[str, ...]:
    if title and (not path or path[0] != title):
        return (title,) + path
    return path


def _split_block(block: _Block, block_id: int, budget: int, counter: TokenCounter, tokens: int) -> list[_Piece]:
    """A block (``tokens`` long) as pieces that each fit ``budget``: whole, by line groups, then within a line."""
    text = "\n".join(block.lines)
    if tokens <= budget:
        return [_Piece(text, block.start_line, block.start_line + len(block.lines) - 1, block_id, tokens)]
    counts = counter.count_many(list(block.lines))
    pieces: list[_Piece] = []
    group: list[str] = []
    group_start = block.start_line
    group_tokens = 0
    for offset, (line, count) in enumerate(zip(block.lines, counts)):
        number = block.start_line + offset
        if group and group_tokens + count + 1 > budget:
            pieces.append(_Piece("\n".join(group), group_start, number - 1, block_id, group_tokens))
            group, group_tokens = [], 0
        if count > budget:
            for part in _split_line(line, budget, counter):
                pieces.append(_Piece(part, number, number, block_id, counter.count(part)))
            continue
        if not group:
            group_start = number
        group.append(line)
        group_tokens += count + 1
    if group:
        pieces.append(_Piece("\n".join(group), group_start, block.start_line + len(block.lines) - 1, block_id, group_tokens))
    return [p for p in pieces if p.text.strip()]


def _split_line(line: str, budget: int, counter: TokenCounter) -> list[str]:
    parts: list[str] = []
    current = ""
    for sentence in _SENTENCE.split(line):
        candidate = f"{current} {sentence}" if current else sentence
        if counter.count(candidate) <= budget:
            current = candidate
            continue
        if current:
            parts.append(current)
        if counter.count(sentence) <= budget:
            current = sentence
        else:
            parts.extend(counter.split(sentence, budget))
            current = ""
    if current:
        parts.append(current)
    return parts


def _pack(pieces: list[_Piece], target: int) -> list[list[_Piece]]:
    groups: list[list[_Piece]] = []
    current: list[_Piece] = []
    size = 0
    for piece in pieces:
        if current and size + piece.tokens > target:
            groups.append(current)
            current, size = [], 0
        current.append(piece)
        size += piece.tokens + 1
    if current:
        groups.append(current)
    return groups


def _join(pieces: Sequence[_Piece]) -> str:
    out = pieces[0].text
    for prev, piece in zip(pieces, pieces[1:]):
        out += ("\n" if piece.block == prev.block else "\n\n") + piece.text
    return out


def chunk_markdown(text: str, counter: TokenCounter, *, target_tokens: int = 200, max_tokens: int = 254,
                   title: str | None = None) -> list[Chunk]:
    """Chunks of a markdown document (front matter skipped, its lines counted)."""
    _, _, body_start = split_front_matter(text)
    lines = text.split("\n")[body_start - 1:]
    target = min(target_tokens, max_tokens)
    raw: list[tuple[tuple[str, ...], list[_Piece], str]] = []
    block_id = 0
    sections = parse_sections(lines, body_start)
    prefixes = [" > ".join(_context(section.path, title)) for section in sections]
    prefix_counts = counter.count_many(prefixes)
    block_counts = iter(counter.count_many(["\n".join(b.lines) for s in sections for b in s.blocks]))
    for section, prefix, prefix_count in zip(sections, prefixes, prefix_counts):
        budget = max(max_tokens - (prefix_count + 2 if prefix else 0), 16)
        pieces: list[_Piece] = []
        for block in section.blocks:
            pieces.extend(_split_block(block, block_id, budget, counter, next(block_counts)))
            block_id += 1
        for group in _pack(pieces, min(target, budget)):
            raw.append((section.path, group, prefix))
    chunks: list[Chunk] = []
    embeds = [f"{p}\n{_join(g)}" if p else _join(g) for _, g, p in raw]
    pending = [(path, group, prefix, embed, count) for (path, group, prefix), embed, count
               in zip(raw, embeds, counter.count_many(embeds))]
    while pending:
        path, group, prefix, embed, count = pending.pop(0)
        if count is None:
            body = _join(group)
            embed = f"{prefix}\n{body}" if prefix else body
            count = counter.count(embed)
        body = _join(group)
        if count > max_tokens and len(group) > 1:  # the estimate was off: halve the group
            half = len(group) // 2
            pending[:0] = [(path, group[:half], prefix, "", None), (path, group[half:], prefix, "", None)]
            continue
        if count > max_tokens:  # one piece, still too long with its context: cut it smaller
            piece = group[0]
            parts = counter.split(piece.text, max(piece.tokens - (count - max_tokens) - 8, 8))
            pending[:0] = [(path, [_Piece(p, piece.start_line, piece.end_line, piece.block, counter.count(p))], prefix,
                            "", None) for p in parts]
            continue
        digest = hashlib.sha256(f"{CHUNKER_VERSION}\0{embed}".encode("utf-8")).hexdigest()
        chunks.append(Chunk(len(chunks), body, embed, path, group[0].start_line, group[-1].end_line, count, digest))
    return chunks
