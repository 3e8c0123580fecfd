"""Online backup and restore through SQLite's backup API.

A backup reads one consistent snapshot (a single read transaction in WAL mode, so the daemon
and other writers go on meanwhile), writes it to a temporary file beside the target, checks
it (``integrity_check`` and the schema's migration records) and renames it into place: a
failed or interrupted backup never leaves a half-written file at PATH.

Restore is the same copy the other way, refused while a daemon holds the database; the file it
replaces is kept beside it as ``<db>.before-restore``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.errors import IndexerError
from indexer.paths import private_dir
from indexer.storage.sqlite import driver, migrations


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    bytes: int
    seconds: float
    migrations: tuple[str, ...]
    kept_previous: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _copy(source: Path, target: Path) -> tuple[str, ...]:
    """Snapshot ``source`` into ``target`` (a new file), checked; returns its migrations."""
    driver.copy_database(source, target, check=True)
    return tuple(sorted(migrations.read_state(target).applied))


def backup(source: Path, target: Path, *, overwrite: bool = False, into_directory: bool = False) -> CopyReport:
    """Copy ``source`` to ``target``. ``target`` is a directory when it is one, or when
    ``into_directory`` (the CLI passes a path written with a trailing slash): the copy gets a
    timestamped name inside it, a free one, and the directory is created (0700) if missing."""
    if not source.is_file():
        raise IndexerError(f"no database at {source}")
    target = target.expanduser().absolute()
    folder = target if into_directory or target.is_dir() else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise IndexerError(f"{folder} is a file, not a directory: drop the trailing slash to overwrite it (with --force)")
    if folder is None:
        if target.exists() and not overwrite:
            raise IndexerError(f"{target} exists; choose another path or pass --force")
        if target.resolve() == source.resolve():
            raise IndexerError("the backup cannot overwrite the database itself")
    _check_source(source)
    private_dir(folder if folder is not None else target.parent)
    if folder is not None:
        target = _free_name(folder, source.stem)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    started = time.perf_counter()
    try:
        applied = _copy(source, tmp)
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
    return CopyReport(str(source), str(target), target.stat().st_size, round(time.perf_counter() - started, 3), applied)


def _free_name(folder: Path, stem: str) -> Path:
    """``<stem>-<local time>.db`` in ``folder``, with ``-2``, ``-3``... when a backup made in the
    same second is already there."""
    base = f"{stem}-{time.strftime('%Y%m%dT%H%M%S')}"
    for n in range(1, 10_000):
        target = folder / (f"{base}.db" if n == 1 else f"{base}-{n}.db")
        if not target.exists():
            return target
    raise IndexerError(f"no free backup name in {folder}")


def restore(backup_file: Path, db: Path) -> CopyReport:
    from indexer.lockfile import running_pid

    backup_file = backup_file.expanduser().absolute()
    if not backup_file.is_file():
        raise IndexerError(f"no backup at {backup_file}")
    pid = running_pid(db)
    if pid is not None:
        raise IndexerError(f"the daemon (pid {pid}) is running on {db}: stop it first (systemctl --user stop indexer)")
    _check_source(backup_file)
    private_dir(db.parent)
    tmp = db.with_name(f".{db.name}.restoring-{os.getpid()}")
    started = time.perf_counter()
    kept = None
    try:
        applied = _copy(backup_file, tmp)
        if db.exists():
            kept = Path(f"{db}.before-restore")
            try:  # fold its WAL in, so the file kept aside is whole on its own
                previous = driver.connect(db, load_vec=False)
                try:
                    previous.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                finally:
                    previous.close()
            except driver.Error:
                pass  # a corrupt database is kept aside as it is
            os.replace(db, kept)
        for side in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            side.unlink(missing_ok=True)
        os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)
    return CopyReport(str(backup_file), str(db), db.stat().st_size, round(time.perf_counter() - started, 3), applied,
                      str(kept) if kept else None)


def _check_source(path: Path) -> None:
    """Refuse what is not one of our databases (a foreign or corrupt file) before copying."""
    state = migrations.read_state(path)
    if state.kind not in ("current", "legacy", "empty"):
        raise IndexerError(f"{path} is not an indexer database ({state.kind})")
