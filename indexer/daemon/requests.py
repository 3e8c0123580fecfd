"""What the control socket asks of the daemon (search, status, reindex, ping), answered on
the socket's threads: reads go through the warm searcher's own connection, a reindex only
enqueues work for the worker and waits for it (through the shared :class:`DaemonState`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from indexer import __version__
from indexer.daemon.state import DaemonState
from indexer.errors import IndexerError, ValidationError

if TYPE_CHECKING:
    from indexer.config import Config
    from indexer.daemon.changes import ChangeQueue
    from indexer.daemon.searcher import WarmSearcher


class ControlRequests:
    """The request handlers. ``config`` and ``searcher`` are asked for on each request: a
    reload (SIGHUP) replaces them."""

    def __init__(self, shared: DaemonState, queue: ChangeQueue, *, config: Callable[[], Config],
                 searcher: Callable[[], WarmSearcher | None], poll: bool) -> None:
        self.shared = shared
        self.queue = queue
        self._config = config
        self._searcher = searcher
        self.poll = poll

    @property
    def config(self) -> Config:
        return self._config()

    def describe(self) -> dict[str, Any]:
        shared, config, searcher = self.shared, self.config, self._searcher()
        return {"pid": os.getpid(), "version": __version__, "state": shared.state, "progress": dict(shared.progress),
                "roots": [str(r) for r in config.roots],
                "watcher": f"polling every {config.poll_interval_s} s" if self.poll else "native",
                "queued_paths": len(self.queue), "chunks_to_embed": shared.pending,
                "uptime_s": round(time.time() - shared.started_at, 1), "last_reconcile": shared.last_reconcile,
                "worker_errors": shared.errors,
                "search_warm_s": None if searcher is None else searcher.warm_seconds}

    def handle(self, request: dict[str, Any]) -> Any:
        op = request["op"]
        if op == "ping":
            return {"pong": True, "pid": os.getpid(), "version": __version__, "state": self.shared.state,
                    "roots": [str(r) for r in self.config.roots]}
        if op == "status":
            from indexer.documents.status import collect_status

            info = collect_status(self.config.db)
            info["daemon"] = self.describe()
            info["backend"] = self.config.backend
            return info
        if op == "search":
            return self._search(request)
        if op == "reindex":
            return self._reindex(request)
        raise ValidationError(f"unknown op {op!r}: use search, status, reindex or ping")

    def _search(self, request: dict[str, Any]) -> dict[str, Any]:
        from indexer.documents.search import SearchOptions
        from indexer.storage.sqlite.search_store import Filters

        query = request.get("query")
        if not isinstance(query, str):
            raise ValidationError("search needs a \"query\" string")
        raw_filters = request.get("filters") or {}
        allowed = {"document_type", "since", "path_prefix", "path_glob"}
        if not isinstance(raw_filters, dict) or set(raw_filters) - allowed:
            raise ValidationError(f"filters: an object with keys among {', '.join(sorted(allowed))}")
        try:
            options = SearchOptions(mode=str(request.get("mode", "hybrid")), k=int(request.get("k", 10)),
                                    filters=Filters(**raw_filters))
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"bad search request: {exc}") from None
        searcher = self._searcher()
        assert searcher is not None
        started = time.perf_counter()
        response = searcher.search(query, options)
        response["served_by"] = {"daemon_pid": os.getpid(), "ms": round((time.perf_counter() - started) * 1000, 2)}
        return response

    def _reindex(self, request: dict[str, Any]) -> dict[str, Any]:
        paths = request.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValidationError("reindex: \"paths\" is a list of strings")
        from indexer.documents.targets import normal_path, within

        roots = self.config.roots
        under_roots = within(roots)
        for raw in paths:
            if not os.path.isabs(raw):
                raise ValidationError(f"reindex: {raw!r} is not an absolute path (the daemon's working directory is not yours)")
        paths = [str(normal_path(raw)) for raw in paths]  # a root itself, a trailing slash, a symlink
        for raw in paths:
            if not under_roots(raw):
                raise ValidationError(f"{raw} is outside the daemon's roots ({', '.join(map(str, roots))})")
        ticket = self.shared.next_ticket()
        rehash = bool(request.get("full"))
        self.queue.request_full("reindex request" + (" (--full)" if rehash else ""), ticket=ticket,
                                paths=tuple(paths), rehash=rehash)
        if not request.get("wait", True):
            return {"queued": True, "ticket": ticket}
        if not self.shared.wait_for(ticket):
            raise IndexerError("the daemon stopped before the reindex finished")
        return {"queued": True, "ticket": ticket, "done": True, "report": self.shared.report.as_dict(),
                "daemon": self.describe()}
