"""The daemon's parts on their own: timing rule, event filter, notify, lock, logs, scan_paths,
the systemd unit (verified by systemd-analyze) and `indexer service install|uninstall`."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer.cli.app import cli
from indexer.config import load_config
from indexer.daemon import unit
from indexer.daemon.changes import ChangeQueue, seconds_until_due
from indexer.daemon.logs import JournalFormatter
from indexer.daemon.notify import Notifier
from indexer.daemon.watcher import Watcher, relevant_paths
from indexer.documents import discovery
from indexer.lockfile import AlreadyRunning, InstanceLock, running_pid


def test_seconds_until_due_waits_for_quiet_but_not_forever() -> None:
    assert seconds_until_due(None, None, 10.0, 0.5, 5.0) is None
    assert seconds_until_due(10.0, 10.0, 10.2, 0.5, 5.0) == pytest.approx(0.3)
    assert seconds_until_due(10.0, 10.4, 10.5, 0.5, 5.0) == pytest.approx(0.4)  # a new event restarts the wait
    assert seconds_until_due(10.0, 14.9, 15.0, 0.5, 5.0) == 0.0  # a constant stream is cut at max_wait
    assert seconds_until_due(10.0, 10.0, 11.0, 0.5, 5.0) == 0.0


def test_change_queue_coalesces_and_wakes() -> None:
    queue = ChangeQueue(quiet_s=0.05)
    assert queue.due_in() is None
    queue.add("/r/a.md", "/r/b.md")
    queue.add("/r/a.md")
    assert len(queue) == 2 and queue.due_in() > 0
    queue.wait(1.0)  # returns at once: the add poked the pipe
    queue.wait(0.1)
    assert queue.due_in() == 0
    batch = queue.take()
    assert batch.paths == ("/r/a.md", "/r/b.md") and not batch.full and queue.due_in() is None
    queue.request_full("test", ticket=7, rehash=True)
    assert queue.due_in() == 0
    batch = queue.take()
    assert batch.full and batch.tickets == (7,) and batch.rehash and batch.reasons == ("test",)
    queue.close()


@pytest.mark.parametrize("event,is_dir,src,dest,expected", [
    ("modified", False, "/r/a.md", "", ("/r/a.md",)),
    ("moved", False, "/r/.a.md.swp", "/r/a.md", ("/r/a.md",)),  # temp-then-rename save
    ("moved", True, "/r/d", "/r/e", ("/r/d", "/r/e")),
    ("deleted", True, "/r/d", "", ("/r/d",)),
    ("modified", True, "/r/d", "", ()),
    ("opened", False, "/r/a.md", "", ()),
    ("closed_no_write", False, "/r/a.md", "", ()),
    ("created", False, "/r/.hidden.md", "", ()),
])
def test_relevant_paths(event: str, is_dir: bool, src: str, dest: str, expected: tuple[str, ...]) -> None:
    assert relevant_paths(event, is_dir, src, dest) == expected


def full_reasons(queue: ChangeQueue, timeout: float) -> list[str]:
    """Reasons of the full reconciles the queue was asked for within ``timeout``."""
    deadline = time.monotonic() + timeout
    reasons: list[str] = []
    while time.monotonic() < deadline and not reasons:
        queue.wait(0.2)
        batch = queue.take()
        if batch.full:
            reasons.extend(batch.reasons)
    return reasons


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
@pytest.mark.timeout(120)
def test_a_real_inotify_overflow_asks_for_a_full_reconcile(tmp_path: Path) -> None:
    """The kernel's own IN_Q_OVERFLOW, read by watchdog's own thread: while that thread is held
    (its lock taken), more events than fs.inotify.max_queued_events are made. Logging is set
    as a daemon with log_level = "error" sets it: the recovery must not depend on a log line."""
    from indexer.daemon import logs

    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many files to make")
    saved = {name: logging.getLogger(name).level for name in ("", "watchdog")}
    saved_handlers = logging.getLogger().handlers[:]
    logs.setup("error")
    queue = ChangeQueue(quiet_s=0.01)
    watcher = Watcher([tmp_path], queue)
    watcher.start()
    try:
        observer = watcher._observer
        fd = getattr(observer, "inotify_fd", None) or observer._inotify_fd  # watchdog's reader of the kernel queue
        with fd._lock:  # its reader thread stops at its next read: the kernel queue fills up
            time.sleep(0.2)
            for i in range(limit // 2 + 2_000):  # created + closed: two events each
                (tmp_path / f"f{i}.md").write_bytes(b"")
        assert "inotify event queue overflowed" in full_reasons(queue, 30)
        assert watcher.healthy()
    finally:
        watcher.stop()
        root = logging.getLogger()
        root.handlers[:] = saved_handlers
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    assert not watcher.healthy()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_an_overflow_event_through_watchdogs_dispatch_asks_for_a_full_reconcile(tmp_path: Path) -> None:
    """The same path without filling the kernel queue: watchdog's InotifyFD handles an
    IN_Q_OVERFLOW event (wd -1, as the kernel sends it) and dispatches it to the callbacks."""
    from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

    queue = ChangeQueue(quiet_s=0.01)
    watcher = Watcher([tmp_path], queue)
    watcher.start()
    try:
        time.sleep(0.2)  # the emitter registers its watch on its own thread
        observer = watcher._observer
        fd = getattr(observer, "inotify_fd", None) or observer._inotify_fd
        fd.handle_event(InotifyEvent(-1, InotifyConstants.IN_Q_OVERFLOW, 0, b""))
        assert full_reasons(queue, 5) == ["inotify event queue overflowed"]
    finally:
        watcher.stop()


def test_notifier_speaks_the_protocol(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = "\0indexer-test-" + str(os.getpid())  # an abstract socket, as systemd may use
    listener.bind(address)
    listener.settimeout(2)
    notifier = Notifier({"NOTIFY_SOCKET": "@" + address[1:], "WATCHDOG_USEC": "4000000"})
    assert notifier.enabled and notifier.watchdog_interval == 4.0 and notifier.wake_interval == pytest.approx(4 / 3)
    notifier.ready("idle")
    assert listener.recv(1024).decode().split("\n")[:2] == ["READY=1", "STATUS=idle"]
    notifier.watchdog()
    notifier.watchdog()  # rate-limited: a quarter of the interval has not passed
    notifier.stopping()
    assert listener.recv(1024) == b"WATCHDOG=1"
    assert listener.recv(1024) == b"STOPPING=1"
    listener.close()
    silent = Notifier({})
    assert not silent.enabled and silent.send("READY=1") is False and silent.wake_interval is None
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None  # the watchdog is for another process
    assert other.send("READY=1") is False  # an unreachable socket is not an error


def test_a_reader_that_never_reads_cannot_freeze_the_daemon(tmp_path: Path) -> None:
    """A datagram socket queues ~10 datagrams; a blocking send would then hang the worker
    (found by the checkout-storm test: the daemon stopped answering SIGTERM)."""
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(tmp_path / "deaf.sock"))
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "deaf.sock")})
    started = time.monotonic()
    sent = sum(notifier.send(f"STATUS=progress {i}") for i in range(500))
    assert time.monotonic() - started < 1.0 and 0 < sent < 500  # the overflow was dropped, not waited for
    started = time.monotonic()
    notifier.stopping()  # a state change waits a little, then gives up
    assert 1.5 < time.monotonic() - started < 5
    deaf.close()


def test_instance_lock(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert running_pid(db) is None
    with InstanceLock(db):
        assert running_pid(db) == os.getpid()
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            InstanceLock(db).acquire()
    assert running_pid(db) is None
    with InstanceLock(db):  # released and re-taken
        pass


def test_journal_formatter_prefixes_every_line() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "two\nlines", None, None)
    assert JournalFormatter().format(record) == "<4>warning: two\n<4>lines"


def test_scan_paths_equals_the_full_scan_restricted(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for rel in ("a.md", "sub/b.md", "sub/deeper/c.md", "sub/ignored/d.md", "other/e.md", ".hidden/f.md", "sub/g.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("# x\n")
    (root / "sub" / ".gitignore").write_text("ignored/\n")
    (root / "sub" / "link.md").symlink_to(root / "a.md")
    full = {f.path for f in discovery.scan([root]).files}
    some = discovery.scan_paths([root / "sub", root / "a.md", root / "missing.md", tmp_path / "elsewhere.md"], [root])
    assert {f.path for f in some.files} == {p for p in full if p.name != "e.md"}
    assert {str(f.path) for f in discovery.scan_paths([root / "sub" / "ignored"], [root]).files} == set()
    assert discovery.scan_paths([root / "sub" / "link.md"], [root]).files == ()


# -- the systemd unit ------------------------------------------------------------------

def _verify(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(path)], capture_output=True, text=True,
                            env=env, timeout=60)
    if "Failed to initialize manager" in result.stderr:  # no user manager possible here: system mode
        result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    return result


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (make install adds it on Debian)")
@pytest.mark.process
def test_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    config = load_config({"roots": [str(tmp_path)]})
    text = unit.render(config, roots=[tmp_path / "my notes"])
    for key in ("Type=notify", "ExecReload=", "Restart=on-failure", "WatchdogSec=", "Nice=", "CPUWeight=",
                "IOSchedulingClass=idle", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"):
        assert key in text
    assert "@" + "EXEC_START@" not in text and "@READ_WRITE_PATHS@" not in text
    assert f'"{tmp_path / "my notes"}"' in text  # quoted for systemd
    assert f"ReadWritePaths={config.db.parent} {config.runtime_dir} {config.cache_dir}" in text  # the model cache too
    assert f"Environment=INDEXER_HOME={os.environ['INDEXER_HOME']}" in text
    (tmp_path / "my notes").mkdir()
    path = tmp_path / "indexer.service"
    path.write_text(text)
    result = _verify(path, tmp_path)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("Nice=10", "Nicety=10"))
    assert "Unknown key" in _verify(broken, tmp_path).stderr  # the check can fail


@pytest.mark.process
def test_service_install_and_uninstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "notes"
    root.mkdir()
    runner = CliRunner()
    result = runner.invoke(cli, ["service", "install", "--now", "--root", str(root)])
    assert result.exit_code == 0, result.output
    unit_path = tmp_path / "cfg" / "systemd" / "user" / "indexer.service"
    assert unit_path.is_file() and f"daemon --root {root}" in unit_path.read_text()
    assert calls.read_text().splitlines() == ["--user daemon-reload", "--user enable --now indexer.service"]
    assert Path(os.environ["INDEXER_HOME"]).is_dir()  # ReadWritePaths must exist before the start
    result = runner.invoke(cli, ["service", "uninstall"])
    assert result.exit_code == 0, result.output
    assert not unit_path.exists()
    assert calls.read_text().splitlines()[-2:] == ["--user disable --now indexer.service", "--user daemon-reload"]
    again = runner.invoke(cli, ["service", "uninstall"])
    assert again.exit_code == 1 and "no unit installed" in again.output


def test_service_install_without_systemctl_prints_the_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no systemctl anywhere
    result = CliRunner().invoke(cli, ["service", "install"])
    assert result.exit_code == 0
    assert "systemctl --user enable indexer.service" in result.output
    assert (tmp_path / "cfg" / "systemd" / "user" / "indexer.service").is_file()


@pytest.mark.process
def test_daemon_refuses_a_missing_root(tmp_path: Path) -> None:
    env = {**os.environ, "INDEXER_MODEL": "hash:8"}
    result = subprocess.run([sys.executable, "-m", "indexer", "daemon", "--root", str(tmp_path / "nope")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "is not a directory" in result.stderr
    result = subprocess.run([sys.executable, "-m", "indexer", "daemon"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "no roots to watch" in result.stderr
