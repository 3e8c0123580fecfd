"""Move the memories of an SQLite agent store into a PostgreSQL one (``indexer migrate --to``).

Every row of ``memory_entries`` and every memory audit row (``memory_namespace`` set) is
copied as it is, ids included, in one PostgreSQL transaction, then the identity sequences
continue after the highest id. The source is only read (a read-only connection). The target
must be migrated and hold no memories yet: a second run, or a run into a store already in use,
is refused before anything is written. Sessions, events and tasks stay in SQLite for now.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from indexer.errors import IndexerError
from indexer.storage import driver
from indexer.storage.postgres import migrations

MEMORY_COLUMNS = ("id", "namespace", "key", "value", "memory_type", "version", "is_deleted", "metadata",
                  "created_by", "updated_by", "created_at", "updated_at")
AUDIT_COLUMNS = ("id", "timestamp", "agent_id", "task_id", "action_type", "action_data", "result",
                 "memory_operation_type", "memory_namespace", "memory_entry_id")
_CASTS = {"value": "%s::json", "metadata": "%s::json", "action_data": "%s::json"}


@dataclass(frozen=True)
class TransferReport:
    source: str
    target: str
    memory_entries: int
    audit_rows: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    values = ", ".join(_CASTS.get(c, "%s") for c in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) OVERRIDING SYSTEM VALUE VALUES ({values})"


def read_source(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(memory rows, memory audit rows) of an SQLite store, in id order."""
    if not path.exists():
        raise IndexerError(f"no database at {path} to move memories from")
    conn = driver.connect(path, readonly=True)
    try:
        memories = [tuple(r) for r in conn.execute(f"SELECT {', '.join(MEMORY_COLUMNS)} FROM memory_entries ORDER BY id")]
        audit = [tuple(r) for r in conn.execute(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit WHERE memory_namespace IS NOT NULL ORDER BY id")]
    finally:
        conn.close()
    deleted = MEMORY_COLUMNS.index("is_deleted")
    memories = [(*r[:deleted], bool(r[deleted]), *r[deleted + 1:]) for r in memories]
    return memories, audit


def copy_memories(source: Path, dsn: str) -> TransferReport:
    """Copy every memory and memory audit row of ``source`` into the (migrated, empty) store at ``dsn``."""
    memories, audit = read_source(source)
    where = migrations.redact(dsn)
    with migrations.connect(dsn) as conn:
        try:
            with conn.transaction():
                conn.execute("LOCK TABLE memory_entries, audit IN EXCLUSIVE MODE")
                row = conn.execute("SELECT count(*) FROM memory_entries").fetchone()
                if row and row[0]:
                    raise IndexerError(f"{where} already holds {row[0]} memory versions; memories are moved only into "
                                       "an empty store (nothing was copied)")
                with conn.cursor() as cur:
                    cur.executemany(_insert_sql("memory_entries", MEMORY_COLUMNS), memories)
                    cur.executemany(_insert_sql("audit", AUDIT_COLUMNS), audit)
                for table in ("memory_entries", "audit"):
                    conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"(SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)")
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
            raise IndexerError(f"a row of {source} does not fit {where}: {migrations.one_line(exc)} "
                               "(nothing was copied)") from None
    return TransferReport(str(source), where, len(memories), len(audit))
