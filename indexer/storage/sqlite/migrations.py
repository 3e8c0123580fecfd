"""Numbered SQL migrations from ``schema/``, recorded in ``schema_migrations``.

Rules: each migration runs in one transaction together with its record (name, SHA-256 of
the file, applied_at); a recorded checksum that differs from the file, or a recorded name
this code does not know (a newer database), is refused before anything is written; an
up-to-date database is only read, through a read-only connection. A legacy database (made by
the reference implementation, no version table) is adopted in one transaction, after a
backup copy, by :mod:`indexer.storage.sqlite.legacy`.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import MigrationError, SchemaError
from indexer.locations import refuse_postgres
from indexer.paths import private_dir
from indexer.storage.records import Migration, MigrationReport
from indexer.storage.sqlite import driver, legacy, transactions
from indexer.storage.sqlite.driver import Connection
from indexer.timeutil import now_ts

VERSION_TABLE = "schema_migrations"
VERSION_DDL = (
    f"CREATE TABLE {VERSION_TABLE} (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, "
    "applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True)
class DbState:
    kind: str  # missing | empty | current | legacy
    applied: dict[str, str] = field(default_factory=dict)
    tables: frozenset[str] = frozenset()


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migrations shipped with the package (``schema/*.sql``), ordered by number."""
    if directory is not None:
        files: Iterable[Any] = sorted(Path(directory).glob("*.sql"))
    else:
        root = importlib.resources.files("indexer.schema")
        files = sorted((f for f in root.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    migrations = [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]
    if not migrations:
        raise SchemaError("no schema migrations found; the package is incomplete (schema/*.sql)")
    return migrations


def split_statements(sql: str) -> Iterator[str]:
    """Split a script into complete statements (comments and strings respected)."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if driver.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise SchemaError(f"incomplete SQL statement at end of migration: {buffer.strip()[:80]!r}")


def user_tables(conn: Connection) -> frozenset[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return frozenset(r[0] for r in rows)


def inspect_state(conn: Connection) -> DbState:
    try:
        tables = user_tables(conn)
    except driver.DatabaseError as exc:
        raise SchemaError(f"not a usable SQLite database: {exc}") from None
    if VERSION_TABLE in tables:
        rows = conn.execute(f"SELECT name, checksum FROM {VERSION_TABLE}").fetchall()
        return DbState("current", {r[0]: r[1] for r in rows}, tables)
    if not tables:
        return DbState("empty", {}, tables)
    if tables & legacy.KNOWN_TABLES:
        return DbState("legacy", {}, tables)
    raise SchemaError(
        "the file holds tables of another application ("
        + ", ".join(sorted(tables)[:5])
        + "); refusing to touch it. Point --db at an indexer database or a new path"
    )


def pending_migrations(state: DbState, migrations: list[Migration]) -> list[Migration]:
    known = {m.name: m for m in migrations}
    newer = sorted(set(state.applied) - set(known))
    if newer:
        raise SchemaError(
            f"the database was migrated by a newer indexer (unknown migrations: {', '.join(newer)}); "
            "upgrade indexer to use it"
        )
    for name, checksum in state.applied.items():
        if known[name].checksum != checksum:
            raise SchemaError(
                f"migration {name} recorded in the database differs from this indexer's file "
                f"(checksum {checksum[:12]} != {known[name].checksum[:12]}); refusing to continue"
            )
    return [m for m in migrations if m.name not in state.applied]


def read_state(path: Path) -> DbState:
    if not path.exists():
        return DbState("missing")
    if path.is_dir():
        raise SchemaError(f"{path} is a directory, not a database file")
    try:
        conn = driver.connect(path, readonly=True, load_vec=False)
    except driver.DatabaseError as exc:
        raise SchemaError(f"cannot open {path}: {exc}{driver.location_hint(path)}") from None
    try:
        return inspect_state(conn)
    finally:
        conn.close()


def apply_one(conn: Connection, migration: Migration, *, with_version_table: bool) -> None:
    """The one way a migration is applied: its statements, then its record (name, checksum,
    applied_at), inside the caller's transaction; ``with_version_table`` creates the table
    of records first (the first migration of a new or adopted file)."""
    if with_version_table:
        conn.execute(VERSION_DDL)
    for statement in split_statements(migration.sql):
        conn.execute(statement)
    conn.execute(
        f"INSERT INTO {VERSION_TABLE} (name, checksum, applied_at) VALUES (?, ?, ?)",
        (migration.name, migration.checksum, now_ts()),
    )


def apply_all(conn: Connection, migrations: Sequence[Migration]) -> None:
    """Every migration of a new, empty database (``:memory:``), in one transaction."""
    with transactions.transaction(conn):
        for number, migration in enumerate(migrations):
            apply_one(conn, migration, with_version_table=number == 0)


def _apply_if_new(conn: Connection, migration: Migration) -> bool:
    tables = user_tables(conn)
    if VERSION_TABLE in tables and conn.execute(
        f"SELECT 1 FROM {VERSION_TABLE} WHERE name = ?", (migration.name,)
    ).fetchone():
        return False
    apply_one(conn, migration, with_version_table=VERSION_TABLE not in tables)
    return True


def apply_migration(conn: Connection, migration: Migration) -> bool:
    """Apply one migration and its record in one transaction; roll back on any error.

    The state is read again under the write lock, so two processes starting at once do
    not both apply it. Returns False when another process already had.
    """
    try:
        with transactions.transaction(conn):
            return _apply_if_new(conn, migration)
    except driver.Error as exc:
        raise MigrationError(f"migration {migration.name} failed and was rolled back: {exc}") from exc


def _connect_for_writing(path: Path, *, retry_seconds: float = 30.0) -> Connection:
    """``driver.connect`` for the runner, retried while another process holds the lock.

    ``PRAGMA journal_mode=WAL`` on a file another connection holds a lock on fails with
    "database is locked" at once (SQLite does not call the busy handler there), whatever
    ``busy_timeout`` is. Two processes creating the same new file meet exactly there; the
    loser retries until the lock is released, then sees the winner's records.
    """
    return transactions.retry_busy(lambda: driver.connect(path), seconds=retry_seconds, max_delay=0.25)


def backup_copy(path: Path) -> Path:
    """An online, consistent copy beside the database, written before it is touched."""
    stamp = now_ts().replace(":", "").replace("-", "").replace(".", "")
    target = path.with_name(f"{path.name}.pre-migrate-{stamp}.bak")
    driver.copy_database(path, target, check=False)
    return target


def migrate(
    path: Path,
    *,
    dry_run: bool = False,
    backup: bool = True,
    migrations: list[Migration] | None = None,
) -> MigrationReport:
    """Bring the database at ``path`` up to date (creating it if missing)."""
    migrations = load_migrations() if migrations is None else migrations
    state = read_state(path)
    todo = pending_migrations(state, migrations)
    report = MigrationReport(str(path), state.kind, [m.name for m in todo], dry_run=dry_run)
    if dry_run or not todo:
        return report
    refuse_postgres(path, "an SQLite migration")  # never a directory named 'postgresql:'
    private_dir(path.parent)
    if state.kind == "legacy":
        if backup:
            report.backup = str(backup_copy(path))
        report.legacy = legacy.adopt(path, todo, apply_one)
        report.applied = [m.name for m in todo]
        return report
    conn = _connect_for_writing(path)
    try:
        for migration in todo:
            if apply_migration(conn, migration):
                report.applied.append(migration.name)
    finally:
        conn.close()
    return report
