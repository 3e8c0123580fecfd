"""Building and running the MCP server (the official SDK, ``mcp`` 2.x).

Start-up loads no model and opens no database: the handshake is answered as soon as the
SDK is imported. The database is opened by the first memory or session call, the model by
the first semantic search made without a daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import Tool, ToolAnnotations
from pydantic import ValidationError

from indexer import __version__
from indexer.config import Config
from indexer.mcp import docs, memory_tools, session_tools, task_tools
from indexer.mcp.catalog import GROUPS, select_tools
from indexer.mcp.common import ServerState
from indexer.mcp.schema import lean_annotations, lean_description, lean_input, lean_output, plain_validation_error

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8765

INSTRUCTIONS = """\
indexer keeps an index of the user's markdown notes and docs, searchable by meaning and
keywords, plus a versioned long-term memory and session logs for agents.
- Documents: `search` first, then `read_document` with a hit's path (and start_line) to read it.
- Memory: (namespace, key) -> any JSON value, versioned. Namespaces are ':'-separated and start
  with project, app, user, session or temp (e.g. user:alice:prefs). `memory_write` creates or
  updates; `memory_delete` is undone by `memory_restore`, which also rolls back to a version.
- Sessions: `session_create`, then `session_append` events; `session_update` changes state or
  status (created -> active <-> paused -> terminated -> archived).
- Tasks: `task_claim`, then `task_heartbeat` before the lease ends; `task_complete` or `task_fail`.
Lists are paginated: pass next_cursor back as cursor."""


class LeanServer(MCPServer):
    """The SDK's server with a lean ``tools/list`` (``mcp/schema.py``) and bad arguments
    answered in one plain sentence."""

    _lean: list[Tool] | None = None

    async def list_tools(self) -> list[Tool]:
        if self._lean is None:
            self._lean = [tool.model_copy(update={
                "description": lean_description(tool.description), "input_schema": lean_input(tool.input_schema),
                "output_schema": lean_output(tool.output_schema), "annotations": self._hints(tool.annotations)})
                for tool in await super().list_tools()]
        return self._lean

    @staticmethod
    def _hints(annotations: ToolAnnotations | None) -> ToolAnnotations | None:
        if annotations is None:
            return None
        lean = lean_annotations(annotations.model_dump(by_alias=True, exclude_none=True))
        return ToolAnnotations.model_validate(lean)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(plain_validation_error(exc.__cause__.errors())) from exc.__cause__
            raise


def build_server(config: Config, *, groups: Iterable[str] = GROUPS, read_only: bool = False,
                 by: str = "mcp") -> MCPServer:
    """The server with the tools of ``groups`` (docs, memory, sessions, tasks), without the write
    tools when ``read_only``; ``by`` is recorded as the author of memory writes."""
    state = ServerState(config, by=by)

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[ServerState]:
        try:
            yield state
        finally:
            await state.close()

    server = LeanServer(name="indexer", title="indexer: markdown search, memory and sessions",
                       instructions=INSTRUCTIONS, version=__version__, lifespan=lifespan,
                       log_level="WARNING")
    names = {t.name for t in select_tools(groups, read_only=read_only)}
    docs.register(server, state, names)
    memory_tools.register(server, state, names)
    session_tools.register(server, state, names)
    task_tools.register(server, state, names)
    return server


def run_stdio(server: MCPServer) -> None:
    """Serve on stdin/stdout until stdin closes."""
    server.run()


def run_http(server: MCPServer, token: str, port: int = DEFAULT_PORT) -> None:
    """Streamable HTTP, stateless, JSON responses, on loopback only (``/mcp``); every request
    must carry ``Authorization: Bearer <token>`` (:mod:`indexer.mcp.http_auth`), and the SDK
    checks Host and Origin (DNS rebinding protection, on by itself for a loopback host)."""
    import uvicorn

    from indexer.mcp.http_auth import BearerAuth

    app = server.streamable_http_app(stateless_http=True, json_response=True, host=LOOPBACK)
    uvicorn.Server(uvicorn.Config(BearerAuth(app, token), host=LOOPBACK, port=port, log_level="warning")).run()
