"""Daemon logs on stderr: ``<N>level: message`` under systemd (journald reads the syslog
priority prefix and adds its own timestamp), ``time level: message`` in a terminal."""

from __future__ import annotations

import logging
import os
import sys

SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def under_journald(env: dict[str, str] | None = None) -> bool:
    """True when stderr is the journal (systemd sets JOURNAL_STREAM to its device:inode)."""
    env = dict(os.environ) if env is None else env
    stream = env.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = SYSLOG_PRIORITY.get(record.levelno, 6)
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        # one prefix per line, so a traceback keeps its priority in the journal
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def setup(level: str = "info", *, journald: bool | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if journald if journald is not None else under_journald():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # third-party chatter stays at warning
    for noisy in ("watchdog", "sentence_transformers", "transformers", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
