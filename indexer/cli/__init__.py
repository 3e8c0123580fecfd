"""The ``indexer`` command: a thin layer over the library."""

from __future__ import annotations

from indexer.cli.app import cli, main

__all__ = ["cli", "main"]
