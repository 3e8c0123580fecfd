"""What a document sync tells its caller: its report, and progress events while it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from indexer.documents.planning import ChangeSet


@dataclass
class SyncReport:
    scanned: int = 0
    added: int = 0
    modified: int = 0
    moved: int = 0
    deleted: int = 0
    kept: int = 0  # not found, but not proven missing (unreadable place, path outside the roots): untouched
    touched: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    fingerprint_changed: bool = False
    seconds: float = 0.0
    embed_seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)  # what was not looked at, and why

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def add(self, other: SyncReport) -> None:
        """Add another run's counts (and its last failures) into this report."""
        for key, value in other.as_dict().items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(self, key, getattr(self, key) + value)
        self.fingerprint_changed = self.fingerprint_changed or other.fingerprint_changed
        self.failures = (self.failures + other.failures)[-50:]
        self.warnings = (self.warnings + other.warnings)[-50:]


class Stage(StrEnum):
    """What a sync is doing when it reports progress."""

    PLAN = "plan"  # the change set is known (``ProgressEvent.changes``)
    FILES = "files"  # files read and written: ``done`` of ``total``
    EMBED = "embed"  # chunks embedded: ``done`` of ``total``


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of a sync (``done``/``total`` for files and embed, ``changes`` for plan)."""

    stage: Stage
    done: int = 0
    total: int = 0
    changes: ChangeSet | None = None


Progress = Callable[[ProgressEvent], None]
