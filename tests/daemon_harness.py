"""A real daemon in a subprocess, with a real NOTIFY_SOCKET listening for its datagrams."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.daemon.control import call, socket_path
from indexer.storage.sqlite import driver


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}; last value {last!r}")


def disk_state(root: Path) -> dict[str, str]:
    """What a correct index holds: every indexable .md under root -> sha256 of its bytes."""
    state = {}
    for path in sorted(root.rglob("*.md")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") for p in rel) or path.is_symlink() or not path.is_file():
            continue
        state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def db_state(db: Path, status: str | None = "synced") -> dict[str, str]:
    if not db.exists():
        return {}
    conn = driver.connect(db, readonly=True)
    try:
        sql = "SELECT file_path, content_hash FROM document_index"
        rows = conn.execute(sql + (" WHERE sync_status = ?" if status else ""), (status,) if status else ()).fetchall()
        return {r[0]: r[1] for r in rows}
    finally:
        conn.close()


def db_check(db: Path) -> dict[str, int]:
    """Integrity and orphan counts (all must be 0/ok in a consistent database)."""
    conn = driver.connect(db, readonly=True)
    try:
        q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "integrity_ok": int(q("PRAGMA integrity_check") == "ok"),
            "orphan_chunks": q("SELECT count(*) FROM document_chunks WHERE document_id NOT IN (SELECT id FROM document_index)"),
            "orphan_vectors": q("SELECT count(*) FROM chunk_vectors WHERE rowid NOT IN (SELECT id FROM document_chunks)"),
            "embedded_without_vector": q("SELECT count(*) FROM document_chunks WHERE embedded_at IS NOT NULL "
                                         "AND id NOT IN (SELECT rowid FROM chunk_vectors)"),
            "synced_with_unembedded": q("SELECT count(*) FROM document_index d WHERE sync_status = 'synced' AND EXISTS "
                                        "(SELECT 1 FROM document_chunks c WHERE c.document_id = d.id AND c.embedded_at IS NULL)"),
            "fts_rows": q("SELECT count(*) FROM chunk_fts"),
            "chunks": q("SELECT count(*) FROM document_chunks"),
        }
    finally:
        conn.close()


class DaemonProcess:
    def __init__(self, home: Path, roots: list[Path], *, args: list[str] = (), env: dict[str, str] | None = None,
                 model: str = "hash:64", watchdog_usec: int | None = None, debounce_ms: int = 100) -> None:
        self.home = home
        self.db = home / "indexer.db"
        self.notify_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"ixn-{os.getpid()}-{id(self)}"
        self.notify_dir.mkdir(parents=True, exist_ok=True)
        self.notify_path = self.notify_dir / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._closing = False
        # read datagrams as systemd does, as they come: the queue of a datagram socket is short
        self._reader = threading.Thread(target=self._read_notify, daemon=True)
        self._reader.start()
        self.env = {**os.environ, "INDEXER_HOME": str(home), "INDEXER_MODEL": model,
                    "NOTIFY_SOCKET": str(self.notify_path), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("WATCHDOG_USEC", None)
        if watchdog_usec:
            self.env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.log_path = home / "daemon.log"
        home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "indexer", "daemon", "--debounce-ms", str(debounce_ms), *args]
        for root in roots:
            command += ["--root", str(root)]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        self.socket = socket_path(home / "run", self.db)

    # -- notify --------------------------------------------------------------------------
    def _read_notify(self) -> None:
        while not self._closing:
            try:
                data = self.notify.recv(4096)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return
            with self._lock:
                self.messages.extend(data.decode().split("\n"))

    def drain(self) -> list[str]:
        with self._lock:
            return list(self.messages)

    def wait_message(self, prefix: str, timeout: float = 30.0, after: int = 0) -> int:
        """Index of the first message starting with ``prefix`` at or after ``after``."""
        def found() -> int | None:
            for i, m in enumerate(self.drain()[after:], start=after):
                if m.startswith(prefix):
                    return i + 1
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            return None
        return wait_until(found, timeout, what=f"notify {prefix!r}") - 1

    def ready(self, timeout: float = 60.0) -> DaemonProcess:
        self.wait_message("READY=1", timeout)
        return self

    # -- control -------------------------------------------------------------------------
    def call(self, request: dict[str, Any], timeout: float = 60.0) -> Any:
        return call(self.socket, request, timeout=timeout)

    def search_paths(self, query: str, mode: str = "keyword", k: int = 10) -> list[str]:
        return [r["path"] for r in self.call({"op": "search", "query": query, "mode": mode, "k": k})["results"]]

    def state(self) -> dict[str, Any]:
        return self.call({"op": "status"})["daemon"]

    def idle(self) -> bool:
        d = self.state()
        return d["state"] == "idle" and d["queued_paths"] == 0 and d["chunks_to_embed"] == 0

    def settle(self, root: Path, timeout: float = 30.0) -> None:
        """Wait until the synced rows equal the disk exactly and the daemon is idle."""
        try:
            wait_until(lambda: db_state(self.db, None) == disk_state(root) and db_state(self.db) == disk_state(root)
                       and self.idle(), timeout, interval=0.2, what=f"index == disk under {root}")
        except AssertionError as exc:
            disk, rows = disk_state(root), db_state(self.db, None)
            diff = {"missing": sorted(set(disk) - set(rows))[:5], "extra": sorted(set(rows) - set(disk))[:5],
                    "different": sorted(p for p in set(disk) & set(rows) if disk[p] != rows[p])[:5]}
            raise AssertionError(f"{exc}\n{diff}\n{self.state() if self.proc.poll() is None else 'daemon dead'}\n"
                                 f"{self.log()[-3000:]}") from None

    # -- lifecycle -----------------------------------------------------------------------
    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"daemon did not stop within {timeout} s:\n{self.log()}") from None
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._closing = True
        self._reader.join(timeout=2)
        self.notify.close()
        self._log.close()
        for p in (self.notify_path,):
            p.unlink(missing_ok=True)
        self.notify_dir.rmdir()


def run_until_settled(home: Path, root: Path, model: str, timeout: float = 240) -> None:
    """Start a daemon, wait until the index equals the disk, stop it cleanly."""
    d = DaemonProcess(home, [root], model=model)
    try:
        d.ready(120)
        d.settle(root, timeout=timeout)
        assert d.stop() == 0
    finally:
        d.close()
