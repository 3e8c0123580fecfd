"""Front matter, title and document type of a markdown file (pure)."""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_SETEXT_H1 = re.compile(r"^ {0,3}=+[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
TYPES = ("design", "specification", "plan", "report")
_TYPE_WORDS = {
    "design": ("design", "architecture", "adr", "decision"),
    "specification": ("spec", "specs", "specification", "specifications", "rfc", "rfcs", "proposal"),
    "plan": ("plan", "plans", "roadmap", "milestone", "milestones"),
    "report": ("report", "reports", "postmortem", "retro", "retrospective", "summary"),
}


@dataclass(frozen=True)
class DocMeta:
    title: str
    document_type: str | None
    front_matter: dict[str, Any] = field(default_factory=dict)
    front_matter_error: str | None = None
    body_start_line: int = 1  # 1-based line where the body starts (after front matter)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def split_front_matter(text: str) -> tuple[dict[str, Any], str | None, int]:
    """(front matter, error or None, 1-based first body line). YAML ``---`` or TOML ``+++``."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() not in ("---", "+++"):
        return {}, None, 1
    fence = lines[0].rstrip()
    closers = ("---", "...") if fence == "---" else ("+++",)
    for i in range(1, min(len(lines), 500)):
        if lines[i].rstrip() in closers:
            raw = "\n".join(lines[1:i])
            try:
                if fence == "---":
                    import yaml

                    data = yaml.safe_load(raw) if raw.strip() else {}
                else:
                    import tomllib

                    data = tomllib.loads(raw)
            except Exception as exc:  # broken front matter: keep going, say why
                return {}, f"front matter is not valid: {str(exc).splitlines()[0]}", i + 2
            if data is None:
                data = {}
            if not isinstance(data, dict):
                return {}, "front matter is not a mapping", i + 2
            return _jsonable(data), None, i + 2
    return {}, None, 1  # no closing fence: not front matter


def first_h1(lines: list[str]) -> str | None:
    in_fence: str | None = None
    for i, line in enumerate(lines):
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(1)[0] * 3
            in_fence = None if in_fence and line.strip().startswith(in_fence) else (in_fence or marker)
            continue
        if in_fence:
            continue
        match = _ATX.match(line)
        if match and len(match.group(1)) == 1 and match.group(2).strip():
            return match.group(2).strip()
        if line.strip() and i + 1 < len(lines) and _SETEXT_H1.match(lines[i + 1]) and not _ATX.match(line):
            return line.strip()
    return None


def guess_type(path: PurePath, title: str) -> str | None:
    """The two nearest directory names and the file name first, then the title's words."""
    words = [w for part in path.parts[-3:-1] for w in re.split(r"[^a-z]+", part.lower()) if w]
    words += [w for w in re.split(r"[^a-z]+", path.stem.lower()) if w]
    title_words = [w for w in re.split(r"[^a-z]+", title.lower()) if w]
    for pool in (words, title_words):
        for kind in TYPES:
            if any(w in _TYPE_WORDS[kind] for w in pool):
                return kind
    return None


def parse_document(text: str, path: PurePath) -> DocMeta:
    front, error, body_start = split_front_matter(text)
    lines = text.split("\n")[body_start - 1:]
    title = front.get("title") if isinstance(front.get("title"), str) and front["title"].strip() else None
    title = (title or first_h1(lines) or path.stem).strip()
    raw_type = front.get("type")
    if isinstance(raw_type, str) and raw_type.strip():
        document_type: str | None = raw_type.strip().lower()
    else:
        document_type = guess_type(path, title)
    return DocMeta(title, document_type, front, error, body_start)
