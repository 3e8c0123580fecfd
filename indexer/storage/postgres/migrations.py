"""Numbered SQL migrations for PostgreSQL (``schema/postgres/*.sql``), recorded with checksums.

The same rules as :mod:`indexer.storage.sqlite.migrations` on SQLite: each migration is recorded
in the transaction that applies it (name, SHA-256, applied_at); a recorded checksum that differs
from the file, or a recorded name this code does not know (a newer database), is refused before
anything is written. PostgreSQL's DDL is transactional, so a run is one transaction: it first
takes a transaction-scoped ``pg_advisory_xact_lock``, reads again what is applied, applies every
pending migration and commits, or (any error) leaves the store exactly as it was. Daemons and
CLIs starting together do not race: exactly one of them applies the run; the others wait on the
lock, then find nothing pending. No session state is involved: a session-level
lock (held across transactions) breaks behind PgBouncer in transaction mode, where consecutive
transactions of one client may run on different server connections, so a lock and its unlock
land on different backends (the lock leaks, two migrators hold it at once); and the migrator's
connections never use server-side prepared statements. The DDL is idempotent (``IF NOT EXISTS``)
besides.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg

from indexer.errors import IndexerError, MigrationError
from indexer.storage.records import Migration
from indexer.storage.records import MigrationReport as _BaseReport
from indexer.timeutil import now_ts

VERSION_TABLE = "schema_migrations"
VERSION_DDL = (
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, "
    "applied_at TEXT NOT NULL)"
)
# One number for every indexer migrator on a server (the advisory-lock space is per database).
MIGRATION_LOCK = 0x1DE8E5_0001


@dataclass
class PgState:
    applied: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    server_version: str = ""


@dataclass
class MigrationReport(_BaseReport):
    """The SQLite runner's report, with the engine and the server's version."""

    engine: str = "postgresql"
    server_version: str = ""


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", re.sub(r"password=\S+", "password=***", dsn))


def load_migrations() -> list[Migration]:
    root = importlib.resources.files("indexer.schema.postgres")
    files = sorted((f for f in root.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    found = [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]
    if not found:
        raise MigrationError("no PostgreSQL migrations found; the package is incomplete (schema/postgres/*.sql)")
    return found


def one_line(exc: BaseException) -> str:
    """A driver message (libpq's run over several lines) as one line."""
    return " ".join(str(exc).split())


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection for migrations, doctor and the move from SQLite: no server-side prepared
    statements (none of their statements is hot, and PgBouncer in transaction mode breaks them)."""
    kwargs.setdefault("prepare_threshold", None)
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        raise IndexerError(f"cannot connect to PostgreSQL at {redact(dsn)}: {one_line(exc)}") from None


def applied_migrations(conn: psycopg.Connection[Any]) -> dict[str, str]:
    # A scan of the catalog, not to_regclass(): a name lookup that takes no lock may answer from
    # the backend's cache, as of before the lock was granted (another migrator's new table unseen).
    exists = conn.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_tables WHERE tablename = %s "
                          "AND schemaname = ANY (current_schemas(false)))", (VERSION_TABLE,)).fetchone()
    if not exists or not exists[0]:
        return {}
    return {name: checksum for name, checksum in conn.execute(f"SELECT name, checksum FROM {VERSION_TABLE}")}


def _pending(applied: dict[str, str], known: list[Migration], where: str) -> list[Migration]:
    names = {m.name for m in known}
    unknown = sorted(set(applied) - names)
    if unknown:
        raise MigrationError(f"{where} has migrations this version does not know ({', '.join(unknown)}): "
                             "it was made by a newer indexer; upgrade indexer")
    for m in known:
        if m.name in applied and applied[m.name] != m.checksum:
            raise MigrationError(f"migration {m.name} in {where} has checksum {applied[m.name][:12]}…, "
                                 f"the file has {m.checksum[:12]}…: the schema file was edited after it was applied")
    return [m for m in known if m.name not in applied]


def read_state(dsn: str) -> PgState:
    with connect(dsn, autocommit=True) as conn:
        applied = applied_migrations(conn)
        pending = _pending(applied, load_migrations(), redact(dsn))
        version = conn.execute("SHOW server_version").fetchone()
        return PgState(applied, [m.name for m in pending], str(version[0]) if version else "")


def migrate(dsn: str, *, dry_run: bool = False) -> MigrationReport:
    """Apply the pending migrations in one transaction under the migration lock
    (transaction-scoped: safe through PgBouncer); a report of what this call applied."""
    known = load_migrations()
    where = redact(dsn)
    with connect(dsn, autocommit=True) as conn:
        version_row = conn.execute("SHOW server_version").fetchone()
        server_version = str(version_row[0]) if version_row else ""
        applied = applied_migrations(conn)
        pending = _pending(applied, known, where)
        report = MigrationReport(where, "current" if applied else "empty", [m.name for m in pending],
                                 dry_run=dry_run, server_version=server_version)
        if not pending or dry_run:
            return report
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            pending = _pending(applied_migrations(conn), known, where)  # another migrator may have applied them
            conn.execute(VERSION_DDL)
            for migration in pending:
                try:
                    conn.execute(migration.sql)  # several statements: the simple query protocol
                except psycopg.Error as exc:  # raised inside the transaction: all of the run rolls back
                    raise MigrationError(f"migration {migration.name} failed on {where}: {one_line(exc)}; "
                                         "nothing was applied (the run is one transaction)") from exc
                conn.execute(f"INSERT INTO {VERSION_TABLE} (name, checksum, applied_at) VALUES (%s, %s, %s)",
                             (migration.name, migration.checksum, now_ts()))
        report.applied = [m.name for m in pending]
        return report
