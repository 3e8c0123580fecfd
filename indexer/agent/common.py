"""Rules shared by the agent services (memory and sessions): text checks, limits, JSON values
and opaque page cursors. Pure functions; the SQL lives in :mod:`indexer.storage`."""

from __future__ import annotations

import base64
import json
from typing import Any

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


def encode_cursor(position: list[Any]) -> str:
    raw = json.dumps(position, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


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
