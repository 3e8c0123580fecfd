"""Shared fixtures: every test gets its own INDEXER_HOME, so no test touches real state."""

from __future__ import annotations

from pathlib import Path
import json
import os
import shutil
import subprocess
import sys
from typing import Any, AsyncIterator

import pytest
from hypothesis import settings

from indexer.storage import driver
from indexer.storage.database import Database

REPO_ROOT = Path(__file__).resolve().parents[1]

# Property tests: by default (make test, CI) the examples are derived from each test's name
# (derandomize: the same examples on every run and machine, no example database); a failure
# prints the @reproduce_failure blob that replays it. HYPOTHESIS_PROFILE=explore draws new
# random examples each run (the seed is printed in pytest's header and on failure), 5x as many.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("explore", print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
EXAMPLES_SCALE = 5 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 1


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed", None)
    return (f"hypothesis profile {settings._current_profile!r}"
            + (f", seed {seed}" if seed is not None else " (derandomized)" if settings.default.derandomize else ""))
TLDR_PAGES = REPO_ROOT.parent / "shared" / "corpora" / "tldr" / "pages" / "common"


def copy_tldr(dest: Path, names: tuple[str, ...]) -> Path:
    """A few real tldr pages (read in place from ../shared) copied into ``dest``."""
    if not TLDR_PAGES.is_dir():
        pytest.fail(f"the shared corpus is missing at {TLDR_PAGES}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(TLDR_PAGES / f"{name}.md", dest / f"{name}.md")
    return dest


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


def run_processes(code: str, argv: list[list[str]], timeout: float = 240) -> list[Any]:
    """Start one Python process per argv, let them all start work at once, return the JSON
    each printed last."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for args in argv]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
