"""SQL of the index's settings (schema 0005): key -> JSON value.

The one key so far is ``roots``: every directory a user indexed as a root, remembered so
that the commands that run without ``--root`` (a plain ``reindex``, the daemon, the MCP
server's ``read_document``) know them when no roots are configured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexer.storage.sqlite import driver, migrations, transactions
from indexer.storage.sqlite.driver import Connection
from indexer.timeutil import now_ts

TABLE = "index_settings"
ROOTS = "roots"


def has_table(conn: Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone() is not None


def get_setting(conn: Connection, key: str) -> Any:
    """The value stored under ``key``, or None (also before migration 0005)."""
    if not has_table(conn):
        return None
    row = conn.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def put_setting(conn: Connection, key: str, value: Any) -> None:
    conn.execute(f"INSERT INTO {TABLE} (key, value, updated_at) VALUES (?, ?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                 (key, json.dumps(value, ensure_ascii=False), now_ts()))


def remembered_roots(conn: Connection) -> list[str]:
    value = get_setting(conn, ROOTS)
    return [str(v) for v in value] if isinstance(value, list) else []


def remember_roots(conn: Connection, roots: Sequence[str]) -> bool:
    """Add ``roots`` to the remembered ones (in order, once each); writes only when one is
    new. True when it wrote."""
    known = remembered_roots(conn)
    new = [r for r in dict.fromkeys(roots) if r not in known]
    if not new:
        return False
    with transactions.transaction(conn):
        current = remembered_roots(conn)  # again, under the write lock
        merged = current + [r for r in new if r not in current]
        if merged == current:
            return False
        put_setting(conn, ROOTS, merged)
    return True


def read_remembered_roots(path: Path) -> list[str]:
    """The remembered roots of the database at ``path``, read through a read-only connection
    (never creates or migrates it); [] when there is no database or nothing remembered."""
    if not Path(path).is_file():
        return []
    try:
        conn = driver.connect(path, readonly=True, load_vec=False)
    except driver.Error:
        return []
    try:
        if TABLE not in migrations.user_tables(conn):
            return []
        return remembered_roots(conn)
    except driver.Error:
        return []
    finally:
        conn.close()
