"""Which roots a command works on when it is given none: the configured ones, else the ones
remembered in the database (every root a ``reindex --root`` or a daemon indexed; schema 0005).

So the README's first steps (``indexer reindex --root ~/notes``, no config file) leave an
index that a plain ``indexer reindex``, ``indexer daemon`` and the MCP server's
``read_document`` know the roots of. A ``roots`` setting in the config replaces them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from indexer.config import Config
from indexer.storage.sqlite import settings_store


def remembered_roots(db: Path) -> tuple[Path, ...]:
    """The roots indexed into the database at ``db`` (read only; none when it does not exist)."""
    return tuple(Path(r) for r in settings_store.read_remembered_roots(db))


def effective_roots(config: Config) -> tuple[Path, ...]:
    """The configured roots, else the remembered ones that are still directories (a root
    removed or unmounted since is passed over, its documents kept, rather than stopping every
    command run without --root)."""
    return tuple(config.roots) or tuple(r for r in remembered_roots(config.db) if r.is_dir())


def with_remembered_roots(config: Config) -> Config:
    """``config`` itself when it has roots, else the same with the remembered roots (its
    ``sources`` say so)."""
    if config.roots:
        return config
    roots = effective_roots(config)
    if not roots:
        return config
    return replace(config, roots=roots, sources={**config.sources, "roots": f"remembered in {config.db}"})
