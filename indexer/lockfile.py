"""One daemon per database: an advisory ``flock`` on ``<db>.daemon.lock``.

The kernel releases the lock when the process dies (kill -9 included), so a stale lock file
never blocks a restart. The file holds the owner's pid, for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from indexer.errors import IndexerError
from indexer.paths import private_dir


class AlreadyRunning(IndexerError):
    exit_code = 1


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".daemon.lock")


class InstanceLock:
    def __init__(self, db: Path) -> None:
        self.path = lock_path(db)
        self._fd: int | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(f"another indexer daemon (pid {owner}) is already running on this database "
                                 f"(lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking would race)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def running_pid(db: Path) -> int | None:
    """The pid of the daemon holding the lock on ``db``, or None when no daemon holds it."""
    path = lock_path(db)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
