"""The ``indexer`` command: a thin layer over the library.

``main`` is the lean entry (``cli/search_lean.py``): a search the daemon answers imports no
click; ``cli``, the click group, is imported on first use."""

from __future__ import annotations

from typing import Any

from indexer.cli.search_lean import main

__all__ = ["cli", "main"]


def __getattr__(name: str) -> Any:
    if name == "cli":
        from indexer.cli.app import cli

        return cli
    raise AttributeError(name)
