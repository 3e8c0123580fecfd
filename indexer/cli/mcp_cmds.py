"""``indexer mcp``: the Model Context Protocol server (stdio, or streamable HTTP on loopback)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from indexer.cli.app import AppContext, cli
from indexer.mcp.catalog import help_text, parse_groups

EPILOG = help_text() + """

\b
Client configuration (Claude Code's .mcp.json, Cursor, ...): `indexer mcp --print-config`
prints it, with this installation's absolute path (clients do not read your shell's PATH):
  {"mcpServers": {"indexer": {"command": "/…/.venv/bin/indexer", "args": ["mcp"]}}}
With --http, every request needs `Authorization: Bearer <token>`; `indexer mcp --http
--print-config` prints the URL and the header (the token is made once, kept 0600)."""

# The variables that choose the state (database, agent store, config, socket), passed to the
# server in the printed configuration: MCP clients start servers with a reduced environment.
STATE_ENV = ("INDEXER_HOME", "INDEXER_DB", "INDEXER_AGENT_DB", "INDEXER_CONFIG", "XDG_DATA_HOME", "XDG_CONFIG_HOME",
             "XDG_CACHE_HOME", "XDG_RUNTIME_DIR")


@cli.command(epilog=EPILOG)
@click.option("--http", "http", is_flag=True, help="Serve streamable HTTP (stateless) on 127.0.0.1 instead of stdio; "
              "requests need the bearer token (see --print-config).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Port for --http.")
@click.option("--read-only", is_flag=True, help="Leave out the tools that write (reindex, memory and session writes).")
@click.option("--tools", "tools", metavar="GROUPS",
              help="Only these groups, comma-separated: docs, memory, sessions, tasks (default: all).")
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False),
              help="A root whose indexed files read_document may read (repeatable; replaces the configured roots).")
@click.option("--by", "by", default="mcp", show_default=True, help="Author recorded for memory writes without their own `by`.")
@click.option("--print-config", "print_config", is_flag=True,
              help="Print the client configuration (JSON) for these options and exit; with --http, the URL and token.")
@click.pass_obj
def mcp(app: AppContext, http: bool, port: int, read_only: bool, tools: str | None, roots: tuple[str, ...], by: str,
        print_config: bool) -> None:
    """Serve the index, memory and sessions to agents over MCP.

    stdio by default (what clients launch); start-up loads no model. Search, status and
    reindex go to the running daemon and fall back to the database when none runs; memory
    and session tools use the database directly.
    """
    groups = parse_groups(tools)
    # without the docs tools, a postgresql:// --db is fine: memory and sessions use the agent store
    config = app.config(agent="docs" not in groups, roots=list(roots) or None)
    token = None
    if http:
        from indexer.mcp.http_auth import http_token, token_path

        token = http_token(token_path(config))
    if print_config:
        options = {"read_only": read_only, "tools": tools, "roots": roots, "by": by}
        from indexer.cli.output import emit_json

        emit_json(client_config(app, options, http=http, port=port, token=token))
        return
    from indexer.mcp.server import build_server, run_http, run_stdio  # the SDK: only now

    server = build_server(config, groups=groups, read_only=read_only, by=by)
    if token is not None:
        from indexer.mcp.http_auth import token_path

        click.echo(f"indexer mcp: streamable HTTP on http://127.0.0.1:{port}/mcp; requests need the header "
                   f"`Authorization: Bearer <the token in {token_path(config)}>` (`indexer mcp --http --print-config` "
                   "prints the client configuration)", err=True)
        run_http(server, token, port)
    else:
        run_stdio(server)


def client_config(app: AppContext, options: dict[str, Any], *, http: bool, port: int, token: str | None) -> dict[str, Any]:
    """``{"mcpServers": {"indexer": ...}}`` as Claude Code, Cursor and Codex read it: for stdio
    the absolute command, its arguments and the environment that chose the state; for HTTP
    the URL and the Authorization header."""
    if http:
        entry: dict[str, Any] = {"type": "http", "url": f"http://127.0.0.1:{port}/mcp",
                                 "headers": {"Authorization": f"Bearer {token}"}}
        return {"mcpServers": {"indexer": entry}}
    from indexer.daemon.unit import executable

    command, *head = executable()
    args = [*head]
    if app.db:
        args += ["--db", _location(app.db)]
    if app.agent_db:
        args += ["--agent-db", _location(app.agent_db)]
    if app.config_file:
        args += ["--config", str(Path(app.config_file).expanduser().resolve())]
    args.append("mcp")
    if options["read_only"]:
        args.append("--read-only")
    if options["tools"]:
        args += ["--tools", options["tools"]]
    for root in options["roots"]:
        args += ["--root", str(Path(root).expanduser().resolve())]
    if options["by"] != "mcp":
        args += ["--by", options["by"]]
    entry = {"command": command, "args": args}
    env = {key: os.environ[key] for key in STATE_ENV if os.environ.get(key)}
    if env:
        entry["env"] = env
    return {"mcpServers": {"indexer": entry}}


def _location(location: str) -> str:
    """A database location for the printed arguments: a file as an absolute path, a
    postgresql:// URL as given."""
    from indexer.locations import is_postgres

    return location if is_postgres(location) else str(Path(location).expanduser().resolve())
