"""Where state lives: XDG locations, all relocated under ``$INDEXER_HOME`` when it is set."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

APP = "indexer"


@dataclass(frozen=True)
class StatePaths:
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
