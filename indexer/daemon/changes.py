"""The hand-off between the watcher's thread and the worker: a set of changed paths, a
"reconcile everything" flag, and a self-pipe that wakes the worker (signals poke it too).

The watcher only adds; the worker takes a batch once events have been quiet for the debounce
period (or, under a constant stream of events, once the oldest has waited ``max_wait``).
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    paths: tuple[str, ...]
    full: bool
    reasons: tuple[str, ...]
    tickets: tuple[int, ...]
    rehash: bool = False  # re-read and re-hash every file in scope (`reindex --full`)


def seconds_until_due(first: float | None, last: float | None, now: float, quiet: float, max_wait: float) -> float | None:
    """When a batch whose first event came at ``first`` and last at ``last`` is due: 0 now,
    a positive delay, or None for an empty queue. Pure; the worker's timing rule."""
    if first is None or last is None:
        return None
    return max(0.0, min(last + quiet, first + max_wait) - now)


class ChangeQueue:
    def __init__(self, quiet_s: float = 0.5, max_wait_s: float | None = None) -> None:
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s if max_wait_s is not None else max(10 * quiet_s, 2.0)
        self._lock = threading.Lock()
        self._paths: dict[str, None] = {}
        self._full = False
        self._reasons: list[str] = []
        self._tickets: list[int] = []
        self._rehash = False
        self._first: float | None = None
        self._last: float | None = None
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- producers (watcher thread, control threads, signal handlers) -------------------
    def add(self, *paths: str) -> None:
        with self._lock:
            for path in paths:
                self._paths[path] = None
            self._mark()
        self.poke()

    def request_full(self, reason: str, *, ticket: int | None = None, paths: tuple[str, ...] = (),
                     immediate: bool = True, rehash: bool = False) -> None:
        """A full reconcile (or of ``paths``, when given), due at once unless ``immediate`` is
        False (then after the quiet period, like watcher events)."""
        with self._lock:
            if paths:
                for path in paths:
                    self._paths[path] = None
            else:
                self._full = True
            self._reasons.append(reason)
            self._rehash = self._rehash or rehash
            if ticket is not None:
                self._tickets.append(ticket)
            self._mark()
            if immediate:
                self._first = self._last = time.monotonic() - self.max_wait_s
        self.poke()

    def _mark(self) -> None:
        now = time.monotonic()
        self._last = now
        if self._first is None:
            self._first = now

    @property
    def wakeup_fd(self) -> int:
        """The pipe's write end, for ``signal.set_wakeup_fd``: a signal delivered to any
        thread then wakes the worker blocked in :meth:`wait`."""
        return self._write

    def poke(self) -> None:
        """Wake the worker. Only ``os.write``: safe from a signal handler."""
        try:
            os.write(self._write, b"!")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (already poked) or closed (shutting down)

    # -- the worker --------------------------------------------------------------------
    def due_in(self, now: float | None = None) -> float | None:
        with self._lock:
            return seconds_until_due(self._first, self._last, time.monotonic() if now is None else now,
                                     self.quiet_s, self.max_wait_s)

    def changes_due(self) -> bool:
        """Watched paths (and no full reconcile) are due: what a long reconcile yields to."""
        with self._lock:
            return bool(self._paths) and not self._full and seconds_until_due(
                self._first, self._last, time.monotonic(), self.quiet_s, self.max_wait_s) == 0

    def take(self) -> Batch:
        with self._lock:
            batch = Batch(tuple(self._paths), self._full, tuple(self._reasons), tuple(self._tickets), self._rehash)
            self._rehash = False
            self._paths.clear()
            self._full = False
            self._reasons.clear()
            self._tickets.clear()
            self._first = self._last = None
        return batch

    def __len__(self) -> int:
        with self._lock:
            return len(self._paths) + int(self._full)

    def wait(self, timeout: float | None) -> None:
        """Sleep until poked or ``timeout`` (None: forever). Uses no CPU while waiting."""
        try:
            select.select([self._read], [], [], timeout)
        except InterruptedError:
            pass
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def pause(self, seconds: float, interrupt: Callable[[], bool]) -> bool:
        """Sleep ``seconds`` (a back-off) whatever is queued meanwhile: pokes are drained and
        changes stay queued for later; return early (True) only once ``interrupt()`` says so
        (a stop or a reload, whose signal handlers poke the pipe). :meth:`wait` alone returns
        at once while a byte is in the pipe, which made the back-off a hot loop."""
        deadline = time.monotonic() + seconds
        while not interrupt():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.wait(left)
        return True

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


class YieldToChanges:
    """``should_stop`` of a long full reconcile: stop when ``stopped()`` says so, or, once at
    least one write batch is done (so every pass makes progress), when watched changes are
    due; ``yielded`` then says the reconcile is unfinished and should go on after them."""

    def __init__(self, queue: ChangeQueue, stopped: Callable[[], bool]) -> None:
        self.queue = queue
        self.stopped = stopped
        self.asked = 0
        self.yielded = False

    def __call__(self) -> bool:
        if self.stopped():
            return True
        self.asked += 1
        if self.asked > 1 and self.queue.changes_due():
            self.yielded = True
        return self.yielded
