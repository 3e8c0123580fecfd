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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

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


class _OverflowCallback:
    """A watchdog ``WatchCallback`` on a root's inotify watch whose only job is
    ``on_queue_overflow`` / ``on_events_lost``: watchdog 7 calls it (after rebuilding its own watches) when the
    kernel reports ``IN_Q_OVERFLOW``; the lost events are recovered by a full reconcile."""

    def __init__(self, queue: ChangeQueue) -> None:
        self.queue = queue

    def on_event(self, event: Any) -> None:
        pass  # the emitter of the same watch turns events into paths

    def on_watch_deleted(self, wd: Any) -> None:
        pass  # a removed root: the observer's health check restarts the watcher

    def on_queue_overflow(self) -> None:
        log.warning("the inotify event queue overflowed; reconciling everything")
        self.queue.request_full("inotify event queue overflowed")

    def on_events_lost(self) -> None:
        """watchdog >= 7.1.1 calls this after every callback's ``on_queue_overflow`` (watches
        rebuilt); 7.1.0 does not, so the reconcile is asked for in ``on_queue_overflow``,
        which every 7.1+ calls. A missing method here killed watchdog's reader thread."""


def overflow_aware_observer(queue: ChangeQueue) -> Any:
    """watchdog's inotify observer with an overflow callback on each root's watch (Linux); the
    platform's default observer elsewhere (no inotify queue to overflow)."""
    try:
        from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
        from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
        from watchdog.observers.inotify_c import CallbackId, InotifyFD
    except ImportError:  # not Linux
        from watchdog.observers import Observer as PlatformObserver

        return PlatformObserver()

    class Emitter(InotifyEmitter):
        def __init__(self, *args: Any, inotify_fd: Any, **kwargs: Any) -> None:
            super().__init__(*args, inotify_fd=inotify_fd, **kwargs)
            self._fd = inotify_fd
            self._callback = _OverflowCallback(queue)
            self._wd: Any = None

        def on_thread_start(self) -> None:
            super().on_thread_start()
            # the same mask as the emitter's own watch: inotify_add_watch replaces a watch's mask
            mask = InotifyWatchGroup.build_event_mask(self.get_event_mask_from_filter(),
                                                      follow_symlink=self.watch.follow_symlink)
            self._wd = self._fd.add_callback(os.fsencode(self.watch.path), mask, self._callback,
                                             CallbackId(id(self._callback)))

        def on_thread_stop(self) -> None:
            if self._wd is not None:
                try:
                    self._fd.remove_callbacks([(self._wd, CallbackId(id(self._callback)))])
                except (OSError, KeyError):
                    pass  # the watch went with its directory
                self._wd = None
            super().on_thread_stop()

    class Observer(BaseObserver):
        def __init__(self) -> None:
            self.inotify_fd = InotifyFD()
            self.inotify_fd.start()
            super().__init__(Emitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self.inotify_fd)

        def on_thread_stop(self) -> None:
            super().on_thread_stop()
            self.inotify_fd.stop()
            self.inotify_fd.join()

    return Observer()


class Watcher:
    def __init__(self, roots: Sequence[Path], queue: ChangeQueue, *, poll: bool = False,
                 poll_interval_s: float = 2.0) -> None:
        self.poll_interval_s = poll_interval_s
        self.roots = tuple(roots)
        self.queue = queue
        self.poll = poll
        self._observer: Any = None

    @property
    def kind(self) -> str:
        return "polling" if self.poll else "native"

    def start(self) -> None:
        if self.poll:
            from watchdog.observers.polling import PollingObserver

            observer: Any = PollingObserver(timeout=self.poll_interval_s)
        else:
            observer = overflow_aware_observer(self.queue)
        handler = _Handler(self.queue)
        for root in self.roots:
            observer.schedule(handler, str(root), recursive=True, event_filter=list(WATCHED_EVENTS))
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.info("watching %d root(s) with the %s observer", len(self.roots), self.kind)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def healthy(self) -> bool:
        """False when a thread the watching depends on died: the observer, one of its emitters
        (a root removed, a watch limit hit) or the inotify reader (an error in a callback, as
        watchdog 7.1.1's ``on_events_lost`` once was; its dispatcher thread stops the reader
        when it dies). The caller restarts the watcher and reconciles everything."""
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        reader = getattr(observer, "inotify_fd", None)  # only the overflow-aware observer has one
        if reader is not None and not reader.is_alive():
            return False
        return all(emitter.is_alive() for emitter in list(getattr(observer, "emitters", ())))

    def restart(self) -> None:
        self.stop()
        self.start()
