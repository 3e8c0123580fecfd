"""What the daemon's worker loop and its control socket's threads share.

The worker (the main thread) is the only writer of the status fields; the socket's threads read
them to answer ``status`` and ``ping``. A ``reindex`` request takes a ticket, queues its work
and waits on :meth:`DaemonState.wait_for` until the worker, idle again, marks the tickets of
the batches it ran as done (:meth:`DaemonState.finish`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexer.documents.sync import SyncReport


@dataclass
class DaemonState:
    state: str = "starting"  # starting, reconciling, embedding, idle, ready, reloading, error, stopping
    started_at: float = field(default_factory=time.time)
    progress: dict[str, Any] = field(default_factory=dict)  # the current stage, or the last error
    last_reconcile: dict[str, Any] | None = None
    errors: int = 0  # worker errors since start
    pending: int = 0  # chunks to embed
    stopping: bool = False  # set by SIGTERM/SIGINT: the loop ends, waiting requests give up
    report: SyncReport = field(default_factory=SyncReport)  # what a waiting ``reindex`` gets back
    _tickets: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _done_ticket: int = 0
    _inflight: list[int] = field(default_factory=list)
    _done: threading.Condition = field(default_factory=threading.Condition, repr=False)

    # -- the control socket's side ------------------------------------------------------
    def next_ticket(self) -> int:
        return next(self._tickets)

    def wait_for(self, ticket: int) -> bool:
        """Block until the worker has done ``ticket`` (True) or the daemon stops (False)."""
        with self._done:
            while self._done_ticket < ticket and not self.stopping:
                self._done.wait(timeout=1.0)
            return self._done_ticket >= ticket

    # -- the worker's side --------------------------------------------------------------
    def begin(self, tickets: Sequence[int]) -> None:
        """A batch starts: the first ticketed batch after an idle spell starts a fresh report."""
        if tickets and not self._inflight:
            self.report = SyncReport()
        self._inflight.extend(tickets)

    def merge(self, report: SyncReport) -> None:
        self.report.add(report)

    def finish(self) -> None:
        """The worker is idle: every ticket it took is done; wake who waits for one."""
        with self._done:
            if self._inflight:
                self._done_ticket = max(self._done_ticket, *self._inflight)
                self._inflight.clear()
                self._done.notify_all()

    def wake_all(self) -> None:
        """At shutdown: waiting requests look at ``stopping`` now rather than in a second."""
        with self._done:
            self._done.notify_all()
