"""Helpers shared by the ``memory`` and ``session`` commands: JSON arguments and options, the
database opened (and migrated) for one command, and a compact one-line rendering of values."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from indexer.cli.app import AppContext
from indexer.errors import NotFoundError, ValidationError

T = TypeVar("T")


def json_argument(text: str, what: str) -> Any:
    """A JSON command-line argument; ``-`` reads it from stdin."""
    from indexer.agent.common import parse_json

    if text == "-":
        with click.open_file("-", "r") as stream:
            text = stream.read()
    return parse_json(text, what)


def json_object_option(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json_argument(text, what)
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object")
    return value


def run_with_db(app: AppContext, action: Callable[[Any], Awaitable[T]], *, create: bool = True) -> T:
    """Open the configured database (migrating it if needed) and run ``action(db)``.

    With ``create=False`` (every command but those that create a record) a missing database
    file is an error instead of being created: a failed command leaves no file behind."""
    from indexer.storage.database import Database

    path = Path(app.config().db)
    if not create and not path.exists():
        raise NotFoundError(f"no database at {path} (nothing stored yet)")

    async def main() -> T:
        async with Database(path) as db:
            return await action(db)

    import asyncio

    return asyncio.run(main())


def compact(value: Any, width: int = 0) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    text = text.replace("\n", "\\n")
    return text if not width or len(text) <= width else text[: width - 1] + "…"


def limits(app: AppContext) -> Any:
    """The sizes the agent services accept, from the config (max_value_bytes and the rest)."""
    from indexer.agent.common import Limits

    return Limits.from_config(app.config())
