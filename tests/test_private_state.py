"""Private by default: every directory we create is 0700 and every file 0600, whatever the
umask (a permissive 022 or 000 here), for the database and its -wal/-shm, backups, the model
cache, the MCP token and the state directories; through the CLI as a user runs it (a fresh
HOME, the XDG defaults), through the daemon, and through the library."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_harness import DaemonProcess

PERMISSIVE = [pytest.param(0o022, id="umask-022"), pytest.param(0o000, id="umask-000")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def not_private(top: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    """Every directory not 0700 and file not 0600 under ``top`` (itself included)."""
    bad = []
    for dirpath, _dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        if any(here == s or s in here.parents for s in skip):
            continue
        if mode(here) != 0o700:
            bad.append(f"{here}: {oct(mode(here))}")
        for name in filenames:
            path = here / name
            if not path.is_symlink() and mode(path) != 0o600:
                bad.append(f"{path}: {oct(mode(path))}")
    return bad


@pytest.fixture
def umask_of(request: pytest.FixtureRequest) -> Iterator[int]:
    """The test process (and so its children) under the parametrised umask, restored after."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.mark.process
@pytest.mark.parametrize("umask_of", PERMISSIVE, indirect=True)
def test_what_a_user_s_first_commands_create_is_private(tmp_path: Path, umask_of: int) -> None:
    home = tmp_path / "home"
    notes = home / "notes"
    notes.mkdir(parents=True)
    (notes / "today.md").write_text("# Today\n\nPack the release into an archive.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INDEXER_", "XDG_"))}
    env.update(HOME=str(home), INDEXER_MODEL="hash:64", XDG_RUNTIME_DIR=str(tmp_path / "run"))

    def indexer(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "indexer", *args], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout

    indexer("reindex", "--root", str(notes))
    indexer("memory", "add", "user:alice:prefs", "theme", '"dark"')
    indexer("session", "create", "my-app", "alice")
    indexer("backup", str(home / "backups") + "/")
    indexer("mcp", "--http", "--print-config")
    data = home / ".local" / "share" / "indexer"
    assert {p.name for p in data.iterdir()} >= {"indexer.db", "mcp-http.token"}
    assert list((home / "backups").glob("indexer-*.db"))
    # every directory the commands created on the way (~/.local, ~/.local/share too) and every file
    made = [p for p in home.iterdir() if p != notes]  # HOME itself is the test's
    assert {p.name for p in made} == {".local", "backups"} and [b for p in made for b in not_private(p)] == []


@pytest.mark.process
@pytest.mark.parametrize("umask_of", PERMISSIVE, indirect=True)
def test_the_daemon_s_database_wal_and_shm_are_private(tmp_path: Path, umask_of: int) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nsome words\n")
    home = tmp_path / "state" / "home"  # the parent too is created by the daemon
    home.parent.mkdir()
    d = DaemonProcess(home, [root])
    try:
        d.ready(120)
        d.settle(root)
        files = [home / "indexer.db", home / "indexer.db-wal", home / "indexer.db-shm", home / "indexer.db.daemon.lock"]
        assert all(p.exists() for p in files), list(home.iterdir())
        assert {p.name: oct(mode(p)) for p in files} == {p.name: "0o600" for p in files}
        assert oct(mode(home / "run")) == "0o700"
        assert d.stop() == 0
    finally:
        d.close()


@pytest.mark.parametrize("umask_of", PERMISSIVE, indirect=True)
def test_the_library_makes_them_private_itself(tmp_path: Path, umask_of: int) -> None:
    """Python callers (no CLI to set the umask): Database, backup, the daemon lock, the helpers."""
    from indexer.agent.memory import MemoryService
    from indexer.lockfile import InstanceLock
    from indexer.paths import create_private_file, private_dir, write_private
    from indexer.storage.sqlite.backup import backup
    from indexer.storage.sqlite.database import Database

    db = tmp_path / "new" / "deeper" / "agent.db"

    async def write_and_look() -> dict[str, str]:
        async with Database(db) as database:
            await MemoryService(database).create_memory("user:a:prefs", "theme", "dark", "semantic")
            return {p.name: oct(mode(p)) for p in db.parent.iterdir()}  # while open: -wal and -shm exist

    modes = asyncio.run(write_and_look())
    assert modes == {"agent.db": "0o600", "agent.db-wal": "0o600", "agent.db-shm": "0o600"}
    report = backup(db, tmp_path / "copies", into_directory=True)
    with InstanceLock(tmp_path / "other" / "x.db"):
        pass
    assert Path(report.target).parent == tmp_path / "copies"
    assert not_private(tmp_path / "new") == not_private(tmp_path / "copies") == not_private(tmp_path / "other") == []

    made = private_dir(tmp_path / "a" / "b")
    assert made.is_dir() and mode(tmp_path / "a") == mode(made) == 0o700
    (tmp_path / "open").mkdir(mode=0o755)
    os.chmod(tmp_path / "open", 0o755)
    private_dir(tmp_path / "open")  # a directory that exists is the user's: left as it is
    assert mode(tmp_path / "open") == 0o755
    assert create_private_file(tmp_path / "f") and not create_private_file(tmp_path / "f")
    write_private(tmp_path / "g", "text")
    assert mode(tmp_path / "f") == mode(tmp_path / "g") == 0o600 and (tmp_path / "g").read_text() == "text"
