"""sd_notify(3) without a dependency: one datagram to ``$NOTIFY_SOCKET`` per message.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op, so the daemon runs the same
in a terminal. An abstract socket is written ``@name``.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        address = env.get("NOTIFY_SOCKET") or ""
        self.address: str | None = ("\0" + address[1:]) if address.startswith("@") else (address or None)
        usec = env.get("WATCHDOG_USEC") or ""
        pid = env.get("WATCHDOG_PID") or ""
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval: float | None = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._sock: socket.socket | None = None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str, patience_s: float = 0.0) -> bool:
        """Send ``KEY=value`` lines; False (never an exception) if systemd is not listening.

        Never blocks the caller: a datagram socket whose reader is slow fills up (Linux queues
        only ``net.unix.max_dgram_qlen`` datagrams), and a blocking send would freeze the worker.
        Progress and watchdog messages are dropped then; state changes (READY, RELOADING,
        STOPPING) are retried for ``patience_s``."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode("utf-8", "replace")
        deadline = time.monotonic() + patience_s
        while True:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                self._sock.sendto(payload, self.address)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
            except OSError:
                return False

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []), f"MAINPID={os.getpid()}", patience_s=2.0)

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 for Type=notify-reload
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                  patience_s=2.0)

    def stopping(self) -> None:
        self.send("STOPPING=1", patience_s=2.0)

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """``WATCHDOG=1``, at most every quarter of the interval; the caller only calls it from
        a loop that is making progress, so a stuck loop stops the pings and systemd acts."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval / 4:
            self._last_ping = now
            self.send("WATCHDOG=1")

    @property
    def wake_interval(self) -> float | None:
        """How often an idle loop must wake to keep the watchdog fed (None: never)."""
        return None if self.watchdog_interval is None else self.watchdog_interval / 3

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
