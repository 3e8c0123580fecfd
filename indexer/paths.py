"""Where state lives: XDG locations, all relocated under ``$INDEXER_HOME`` when it is set; and
how it is created: private to the user, whatever the umask.

Every directory we create is 0700 and every file 0600 (the XDG base directory spec asks for
0700; notes, memories and sessions are nobody else's business). A directory or file that
already exists keeps the mode it has: it is the user's.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple

APP = "indexer"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class StatePaths(NamedTuple):  # a tuple, not a dataclass: `indexer search` imports this module
    data_dir: Path
    config_file: Path
    runtime_dir: Path
    cache_dir: Path

    @property
    def default_db(self) -> Path:
        return self.data_dir / "indexer.db"


def state_paths(env: dict[str, str] | None = None) -> StatePaths:
    env = dict(os.environ) if env is None else env
    home = env.get("INDEXER_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return StatePaths(root, root / "config.toml", root / "run", root / "cache")
    import platformdirs  # only without INDEXER_HOME (a few ms of start-up)

    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        runtime_dir = Path(runtime) / APP
    else:  # no XDG_RUNTIME_DIR (not a systemd login): platformdirs' per-user fallback, quietly
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runtime_dir = Path(platformdirs.user_runtime_dir(APP))
    cache = env.get("XDG_CACHE_HOME")  # read here: platformdirs reads os.environ, not ``env``
    return StatePaths(
        data_dir=Path(platformdirs.user_data_dir(APP)),
        config_file=Path(platformdirs.user_config_dir(APP)) / "config.toml",
        runtime_dir=runtime_dir,
        cache_dir=Path(cache) / APP if cache and Path(cache).is_absolute() else Path(platformdirs.user_cache_dir(APP)),
    )


def private_dir(path: Path) -> Path:
    """``mkdir -p path``, each directory it creates 0700 whatever the umask (parents too, as
    the XDG spec asks); directories that exist are left as they are."""
    path = Path(path)
    missing: list[Path] = []
    here = path
    while not here.is_dir() and here != here.parent:
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        os.chmod(folder, PRIVATE_DIR)  # the umask may only have taken bits away; say it exactly
    return path


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 (whatever the umask) if it does not exist; True
    when this call created it. Files made beside it later by SQLite (-wal, -shm, -journal)
    take its mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (0600) through a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as out:
            out.write(text)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def daemon_locations(db_flag: str | None, config_flag: str | None,
                     env: dict[str, str] | None = None) -> tuple[Path, Path] | None:
    """(database, runtime directory) that name a running daemon's socket, without loading the
    config, when no config file can change them: what a daemon-answered ``indexer search``
    needs, and all it needs. None when a config file is given or exists (then the caller loads
    the config: ``indexer.config.load_config``, which this must always agree with)."""
    env = dict(os.environ) if env is None else env
    if config_flag is not None or env.get("INDEXER_CONFIG"):
        return None
    paths = state_paths(env)
    if paths.config_file.exists():
        return None
    raw = db_flag if db_flag is not None else env.get("INDEXER_DB")
    if raw is not None and not raw:
        return None  # an empty path: the config's own error
    db = Path(raw).expanduser().resolve() if raw else paths.default_db
    return db, paths.runtime_dir
