"""What every tool module shares: the server's state (config, the lazily opened database,
the direct-search embedder), errors as MCP tool errors, results with compact text, and the
output budget."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from indexer.config import Config
from indexer.errors import IndexerError, NotFoundError

M = TypeVar("M", bound=BaseModel)

# Clients cap tool output (Claude Code: 25k tokens by default); every result stays under this.
MAX_OUTPUT_CHARS = 40_000

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
IDEMPOTENT_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                   open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)


class ServerState:
    """One per server: the config, who writes (``by``), the database opened on first use
    (created only by a write when no file exists yet, as the CLI does)
    and, for searches without a daemon, one embedder kept for the process's life."""

    def __init__(self, config: Config, *, by: str = "mcp") -> None:
        self.config = config
        self.by = by
        self._db: Any = None
        self._db_lock: asyncio.Lock | None = None
        self._embedder: Any = None
        self._embed_lock = threading.Lock()

    @property
    def limits(self) -> Any:
        """The sizes the agent services accept (the config's max_*_bytes)."""
        from indexer.agent.common import Limits

        return Limits.from_config(self.config)

    async def database(self, *, create: bool = False) -> Any:
        """The agent store (memories, sessions): ``config.agent_location``, a file or a
        postgresql:// server."""
        from indexer.locations import is_postgres
        from indexer.storage.engines import open_agent_database

        if self._db_lock is None:
            self._db_lock = asyncio.Lock()
        async with self._db_lock:
            if self._db is None:
                location = self.config.agent_location
                if not is_postgres(location) and not Path(location).exists() and not create:
                    raise NotFoundError(f"no database at {location} (nothing stored yet)")
                # as the CLI's memory and session commands do: pending migrations are applied
                # (safe with several processes at once: SQLite re-checks each under the write
                # lock, PostgreSQL each under a transaction-scoped advisory lock)
                db = open_agent_database(location, **self.config.agent_settings)
                await db.initialize()
                self._db = db
            return self._db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    def embed_query(self, text: str) -> Any:
        """The query vector, from an embedder loaded on first use (a tool call, never the
        handshake) and kept; calls from worker threads are serialised."""
        with self._embed_lock:
            if self._embedder is None:
                from indexer.documents.embedding import embedder_for

                self._embedder = embedder_for(self.config)
            return self._embedder.embed_query(text)


@contextmanager
def tool_errors() -> Iterator[None]:
    """A failure as an MCP tool error (``is_error``) carrying the one-line message the CLI
    prints after ``error:``; anything else is left to the SDK (a crash, logged)."""
    try:
        yield
    except ToolError:
        raise
    except IndexerError as exc:
        raise ToolError(str(exc)) from None
    except OSError as exc:
        raise ToolError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None
    except Exception as exc:
        driver = sys.modules.get("indexer.storage.sqlite.driver")
        if driver is not None and isinstance(exc, driver.Error):
            raise ToolError(f"database: {exc}") from None
        raise


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def respond(data: BaseModel, text: str | None = None) -> CallToolResult:
    """The full object as ``structured_content``; for the model, ``text`` or compact JSON
    (the SDK's default is indented JSON, a third longer)."""
    structured = data.model_dump(mode="json")
    return CallToolResult(content=[TextContent(type="text", text=compact(structured) if text is None else text)],
                          structured_content=structured)


def size(value: Any) -> int:
    return len(compact(value))


def json_size(value: Any) -> int:
    """The UTF-8 bytes of a value's JSON, as the services measure it against their limits."""
    from indexer.agent.common import json_bytes, to_json

    return json_bytes(to_json(value))


def fit_page(items: list[M], next_cursor: str | None, position: Callable[[M], list[str]]) -> tuple[list[M], str | None]:
    """A page cut to the output budget: the items that fit, and a cursor that continues right
    after the last one kept (``position`` gives the listing's sort key of an item) when some
    were cut; the service's own cursor otherwise."""
    keep = fit([item.model_dump(mode="json") for item in items])
    if keep >= len(items):
        return items, next_cursor
    from indexer.agent.common import encode_cursor

    return items[:keep], encode_cursor(position(items[keep - 1]))


def fit(items: list[Any], budget: int = MAX_OUTPUT_CHARS) -> int:
    """How many of ``items`` (in order, at least one) fit in ``budget`` characters of JSON."""
    used = 0
    for count, item in enumerate(items):
        used += size(item) + 1
        if used > budget and count > 0:
            return count
    return len(items)
