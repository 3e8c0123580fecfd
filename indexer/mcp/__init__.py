"""``indexer mcp``: a Model Context Protocol server over the index, memory and sessions.

This package's ``__init__`` and :mod:`indexer.mcp.catalog` import nothing heavy, so the CLI
can list the tools in ``indexer mcp --help``; the SDK (``mcp``) is imported only by
:mod:`indexer.mcp.server` and the tool modules, when the server is built.
"""

from __future__ import annotations

from indexer.mcp.catalog import GROUPS, TOOLS, ToolInfo, select_tools

__all__ = ["GROUPS", "TOOLS", "ToolInfo", "select_tools"]
