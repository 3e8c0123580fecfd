"""``indexer mcp``: the Model Context Protocol server (stdio, or streamable HTTP on loopback)."""

from __future__ import annotations

import click

from indexer.cli.app import AppContext, cli
from indexer.mcp.catalog import help_text, parse_groups

EPILOG = help_text() + """

\b
Client configuration (Claude Code, Cursor, ...):
  {"mcpServers": {"indexer": {"command": "indexer", "args": ["mcp"]}}}"""


@cli.command(epilog=EPILOG)
@click.option("--http", "http", is_flag=True, help="Serve streamable HTTP (stateless) on 127.0.0.1 instead of stdio.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Port for --http.")
@click.option("--read-only", is_flag=True, help="Leave out the tools that write (reindex, memory and session writes).")
@click.option("--tools", "tools", metavar="GROUPS",
              help="Only these groups, comma-separated: docs, memory, sessions (default: all).")
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False),
              help="A root whose indexed files read_document may read (repeatable; replaces the configured roots).")
@click.option("--by", "by", default="mcp", show_default=True, help="Author recorded for memory writes without their own `by`.")
@click.pass_obj
def mcp(app: AppContext, http: bool, port: int, read_only: bool, tools: str | None, roots: tuple[str, ...], by: str) -> None:
    """Serve the index, memory and sessions to agents over MCP.

    stdio by default (what clients launch); start-up loads no model. Search, status and
    reindex go to the running daemon and fall back to the database when none runs; memory
    and session tools use the database directly.
    """
    groups = parse_groups(tools)
    # without the docs tools, a postgresql:// --db is fine: memory and sessions use the agent store
    config = app.config(agent="docs" not in groups, roots=list(roots) or None)
    from indexer.mcp.server import build_server, run_http, run_stdio  # the SDK: only now

    server = build_server(config, groups=groups, read_only=read_only, by=by)
    if http:
        click.echo(f"indexer mcp: streamable HTTP on http://127.0.0.1:{port}/mcp", err=True)
        run_http(server, port)
    else:
        run_stdio(server)
