"""The daemon: start-up, the worker loop, reload and shutdown.

One thread (the main one) owns every write to the document tables: it reconciles batches of
watched paths once they have been quiet for the debounce period, embeds pending chunks in small
rounds, and between rounds looks at its flags. Signal handlers only set a flag and poke the
queue's pipe. The watcher thread only enqueues; the control socket's threads only read (search,
status) or enqueue (reindex).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer import __version__
from indexer.config import Config
from indexer.daemon.changes import Batch, ChangeQueue, YieldToChanges
from indexer.daemon.control import ControlServer, socket_path
from indexer.daemon.notify import Notifier
from indexer.daemon.requests import ControlRequests
from indexer.daemon.searcher import WarmSearcher
from indexer.daemon.state import DaemonState
from indexer.daemon.watcher import Watcher
from indexer.documents.sync import DocumentSync, ProgressEvent, Stage, SyncReport
from indexer.errors import ConfigError, IndexerError
from indexer.lockfile import InstanceLock
from indexer.timeutil import format_ts, parse_ts

log = logging.getLogger("indexer.daemon")
EMBED_ROUND = 32          # chunks per embedding round at most (or exactly, with embed_round_ms = 0)
ERROR_BACKOFF_S = (1, 5, 30, 120)
STATUS_EVERY_S = 1.0
WATCHER_CHECK_S = 5.0  # an idle loop looks at the watcher's threads this often (a dead one sends no event)


def default_embedder(config: Config) -> Any:
    from indexer.documents.embedding import embedder_for

    return embedder_for(config)


def check_roots(config: Config) -> None:
    if not config.roots:
        raise ConfigError("no roots to watch: give --root DIR or set `roots` in the config")
    for root in config.roots:
        if not root.is_dir():
            raise ConfigError(f"root {root} is not a directory")


class Daemon:
    def __init__(self, load_config: Callable[[], Config], *, poll: bool = False,
                 embedder_factory: Callable[[Config], Any] = default_embedder,
                 notifier: Notifier | None = None) -> None:
        self._load_config = load_config
        self.config = load_config()
        self.poll = poll
        self.factory = embedder_factory
        self.notifier = notifier or Notifier()
        self.queue = ChangeQueue(self.config.debounce_ms / 1000)
        self.shared = DaemonState()  # the worker writes it, the control socket's threads read it
        self.requests = ControlRequests(self.shared, self.queue, config=lambda: self.config,
                                        searcher=lambda: self.searcher, poll=poll)
        self._reload = False
        self._last_status = 0.0
        self._next_retry: float | None = None
        self.sync: DocumentSync | None = None
        self.searcher: WarmSearcher | None = None
        self.control: ControlServer | None = None
        self.watcher: Watcher | None = None

    # -- signals: set a flag, poke the pipe, nothing else ---------------------------------
    def _on_stop(self, signum: int, _frame: Any) -> None:
        self.shared.stopping = True
        self.queue.poke()

    def _on_reload(self, signum: int, _frame: Any) -> None:
        self._reload = True
        self.queue.poke()

    # -- lifecycle ----------------------------------------------------------------------
    def run(self) -> int:
        check_roots(self.config)
        lock = InstanceLock(self.config.db)
        lock.acquire()
        previous = {s: signal.signal(s, h) for s, h in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                                                         (signal.SIGHUP, self._on_reload))}
        # The kernel may hand a process signal to any thread (e.g. when the main one already
        # has a signal pending); then only the main thread's next bytecode runs the handler.
        # With the wake-up fd, the C-level handler itself wakes the worker's select().
        previous_fd = signal.set_wakeup_fd(self.queue.wakeup_fd, warn_on_full_buffer=False)
        try:
            self._start()
            if not self.shared.stopping:
                try:
                    self._reconcile(Batch((), True, ("start-up",), (), False))
                    self.shared.state = "ready"
                except Exception as exc:  # a full disk, a locked file...: serve what is there, retry
                    log.error("first reconcile failed: %s: %s; retrying in the background", type(exc).__name__, exc)
                    self.shared.errors += 1
                    self.shared.state = "error"
                    self.queue.request_full("retry of the first reconcile", immediate=False)
                line = self._status_line()
                self.notifier.ready(line)
                log.info("%s", line)
                self._loop()
        finally:
            self.shared.state = "stopping"
            self.notifier.stopping()
            log.info("stopping")
            signal.set_wakeup_fd(previous_fd)  # before the pipe closes
            self._shutdown()
            lock.release()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("stopped")
        return 0

    def _start(self) -> None:
        import faulthandler

        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to stderr
        self.sync = DocumentSync(self.config, embedder=self.factory(self.config), progress=self._on_progress)
        self.sync.open()  # migrates
        self.searcher = WarmSearcher(self.config, self.factory)
        self.control = ControlServer(socket_path(self.config.runtime_dir, self.config.db), self.requests.handle)
        self.control.start()
        # threads made before the worker lowers its own priority keep the normal one
        threading.Thread(target=self.searcher.warm, name="search-warm", daemon=True).start()
        self._lower_priority()
        self.watcher = Watcher(self.config.roots, self.queue, poll=self.poll, poll_interval_s=self.config.poll_interval_s)
        self.watcher.start()  # before the first reconcile: nothing changed during it is missed
        log.info("indexer %s: database %s, socket %s, pid %d, model %s (backend %s)", __version__, self.config.db,
                 self.control.path, os.getpid(), self.config.model, self.config.backend)

    def _lower_priority(self) -> None:
        """Linux nice values are per thread: lower only this (the worker's) thread."""
        if self.config.nice <= 0:
            return
        try:
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, max(current, self.config.nice))
        except OSError as exc:
            log.warning("cannot lower the worker's priority: %s", exc)

    def _shutdown(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.control is not None:
            self.control.stop()
        self.shared.wake_all()
        if self.searcher is not None:
            self.searcher.close()
        if self.sync is not None:
            self.sync.close()
        self.queue.close()
        self.notifier.close()

    # -- the loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        interval = self.config.reconcile_interval_s
        next_periodic = time.monotonic() + interval if interval else None
        failures = 0
        while not self.shared.stopping:
            try:
                if self._reload:
                    self._reload = False
                    self._do_reload()
                    interval = self.config.reconcile_interval_s
                    next_periodic = time.monotonic() + interval if interval else None
                    continue
                self.notifier.watchdog()  # only reached while the loop turns
                self._keep_watching()
                now = time.monotonic()
                due = self.queue.due_in(now)
                if due == 0:
                    self._reconcile(self.queue.take())
                elif next_periodic is not None and now >= next_periodic:
                    next_periodic = now + interval
                    self.queue.request_full("periodic safety reconcile")
                elif self._next_retry is not None and time.time() >= self._next_retry:
                    self._queue_retries()
                elif self.shared.pending > 0:
                    self._embed()
                else:
                    self._idle()
                    waits = [w for w in (due, None if next_periodic is None else next_periodic - now,
                                         None if self._next_retry is None else self._next_retry - time.time(),
                                         self.notifier.wake_interval, WATCHER_CHECK_S) if w is not None]
                    self.queue.wait(max(min(waits), 0.0) if waits else None)
                failures = 0
            except IndexerError as exc:
                failures += 1
                self._fail(f"{exc}", failures)
            except Exception as exc:  # a database error, a full disk...: log, back off, retry
                failures += 1
                log.exception("worker error")
                self._fail(f"{type(exc).__name__}: {exc}", failures)

    def _keep_watching(self) -> None:
        """A watcher with a dead thread (observer, emitter, inotify reader) sees nothing more:
        restart it, and reconcile everything for what it missed meanwhile."""
        assert self.watcher is not None
        if not self.watcher.healthy():
            log.warning("the filesystem watcher stopped; restarting it and reconciling everything")
            self.watcher.restart()
            self.queue.request_full("watcher restarted")

    def _fail(self, message: str, failures: int) -> None:
        self.shared.errors += 1
        delay = ERROR_BACKOFF_S[min(failures, len(ERROR_BACKOFF_S)) - 1]
        self.shared.state = "error"
        self.shared.progress = {"error": message, "retry_in_s": delay}
        self.notifier.status(f"error: {message}; retrying in {delay} s")
        log.error("%s; retrying in %d s", message, delay)
        # until the deadline: events and requests stay queued; only a stop or a reload ends it early
        self.queue.pause(delay, lambda: self.shared.stopping or self._reload)
        if not self.shared.stopping:
            self.queue.request_full(f"retry after error: {message}")

    def _stop_or_due(self) -> bool:
        return self.shared.stopping or self._reload or self.queue.due_in() == 0

    def _reconcile(self, batch: Batch) -> None:
        assert self.sync is not None
        self.shared.begin(batch.tickets)
        self.shared.state = "reconciling"
        started = time.perf_counter()
        paths = None if batch.full else [Path(p) for p in batch.paths]
        report = SyncReport()
        while True:
            # a long full reconcile (the first index of a large tree) yields to changes saved
            # meanwhile: they are reconciled first, then it goes on (what it wrote is unchanged
            # now, so it is not done twice). Not a --full one: that would re-read everything again.
            stopper = YieldToChanges(self.queue, lambda: self.shared.stopping) if batch.full and not batch.rehash else None
            part = self.sync.reconcile(self.config.roots, paths=paths, full=batch.rehash, report=SyncReport(),
                                       should_stop=stopper or (lambda: self.shared.stopping))
            self.shared.merge(part)
            report.add(part)
            if stopper is None or not stopper.yielded or self.shared.stopping:
                break
            log.info("a full reconcile yields to changes saved meanwhile, then goes on")
            self._reconcile(self.queue.take())
            self.shared.state = "reconciling"
        self.shared.progress = {}
        self.shared.pending = self.sync.pending_chunks()
        self._schedule_retry()
        self.shared.last_reconcile = {"at": format_ts(datetime.now(UTC)), "full": batch.full,
                               "paths": len(batch.paths), "reasons": list(batch.reasons),
                               "seconds": round(time.perf_counter() - started, 3),
                               **{k: getattr(report, k) for k in ("added", "modified", "moved", "deleted", "failed")}}
        changed = report.added + report.modified + report.moved + report.deleted + report.failed
        if batch.full or changed:
            log.info("reconciled %s in %.2f s: %d added, %d modified, %d moved, %d deleted, %d failed; "
                     "%d chunks to embed", "everything" if batch.full else f"{len(batch.paths)} path(s)",
                     self.shared.last_reconcile["seconds"], report.added, report.modified, report.moved,
                     report.deleted, report.failed, self.shared.pending)
        for failure in report.failures[:20]:
            log.warning("cannot index %s: %s", failure["path"], failure["reason"])
        for warning in report.warnings[:20]:
            log.warning("%s: %s", warning["path"], warning["reason"])

    def _embed(self) -> None:
        assert self.sync is not None
        self.shared.state = "embedding"
        report = self.sync.embed_pending(should_stop=self._stop_or_due, fetch=EMBED_ROUND,
                                         round_s=self.config.embed_round_ms / 1000)
        self.shared.merge(report)
        self.shared.progress = {}
        self.shared.pending = self.sync.pending_chunks()
        if report.chunks_embedded:
            rate = report.chunks_embedded / report.embed_seconds if report.embed_seconds else 0.0
            log.info("embedded %d chunks in %.1f s (%.1f/s); %d to go", report.chunks_embedded,
                     report.embed_seconds, rate, self.shared.pending)

    def _idle(self) -> None:
        if self.shared.state != "idle":
            self.shared.state = "idle"
            self.shared.progress = {}
            line = self._status_line()
            self.notifier.status(line)
            log.info("%s", line)
        self.shared.finish()

    def _schedule_retry(self) -> None:
        from indexer.storage.sqlite import document_store as store

        assert self.sync is not None
        earliest = store.next_retry_after(self.sync.open())
        try:
            self._next_retry = parse_ts(earliest).timestamp() + 0.05 if earliest else None
        except ValueError:
            self._next_retry = time.time()

    def _queue_retries(self) -> None:
        assert self.sync is not None
        due = sorted(self.sync.due_retries())
        self._next_retry = None
        if due:
            self.queue.request_full("retrying failed files", paths=tuple(due))

    def _on_progress(self, event: ProgressEvent) -> None:
        if event.stage not in (Stage.FILES, Stage.EMBED):
            return
        self.shared.progress = {"stage": "reading files" if event.stage is Stage.FILES else "embedding",
                         "done": event.done, "total": event.total}
        self.notifier.watchdog()  # progress is being made
        now = time.monotonic()
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self.notifier.status(self._status_line())

    def _status_line(self) -> str:
        if self.shared.progress.get("stage"):
            return f"{self.shared.progress['stage']}: {self.shared.progress['done']}/{self.shared.progress['total']}"
        assert self.sync is not None
        from indexer.storage.sqlite import document_store as store

        try:
            counts = store.status_counts(self.sync.open())
        except Exception as exc:  # the status line must never be what stops the daemon
            return f"{self.shared.state}: cannot read the index ({exc})"
        return (f"{self.shared.state}: {sum(counts.values())} documents, {counts['synced']} synced, "
                f"{counts['failed']} failed, {self.shared.pending} chunks to embed")

    # -- reload (SIGHUP) ----------------------------------------------------------------
    def _do_reload(self) -> None:
        self.shared.state = "reloading"
        self.notifier.reloading()
        log.info("reloading the configuration")
        try:
            new = self._load_config()
            if new.db != self.config.db:
                raise ConfigError(f"the database cannot change on reload ({self.config.db} -> {new.db}); restart instead")
            check_roots(new)
        except IndexerError as exc:
            log.error("reload refused, the old configuration stays: %s", exc)
            self.notifier.ready(f"reload refused: {exc}")
            return
        old = self.config
        self.config = new
        assert self.sync is not None and self.watcher is not None
        from indexer.documents.embedding import EMBEDDER_CONFIG_KEYS

        if any(getattr(old, k) != getattr(new, k) for k in EMBEDDER_CONFIG_KEYS):
            self.sync.use_embedder(self.factory(new))
            if self.searcher is not None:
                self.searcher.close()
            self.searcher = WarmSearcher(new, self.factory)
        elif self.searcher is not None:
            self.searcher.config = new
        self.sync.config = new
        self.queue.quiet_s = new.debounce_ms / 1000
        removed = [r for r in old.roots if r not in new.roots]
        if removed:
            log.info("forgot %d document(s) of removed root(s) %s", self.sync.forget(removed, new.roots),
                     ", ".join(map(str, removed)))
        if (old.roots, old.include, old.exclude, old.poll_interval_s) != (new.roots, new.include, new.exclude,
                                                                          new.poll_interval_s):
            self.watcher.stop()
            self.watcher = Watcher(new.roots, self.queue, poll=self.poll, poll_interval_s=new.poll_interval_s)
            self.watcher.start()
        self._reconcile(Batch((), True, ("reload",), (), False))
        self.shared.state = "ready"
        line = self._status_line()
        self.notifier.ready(line)
        log.info("reloaded; %s", line)
