"""Helpers shared by the ``memory`` and ``session`` commands: JSON arguments and options, the
database opened (and migrated) for one command, and a compact one-line rendering of values."""

from __future__ import annotations

import json
import shlex
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
    try:
        return parse_json(text, what)
    except ValidationError as exc:
        raise ValidationError(f"{exc}{quoting_hint(text)}") from None


def quoting_hint(text: str) -> str:
    """What to type instead of a bare word (``dark``): the shell ate no quotes, JSON needs
    them. "" when the text looks like JSON that is merely broken."""
    stripped = text.strip()
    if not stripped or stripped[0] in "{[\"" or len(stripped) > 60 or "\n" in stripped:
        return ""
    return f"; to store the string, quote it as JSON inside the shell's quotes: {shlex.quote(json.dumps(stripped))}"


def json_object_option(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json_argument(text, what)
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object")
    return value


def run_with_db(app: AppContext, action: Callable[[Any], Awaitable[T]], *, create: bool = True) -> T:
    """Open the configured agent store (migrating it if needed) and run ``action(db)``: an
    SQLite file, or a PostgreSQL server for a postgresql:// location (--agent-db or --db).

    With ``create=False`` (every command but those that create a record) a missing database
    file is an error instead of being created: a failed command leaves no file behind."""
    from indexer.locations import is_postgres
    from indexer.storage.engines import open_agent_database

    config = app.config(agent=True)
    location = config.agent_location
    if not is_postgres(location) and not create and not Path(location).exists():
        raise NotFoundError(f"no database at {location} (nothing stored yet)")

    async def main() -> T:
        async with open_agent_database(location, **config.agent_settings) as db:
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

    return Limits.from_config(app.config(agent=True))
