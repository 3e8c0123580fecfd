"""Front matter blocks parsed at a bounded cost (pure: text in, JSON-ready values out).

A note's front matter is untrusted input: one file must not stop or stall the indexing of
the others. YAML is read by PyYAML's safe loader (no ``!!python/...`` tags) with these caps,
and a block over any of them is refused with a :class:`FrontMatterRefused` saying which:

- :data:`MAX_BYTES`: the block's size, before anything is parsed;
- :data:`MAX_DEPTH`: how deeply values nest, aliases expanded;
- :data:`MAX_ALIASES`: how many aliases (``*name``) it uses; an alias inside the value it
  names (``a: &x [*x]``, a value that contains itself) is refused outright;
- :data:`MAX_EXPANDED`: its size once its aliases are expanded (scalars' characters plus
  one per value), so that a few nested aliases ("billion laughs") cannot expand to gigabytes.

Expansion is measured while the YAML is composed (each value's size and depth once, aliases
adding the size of the value they name), so the cost is linear in the block. TOML has no
aliases; both kinds are then made JSON-ready by :func:`jsonable`, which holds the same
depth cap.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from typing import Any

MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_EXPANDED = 256 * 1024
_JSON_INT = 1 << 63  # integers JSON and SQLite hold exactly; larger ones are kept as strings
_SURROGATE = re.compile("[\ud800-\udfff]")
_DECIMAL_BITS = 12_000  # about 3,600 digits: below Python's limit on int-to-decimal conversion


class FrontMatterRefused(ValueError):
    """Front matter over one of the caps: skipped, with this reason."""


class NotFrontMatter(Exception):
    """The fenced block is one plain sentence: a thematic break and prose, not metadata."""


def _loader_class() -> Any:
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """PyYAML's safe loader, counting aliases, depth and expanded size while it composes."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.depth = 0
            self.aliases = 0
            self.open_anchors: set[str] = set()  # anchors of the values being composed
            self.measure: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, depth)

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise FrontMatterRefused(f"front matter uses more than {MAX_ALIASES} aliases")
                if event.anchor in self.open_anchors:
                    raise FrontMatterRefused(f"front matter has a recursive alias *{event.anchor} "
                                             "(a value that contains itself)")
                return super().compose_node(parent, index)
            anchor = getattr(event, "anchor", None)
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FrontMatterRefused(f"front matter nests deeper than {MAX_DEPTH} levels")
            if anchor is not None:
                self.open_anchors.add(anchor)
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= 1
                if anchor is not None:
                    self.open_anchors.discard(anchor)
            self._weigh(node)
            return node

        def _weigh(self, node: Any) -> None:
            if isinstance(node, yaml.ScalarNode):
                size, depth = len(node.value) + 1, 1
            else:
                children = (node.value if isinstance(node, yaml.SequenceNode)
                            else [n for pair in node.value for n in pair])
                parts = [self.measure[id(c)] for c in children]
                size = 1 + sum(s for s, _ in parts)
                depth = 1 + max((d for _, d in parts), default=0)
            if depth > MAX_DEPTH:
                raise FrontMatterRefused(f"front matter nests deeper than {MAX_DEPTH} levels through its aliases")
            if size > MAX_EXPANDED:
                raise FrontMatterRefused(f"front matter expands to more than {MAX_EXPANDED:,} characters "
                                         "through its aliases")
            self.measure[id(node)] = (size, depth)

    return BoundedLoader


_LOADER: Any = None


def load_yaml(raw: str) -> Any:
    """``raw`` parsed as YAML by the safe loader within the caps (FrontMatterRefused over one)."""
    global _LOADER
    if _LOADER is None:
        _LOADER = _loader_class()
    loader = _LOADER(raw)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_block(fence: str, raw: str) -> dict[str, Any]:
    """The JSON-ready mapping of a ``---`` (YAML) or ``+++`` (TOML) block; NotFrontMatter when it
    is one plain string; FrontMatterRefused over a cap; any other exception when invalid."""
    if not raw.strip():
        return {}
    size = len(raw.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise FrontMatterRefused(f"front matter is {size:,} bytes, over the limit of {MAX_BYTES:,}")
    if fence == "---":
        data = load_yaml(raw)
    else:
        import tomllib

        data = tomllib.loads(raw)
    if data is None:
        return {}
    if isinstance(data, str):
        raise NotFrontMatter
    if not isinstance(data, dict):
        raise ValueError(f"front matter is a {type(data).__name__}, not a mapping")
    result: dict[str, Any] = jsonable(data)
    return result


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON can hold it: dates and times as ISO 8601 strings, keys as strings,
    NaN as null, infinities and integers past 64 bits as strings, bytes decoded, lone
    surrogates replaced, anything else ``str()``. FrontMatterRefused past :data:`MAX_DEPTH` levels."""
    if depth > MAX_DEPTH:
        raise FrontMatterRefused(f"front matter nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {_key(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return value.isoformat()
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -_JSON_INT <= value < _JSON_INT else _big_int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _big_int(value: int) -> str:
    return str(value) if value.bit_length() <= _DECIMAL_BITS else hex(value)


def _key(key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return _big_int(key)
    return _text(str(key))


def _text(value: str) -> str:
    """A string UTF-8 can hold: a lone surrogate (YAML's ``"\\uD800"``) becomes U+FFFD."""
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
