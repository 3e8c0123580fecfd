"""Adopting a database made by the reference implementation, in place, in one transaction.

The legacy tables are renamed aside, the current schema is created from the very same
migration files a fresh database gets (so the result's schema is identical to a fresh one,
down to the text in ``sqlite_master``), every row is copied with its timestamps converted to
the one canonical format, row counts are verified, and the old tables are dropped. Any error
rolls the whole transaction back: the file is left byte-identical (the switch to WAL mode
happens only after the commit). Rows that already broke a foreign key in the legacy file (it ran without enforcement)
are kept as they are and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from indexer.errors import MigrationError
from indexer.storage.sqlite import driver, transactions
from indexer.storage.sqlite.driver import Connection, SqlValue
from indexer.timeutil import is_canonical, to_rfc3339

LEGACY_CORE = ("tasks", "agents", "state", "audit", "metrics", "checkpoints")
KNOWN_TABLES = frozenset(LEGACY_CORE + ("sessions", "memory_entries", "document_index"))
TIMESTAMP_COLUMNS: dict[str, tuple[str, ...]] = {
    "tasks": ("submitted_at", "started_at", "completed_at", "last_updated_at"),
    "agents": ("spawned_at", "terminated_at"),
    "state": ("created_at", "updated_at"),
    "audit": ("timestamp",),
    "metrics": ("timestamp",),
    "checkpoints": ("created_at",),
    "sessions": ("created_at", "last_update_time", "terminated_at", "archived_at"),
    "memory_entries": ("created_at", "updated_at"),
    "document_index": ("last_synced_at", "created_at", "updated_at"),
}
ASIDE = "_legacy_"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(conn: Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({_q(table)})").fetchall()]


class _TimestampConverter:
    """SQL function ``indexer_ts(x)``, counting what it converts and what it cannot."""

    def __init__(self) -> None:
        self.converted = 0
        self.unparseable = 0

    def __call__(self, value: SqlValue) -> SqlValue:
        result = cast(SqlValue, to_rfc3339(value))  # a value unchanged, or text
        if value is not None and result != value:
            self.converted += 1
        if result is not None and not is_canonical(result):
            self.unparseable += 1
        return result


# isoformat() with microseconds in UTC, the reference's usual form: converted in SQL; any
# other form goes through the Python converter.
_ISO_UTC_US = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]+00:00"


def _ts_expr(expr: str) -> str:
    return (f"CASE WHEN {expr} GLOB '{_ISO_UTC_US}' THEN substr({expr}, 1, 23) || 'Z' "
            f"ELSE indexer_ts({expr}) END")


def _select_list(table: str, source: list[str], target: list[str]) -> tuple[list[str], list[str]]:
    """Target columns to fill, and the expression reading each from the legacy table."""
    stamps = TIMESTAMP_COLUMNS.get(table, ())
    have = set(source)
    cols: list[str] = []
    exprs: list[str] = []
    for col in target:
        if col in have:
            expr = _q(col)
        elif table == "tasks" and col == "prompt" and "template_name" in have:
            expr = _q("template_name")
        elif table == "tasks" and col == "last_updated_at":
            parts = [c for c in ("completed_at", "started_at", "submitted_at") if c in have]
            if not parts:
                continue
            expr = "COALESCE(" + ", ".join(_q(c) for c in parts) + ")"
        else:
            continue  # absent in the legacy table: the column's default applies
        if col in stamps:
            expr = _ts_expr(expr)
        cols.append(col)
        exprs.append(expr)
    return cols, exprs


def _unknown_columns(table: str, source: list[str], target: list[str]) -> list[str]:
    extra = [c for c in source if c not in target]
    if table == "tasks" and "prompt" not in source:
        extra = [c for c in extra if c != "template_name"]
    return extra


def adopt(path: Path, todo: Sequence[Any], apply_one: Callable[..., None]) -> dict[str, Any]:
    """Adopt the legacy database at ``path``; ``todo`` are all migrations, first one first."""
    conn = driver.connect(path, defer_wal=True)
    convert = _TimestampConverter()
    conn.create_function("indexer_ts", 1, convert, deterministic=True)
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA legacy_alter_table=ON")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB for this one big transaction
    try:
        with transactions.transaction(conn):
            report = _adopt_in_transaction(conn, todo, apply_one, convert)
    except driver.Error as exc:
        conn.close()
        raise MigrationError(f"adopting the legacy database failed and was rolled back; the file is unchanged: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    # Committed: nothing after this point may report the file as unchanged. The switch to WAL
    # fails at once ("database is locked", no busy wait) while another connection has the
    # file open; then the next read-write connection (driver.connect) switches it.
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    except driver.OperationalError:
        pass
    finally:
        conn.close()
    return report


def _adopt_in_transaction(conn: Connection, todo: Sequence[Any], apply_one: Callable[..., None],
                          convert: _TimestampConverter) -> dict[str, Any]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
    if "schema_migrations" in tables:
        raise MigrationError("another process adopted this database meanwhile; run migrate again")
    present = [t for t in KNOWN_TABLES if t in tables]
    source_cols = {t: _columns(conn, t) for t in present}
    counts = {t: conn.execute(f"SELECT count(*) FROM {_q(t)}").fetchone()[0] for t in present}
    sequences: dict[str, int] = {}
    if "sqlite_sequence" in tables:
        sequences = {r[0]: r[1] for r in conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall()}
    marks = ",".join("?" * len(present))
    indexes = conn.execute(
        f"SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL AND tbl_name IN ({marks})",
        present,
    ).fetchall()
    for (name,) in indexes:
        conn.execute(f"DROP INDEX {_q(name)}")
    for table in present:
        conn.execute(f"ALTER TABLE {_q(table)} RENAME TO {_q(ASIDE + table)}")
    apply_one(conn, todo[0], with_version_table=True)
    for table in present:
        target = _columns(conn, table)
        unknown = _unknown_columns(table, source_cols[table], target)
        if unknown:
            raise MigrationError(
                f"legacy table {table} has columns this schema does not know ({', '.join(unknown)}); "
                "nothing was changed"
            )
        cols, exprs = _select_list(table, source_cols[table], target)
        conn.execute(
            f"INSERT INTO {_q(table)} ({', '.join(_q(c) for c in cols)}) "
            f"SELECT {', '.join(exprs)} FROM {_q(ASIDE + table)}"
        )
        copied = conn.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]
        if copied != counts[table]:
            raise MigrationError(f"table {table}: {copied} rows copied of {counts[table]}")
        if table in sequences:
            conn.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (sequences[table], table)
            )
        conn.execute(f"DROP TABLE {_q(ASIDE + table)}")
    for migration in todo[1:]:
        apply_one(conn, migration, with_version_table=False)
    violations: dict[str, int] = {}
    for row in conn.execute("PRAGMA foreign_key_check").fetchall():
        violations[row[0]] = violations.get(row[0], 0) + 1
    return {
        "rows": counts,
        "variant": "template_name" if "template_name" in source_cols.get("tasks", []) else "standard",
        "timestamps_converted_other_formats": convert.converted,
        "timestamps_unparseable_kept": convert.unparseable,
        "preexisting_fk_violations": violations,
    }
