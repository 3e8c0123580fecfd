"""The CLI's side of the control socket: ask the running daemon, or say there is none."""

from __future__ import annotations

from typing import Any

from indexer.config import Config


def ask(config: Config, request: dict[str, Any], *, timeout: float | None = 120.0) -> Any | None:
    """The daemon's answer, or None when no daemon serves this database. An error the daemon
    reports is raised (as :class:`~indexer.daemon.control.DaemonError`, an IndexerError)."""
    from indexer.daemon.control import DaemonTimeout, DaemonUnavailable, call, socket_path

    path = socket_path(config.runtime_dir, config.db)
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
