"""The front doors' side of the control socket (the CLI's and the MCP server's): ask the
running daemon, or say there is none, so that the caller does the work in its own process."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the lean search imports this module: no config module (dataclasses) at run time
    from indexer.config import Config


def ask(config: Config, request: dict[str, Any], *, timeout: float | None = 120.0) -> Any | None:
    """The daemon's answer, or None when no daemon serves this database. An error the daemon
    reports is raised (as :class:`~indexer.daemon.control.DaemonError`, an IndexerError)."""
    from indexer.daemon.control import socket_path

    return ask_at(socket_path(config.runtime_dir, config.db), request, timeout=timeout)


def ask_at(path: Path, request: dict[str, Any], *, timeout: float | None = 120.0) -> Any | None:
    """:func:`ask`, given the daemon's socket path."""
    from indexer.daemon.control import DaemonTimeout, DaemonUnavailable, call

    if not path.exists():
        return None
    try:
        return call(path, request, timeout=timeout)
    except DaemonUnavailable:
        return None
    except DaemonTimeout as exc:  # a stopped or stuck daemon: answer from the database instead
        import sys

        print(f"warning: {exc}; reading the database directly", file=sys.stderr)
        return None


def reindex_by_daemon(config: Config, paths: Sequence[str], *, full: bool, wait: bool = True,
                      timeout: float | None = None) -> tuple[dict[str, Any] | None, list[str]] | None:
    """"Ask the daemon, else do it here" for ``reindex``, one rule for the CLI and MCP.

    When a daemon runs it is the only writer of its roots' documents: the PATHs at or below
    its roots (normalised as the daemon normalises them) go to it. Returns None when no daemon
    answers (the caller does everything), else (the daemon's answer, or None when no PATH was
    under its roots; the PATHs outside its roots, as given, left for the caller)."""
    from indexer.documents.targets import partition

    pong = ask(config, {"op": "ping"}, timeout=10)
    if pong is None:
        return None
    daemon_roots = [Path(r) for r in pong.get("roots", [str(r) for r in config.roots])]
    mine, rest = partition(paths, daemon_roots)
    if paths and not mine:
        return None, [str(p) for p in rest]
    answer = ask(config, {"op": "reindex", "paths": [str(p) for p in mine], "full": full, "wait": wait},
                 timeout=timeout)
    if answer is None:
        return None
    return answer, [str(p) for p in rest]
