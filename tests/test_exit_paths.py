"""How processes end: a reader that goes away (`indexer search … | head -1`), and scripts that
raise with a database or a service still open (they must exit, not hang)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO_ROOT, raw_rows

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "INDEXER_HOME": str(home), "INDEXER_MODEL": "hash:64",
            "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_search_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(30):
        (notes / f"page{i}.md").write_text(f"# Page {i}\n\nA shared word: archive, and page {i}.\n", encoding="utf-8")
    env = cli_env(tmp_path / "home")
    subprocess.run([sys.executable, "-m", "indexer", "reindex", "--root", str(notes)], env=env, check=True,
                   capture_output=True, timeout=60)
    for args in (["search", "--mode", "keyword", "-k", "20", "archive"],
                 ["search", "--mode", "keyword", "--jsonl", "archive"],
                 ["status"]):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line is written, as `head -1` is after its line
        try:
            proc = subprocess.run([sys.executable, "-m", "indexer", *args], env=env, stdout=write,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write)
        assert proc.stderr == "", (args, proc.stderr)
        assert proc.returncode == 141, (args, proc.returncode)  # as a tool killed by SIGPIPE


def test_search_piped_into_head_prints_no_error(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(40):
        (notes / f"page{i}.md").write_text(f"# Page {i}\n\n" + "archive words here. " * 400 + "\n", encoding="utf-8")
    env = cli_env(tmp_path / "home")
    subprocess.run([sys.executable, "-m", "indexer", "reindex", "--root", str(notes)], env=env, check=True,
                   capture_output=True, timeout=60)
    command = f"{sys.executable} -m indexer search --mode keyword --json -k 40 archive | head -1"
    proc = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "{", proc
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


SCRIPTS = {
    "database": """
        from indexer import Database
        async def main():
            db = Database(DB)
            await db.initialize()
            raise RuntimeError("the script failed")
    """,
    "memory service": """
        from indexer import Database, MemoryService
        async def main():
            db = Database(DB)
            await db.initialize()
            await MemoryService(db).create_memory("user:alice:prefs", "theme", "dark", "semantic", created_by="t")
            raise RuntimeError("the script failed")
    """,
    "document service": """
        from indexer import DocumentIndexService
        from indexer.config import load_config
        async def main():
            docs = DocumentIndexService(load_config({"db": DB, "model": "hash:64", "roots": [NOTES]}))
            await docs.sync()
            raise RuntimeError("the script failed")
    """,
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_that_raises_with_the_database_open_exits(tmp_path: Path, name: str) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nSomething to index.\n", encoding="utf-8")
    db = tmp_path / "test.db"
    code = f"import asyncio\nDB = {str(db)!r}\nNOTES = {str(notes)!r}\n" + textwrap.dedent(SCRIPTS[name]) + \
        "asyncio.run(main())\n"
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=cli_env(tmp_path / "home"), capture_output=True,
                              text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {name} script hung at interpreter exit")
    assert proc.returncode == 1 and "RuntimeError: the script failed" in proc.stderr, proc.stderr
    if name == "memory service":  # what was committed before the error is there
        assert [r["value"] for r in raw_rows(db, "SELECT value FROM memory_entries")] == ['"dark"']
