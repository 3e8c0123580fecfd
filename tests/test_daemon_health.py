"""The daemon's worker loop in this process, on a real database and a real watcher: a lasting
error backs off for its whole delay, and a watcher thread that dies (the inotify reader, an
emitter) is noticed, restarted and followed by a full reconcile."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon_harness import wait_until
from indexer.config import load_config
from indexer.daemon.changes import ChangeQueue
from indexer.daemon.service import ERROR_BACKOFF_S, Daemon
from indexer.daemon.watcher import Watcher
from indexer.documents.sync import DocumentSync
from indexer.storage.sqlite import document_store as store
from indexer.testing import HashEmbedder, WhitespaceTokenCounter

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inotify reader is Linux's")
# the injected failure is reported by pytest as an exception in a thread: that is the point
thread_dies = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def test_a_back_off_waits_its_delay_though_the_pipe_was_poked() -> None:
    """``request_full`` leaves a byte in the self-pipe; ``wait`` alone returned at once on it
    (the back-off of ``_fail`` waited 0 s of 30). ``pause`` sleeps to its deadline."""
    queue = ChangeQueue(quiet_s=0.01)
    try:
        queue.request_full("retry after error")
        queue.add("/r/a.md")
        started = time.monotonic()
        assert queue.pause(0.4, lambda: False) is False
        assert time.monotonic() - started >= 0.39
        assert queue.take().full  # what was queued meanwhile is still there

        stop = threading.Event()
        threading.Timer(0.1, lambda: (stop.set(), queue.poke())).start()
        started = time.monotonic()
        assert queue.pause(30, stop.is_set) is True  # a stop (or a reload) ends it early
        assert time.monotonic() - started < 5
    finally:
        queue.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "notes"
    r.mkdir()
    (r / "a.md").write_text("# A\n\napples\n")
    return r


@pytest.fixture
def daemon(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A Daemon whose worker loop runs on a thread of this process (no signals, no socket);
    its idle loop looks at the watcher every second rather than every 5."""
    from indexer.daemon import service

    monkeypatch.setattr(service, "WATCHER_CHECK_S", 1.0)
    config = load_config({"db": str(tmp_path / "index.db"), "roots": [str(root)], "debounce_ms": 20})
    embedder = HashEmbedder(dim=16)
    d = Daemon(lambda: config, embedder_factory=lambda _c: embedder)
    d.sync = DocumentSync(config, embedder=embedder, counter=WhitespaceTokenCounter())
    d.sync.open()
    d.watcher = Watcher(config.roots, d.queue)
    d.watcher.start()
    thread = threading.Thread(target=d._loop, name="test-worker", daemon=True)
    d.thread = thread  # type: ignore[attr-defined]
    yield d
    d.shared.stopping = True
    d.queue.poke()
    if thread.is_alive():
        thread.join(10)
    d._shutdown()


def stop_loop(d: Daemon) -> float:
    """Stop the worker loop; how long it took to notice."""
    started = time.monotonic()
    d.shared.stopping = True
    d.queue.poke()
    d.thread.join(10)  # type: ignore[attr-defined]
    assert not d.thread.is_alive()  # type: ignore[attr-defined]
    return time.monotonic() - started


def test_a_lasting_error_backs_off_instead_of_looping(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reconcile fails (a full disk): attempts come after 1 s, then 5 s, not as fast as
    the loop turns (before the fix: hundreds of full scans and tracebacks a second)."""
    attempts: list[float] = []

    def full_disk(*_a: Any, **_k: Any) -> None:
        attempts.append(time.monotonic())
        raise OSError(28, "No space left on device")

    assert daemon.sync is not None
    monkeypatch.setattr(daemon.sync, "reconcile", full_disk)
    daemon.queue.request_full("start-up")
    daemon.thread.start()  # type: ignore[attr-defined]
    wait_until(lambda: len(attempts) >= 2, 10, what="the first retry")
    time.sleep(1.5)
    assert len(attempts) == 2, f"{len(attempts)} attempts"  # the third comes 5 s after the second
    assert attempts[1] - attempts[0] >= ERROR_BACKOFF_S[0] - 0.05
    assert daemon.shared.state == "error" and daemon.shared.progress["retry_in_s"] == ERROR_BACKOFF_S[1]
    assert stop_loop(daemon) < 2  # a stop ends the 5 s back-off early
    assert len(attempts) == 2


def kill_reader_by_a_failing_callback(watcher: Watcher, root: Path) -> None:
    """The inotify reader thread dies as it did under watchdog 7.1.1: a callback raises."""
    from watchdog.observers.inotify_c import CallbackId, InotifyConstants

    class Failing:
        def on_event(self, event: Any) -> None:
            raise RuntimeError("injected: a callback of the inotify reader failed")

        def on_watch_deleted(self, wd: Any) -> None:
            pass

    fd = watcher._observer.inotify_fd
    callback = Failing()
    fd.add_callback(str(root).encode(), InotifyConstants.IN_CREATE | InotifyConstants.IN_CLOSE_WRITE,
                    callback, CallbackId(id(callback)))
    (root / "trigger.md").write_text("# T\n")


def stop_reader(watcher: Watcher, root: Path) -> None:
    watcher._observer.inotify_fd.stop()


def stop_an_emitter(watcher: Watcher, root: Path) -> None:
    emitter = next(iter(watcher._observer.emitters))
    emitter.stop()


@linux_only
@thread_dies
@pytest.mark.parametrize("kill", [kill_reader_by_a_failing_callback, stop_reader, stop_an_emitter])
def test_a_dead_watcher_thread_is_restarted_and_everything_reconciled(daemon: Daemon, root: Path, kill: Any) -> None:
    watcher = daemon.watcher
    assert watcher is not None
    daemon.thread.start()  # type: ignore[attr-defined]
    sync = daemon.sync
    assert sync is not None
    wait_until(lambda: daemon.shared.state == "idle", 20, what="the first reconcile")
    old_observer = watcher._observer
    assert watcher.healthy()
    kill(watcher, root)
    # nothing pokes the loop (no event arrives from a dead watcher): it looks every WATCHER_CHECK_S
    wait_until(lambda: watcher._observer is not old_observer and watcher.healthy(), 20, what="a restarted watcher")
    wait_until(lambda: (daemon.shared.last_reconcile or {}).get("full")
               and "watcher restarted" in daemon.shared.last_reconcile["reasons"], 20, what="a full reconcile")
    assert not old_observer.is_alive()  # the old one was stopped
    # the new watcher sees what is written now
    (root / "after.md").write_text("# After\n\nwritten once the watcher was restarted\n")
    wait_until(lambda: store.get_doc(sync.open(), str(root / "after.md")) is not None, 20,
               what="the file written after the restart")
    stop_loop(daemon)


@linux_only
@thread_dies
def test_healthy_notices_a_dead_reader_thread(tmp_path: Path) -> None:
    """Before the fix ``healthy()`` looked only at the observer and its emitters: with the
    reader dead it still said True, and nothing written afterwards was ever seen."""
    queue = ChangeQueue(quiet_s=0.01)
    watcher = Watcher([tmp_path], queue)
    watcher.start()
    try:
        time.sleep(0.2)
        kill_reader_by_a_failing_callback(watcher, tmp_path)
        wait_until(lambda: not watcher._observer.inotify_fd.is_alive(), 10, what="the reader to die")
        assert not watcher.healthy()
        watcher.restart()
        assert watcher.healthy()
        queue.take()
        (tmp_path / "seen.md").write_text("x")
        wait_until(lambda: str(tmp_path / "seen.md") in queue.take().paths, 10, what="an event after the restart")
    finally:
        watcher.stop()
        queue.close()
