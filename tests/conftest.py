"""Shared fixtures: every test gets its own INDEXER_HOME, so no test touches real state; real
markdown comes from the vendored sample (``corpus()``), or the whole corpora where a test needs
them (``full_corpus()``, skipped with the reason when absent). Light imports only: a pure test
file runs in seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from indexer.storage.sqlite import driver
from indexer.storage.sqlite.database import Database

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


SAMPLE_CORPORA = REPO_ROOT / "tests" / "data" / "corpora"
FULL_CORPORA = Path(os.environ.get("INDEXER_TEST_CORPORA") or REPO_ROOT.parent / "shared" / "corpora")


@dataclass(frozen=True)
class Corpora:
    """Real markdown in the layout of ../shared/corpora: tldr pages and Rust RFCs (read only)."""

    root: Path
    full: bool

    @property
    def tldr(self) -> Path:
        return self.root / "tldr" / "pages"

    @property
    def rfcs(self) -> Path:
        return self.root / "rust-rfcs" / "text"

    def tldr_pages(self, sub: str = "common") -> list[Path]:
        """The visible pages of one tldr folder, by name (``..md`` is hidden)."""
        return [p for p in sorted((self.tldr / sub).glob("*.md")) if not p.name.startswith(".")]

    def rfc_files(self) -> list[Path]:
        return sorted(self.rfcs.glob("*.md"))


# One policy for corpus data: tests use the sample vendored in tests/data/corpora (it travels
# with the repository; see its README.md); the few that need the whole corpora call
# full_corpus(), which skips, with the reason in the summary (-rs), where they are absent.
def corpus() -> Corpora:
    """The vendored sample: ~400 tldr pages and ~25 RFCs (tests/data/make_sample.py)."""
    if not (SAMPLE_CORPORA / "tldr" / "pages").is_dir() or not (SAMPLE_CORPORA / "rust-rfcs" / "text").is_dir():
        pytest.fail(f"the vendored corpus sample is missing at {SAMPLE_CORPORA}")
    return Corpora(SAMPLE_CORPORA, full=False)


def full_corpus() -> Corpora:
    """The whole corpora (7,013 tldr pages, 650 RFCs) at ../shared/corpora beside the checkout
    or at $INDEXER_TEST_CORPORA; a skip with the reason when they are not there."""
    if not (FULL_CORPORA / "tldr" / "pages").is_dir() or not (FULL_CORPORA / "rust-rfcs" / "text").is_dir():
        pytest.skip(f"needs the full corpora at {FULL_CORPORA} (absent; set INDEXER_TEST_CORPORA to "
                    "their folder); the vendored sample is tested instead")
    return Corpora(FULL_CORPORA, full=True)


@pytest.fixture(params=["sample", pytest.param("full", marks=pytest.mark.slow)])
def each_corpus(request: pytest.FixtureRequest) -> Corpora:
    """For tests worth running on both: the sample always, the full corpora where present."""
    return corpus() if request.param == "sample" else full_corpus()


def copy_tldr(dest: Path, names: tuple[str, ...]) -> Path:
    """A few real tldr pages (from the vendored sample) copied into ``dest``."""
    source = corpus().tldr / "common"
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(source / f"{name}.md", dest / f"{name}.md")
    return dest


def copy_sample(dest: Path, tldr: int, rfcs: int, corpora: Corpora | None = None) -> int:
    """The first ``tldr`` common pages into ``dest`` and the first ``rfcs`` RFCs into
    ``dest/rfcs``; fails (never runs on less) when the corpus holds fewer. Returns the count."""
    corpora = corpora or corpus()
    pages, texts = corpora.tldr_pages()[:tldr], corpora.rfc_files()[:rfcs]
    if len(pages) < tldr or len(texts) < rfcs:
        pytest.fail(f"{corpora.root} has {len(pages)} tldr pages and {len(texts)} RFCs; the test asked for "
                    f"{tldr} and {rfcs}")
    (dest / "rfcs").mkdir(parents=True, exist_ok=True)
    for p in pages:
        shutil.copy(p, dest / p.name)
    for p in texts:
        shutil.copy(p, dest / "rfcs" / p.name)
    return len(pages) + len(texts)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "indexer-home"
    home.mkdir()
    monkeypatch.setenv("INDEXER_HOME", str(home))
    for var in ("INDEXER_DB", "INDEXER_AGENT_DB", "INDEXER_CONFIG", "INDEXER_ROOTS", "INDEXER_MODEL", "INDEXER_BACKEND"):
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


# --- the two engines: SQLite files and a real PostgreSQL (tests/pg_server.py) ---------------------

@pytest.fixture(scope="session")
def pg_server() -> Any:
    """The suite's PostgreSQL, started at first use and stopped at the end (or the server
    named by INDEXER_TEST_POSTGRES). A server that cannot start fails the tests that need it."""
    from pg_server import ServerError, SuiteServer

    try:
        server = SuiteServer()
    except ServerError as exc:
        pytest.fail(f"the PostgreSQL test server could not start: {exc}", pytrace=False)
    yield server
    server.close()


@pytest.fixture
def pg_dsn(pg_server: Any) -> str:
    """A fresh, migrated database on the test server: its DSN."""
    return str(pg_server.fresh_database())


@pytest.fixture(scope="session")
def pg_bouncer(pg_server: Any) -> Any:
    """A PgBouncer in transaction pooling mode in front of the suite's server (tests/pg_server.py
    ``Bouncer``: a private socket directory, no TCP, 4 server connections per database), started at
    first use and stopped at the end. Skipped, with the reason, where pgbouncer is not installed
    (make install adds it on Debian); under CI (``CI`` set) that fails instead."""
    from pg_server import Bouncer, ServerError, pgbouncer_binary

    if pgbouncer_binary() is None:
        reason = "pgbouncer is not installed (make install adds Debian's pgbouncer package: apt-get install pgbouncer)"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        bouncer = Bouncer.start(pg_server.admin_dsn)
    except ServerError as exc:
        pytest.fail(f"PgBouncer could not start: {exc}", pytrace=False)
    yield bouncer
    bouncer.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each test that asks for it runs on both engines."""
    return str(request.param)


@dataclass(frozen=True)
class StoreRows:
    """Rows of an agent store read through a new connection, as another process would see
    them; ``?`` placeholders on both engines."""

    location: str

    @property
    def engine(self) -> str:
        return "postgresql" if self.location.startswith("postgresql://") else "sqlite"

    def __call__(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if self.engine == "sqlite":
            return raw_rows(Path(self.location), sql, params)
        import psycopg
        from psycopg.rows import dict_row
        from psycopg.types.string import TextLoader

        with psycopg.connect(self.location, row_factory=dict_row) as conn:
            for name in ("json", "jsonb"):  # JSON columns as their stored text, as SQLite returns them
                conn.adapters.register_loader(name, TextLoader)
            rows = conn.execute(sql.replace("?", "%s"), params).fetchall()
        return [{k: int(v) if isinstance(v, bool) else v for k, v in r.items()} for r in rows]  # booleans as 0/1

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        """One write through a new connection (another process's, or other code's); ``?``
        placeholders on both engines."""
        if self.engine == "sqlite":
            conn = driver.connect(Path(self.location))
            try:
                conn.execute(sql, params)
            finally:
                conn.close()
            return
        import psycopg

        with psycopg.connect(self.location) as conn:
            conn.execute(sql.replace("?", "%s"), params)


@pytest.fixture
def agent_location(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh agent store on the engine of the test: a file path or a PostgreSQL DSN."""
    if engine == "postgresql":
        return str(request.getfixturevalue("pg_dsn"))
    return str(tmp_path / "agent.db")


@pytest.fixture
def store_rows(agent_location: str) -> StoreRows:
    return StoreRows(agent_location)


@pytest.fixture
async def agent_db(agent_location: str) -> AsyncIterator[Any]:
    """An initialised agent store on the engine of the test."""
    from indexer.storage.engines import open_agent_database

    async with open_agent_database(agent_location) as database:
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
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
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
