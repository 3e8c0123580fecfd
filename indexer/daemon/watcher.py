"""The filesystem watcher: watchdog events become paths in the :class:`ChangeQueue`.

The handler does no I/O and no database work: it filters out events that can never matter
(hidden names, directory "modified" noise, opens) and enqueues the rest. Moves enqueue both
ends, so an editor's temp-then-rename save, a swap-file dance, a directory moved in or out and
a deleted subtree all reach the planner, which compares the disk with the rows. A kernel queue
overflow or a dead observer asks for a full reconcile instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent,
                             FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)

from indexer.daemon.changes import ChangeQueue

log = logging.getLogger("indexer.watcher")
IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})
# Only changes are asked of the kernel: reads (IN_OPEN, IN_CLOSE_NOWRITE, IN_ACCESS) by any
# tool walking the tree (grep -r, an IDE, this daemon's own hashing) would flood the inotify
# queue until it overflows.
WATCHED_EVENTS = (FileCreatedEvent, FileDeletedEvent, FileMovedEvent, FileModifiedEvent, FileClosedEvent,
                  DirCreatedEvent, DirDeletedEvent, DirMovedEvent)


def relevant_paths(event_type: str, is_directory: bool, src: str, dest: str = "") -> tuple[str, ...]:
    """Which paths of one event the worker must look at. Pure; the handler's only logic."""
    if event_type in IGNORED_EVENTS:
        return ()
    if is_directory and event_type in ("modified", "attrib", "closed"):
        return ()  # a directory's own mtime: its entries bring their own events
    paths = [src] + ([dest] if dest else [])
    return tuple(p for p in paths if p and not os.path.basename(p.rstrip(os.sep)).startswith("."))


class _Handler(FileSystemEventHandler):
    def __init__(self, queue: ChangeQueue) -> None:
        self.queue = queue

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        paths = relevant_paths(event.event_type, event.is_directory, src, dest)
        if paths:
            self.queue.add(*paths)


class _OverflowListener(logging.Handler):
    """watchdog rebuilds its watches after an inotify overflow and says so in a warning; the
    lost events are recovered by a full reconcile."""

    def __init__(self, queue: ChangeQueue) -> None:
        super().__init__(logging.WARNING)
        self.queue = queue

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.queue.request_full("inotify event queue overflowed")


class Watcher:
    def __init__(self, roots: Sequence[Path], queue: ChangeQueue, *, poll: bool = False,
                 poll_interval_s: float = 2.0) -> None:
        self.poll_interval_s = poll_interval_s
        self.roots = tuple(roots)
        self.queue = queue
        self.poll = poll
        self._observer: Any = None
        self._overflow = _OverflowListener(queue)

    @property
    def kind(self) -> str:
        return "polling" if self.poll else "native"

    def start(self) -> None:
        if self.poll:
            from watchdog.observers.polling import PollingObserver

            observer: Any = PollingObserver(timeout=self.poll_interval_s)
        else:
            from watchdog.observers import Observer

            observer = Observer()
        handler = _Handler(self.queue)
        for root in self.roots:
            observer.schedule(handler, str(root), recursive=True, event_filter=list(WATCHED_EVENTS))
        observer.daemon = True
        observer.start()
        logging.getLogger("watchdog").addHandler(self._overflow)
        self._observer = observer
        log.info("watching %d root(s) with the %s observer", len(self.roots), self.kind)

    def stop(self) -> None:
        logging.getLogger("watchdog").removeHandler(self._overflow)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def healthy(self) -> bool:
        """False when the observer or one of its emitters died (a root removed, a watch
        limit hit): the caller restarts it and reconciles everything."""
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in list(getattr(observer, "emitters", ())))

    def restart(self) -> None:
        self.stop()
        self.start()
