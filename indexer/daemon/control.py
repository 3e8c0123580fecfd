"""The control socket: line-delimited JSON over a Unix stream socket, for this user only.

The socket lives in the runtime directory (``$XDG_RUNTIME_DIR/indexer``, or
``$INDEXER_HOME/run``), created 0700; the socket itself is 0600 and every connection's peer
uid (SO_PEERCRED) must be ours. One file per database, so daemons on two databases coexist.

Request: ``{"op": "search" | "status" | "reindex" | "ping", ...}``, one per line.
Response: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "...", "exit_code": N}``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.errors import IndexerError
from indexer.paths import private_dir

MAX_REQUEST_BYTES = 1 << 20
Handler = Callable[[dict[str, Any]], Any]


class DaemonUnavailable(Exception):
    """No daemon answers on this database's socket (the caller works directly)."""


class DaemonError(IndexerError):
    """The daemon answered with an error; its message and exit code are the user's."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _log() -> Any:
    import logging  # the server's only; clients (the CLI) skip the import

    return logging.getLogger("indexer.control")


class DaemonTimeout(DaemonError):
    """The daemon accepted the request but did not answer in time (stopped, or stuck)."""


def socket_path(runtime_dir: Path, db: Path) -> Path:
    digest = zlib.crc32(str(db.resolve()).encode("utf-8", "surrogateescape"))
    return runtime_dir / f"daemon-{digest:08x}.sock"


def prepare_runtime_dir(runtime_dir: Path) -> None:
    """Create the directory 0700, or check that an existing one is ours and private."""
    private_dir(runtime_dir)  # missing parents 0700 too
    st = runtime_dir.stat()
    if st.st_uid != os.getuid():
        raise IndexerError(f"runtime directory {runtime_dir} belongs to uid {st.st_uid}, not to you")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(runtime_dir, 0o700)


SUN_PATH_MAX = 107


class _Address:
    """A socket address usable however long the directory's path is: AF_UNIX paths stop at
    107 bytes, so a longer one goes through ``/proc/self/fd/N/`` of the directory (Linux)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> str:
        text = str(self.path)
        if len(os.fsencode(text)) <= SUN_PATH_MAX:
            return text
        self._fd = os.open(self.path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._fd}/{self.path.name}"

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        prepare_runtime_dir(self.path.parent)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # left by a daemon that died; we hold the instance lock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            with _Address(self.path) as address:
                sock.bind(address)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="control-accept", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocking accept()
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            threading.Thread(target=self._serve, args=(conn,), name="control-client", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                uid = peer_uid(conn)
            except OSError:
                return
            if uid != os.getuid():
                _log().warning("refused a control connection from uid %d", uid)
                _send(conn, {"ok": False, "error": "permission denied: not the daemon's user", "exit_code": 1})
                return
            reader = conn.makefile("rb")
            while not self._stopping.is_set():
                line = reader.readline(MAX_REQUEST_BYTES + 1)
                if not line:
                    return
                if len(line) > MAX_REQUEST_BYTES:
                    _send(conn, {"ok": False, "error": "request too large", "exit_code": 2})
                    return
                if not _send(conn, self._answer(line)):
                    return

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("a request is a JSON object with an \"op\"")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}", "exit_code": 2}
        try:
            return {"ok": True, "result": self.handler(request)}
        except IndexerError as exc:
            return {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
        except Exception as exc:  # never let one request kill the daemon
            _log().exception("control request %r failed", request.get("op"))
            return {"ok": False, "error": f"internal error: {exc}", "exit_code": 1}


def _send(conn: socket.socket, payload: dict[str, Any]) -> bool:
    try:
        conn.sendall(json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n")
        return True
    except OSError:
        return False


def call(path: Path, request: dict[str, Any], *, timeout: float | None = 60.0) -> Any:
    """Send one request and return its result. :class:`DaemonUnavailable` when nobody listens;
    :class:`DaemonError` when the daemon answers with an error."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(2.0)
        try:
            with _Address(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            raise DaemonUnavailable(str(exc)) from None
        except PermissionError as exc:
            raise DaemonError(f"cannot reach the daemon's socket {path}: {exc.strerror}") from None
        sock.settimeout(timeout)
        sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
        data = sock.makefile("rb").readline()
    except TimeoutError:
        raise DaemonTimeout(f"the daemon did not answer within {timeout:.0f} s") from None
    finally:
        sock.close()
    if not data:
        raise DaemonUnavailable("the daemon closed the connection")
    response = json.loads(data)
    if not response.get("ok"):
        raise DaemonError(response.get("error") or "the daemon reported an error", int(response.get("exit_code") or 1))
    return response.get("result")
