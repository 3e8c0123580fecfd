"""One timestamp format everywhere: RFC 3339, UTC, milliseconds, ``Z``.

SQL defaults write the same text with ``strftime('%Y-%m-%dT%H:%M:%fZ','now')``; both sort
correctly as text. :func:`to_rfc3339` converts the formats legacy databases hold.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"
_CANONICAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def format_ts(moment: datetime) -> str:
    """A datetime as canonical text (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_ts() -> str:
    return format_ts(datetime.now(UTC))


def parse_ts(text: str) -> datetime:
    """Parse canonical, ``isoformat()`` and ``CURRENT_TIMESTAMP`` text; raise ValueError."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def to_rfc3339(value: object) -> object:
    """Convert a legacy timestamp value; NULL and unparseable values come back unchanged.

    Numbers are taken as Unix epoch seconds. Text that is not a timestamp is kept as it
    is, so that no value is ever lost (the migration counts and reports those).
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return format_ts(datetime.fromtimestamp(float(value), tz=UTC))
        except (OverflowError, OSError, ValueError):
            return value
    if isinstance(value, str):
        if _CANONICAL.match(value):
            return value
        try:
            return format_ts(parse_ts(value))
        except (ValueError, OverflowError):  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
            return value
    return value


def is_canonical(value: object) -> bool:
    return isinstance(value, str) and bool(_CANONICAL.match(value))
