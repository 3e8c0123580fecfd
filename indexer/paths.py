"""Where state lives: XDG locations, all relocated under ``$INDEXER_HOME`` when it is set."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple

APP = "indexer"


class StatePaths(NamedTuple):  # a tuple, not a dataclass: `indexer search` imports this module
    data_dir: Path
    config_file: Path
    runtime_dir: Path

    @property
    def default_db(self) -> Path:
        return self.data_dir / "indexer.db"


def state_paths(env: dict[str, str] | None = None) -> StatePaths:
    env = dict(os.environ) if env is None else env
    home = env.get("INDEXER_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return StatePaths(root, root / "config.toml", root / "run")
    import platformdirs  # only without INDEXER_HOME (a few ms of start-up)

    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        runtime_dir = Path(runtime) / APP
    else:  # no XDG_RUNTIME_DIR (not a systemd login): platformdirs' per-user fallback, quietly
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runtime_dir = Path(platformdirs.user_runtime_dir(APP))
    return StatePaths(
        data_dir=Path(platformdirs.user_data_dir(APP)),
        config_file=Path(platformdirs.user_config_dir(APP)) / "config.toml",
        runtime_dir=runtime_dir,
    )


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
