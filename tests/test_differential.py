"""Differential tests (issue 12): after a random tree and a random sequence of edits, every
entry point leaves the document tables equal — path, content hash, status, chunk hashes — to
a fresh full index of the same tree:

- ``indexer reindex --root R``, ``indexer reindex R`` (R configured), ``reindex R/sub`` then
  ``reindex R``, ``reindex FILE...`` (every file under R, named one by one; deleted ones too),
  all through click's CliRunner in this process;
- ``DocumentIndexService.sync()``;
- the daemon (a real subprocess watching R while the edits happen), once it is idle.

The model is the deterministic hash embedder. Examples are derandomized by default (see
conftest: the same examples on every run; HYPOTHESIS_PROFILE=explore for new ones), and a
failure prints the operations applied and the blob that replays it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from conftest import EXAMPLES_SCALE
from index_state import State, index_state, state_diff
from indexer.cli import cli
from indexer.config import load_config
from indexer.documents.service import DocumentIndexService
from indexer.documents.sync import DocumentSync
from indexer.testing import HashEmbedder
from tree_ops import apply, every_file, initial, make_outside, make_scaffold, ops, restore_modes, scaffold

MODEL = "hash:64"


def full_index(db: Path, root: Path) -> State:
    """The oracle: a fresh database, one full sync of ``root``."""
    config = load_config({"db": str(db), "roots": [str(root)], "model": MODEL})
    with DocumentSync(config) as sync:
        sync.run()
    return index_state(db)


def cli_run(db: Path, *args: str, roots: Path | None = None) -> str:
    env = {"INDEXER_MODEL": MODEL, "INDEXER_ROOTS": str(roots) if roots else ""}
    result = CliRunner().invoke(cli, ["--db", str(db), "reindex", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def service_sync(db: Path, root: Path) -> None:
    async def run() -> None:
        config = load_config({"db": str(db), "roots": [str(root)], "model": MODEL})
        async with DocumentIndexService(config, embedder=HashEmbedder(dim=64, name=MODEL)) as service:
            await service.sync()
    asyncio.run(run())


def copy_db(src: Path, dst: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        if Path(str(src) + suffix).exists():
            shutil.copy(str(src) + suffix, str(dst) + suffix)
    return dst


def build(base: Path, tree: tuple[list, list]) -> tuple[Path, Path]:
    root = base / "R"
    root.mkdir()
    outside = make_outside(base)
    texts, tree = tree
    make_scaffold(root, texts)
    for operation in tree:
        note(f"initial: {apply(root, outside, operation)}")
    return root, outside


def first_subdir(root: Path, pick: int) -> Path:
    subdirs = sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())
    return subdirs[pick % len(subdirs)] if subdirs else root


@pytest.mark.slow
@settings(max_examples=40 * EXAMPLES_SCALE, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.tuples(scaffold, initial), edits=ops, pick=st.integers(0, 20))
def test_every_entry_point_equals_a_fresh_index(tree, edits, pick) -> None:
    with tempfile.TemporaryDirectory(prefix="ixdiff-") as tmp:
        base = Path(tmp)
        root, outside = build(base, tree)
        before = base / "before.db"
        cli_run(before, "--root", str(root))  # the index as it was before the edits
        for operation in edits:
            done = apply(root, outside, operation)
            event(done.split(" ")[0] + (" " + done.split(" ")[1] if done.startswith("skip") else ""))
            note(f"edit: {done}")
        event(f"documents before: {len(index_state(before)) // 3 * 3}+")
        named = sorted({str(p) for p in every_file(root)} | set(index_state(before)))
        sub = first_subdir(root, pick)
        expected = full_index(base / "fresh.db", root)

        def check(name: str, db: Path) -> None:
            actual = index_state(db)
            assert actual == expected, f"{name}: {state_diff(expected, actual)}"

        db = copy_db(before, base / "root-flag.db")
        cli_run(db, "--root", str(root))
        check("reindex --root R", db)

        db = copy_db(before, base / "root-path.db")
        cli_run(db, str(root), roots=root)
        check("reindex R", db)

        db = copy_db(before, base / "sub-then-root.db")
        cli_run(db, str(sub), roots=root)
        cli_run(db, str(root), roots=root)
        check(f"reindex {sub.relative_to(base)} then reindex R", db)

        db = copy_db(before, base / "files.db")
        if named:
            cli_run(db, *named, roots=root)
        check("reindex FILE...", db)

        db = copy_db(before, base / "service.db")
        service_sync(db, root)
        check("DocumentIndexService.sync()", db)
        restore_modes(base)


@pytest.mark.slow
@pytest.mark.process
@settings(max_examples=6 * EXAMPLES_SCALE, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.tuples(scaffold, initial), edits=ops)
def test_the_daemon_once_idle_equals_a_fresh_index(tree, edits) -> None:
    from daemon_harness import DaemonProcess, wait_until

    with tempfile.TemporaryDirectory(prefix="ixdiffd-") as tmp:
        base = Path(tmp)
        root, outside = build(base, tree)
        home = base / "home"
        daemon = DaemonProcess(home, [root], model=MODEL, debounce_ms=50)
        try:
            daemon.ready(60)
            start = full_index(base / "start.db", root)
            wait_until(lambda: index_state(daemon.db) == start and daemon.idle(), 30, what="the first index")
            for operation in edits:
                note(f"edit: {apply(root, outside, operation)}")
            expected = full_index(base / "fresh.db", root)
            try:
                wait_until(lambda: index_state(daemon.db) == expected and daemon.idle(), 20, interval=0.1)
            except AssertionError:
                raise AssertionError(f"daemon: {state_diff(expected, index_state(daemon.db))}\n"
                                     f"{daemon.log()[-2000:]}") from None
            assert daemon.stop() == 0
        finally:
            daemon.close()
            restore_modes(base)
