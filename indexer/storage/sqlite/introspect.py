"""Read a database's schema as plain data: what tests compare and ``doctor`` reports."""

from __future__ import annotations

import re
from typing import Any

from indexer.storage.sqlite.driver import Connection

_WS = re.compile(r"\s+")


def normalise_sql(sql: str | None) -> str | None:
    if sql is None:
        return None
    text = _WS.sub(" ", sql).strip()
    text = re.sub(r"\s*([(),])\s*", r"\1", text)
    return text


def schema_snapshot(conn: Connection) -> dict[str, Any]:
    """Tables, columns, foreign keys and indexes, normalised for comparison."""
    master = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE name NOT LIKE 'sqlite_stat%' ORDER BY type, name"
    ).fetchall()
    snapshot: dict[str, Any] = {"master": [], "tables": {}, "indexes": {}}
    for kind, name, table, sql in master:
        snapshot["master"].append((kind, name, table, normalise_sql(sql)))
        if kind == "table":
            snapshot["tables"][name] = {
                "columns": [tuple(r) for r in conn.execute(f"PRAGMA table_info('{name}')").fetchall()],
                "foreign_keys": sorted(
                    tuple(r[2:]) for r in conn.execute(f"PRAGMA foreign_key_list('{name}')").fetchall()
                ),
            }
        elif kind == "index":
            snapshot["indexes"][name] = {
                "table": table,
                "xinfo": [tuple(r) for r in conn.execute(f"PRAGMA index_xinfo('{name}')").fetchall()],
            }
    return snapshot


def named_indexes(conn: Connection) -> dict[str, dict[str, Any]]:
    """Explicit (named, not automatic) indexes: table, key columns with order, partial WHERE."""
    rows = conn.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL ORDER BY name"
    ).fetchall()
    result: dict[str, dict[str, Any]] = {}
    for name, table, sql in rows:
        info = conn.execute(f"PRAGMA index_xinfo('{name}')").fetchall()
        cols = [(r[2], "DESC" if r[3] else "ASC") for r in info if r[5]]  # r[5]: key column
        unique = bool(conn.execute(f"SELECT \"unique\" FROM pragma_index_list('{table}') WHERE name = ?", (name,)).fetchone()[0])
        where = None
        match = re.search(r"\bWHERE\b(.*)$", sql, re.IGNORECASE | re.DOTALL)
        if match:
            where = normalise_sql(match.group(1))
        result[name] = {"table": table, "columns": cols, "unique": unique, "where": where}
    return result
