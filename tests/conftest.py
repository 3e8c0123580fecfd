"""Shared fixtures: every test gets its own INDEXER_HOME, so no test touches real state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from indexer.storage import driver
from indexer.storage.database import Database


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "indexer-home"
    home.mkdir()
    monkeypatch.setenv("INDEXER_HOME", str(home))
    for var in ("INDEXER_DB", "INDEXER_CONFIG", "INDEXER_ROOTS", "INDEXER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return home


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    """An initialised Database on a fresh file."""
    async with Database(db_path) as database:
        yield database


def raw_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows as dicts, read through a new connection (what another process would see)."""
    conn = driver.connect(path)
    try:
        return [dict(zip(r.keys(), tuple(r))) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()
