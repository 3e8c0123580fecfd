"""The one connection factory: binding choice, PRAGMAs and sqlite-vec on every connection.

Every code path (CLI, daemon, services, migrations, tests) opens SQLite through
:func:`connect` or :func:`connect_async`; nothing outside ``indexer.storage`` imports a
sqlite binding. The stdlib ``sqlite3`` is used only where it can load extensions; many
pyenv and macOS builds cannot, so ``sqlean.py`` (then ``pysqlite3``) is preferred.
Callers see one set of exception classes: the chosen binding's, re-exported here.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from indexer.errors import DriverError, IndexerError
from indexer.locations import refuse_postgres
from indexer.paths import create_private_file

if TYPE_CHECKING:
    import aiosqlite

# Applied, in order, on every read-write connection.
PRAGMAS: tuple[tuple[str, str], ...] = (
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    ("busy_timeout", "5000"),
    ("wal_autocheckpoint", "1000"),
)
EXPECTED_PRAGMAS: dict[str, Any] = {
    "journal_mode": "wal",
    "synchronous": 1,
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "wal_autocheckpoint": 1000,
}
_CANDIDATES = ("sqlean", "pysqlite3.dbapi2", "sqlite3")


def _can_load_extensions(module: ModuleType) -> bool:
    try:
        conn = module.connect(":memory:")
    except Exception:
        return False
    try:
        return hasattr(conn, "enable_load_extension")
    finally:
        conn.close()


def _choose_binding() -> ModuleType:
    tried: list[str] = []
    for name in _CANDIDATES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            tried.append(f"{name}: not installed")
            continue
        if _can_load_extensions(module):
            return module
        tried.append(f"{name}: built without extension loading")
    raise DriverError(
        "no SQLite binding that can load extensions (needed for sqlite-vec); "
        + "; ".join(tried)
        + ". Fix: pip install sqlean.py  (or pysqlite3-binary on Linux)"
    )


sqlite: ModuleType = _choose_binding()
BINDING_NAME: str = sqlite.__name__

# The one set of exception types callers catch, and the connection type every storage function
# takes. The binding is chosen at run time; sqlean.py and pysqlite3 mirror the stdlib module's
# API, so the type checker sees the stdlib's classes.
if TYPE_CHECKING:
    from sqlite3 import Connection as Connection
    from sqlite3 import Cursor as Cursor
    from sqlite3 import DatabaseError as DatabaseError
    from sqlite3 import Error as Error
    from sqlite3 import IntegrityError as IntegrityError
    from sqlite3 import OperationalError as OperationalError
    from sqlite3 import Row as Row
else:
    Error = sqlite.Error
    DatabaseError = sqlite.DatabaseError
    IntegrityError = sqlite.IntegrityError
    OperationalError = sqlite.OperationalError
    Row = sqlite.Row
    Connection = sqlite.Connection
    Cursor = sqlite.Cursor
complete_statement: Callable[[str], bool] = sqlite.complete_statement


# What SQLite stores and hands back: the values of a row, of a parameter, of a SQL function.
SqlValue = str | bytes | int | float | None


def inserted_rowid(cursor: Cursor) -> int:
    """The rowid of the row the INSERT run by ``cursor`` wrote."""
    rowid = cursor.lastrowid
    if rowid is None:  # pragma: no cover - only a cursor that ran no INSERT has none
        raise DriverError("the statement inserted no row")
    return rowid


def _load_vec(conn: Connection) -> None:
    try:
        import sqlite_vec
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise DriverError("sqlite-vec is not installed: pip install sqlite-vec") from exc
    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)


def connect(path: str | Path, *, readonly: bool = False, load_vec: bool = True,
            defer_wal: bool = False) -> Connection:
    """Open a configured connection in autocommit mode (transactions are explicit).

    Read-write connections get every PRAGMA of :data:`PRAGMAS`. Read-only connections
    (``doctor``, ``migrate --dry-run``, the up-to-date check) never write to the file:
    they skip the ``journal_mode`` switch but get the other settings. ``defer_wal`` is for
    legacy adoption only: switching a file to WAL rewrites its header, so the adopter
    switches after its transaction commits and a failed adoption leaves the file
    byte-identical.
    """
    target = str(path)
    refuse_postgres(target, "an SQLite connection")
    conn: Connection
    if readonly:
        if target == ":memory:":
            raise DriverError("a read-only connection needs a database file")
        uri = Path(target).resolve().as_uri() + "?mode=ro"
        conn = sqlite.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        _precreate(target)
        conn = sqlite.connect(target, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite.Row
        for name, value in PRAGMAS:
            if (readonly or defer_wal) and name == "journal_mode":
                continue
            conn.execute(f"PRAGMA {name}={value}").fetchall()
        if load_vec:
            _load_vec(conn)
    except Exception:
        conn.close()
        raise
    return conn


def _precreate(target: str) -> None:
    """A new database file is created 0600 by us rather than with the umask by SQLite; its
    -wal and -shm files take the database's mode. Where we cannot create it, SQLite's own
    error (and :func:`location_hint`) say why."""
    if target == ":memory:" or target.startswith("file:") or not target:
        return
    try:
        create_private_file(Path(target))
    except OSError:
        pass


def location_hint(path: str | Path) -> str:
    """Why a database file could not be opened or written, when SQLite's words ("unable to
    open database file", "attempt to write a readonly database") do not say it: its directory
    is read-only (a read-only mount, a sandbox) or missing. SQLite needs to write beside the
    file (the -wal and -shm files), even to read it. "" when the directory looks fine."""
    if str(path) == ":memory:":
        return ""
    folder = Path(path).resolve().parent  # a symlinked file: SQLite writes beside its target
    if not folder.is_dir():
        return f" (the data directory {folder} does not exist)"
    if not os.access(folder, os.W_OK):
        return (f" (the data directory {folder} is not writable: SQLite writes its -wal/-shm files beside "
                "the database, even to read it; check the mount and permissions)")
    return ""


def connect_async(path: str | Path, *, readonly: bool = False) -> aiosqlite.Connection:
    """The same connection, driven by aiosqlite's thread (``await`` it or ``async with``)."""
    import aiosqlite

    conn = aiosqlite.Connection(lambda: connect(path, readonly=readonly), 64)
    # aiosqlite's worker thread is not a daemon: a script that raised before close() would hang
    # forever at interpreter exit, waiting for it. As a daemon thread it ends with the process;
    # what was committed is on disk (WAL), an open transaction is rolled back by SQLite.
    worker = conn if isinstance(conn, threading.Thread) else getattr(conn, "_thread", None)
    if isinstance(worker, threading.Thread):
        worker.daemon = True
    return conn


def read_pragmas(conn: Connection) -> dict[str, Any]:
    """The PRAGMA values a connection actually has."""
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in EXPECTED_PRAGMAS}


def vec_version(conn: Connection) -> str:
    return str(conn.execute("SELECT vec_version()").fetchone()[0])


def copy_database(source: str | Path, target: str | Path, *, check: bool = True) -> None:
    """Copy ``source`` into the new file ``target`` through SQLite's backup API, in one step:
    one read transaction, one consistent snapshot while other connections go on writing. The
    copy is a self-contained file (rollback journal, no -wal); ``check`` runs its
    ``integrity_check`` and raises when the copy is not sound."""
    src = connect(source, readonly=True, load_vec=False)
    try:
        dst = connect(target, load_vec=False, defer_wal=True)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE").fetchall()
            if check:
                result = dst.execute("PRAGMA integrity_check").fetchone()[0]
                if result != "ok":
                    raise IndexerError(f"the copy failed its integrity check: {result}")
        finally:
            dst.close()
    finally:
        src.close()
