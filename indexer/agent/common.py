"""Rules shared by the agent services (memory and sessions): text checks, limits, JSON values,
the size caps on what agents store, and opaque page cursors. Pure functions; the SQL lives
in :mod:`indexer.storage`."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from indexer.config import DEFAULT_SIZE_LIMITS as _DEFAULTS
from indexer.config import Config
from indexer.errors import ValidationError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def check_text(value: Any, what: str) -> str:
    """A non-empty string without control characters (one-line error messages stay one line)."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must be a non-empty string, got {value!r}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError(f"{what} must not contain control characters: {value!r}")
    return value


def validate_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def to_json(value: Any, what: str = "value") -> str:
    """JSON text of a Python value; ValidationError for what JSON cannot hold (NaN, sets…)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} is not JSON-serialisable: {exc}") from None


def parse_json(text: str, what: str = "value") -> Any:
    """Decode JSON text given by a user (e.g. a CLI argument): ValidationError, one line."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValidationError(f"{what} is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


@dataclass(frozen=True)
class Limits:
    """The largest values the services store, in bytes of their JSON text (UTF-8): a memory
    value, metadata (of a memory or a session), one session event, a session's state as
    written by one call (an initial state or a delta). Larger ones are refused with a
    ValidationError naming the size, the limit and the setting. The defaults are the config's
    (``max_value_bytes``, ``max_metadata_bytes``, ``max_event_bytes``, ``max_state_bytes``);
    :meth:`from_config` takes a config's own."""

    value_bytes: int = _DEFAULTS["max_value_bytes"]
    metadata_bytes: int = _DEFAULTS["max_metadata_bytes"]
    event_bytes: int = _DEFAULTS["max_event_bytes"]
    state_bytes: int = _DEFAULTS["max_state_bytes"]

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        return cls(config.max_value_bytes, config.max_metadata_bytes, config.max_event_bytes, config.max_state_bytes)

    def value(self, text: str) -> str:
        return _within(text, "the value", self.value_bytes, "max_value_bytes")

    def metadata(self, text: str) -> str:
        return _within(text, "the metadata", self.metadata_bytes, "max_metadata_bytes")

    def event(self, text: str) -> str:
        return _within(text, "the event", self.event_bytes, "max_event_bytes")

    def state_json(self, text: str) -> str:
        """A whole state object's JSON text (a new session's)."""
        return _within(text, "the state", self.state_bytes, "max_state_bytes")

    def state(self, ops: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        """A state write's (key, JSON text or None) pairs, measured as the object they make."""
        size = 2 + sum(len(key.encode("utf-8")) + 4 + json_bytes(value or "null") for key, value in ops)
        if size > self.state_bytes:
            raise ValidationError(_over("the state", size, self.state_bytes, "max_state_bytes"))
        return ops


def json_bytes(text: str) -> int:
    """The size of JSON text in UTF-8 bytes (what is stored)."""
    return len(text.encode("utf-8", errors="surrogatepass"))


def _over(what: str, size: int, limit: int, setting: str) -> str:
    return f"{what} is {size:,} bytes as JSON, over the limit of {limit:,} bytes (setting {setting})"


def _within(text: str, what: str, limit: int, setting: str) -> str:
    size = json_bytes(text)
    if size > limit:
        raise ValidationError(_over(what, size, limit, setting))
    return text


def encode_cursor(position: list[Any]) -> str:
    raw = json.dumps(position, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


T = TypeVar("T")


def keyset_after(cursor: str | None) -> tuple[str, ...] | None:
    """The (sort key, id) position a listing's cursor holds, or None for the first page."""
    return tuple(decode_cursor(cursor, 2)) if cursor is not None else None


def keyset_page(rows: Sequence[Any], limit: int, to_item: Callable[[Any], T],
                position: Callable[[T], list[Any]]) -> tuple[list[T], str | None]:
    """A page of a keyset listing fetched as ``limit + 1`` rows: the first ``limit`` as items,
    and the next page's cursor (the last item's ``position``) when there was one more row."""
    items = [to_item(r) for r in rows[:limit]]
    return items, encode_cursor(position(items[-1])) if len(rows) > limit else None


def decode_cursor(cursor: Any, size: int) -> list[str]:
    """The position a cursor holds: a list of ``size`` strings; ValidationError otherwise."""
    try:
        text = str(cursor)
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        position = json.loads(raw)
    except (ValueError, TypeError):
        raise ValidationError(f"invalid cursor {cursor!r}") from None
    if not isinstance(position, list) or len(position) != size or not all(isinstance(p, str) for p in position):
        raise ValidationError(f"invalid cursor {cursor!r}")
    return position
