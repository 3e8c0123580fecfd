"""Shared fixtures: every test gets its own INDEXER_HOME, so no test touches real state."""

from __future__ import annotations

from pathlib import Path

import pytest


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
